//! Direct invocations and Step Functions tasks.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::error::{ActionError, ErrorPayload};
use crate::executor::Execution;
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
    match (respond, &execution.outcome) {
        (Respond::Envelope, Ok(_)) => envelope_reply(&execution),
        (Respond::Envelope, Err(error)) if !error.is_retryable() => envelope_reply(&execution),
        _ => execution.outcome.map(Reply::Raw),
    }
}

/// The `{"result", "error", "execution"}` answer.
#[derive(Serialize)]
struct EnvelopeReply<'a> {
    /// The stored output's own JSON text: a `RawValue` is written as it is, so a replay is
    /// byte-identical to the first answer (docs/architecture.md §4) — no key reordering, no number
    /// rewriting (`1.0` stays `1.0`, `1e2` stays `1e2`).
    result: Option<&'a RawValue>,
    error: Option<ErrorPayload>,
    execution: ExecutionInfo<'a>,
}

#[derive(Serialize)]
struct ExecutionInfo<'a> {
    key: Option<&'a str>,
    attempt: u32,
    replayed: bool,
}

fn envelope_reply(execution: &Execution) -> Result<Reply, ActionError> {
    let (result, error) = match &execution.outcome {
        Ok(raw) => (Some(&**raw), None),
        Err(e) => (None, Some(e.to_body().error)),
    };
    let reply = EnvelopeReply {
        result,
        error,
        execution: ExecutionInfo {
            key: execution.key.as_deref(),
            attempt: execution.attempt,
            replayed: execution.replayed,
        },
    };
    serde_json::value::to_raw_value(&reply)
        .map(Reply::Raw)
        .map_err(|e| ActionError::internal(format!("the envelope does not serialize: {e}")))
}
