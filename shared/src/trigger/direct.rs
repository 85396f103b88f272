//! Direct invocations and Step Functions tasks.

use serde_json::json;

use crate::error::ActionError;
use crate::invocation::Source;
use crate::trigger::{Envelope, Handler, Meta, Reply, Respond};

/// Step Functions execution ids are ARNs of this form; a correlation id that is one marks
/// the invocation as a Step Functions task in the audit.
const STATES_ARN_PREFIX: &str = "arn:aws:states:";

/// Run an envelope (or bare params).
///
/// - By default success is the output, and failure is the action's error, which the
///   runtime reports as a function error whose `errorType` is its wire name (what Step
///   Functions `Retry`/`Catch` match).
/// - With `"respond": "envelope"` (a synchronous caller such as the router) the answer is
///   `{"result", "error", "execution": {"key", "attempt", "replayed"}}` for a result and
///   for a terminal failure (`error` is the body of docs/architecture.md §6 without its outer object),
///   so that a replayed stored failure says it is one. A retryable failure stays a
///   function error: it is never stored, so never replayed, and Lambda counts it in the
///   function's `Errors` metric.
pub async fn invoke(
    handler: &Handler,
    payload: serde_json::Value,
    meta: &Meta,
) -> Result<Reply, ActionError> {
    let envelope = Envelope::from_payload(payload);
    let respond = envelope.respond;
    let source = match &envelope.correlation_id {
        Some(id) if id.starts_with(STATES_ARN_PREFIX) => Source::StepFunctions,
        _ => Source::Direct,
    };
    let execution = handler
        .executor()
        .execute(handler.action(), envelope.into_invocation(source, meta))
        .await;
    let meta = json!({
        "key": execution.key,
        "attempt": execution.attempt,
        "replayed": execution.replayed,
    });
    match (respond, execution.outcome) {
        (Respond::Result, outcome) => Ok(Reply::Raw(outcome?)),
        (Respond::Envelope, Ok(output)) => Ok(Reply::Json(json!({
            "result": output,
            "error": null,
            "execution": meta,
        }))),
        (Respond::Envelope, Err(error)) if !error.is_retryable() => Ok(Reply::Json(json!({
            "result": null,
            "error": error.to_body().error,
            "execution": meta,
        }))),
        (Respond::Envelope, Err(error)) => Err(error),
    }
}
