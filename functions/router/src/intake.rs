//! The SQS intake: a queue whose messages are `{"name", "params", "idempotencyKey"?,
//! "correlationId"?}`, each run through the dispatcher like `POST /execute`.
//!
//! Batches follow the triggers' rules ([`actiondo::trigger::sqs::process_batch`]):
//! retryable failures are returned to the queue in `batchItemFailures`, terminal ones are
//! audited by the action and not redelivered, FIFO message groups stop at their first
//! failure. The key is the message's `idempotencyKey`, else the FIFO deduplication id, else
//! the message id, so a redelivered message replays.
//!
//! A message the router cannot read (not JSON, not the intake shape, an action the
//! catalog does not have) is returned to the queue too: no action can audit it, so after
//! the queue's `maxReceiveCount` it lands in the dead-letter queue instead of being lost.

use actiondo::trigger::Meta;
use actiondo::trigger::sqs::{DEFAULT_CONCURRENCY, Disposition, RecordInfo, process_batch};
use actiondo::{Invocation, Params, Source};
use actiondo_api::Api;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use serde::Deserialize;
use serde_json::Value;

/// The caller recorded in the audit of intake executions.
pub const INTAKE_CALLER: &str = "sqs-intake";

/// One intake message.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IntakeMessage {
    /// The action to run.
    pub name: String,
    /// Its params (`{}` when absent).
    #[serde(default)]
    pub params: Option<Value>,
    /// The idempotency key.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// The correlation id.
    #[serde(default)]
    pub correlation_id: Option<String>,
}

/// Run a batch of intake messages, [`DEFAULT_CONCURRENCY`] records of a standard queue at
/// once; answer the ones to redeliver.
pub async fn handle_batch(api: &Api, event: SqsEvent) -> SqsBatchResponse {
    handle_batch_within(api, event, &Meta::default(), DEFAULT_CONCURRENCY).await
}

/// [`handle_batch`] inside the invocation `batch`: every record's execution gets the
/// invocation's deadline (and trace id when the record has none); at most `concurrency`
/// records of a standard queue run at once (`ACTIONDO_SQS_CONCURRENCY`, read at start-up).
pub async fn handle_batch_within(
    api: &Api,
    event: SqsEvent,
    batch: &Meta,
    concurrency: usize,
) -> SqsBatchResponse {
    process_batch(event.records, concurrency, |record| {
        handle_record(api, record, batch)
    })
    .await
}

async fn handle_record(api: &Api, record: SqsMessage, batch: &Meta) -> Disposition {
    let info = RecordInfo::within(&record, batch);
    let message_id = info.meta.request_id.clone();
    let body = record.body.unwrap_or_default();
    let message = match serde_json::from_str::<IntakeMessage>(&body) {
        Ok(message) => message,
        Err(e) => {
            tracing::error!(message_id, error = %e, "unreadable intake message; returned to the queue (dead-letter queue after maxReceiveCount)");
            return Disposition::Redeliver;
        }
    };
    let Some(action) = api.catalog().get(&message.name) else {
        tracing::error!(
            message_id,
            action = message.name,
            "intake message for an unknown action; returned to the queue (dead-letter queue after maxReceiveCount)"
        );
        return Disposition::Redeliver;
    };
    let invocation = Invocation {
        params: Params::Json(
            message
                .params
                .unwrap_or_else(|| Value::Object(Default::default())),
        ),
        // The message's key, else its message id: never the FIFO deduplication id, a
        // 5-minute window in SQS that must not become a 24-hour key.
        key: message.idempotency_key.or(Some(info.key)),
        source: Source::Sqs,
        request_id: Some(message_id),
        correlation_id: message.correlation_id.or(info.correlation_id),
        caller: Some(INTAKE_CALLER.to_owned()),
        trace_id: info.meta.trace_id,
        deadline_ms: info.meta.deadline_ms,
    };
    let execution = api.dispatcher().call(action, invocation).await;
    Disposition::of(&execution.outcome)
}
