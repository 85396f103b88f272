//! Triggers (docs/architecture.md §7): one binary accepts every event that calls Lambda in practice.
//!
//! [`run`] starts the Lambda runtime; each invocation's raw event is classified by its
//! shape ([`EventShape`]) and handed to the trigger that understands it:
//!
//! | shape | key | answer |
//! |---|---|---|
//! | direct invoke / Step Functions: an [`Envelope`] or bare params | `idempotencyKey`, else derived | the output, or a function error whose `errorType` is the wire name; with `"respond": "envelope"`, `{result, error, execution}` for results and terminal failures ([`direct::invoke`]) |
//! | SQS (standard, FIFO) | envelope key, else the message id (never the FIFO deduplication id) | `batchItemFailures` for retryable failures only |
//! | EventBridge | envelope key, else the event id | the output, or a function error |
//! | API Gateway REST v1, HTTP v2, function URL, ALB | `Idempotency-Key` header | an HTTP response per docs/architecture.md §6 |
//!
//! No panic reaches Lambda (whose `errorType` for one is a Rust type name, useless to a
//! `Retry`/`Catch`): events are read by code that does not panic on what a caller sends
//! (the HTTP conversion is our own, see `http_event`), and a panic anywhere in the
//! dispatch of one event is still caught ([`catch_panic`]) and answered as
//! `ActionDo.Internal`. An event that is not JSON the runtime can read is
//! `ActionDo.Validation` ([`RawEvent`]), not the runtime's deserialization error.

pub mod direct;
pub mod eventbridge;
pub mod http;
mod http_event;
pub mod sqs;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt as _;

use lambda_runtime::{Context, Diagnostic, LambdaEvent, service_fn};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::action::{Action, DynAction};
use crate::config::Settings;
use crate::error::ActionError;
use crate::executor::Executor;
use crate::invocation::Source;
use crate::invocation::{Invocation, Params};
use crate::store::StoreConfig;

/// The error type of [`run`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Lambda's error contract: `errorType` is the stable wire name (what Step Functions
/// `Retry`/`Catch` match), `errorMessage` the JSON error body
/// (`{"error": {"type", "message", "retryable", "details"}}`), which a state machine can
/// read back with `States.StringToJson($.Cause)`.
impl From<ActionError> for Diagnostic {
    fn from(err: ActionError) -> Self {
        Diagnostic {
            error_type: err.kind().wire_name().to_owned(),
            error_message: serde_json::to_string(&err.to_body())
                .unwrap_or_else(|_| err.message().to_owned()),
        }
    }
}

/// How a caller asks for the result of a direct invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Respond {
    /// The output alone (the default).
    #[default]
    Result,
    /// `{"result", "error", "execution": {"key", "attempt", "replayed"}}`, for results and
    /// terminal failures alike (retryable failures stay function errors).
    Envelope,
}

/// The envelope of a direct invocation, a Step Functions task, an SQS message body or an
/// EventBridge `detail`: `{"params": {...}, "idempotencyKey"?, "correlationId"?, "caller"?,
/// "respond"?}`.
///
/// `caller` is who the invoker acts for (the router sends `apikey:<id>`); it reaches the
/// audit record. It is trusted like the other fields of a direct invocation, whose
/// invoker holds `lambda:InvokeFunction` on the function (the router, a state machine):
/// such an invoker can already choose the key and the params. SQS and EventBridge drop it
/// (anyone who may send to the queue or the bus would otherwise name any caller).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Envelope {
    /// The action's parameters.
    pub params: Value,
    /// The parameters as text the sender did not parse (the router's body that is not
    /// JSON): when given, the executor parses it instead of `params`, so a malformed body
    /// is refused and audited as its length and SHA-256 (docs/architecture.md §4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params_text: Option<String>,
    /// The idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The correlation id (a Step Functions passes `$$.Execution.Id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Who the invoker acts for (`apikey:<id>` from the router); direct invocations only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// The answer's form.
    #[serde(default)]
    pub respond: Respond,
}

impl Envelope {
    /// Read a payload as an envelope when it is an object with `params` and only envelope
    /// fields; anything else is bare params.
    pub fn from_payload(payload: Value) -> Self {
        let is_envelope = payload.as_object().is_some_and(|o| {
            o.contains_key("params")
                && o.keys().all(|k| {
                    matches!(
                        k.as_str(),
                        "params"
                            | "paramsText"
                            | "idempotencyKey"
                            | "correlationId"
                            | "caller"
                            | "respond"
                    )
                })
        });
        if is_envelope {
            match serde_json::from_value::<Envelope>(payload.clone()) {
                Ok(envelope) => return envelope,
                // A malformed envelope (e.g. a numeric key) is passed on as params, where
                // the schema check names what is wrong.
                Err(e) => tracing::debug!(error = %e, "not an envelope"),
            }
        }
        Envelope {
            params: payload,
            ..Envelope::default()
        }
    }

    /// The invocation this envelope asks for.
    pub fn into_invocation(self, source: Source, meta: &Meta) -> Invocation {
        Invocation {
            params: match self.params_text {
                Some(text) => Params::Text(text),
                None => Params::Json(self.params),
            },
            key: self.idempotency_key,
            source,
            request_id: Some(meta.request_id.clone()),
            correlation_id: self.correlation_id,
            caller: self.caller,
            trace_id: meta.trace_id.clone(),
            deadline_ms: meta.deadline_ms,
        }
    }
}

/// Deadlines before this (2001-09-09, Unix ms) are durations, not times.
const MIN_ABSOLUTE_DEADLINE_MS: i64 = 1_000_000_000_000;

/// What the Lambda context tells every trigger.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// The Lambda request id.
    pub request_id: String,
    /// The invocation's deadline, Unix milliseconds.
    pub deadline_ms: Option<i64>,
    /// The X-Ray trace id.
    pub trace_id: Option<String>,
}

impl From<&Context> for Meta {
    fn from(cx: &Context) -> Self {
        Self {
            request_id: cx.request_id.clone(),
            // Lambda sends an absolute time (Unix ms); an emulator that sends a duration
            // (cargo lambda watch: a constant 600000) gives no deadline at all, rather than
            // one in 1970 that would shrink every lease to its floor.
            deadline_ms: i64::try_from(cx.deadline)
                .ok()
                .filter(|d| *d > MIN_ABSOLUTE_DEADLINE_MS),
            trace_id: cx.xray_trace_id.clone(),
        }
    }
}

/// What a handler returns to the runtime: an output's JSON text verbatim (so that a replay
/// is byte-identical) or a JSON value.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Reply {
    /// JSON text, sent as is.
    Raw(Box<RawValue>),
    /// A value.
    Json(Value),
}

/// The kinds of event [`Handler::handle`] accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventShape {
    /// `{"Records": [{"eventSource": "aws:sqs", ...}]}`.
    Sqs,
    /// `{"detail-type", "source", "detail", ...}`.
    EventBridge,
    /// API Gateway REST (v1) or HTTP (v2) API, function URL, ALB.
    Http,
    /// A direct invocation or a Step Functions task: an envelope or bare params.
    Direct,
}

const ACCEPTED: &str = "a direct or Step Functions invocation ({\"params\": {...}, \"idempotencyKey\"?, \"correlationId\"?, \"caller\"?, \"paramsText\"?, \"respond\"?} or a bare params object), an SQS event, an EventBridge event, or an API Gateway (REST v1, HTTP v2), function URL or ALB request";

impl EventShape {
    /// Classify a raw event; events of other services (S3, SNS, DynamoDB streams…) and
    /// payloads that are not objects are refused with `ActionDo.Validation` naming the
    /// shapes accepted.
    pub fn of(event: &Value) -> Result<Self, ActionError> {
        let unrecognised = |what: &str| {
            ActionError::validation(format!(
                "unrecognised event ({what}); this function accepts {ACCEPTED}"
            ))
        };
        let Some(object) = event.as_object() else {
            return Err(unrecognised("not a JSON object"));
        };
        if let Some(records) = object.get("Records") {
            let source = records
                .get(0)
                .and_then(|r| r.get("eventSource").or_else(|| r.get("EventSource")))
                .and_then(Value::as_str);
            return match source {
                Some("aws:sqs") => Ok(EventShape::Sqs),
                Some(other) => Err(unrecognised(&format!("records from {other}"))),
                None => Err(unrecognised("records without an event source")),
            };
        }
        if object.contains_key("detail-type") && object.contains_key("source") {
            return Ok(EventShape::EventBridge);
        }
        let request_context = object.get("requestContext");
        if request_context.is_some()
            && (object.contains_key("httpMethod")
                || object.contains_key("routeKey")
                || request_context
                    .is_some_and(|rc| rc.get("http").is_some() || rc.get("elb").is_some()))
        {
            return Ok(EventShape::Http);
        }
        Ok(EventShape::Direct)
    }
}

/// An action with its executor, ready to handle raw Lambda events of every shape.
#[derive(Clone)]
pub struct Handler {
    executor: Executor,
    action: Arc<dyn DynAction>,
    settings: TriggerSettings,
}

/// What the triggers take from the program's [`Settings`]: read once at the edge, never
/// per event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TriggerSettings {
    /// How many records of a standard SQS queue run at once (`ACTIONDO_SQS_CONCURRENCY`,
    /// else [`sqs::DEFAULT_CONCURRENCY`]).
    pub sqs_concurrency: usize,
    /// Whether API Gateway's stage stays out of the request path
    /// (`AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH` set, as `lambda_http` reads it).
    pub ignore_stage_in_path: bool,
}

impl Default for TriggerSettings {
    fn default() -> Self {
        Self {
            sqs_concurrency: sqs::DEFAULT_CONCURRENCY,
            ignore_stage_in_path: false,
        }
    }
}

impl TriggerSettings {
    /// The trigger settings in `settings` (defaults for what is unset or unusable).
    ///
    /// ```
    /// use actiondo::config::Settings;
    /// use actiondo::trigger::TriggerSettings;
    ///
    /// let read = TriggerSettings::from_settings(&Settings::from_pairs([
    ///     ("ACTIONDO_SQS_CONCURRENCY", "4"),
    ///     ("AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH", ""),
    /// ]));
    /// assert_eq!(read, TriggerSettings { sqs_concurrency: 4, ignore_stage_in_path: true });
    /// assert_eq!(TriggerSettings::from_settings(&Settings::default()), TriggerSettings::default());
    /// ```
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            sqs_concurrency: sqs::concurrency(settings),
            ignore_stage_in_path: settings.is_present(http_event::IGNORE_STAGE_ENV),
        }
    }
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler")
            .field("action", &self.action.name())
            .field("executor", &self.executor)
            .finish()
    }
}

impl Handler {
    /// `action` run by `executor`.
    pub fn new(executor: Executor, action: Arc<dyn DynAction>) -> Self {
        Self {
            executor,
            action,
            settings: TriggerSettings::default(),
        }
    }

    /// This handler with the triggers' `settings` (the defaults otherwise).
    #[must_use]
    pub fn with_settings(mut self, settings: TriggerSettings) -> Self {
        self.settings = settings;
        self
    }

    /// The triggers' settings.
    pub fn settings(&self) -> &TriggerSettings {
        &self.settings
    }

    /// The executor.
    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    /// The action.
    pub fn action(&self) -> &dyn DynAction {
        &*self.action
    }

    /// Handle one raw event: classify it and dispatch to its trigger. An `Err` is a
    /// function error (direct, Step Functions, EventBridge); SQS and HTTP always answer
    /// `Ok` with their own failure reporting. A panic anywhere in the dispatch is
    /// `ActionDo.Internal` ([`catch_panic`]).
    pub async fn handle(&self, event: Value, context: &Context) -> Result<Reply, ActionError> {
        catch_panic(self.dispatch(event, context)).await
    }

    /// [`Handler::handle`] for an event as the runtime read it: one that is not JSON is
    /// `ActionDo.Validation`.
    pub async fn handle_raw(
        &self,
        event: RawEvent,
        context: &Context,
    ) -> Result<Reply, ActionError> {
        self.handle(event.into_value()?, context).await
    }

    async fn dispatch(&self, event: Value, context: &Context) -> Result<Reply, ActionError> {
        let meta = Meta::from(context);
        match EventShape::of(&event)? {
            EventShape::Direct => direct::invoke(self, event, &meta).await,
            EventShape::Sqs => {
                let response = sqs::handle_batch(self, sqs::parse_event(event)?, &meta).await;
                Ok(Reply::Json(serde_json::to_value(response).map_err(
                    |e| ActionError::internal(format!("batch response does not serialize: {e}")),
                )?))
            }
            EventShape::EventBridge => {
                let event = serde_json::from_value(event).map_err(|e| {
                    ActionError::validation(format!("malformed EventBridge event: {e}"))
                })?;
                eventbridge::handle_event(self, event, &meta).await
            }
            EventShape::Http => http::handle_lambda_request(self, event, context.clone()).await,
        }
    }
}

/// Run `future`, turning a panic in it into `ActionDo.Internal` whose message says it was
/// a panic and what it said. Lambda would otherwise report the panic with a Rust type name
/// as `errorType`, which no `Retry`/`Catch` matches. The triggers wrap the dispatch of each
/// event and of each SQS record in it; a front end of its own (the router) can do the same.
pub async fn catch_panic<T, F>(future: F) -> Result<T, ActionError>
where
    F: Future<Output = Result<T, ActionError>>,
{
    match AssertUnwindSafe(future).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let message = panic_message(panic.as_ref());
            tracing::error!(panic = %message, "a panic while dispatching an event");
            Err(
                ActionError::internal(format!("a panic while dispatching the event: {message}"))
                    .with_details(serde_json::json!({"reason": "panic"})),
            )
        }
    }
}

/// What a panic said, when it said it with a string.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_owned()
    }
}

/// An event as the Lambda runtime hands it over: its JSON, or — when the payload is not
/// JSON that `serde_json` reads (not JSON at all, or nested deeper than its recursion
/// limit) — why not. The runtime's own deserialization error would reach Lambda with a
/// Rust type name as `errorType`; this type's deserialization never fails, and
/// [`RawEvent::into_value`] makes the failure `ActionDo.Validation`.
#[derive(Debug, Clone, PartialEq)]
pub enum RawEvent {
    /// The event's JSON.
    Json(Value),
    /// Why the payload could not be read.
    Unreadable(String),
}

impl RawEvent {
    /// Read a payload as the Lambda runtime does: `serde_json` over its bytes, the first
    /// JSON value taken (the runtime does not look past it).
    pub fn from_slice(bytes: &[u8]) -> Self {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        match RawEvent::deserialize(&mut deserializer) {
            Ok(event) => event,
            Err(e) => RawEvent::Unreadable(e.to_string()),
        }
    }

    /// The event's JSON, or `ActionDo.Validation` naming why there is none.
    pub fn into_value(self) -> Result<Value, ActionError> {
        match self {
            RawEvent::Json(value) => Ok(value),
            RawEvent::Unreadable(why) => Err(ActionError::validation(format!(
                "the event is not JSON this function can read ({why}); this function accepts {ACCEPTED}"
            ))),
        }
    }
}

impl<'de> Deserialize<'de> for RawEvent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match Value::deserialize(deserializer) {
            Ok(value) => RawEvent::Json(value),
            Err(e) => RawEvent::Unreadable(e.to_string()),
        })
    }
}

/// The Lambda entry point of an action binary: set up tracing (JSON when
/// `AWS_LAMBDA_LOG_FORMAT=JSON`), open the store once (DynamoDB, or `ACTIONDO_STORE`), and
/// serve every invocation through [`Handler::handle_raw`], with one metrics line per
/// execution on standard output ([`crate::metrics`]; `ACTIONDO_METRICS=off` turns it off).
///
/// On Lambda Managed Instances (`AWS_LAMBDA_MAX_CONCURRENCY` above 1) the process serves
/// that many invocations at once (`lambda_runtime::run_concurrent`), sharing one store
/// client and one executor; elsewhere it serves one at a time, as `lambda_runtime::run`.
/// Nothing of an execution lives in the process between invocations, so concurrency
/// changes no guarantee: two invocations with one key meet at the store's conditional
/// writes as two processes would (docs/architecture.md §4).
///
/// # Example
///
/// ```no_run
/// # use actiondo::{Action, ActionContext, ActionError};
/// # #[derive(serde::Deserialize, schemars::JsonSchema)] struct In {}
/// # struct MyAction;
/// # impl Action for MyAction {
/// #     type Input = In; type Output = bool;
/// #     const NAME: &'static str = "my-action"; const DESCRIPTION: &'static str = "";
/// #     async fn execute(&self, _: In, _: &mut ActionContext) -> Result<bool, ActionError> { Ok(true) }
/// # }
/// #[tokio::main]
/// async fn main() -> Result<(), actiondo::BoxError> {
///     actiondo::run(MyAction).await
/// }
/// ```
pub async fn run<A: Action>(action: A) -> Result<(), BoxError> {
    lambda_runtime::tracing::init_default_subscriber();
    // The one read of the environment: everything below is configured from it.
    let settings = Settings::from_env();
    let store = StoreConfig::from_settings_or(&settings, StoreConfig::DynamoDb)?
        .open_with(&settings)
        .await?;
    // One EMF metrics line per execution in Lambda (docs/architecture.md §11).
    let executor =
        Executor::from_arc(store).with_metrics(crate::metrics::Metrics::from_settings(&settings));
    let handler = Handler::new(executor, Arc::new(action))
        .with_settings(TriggerSettings::from_settings(&settings));
    tracing::info!(action = A::NAME, "ready");
    lambda_runtime::run_concurrent(service_fn(move |event: LambdaEvent<RawEvent>| {
        let handler = handler.clone();
        async move {
            handler
                .handle_raw(event.payload, &event.context)
                .await
                .map_err(Diagnostic::from)
        }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn envelopes_and_bare_params_are_told_apart() {
        let env = Envelope::from_payload(
            json!({"params": {"a": 1}, "idempotencyKey": "k", "respond": "envelope"}),
        );
        assert_eq!(env.params, json!({"a": 1}));
        assert_eq!(env.idempotency_key.as_deref(), Some("k"));
        assert_eq!(env.respond, Respond::Envelope);
        // The router's caller reaches the invocation.
        let routed = Envelope::from_payload(json!({"params": {}, "caller": "apikey:0123"}));
        assert_eq!(routed.caller.as_deref(), Some("apikey:0123"));
        let inv = routed.into_invocation(Source::Direct, &Meta::default());
        assert_eq!(inv.caller.as_deref(), Some("apikey:0123"));
        // An action whose own input has a `params` field next to others is bare params.
        let bare = Envelope::from_payload(json!({"params": 1, "other": 2}));
        assert_eq!(bare.params, json!({"params": 1, "other": 2}));
        assert_eq!(bare.idempotency_key, None);
    }

    #[test]
    fn unknown_shapes_name_what_is_accepted() {
        let s3 = json!({"Records": [{"eventSource": "aws:s3"}]});
        let err = EventShape::of(&s3).expect_err("refused");
        assert_eq!(err.kind(), crate::ErrorKind::Validation);
        assert!(err.message().contains("aws:s3") && err.message().contains("SQS event"));
        assert!(EventShape::of(&json!([1])).is_err());
        assert_eq!(
            EventShape::of(&json!({"userId": "u"})).ok(),
            Some(EventShape::Direct)
        );
    }

    #[test]
    fn a_deadline_that_is_a_duration_is_no_deadline() {
        let mut cx = Context::default();
        cx.deadline = 600_000; // cargo lambda watch
        assert_eq!(Meta::from(&cx).deadline_ms, None);
        cx.deadline = 1_763_700_000_000; // Lambda: Unix ms
        assert_eq!(Meta::from(&cx).deadline_ms, Some(1_763_700_000_000));
    }

    #[test]
    fn diagnostics_carry_the_wire_name() {
        let d = Diagnostic::from(ActionError::rejected("declined"));
        assert_eq!(d.error_type, "ActionDo.Rejected");
        let body: crate::ErrorBody = serde_json::from_str(&d.error_message).expect("json body");
        assert_eq!(body.error.message, "declined");
    }
}
