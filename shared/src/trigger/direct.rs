//! Direct invocations and Step Functions tasks.

use serde_json::json;

use crate::context::Source;
use crate::error::ActionError;
use crate::trigger::{Envelope, Handler, Meta, Reply, Respond};

/// Step Functions execution ids are ARNs of this form; a correlation id that is one marks
/// the invocation as a Step Functions task in the audit.
const STATES_ARN_PREFIX: &str = "arn:aws:states:";

/// Run an envelope (or bare params). Success is the output (or, with
/// `"respond": "envelope"`, `{"result", "execution": {"key", "attempt", "replayed"}}`);
/// failure is the action's error, which the runtime reports as a function error whose
/// `errorType` is its wire name.
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
    let (key, attempt, replayed) = (execution.key, execution.attempt, execution.replayed);
    let output = execution.outcome?;
    Ok(match respond {
        Respond::Result => Reply::Raw(output),
        Respond::Envelope => Reply::Json(json!({
            "result": output,
            "execution": {"key": key, "attempt": attempt, "replayed": replayed},
        })),
    })
}
