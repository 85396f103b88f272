//! How the deployed router reaches an action: [`LambdaDispatcher`], the [`Dispatcher`]
//! over the Lambda Invoke API, invoking each action's own function.
//!
//! It takes the [`Invocation`] every dispatcher takes and answers the same [`Execution`]
//! as `actiondo_api::InProcess`, so the routes of `actiondo-api` and the SQS intake do
//! not know which one runs the actions.

use std::collections::BTreeMap;
use std::sync::Arc;

use actiondo::config::ConfigError;
use actiondo::error::ErrorPayload;
use actiondo::{ActionError, Describe, Descriptors, ErrorBody, ErrorKind, Execution};
use actiondo::{Invocation, Params};
use actiondo_api::Dispatcher;
use async_trait::async_trait;
use aws_sdk_lambda::error::SdkError;
use aws_sdk_lambda::operation::invoke::InvokeError;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::InvocationType;
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

/// Invokes each action's own Lambda function through the Lambda Invoke API.
///
/// - synchronous calls: `RequestResponse` with the envelope `{"params", "idempotencyKey",
///   "correlationId", "respond": "envelope"}`; the answer `{"result", "error",
///   "execution"}` keeps the result's bytes and says whether the result or the terminal
///   failure was a replay;
/// - a function error maps back to its `ActionDo.*` error (the error message is the error
///   body of docs/architecture.md §6, details included); other function errors (a crash, a timeout) are
///   `ActionDo.Internal`;
/// - Lambda throttling is `ActionDo.Transient` with a retry hint (503 + `Retry-After`);
///   an unreachable Lambda API is `ActionDo.Transient`;
/// - `start` uses the `Event` invocation type (Lambda queues it and retries on its own).
#[derive(Debug, Clone)]
pub struct LambdaDispatcher {
    client: aws_sdk_lambda::Client,
    functions: Arc<BTreeMap<&'static str, String>>,
}

impl LambdaDispatcher {
    /// Dispatch with `client` to `functions` (action name → function name or ARN).
    pub fn new(client: aws_sdk_lambda::Client, functions: BTreeMap<&'static str, String>) -> Self {
        Self {
            client,
            functions: Arc::new(functions),
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
    ) -> Result<aws_sdk_lambda::operation::invoke::InvokeOutput, ActionError> {
        let function = self.function(action)?;
        let payload = envelope(
            invocation,
            invocation_type == InvocationType::RequestResponse,
        )?;
        self.client
            .invoke()
            .function_name(function)
            .invocation_type(invocation_type)
            .payload(Blob::new(payload))
            .send()
            .await
            .map_err(|e| invoke_error(function, e))
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

/// A failed Invoke call (not a function error): throttling and an unreachable service are
/// transient; the rest (unknown function, denied) is a deployment problem.
fn invoke_error(function: &str, err: SdkError<InvokeError>) -> ActionError {
    match &err {
        SdkError::ServiceError(service) => match service.err() {
            InvokeError::TooManyRequestsException(throttled) => {
                let seconds = throttled
                    .retry_after_seconds()
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(1);
                ActionError::transient(format!("Lambda throttled the invocation of {function}"))
                    .with_retry_after_ms(seconds.max(1) * 1000)
            }
            InvokeError::ServiceException(_)
            | InvokeError::ResourceNotReadyException(_)
            | InvokeError::Ec2ThrottledException(_)
            | InvokeError::EniLimitReachedException(_) => ActionError::transient(format!(
                "Lambda could not run {function} now: {}",
                aws_sdk_lambda::error::DisplayErrorContext(&err)
            )),
            _ => ActionError::internal(format!(
                "invoking {function} failed: {}",
                aws_sdk_lambda::error::DisplayErrorContext(&err)
            )),
        },
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            ActionError::transient(format!(
                "the Lambda API did not answer for {function}: {}",
                aws_sdk_lambda::error::DisplayErrorContext(&err)
            ))
        }
        _ => ActionError::internal(format!(
            "invoking {function} failed: {}",
            aws_sdk_lambda::error::DisplayErrorContext(&err)
        )),
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
        let payload = output.payload().map(Blob::as_ref).unwrap_or_default();
        if output.function_error().is_some() {
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
