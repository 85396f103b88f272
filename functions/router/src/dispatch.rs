//! How the deployed router reaches an action: [`LambdaDispatcher`], the [`Dispatcher`]
//! over the Lambda Invoke API, invoking each action's own function.
//!
//! It takes the [`Invocation`] every dispatcher takes and answers the same [`Execution`]
//! as `actiondo_api::InProcess`, so the routes of `actiondo-api` and the SQS intake do
//! not know which one runs the actions.

use std::collections::BTreeMap;
use std::sync::Arc;

use actiondo::aws::signed::{AwsError, AwsRequest, AwsResponse, ClientSettings, SignedClient};
use actiondo::config::ConfigError;
use actiondo::error::ErrorPayload;
use actiondo::{ActionError, Describe, Descriptors, ErrorBody, ErrorKind, Execution};
use actiondo::{Invocation, Params};
use actiondo_api::Dispatcher;
use async_trait::async_trait;
use http::Method;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

/// The environment variable naming the Lambda function of `action`:
/// `ACTIONDO_FUNCTION_` + the name in upper snake case (`send-email` →
/// `ACTIONDO_FUNCTION_SEND_EMAIL`). `template.yaml` sets one per action.
pub fn function_env_var(action: &str) -> String {
    let mut var = String::from("ACTIONDO_FUNCTION_");
    var.extend(action.chars().map(|c| match c {
        '-' | '.' => '_',
        c => c.to_ascii_uppercase(),
    }));
    var
}

/// How long one Invoke may take: a synchronous invocation answers when the function
/// ends, and a function may run up to 15 minutes (the router, whose own timeout is
/// shorter, never waits that long).
pub const INVOKE_ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Lambda's invocation types that the router uses (the header `X-Amz-Invocation-Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvocationType {
    /// Synchronous: the answer is the function's.
    RequestResponse,
    /// Queued by Lambda, which retries it on its own; the answer is `202 Accepted`.
    Event,
}

impl InvocationType {
    fn as_str(self) -> &'static str {
        match self {
            Self::RequestResponse => "RequestResponse",
            Self::Event => "Event",
        }
    }
}

/// The Invoke API's path for `function` (a name, a partial or full ARN, with or without a
/// qualifier): `/2015-03-31/functions/{FunctionName}/invocations`, the ARN's `:` encoded
/// as the SDK encodes the label.
pub fn invoke_path(function: &str) -> String {
    format!(
        "/2015-03-31/functions/{}/invocations",
        actiondo::aws::signed::encode_segment(function)
    )
}

/// Invokes each action's own Lambda function through the Lambda Invoke API
/// (`POST /2015-03-31/functions/{FunctionName}/invocations`, signed by
/// [`SignedClient`]).
///
/// - synchronous calls: `RequestResponse` with the envelope `{"params", "idempotencyKey",
///   "correlationId", "respond": "envelope"}`; the answer `{"result", "error",
///   "execution"}` keeps the result's bytes and says whether the result or the terminal
///   failure was a replay;
/// - a function error (`X-Amz-Function-Error`) maps back to its `ActionDo.*` error (the
///   error message is the error body of docs/architecture.md §6, details included); other
///   function errors (a crash, a timeout) are `ActionDo.Internal`;
/// - Lambda throttling is `ActionDo.Transient` with a retry hint (503 + `Retry-After`);
///   an unreachable Lambda API is `ActionDo.Transient`; the messages say what failed in
///   plain words, and the service's own text goes to the log;
/// - `start` uses the `Event` invocation type (Lambda queues it and retries on its own).
#[derive(Debug, Clone)]
pub struct LambdaDispatcher {
    client: SignedClient,
    functions: Arc<BTreeMap<&'static str, String>>,
}

impl LambdaDispatcher {
    /// Dispatch with `client` (a [`SignedClient`] of
    /// [`AwsService::LAMBDA`](actiondo::aws::signed::AwsService::LAMBDA), see
    /// [`client_settings`](Self::client_settings)) to `functions` (action name →
    /// function name or ARN).
    pub fn new(client: SignedClient, functions: BTreeMap<&'static str, String>) -> Self {
        Self {
            client,
            functions: Arc::new(functions),
        }
    }

    /// The settings of the router's Lambda client: the default retries (transport
    /// failures, 5xx and throttling, three sends in all) and an attempt timeout of
    /// [`INVOKE_ATTEMPT_TIMEOUT`].
    pub fn client_settings() -> ClientSettings {
        ClientSettings {
            attempt_timeout: INVOKE_ATTEMPT_TIMEOUT,
            ..ClientSettings::default()
        }
    }

    /// The function of every action of `catalog` from its [`function_env_var`] in
    /// `settings`; a configuration error naming every missing variable when any is unset.
    pub fn functions(
        catalog: &Descriptors,
        settings: &actiondo::config::Settings,
    ) -> Result<BTreeMap<&'static str, String>, ConfigError> {
        let mut functions = BTreeMap::new();
        let mut missing = Vec::new();
        for action in catalog.iter() {
            let var = function_env_var(action.name());
            match settings.get_str(&var) {
                Some(name) => {
                    functions.insert(action.name(), name.trim().to_owned());
                }
                None => missing.push(var),
            }
        }
        if missing.is_empty() {
            Ok(functions)
        } else {
            Err(ConfigError::new(format!(
                "the router needs the function of every action; not set: {}",
                missing.join(", ")
            )))
        }
    }

    fn function(&self, action: &str) -> Result<&str, ActionError> {
        self.functions
            .get(action)
            .map(String::as_str)
            .ok_or_else(|| {
                ActionError::internal(format!(
                    "no function is configured for action {action} (set {})",
                    function_env_var(action)
                ))
            })
    }

    async fn invoke(
        &self,
        action: &str,
        invocation: &Invocation,
        invocation_type: InvocationType,
    ) -> Result<AwsResponse, ActionError> {
        let function = self.function(action)?;
        let payload = envelope(
            invocation,
            invocation_type == InvocationType::RequestResponse,
        )?;
        let request = AwsRequest::new("Invoke", Method::POST, invoke_path(function))
            .header("content-type", "application/octet-stream")
            .header("x-amz-invocation-type", invocation_type.as_str())
            .body(payload);
        self.client
            .send(&request)
            .await
            .map_err(|e| invoke_error(function, &e))
    }
}

/// The payload the router sends: the envelope of docs/architecture.md §7.
fn envelope(invocation: &Invocation, want_envelope: bool) -> Result<Vec<u8>, ActionError> {
    // A body that is not JSON goes as `paramsText`: the function's executor refuses it and
    // audits the rejection, as `actiondo serve` does (docs/architecture.md §7.1).
    let mut envelope = match &invocation.params {
        Params::Json(v) => json!({"params": v}),
        Params::Text(text) => match actiondo::invocation::parse_params(text) {
            Ok(params) => json!({"params": params}),
            Err(_) => json!({"params": null, "paramsText": text}),
        },
    };
    if let Some(key) = &invocation.key {
        envelope["idempotencyKey"] = json!(key);
    }
    if let Some(id) = &invocation.correlation_id {
        envelope["correlationId"] = json!(id);
    }
    // The API key's `apikey:<id>` (or `sqs-intake`): the action's audit record names it.
    if let Some(caller) = &invocation.caller {
        envelope["caller"] = json!(caller);
    }
    if want_envelope {
        envelope["respond"] = json!("envelope");
    }
    serde_json::to_vec(&envelope)
        .map_err(|e| ActionError::internal(format!("the envelope does not serialize: {e}")))
}

/// The Invoke errors that say "not now" rather than "wrong": Lambda's own failure, a
/// function not ready yet, and its VPC network limits.
const NOT_NOW: [&str; 4] = [
    "ServiceException",
    "ResourceNotReadyException",
    "EC2ThrottledException",
    "ENILimitReachedException",
];

/// A failed Invoke call (not a function error): throttling and an unreachable service are
/// transient; the rest (unknown function, denied) is a deployment problem. The messages
/// name the function and Lambda's error code; Lambda's own text (which names accounts and
/// roles) goes to the log line, in the span of the request.
pub fn invoke_error(function: &str, err: &AwsError) -> ActionError {
    let logged = "(the log of this request has the cause)";
    match err {
        AwsError::Service { code, .. } if code == "TooManyRequestsException" => {
            tracing::warn!(function, error = %err, "Lambda throttled an invocation");
            let seconds = err
                .header("retry-after")
                .and_then(|s| s.trim().parse::<u64>().ok())
                .unwrap_or(1);
            ActionError::transient(format!("Lambda throttled the invocation of {function}"))
                .with_retry_after_ms(seconds.max(1) * 1000)
        }
        AwsError::Service { code, status, .. } if NOT_NOW.contains(&code.as_str()) => {
            tracing::warn!(function, error = %err, "Lambda could not run a function");
            ActionError::transient(format!(
                "Lambda could not run {function} now: it answered {code} (HTTP {status}); try again {logged}"
            ))
        }
        AwsError::Service { code, status, .. } => {
            tracing::error!(function, error = %err, "an invocation failed");
            ActionError::internal(format!(
                "invoking {function} failed: Lambda answered {code} (HTTP {status}) {logged}"
            ))
        }
        AwsError::Transport { timeout, .. } => {
            tracing::warn!(function, error = %err, "the Lambda API did not answer");
            let how = if *timeout {
                "did not answer in time"
            } else {
                "could not be reached"
            };
            ActionError::transient(format!(
                "the Lambda API {how} for {function}; try again {logged}"
            ))
        }
        AwsError::Credentials { .. } | AwsError::Request { .. } => {
            tracing::error!(function, error = %err, "an invocation could not be sent");
            ActionError::internal(format!(
                "invoking {function} failed: the request could not be signed or built {logged}"
            ))
        }
    }
}

/// `{"result", "error", "execution": {"key", "attempt", "replayed"}}`, as an action
/// answers `"respond": "envelope"`: a result, or a terminal failure (a replayed stored
/// failure says so in `execution`).
#[derive(Deserialize)]
struct EnvelopeReply {
    #[serde(default)]
    result: Option<Box<RawValue>>,
    #[serde(default)]
    error: Option<ErrorPayload>,
    execution: ExecutionMeta,
}

#[derive(Deserialize)]
struct ExecutionMeta {
    key: Option<String>,
    #[serde(default)]
    attempt: u32,
    #[serde(default)]
    replayed: bool,
}

/// The payload of a function error: `{"errorType", "errorMessage"}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FunctionError {
    #[serde(default)]
    error_type: String,
    #[serde(default)]
    error_message: String,
}

/// The action error of a wire body, with its retry hint: the body has none of its own;
/// `ActionDo.InProgress` says it in its details, and the HTTP answer needs it
/// (`Retry-After`).
fn error_from_body(body: ErrorBody) -> ActionError {
    let retry_after_ms = body
        .error
        .details
        .as_ref()
        .and_then(|d| d.get("retryAfterMs"))
        .and_then(serde_json::Value::as_u64);
    let err = ActionError::from_body(body);
    match retry_after_ms {
        Some(ms) => err.with_retry_after_ms(ms),
        None => err,
    }
}

/// The action error a function error stands for: the `ActionDo.*` error whose body the
/// message carries, else one of the wire name's kind, else `ActionDo.Internal`.
pub fn function_error(function: &str, payload: &[u8]) -> ActionError {
    let Ok(error) = serde_json::from_slice::<FunctionError>(payload) else {
        return ActionError::internal(format!(
            "{function} failed with an unreadable error: {}",
            String::from_utf8_lossy(payload)
        ));
    };
    match ErrorKind::from_wire_name(&error.error_type) {
        Some(kind) => match serde_json::from_str::<ErrorBody>(&error.error_message) {
            Ok(body) if body.error.error_type == error.error_type => error_from_body(body),
            _ => ActionError::new(kind, error.error_message),
        },
        None => ActionError::internal(format!(
            "{function} failed: {} ({})",
            error.error_message, error.error_type
        ))
        .with_details(json!({"errorType": error.error_type})),
    }
}

#[async_trait]
impl Dispatcher for LambdaDispatcher {
    async fn call(&self, action: &Arc<dyn Describe>, invocation: Invocation) -> Execution {
        let name = action.name();
        let failed = |key: Option<String>, e: ActionError| Execution {
            action: name,
            key,
            attempt: 0,
            replayed: false,
            outcome: Err(e),
        };
        let output = match self
            .invoke(name, &invocation, InvocationType::RequestResponse)
            .await
        {
            Ok(output) => output,
            Err(e) => return failed(invocation.key, e),
        };
        let payload = &output.body[..];
        if output.header("x-amz-function-error").is_some() {
            let function = self.function(name).unwrap_or(name);
            return failed(invocation.key, function_error(function, payload));
        }
        let reply = match serde_json::from_slice::<EnvelopeReply>(payload) {
            Ok(reply) => reply,
            Err(e) => {
                return failed(
                    invocation.key,
                    ActionError::internal(format!(
                        "{name} answered something other than an execution envelope: {e}"
                    )),
                );
            }
        };
        let outcome = match (reply.error, reply.result) {
            (Some(error), _) => Err(error_from_body(ErrorBody { error })),
            (None, Some(result)) => Ok(result),
            (None, None) => Err(ActionError::internal(format!(
                "{name} answered an execution envelope with neither a result nor an error"
            ))),
        };
        Execution {
            action: name,
            key: reply.execution.key.or(invocation.key),
            attempt: reply.execution.attempt,
            replayed: reply.execution.replayed,
            outcome,
        }
    }

    async fn start(
        &self,
        action: &Arc<dyn Describe>,
        invocation: Invocation,
    ) -> Result<(), ActionError> {
        self.invoke(action.name(), &invocation, InvocationType::Event)
            .await
            .map(drop)
    }
}
