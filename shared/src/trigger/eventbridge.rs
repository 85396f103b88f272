//! EventBridge events: `detail` is an envelope or bare params.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use serde_json::Value;

use crate::error::ActionError;
use crate::invocation::Source;
use crate::trigger::{Envelope, Handler, Meta, Reply};

/// Run the event's `detail`. The key defaults to the event id (EventBridge retries an
/// event with the same id, so a redelivery replays); the correlation id to the envelope's,
/// else the event id. A failure is a function error, so that the rule's retry policy and
/// dead-letter queue apply.
pub async fn handle_event(
    handler: &Handler,
    event: EventBridgeEvent<Value>,
    meta: &Meta,
) -> Result<Reply, ActionError> {
    let mut envelope = Envelope::from_payload(event.detail);
    // An event names no caller: any publisher to the bus could name any.
    envelope.caller = None;
    if envelope.idempotency_key.is_none() {
        envelope.idempotency_key = event.id.clone();
    }
    if envelope.correlation_id.is_none() {
        envelope.correlation_id = event.id;
    }
    let execution = handler
        .executor()
        .execute(
            handler.action(),
            envelope.into_invocation(Source::EventBridge, meta),
        )
        .await;
    execution.outcome.map(Reply::Raw)
}
