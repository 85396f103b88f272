//! SQS batches, standard and FIFO, with partial batch failures.

use std::collections::HashMap;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::{FutureExt as _, StreamExt as _};

use crate::invocation::Source;
use crate::invocation::{Invocation, Params};
use crate::trigger::{Envelope, Handler, Meta, catch_panic};

/// How many records of a standard queue run at once unless `ACTIONDO_SQS_CONCURRENCY` says
/// otherwise.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// The message attribute that carries a correlation id.
pub const CORRELATION_ATTRIBUTE: &str = "correlationId";

/// Read a raw event as an SQS batch (`ActionDo.Validation` when it is not one).
pub fn parse_event(event: serde_json::Value) -> Result<SqsEvent, crate::ActionError> {
    serde_json::from_value(event)
        .map_err(|e| crate::ActionError::validation(format!("malformed SQS event: {e}")))
}

/// What became of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Done with: it succeeded, or failed terminally (and was audited).
    Done,
    /// Return it to the queue (reported in `batchItemFailures`).
    Redeliver,
}

impl Disposition {
    /// `Redeliver` for a retryable error, `Done` otherwise.
    pub fn of<T>(outcome: &Result<T, crate::ActionError>) -> Self {
        match outcome {
            Err(e) if e.is_retryable() => Disposition::Redeliver,
            _ => Disposition::Done,
        }
    }
}

/// The setting of how many records of a standard queue run at once.
pub const CONCURRENCY_ENV: &str = "ACTIONDO_SQS_CONCURRENCY";

/// How many records of a standard queue run at once: [`CONCURRENCY_ENV`] in `settings`
/// when it is a positive integer, else [`DEFAULT_CONCURRENCY`].
pub fn concurrency(settings: &crate::config::Settings) -> usize {
    settings
        .get_str(CONCURRENCY_ENV)
        .and_then(|v| v.trim().parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_CONCURRENCY)
}

/// Run every record and report the ones to redeliver.
///
/// - Each body is an envelope or bare params. The key is the envelope's, else the message
///   id, so a redelivered message replays (docs/architecture.md §7). Never the FIFO deduplication id:
///   SQS deduplicates on it for 5 minutes only, and a sender may reuse it after that for
///   another message, which a 24-hour key would then silently replay.
/// - Every record's invocation carries the Lambda invocation's deadline (`meta`), so that
///   its lease and the handler's budget end before Lambda stops the batch (docs/architecture.md §4).
/// - Only retryable failures are reported in `batchItemFailures`; terminal ones are
///   audited by the executor and not redelivered.
/// - FIFO queues: records of one message group run in order; after a retryable failure the
///   rest of that group is reported failed too (so order is kept), other groups go on.
/// - Standard queues: records run concurrently, at most `ACTIONDO_SQS_CONCURRENCY` at once.
/// - The audit records the executions put on their own (replays above all) are written
///   together at the end ([`crate::Executor::batching_audits`]): a batch of 10 replays
///   costs 10 claims and one `BatchWriteItem`.
pub async fn handle_batch(handler: &Handler, event: SqsEvent, meta: &Meta) -> SqsBatchResponse {
    let (executor, audits) = handler.executor().batching_audits();
    let executor = &executor;
    let response = process_batch(
        event.records,
        handler.settings().sqs_concurrency,
        |record| async move {
            let execution = executor
                .execute(handler.action(), invocation(record, meta))
                .await;
            Disposition::of(&execution.outcome)
        },
    )
    .await;
    audits.flush().await;
    response
}

/// The batch logic of every SQS consumer (an action's own queue, the router's intake):
/// run `run` on each record, FIFO message groups in order and stopped at their first
/// [`Disposition::Redeliver`] (the rest of the group is reported unprocessed), standard
/// records concurrently, at most `concurrency` at once; answer the records to redeliver.
/// A panic while running one record redelivers that record (and, FIFO, the rest of its
/// group) instead of failing the whole batch.
pub async fn process_batch<F, Fut>(
    records: Vec<SqsMessage>,
    concurrency: usize,
    run: F,
) -> SqsBatchResponse
where
    F: Fn(SqsMessage) -> Fut,
    Fut: Future<Output = Disposition>,
{
    let run = &run;
    let failures: Vec<String> = futures::stream::iter(groups(records))
        .map(|group| run_group(group, run))
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<Vec<String>>>()
        .await
        .into_iter()
        .flatten()
        .collect();
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures
        .into_iter()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failure
        })
        .collect();
    response
}

/// FIFO records grouped by message group, in order; standard records one per group.
fn groups(records: Vec<SqsMessage>) -> Vec<Vec<SqsMessage>> {
    let mut order: Vec<Vec<SqsMessage>> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for record in records {
        match record.attributes.get("MessageGroupId").cloned() {
            Some(group) => match index.get(&group) {
                Some(&i) => order[i].push(record),
                None => {
                    index.insert(group, order.len());
                    order.push(vec![record]);
                }
            },
            None => order.push(vec![record]),
        }
    }
    order
}

/// Run one group in order; return the message ids to redeliver.
async fn run_group<F, Fut>(group: Vec<SqsMessage>, run: &F) -> Vec<String>
where
    F: Fn(SqsMessage) -> Fut,
    Fut: Future<Output = Disposition>,
{
    let mut failed = Vec::new();
    let mut blocked = false;
    for record in group {
        let id = record.message_id.clone().unwrap_or_default();
        if blocked {
            tracing::info!(message_id = %id, "an earlier message of this FIFO group failed; returned unprocessed");
            failed.push(id);
            continue;
        }
        let disposition = catch_panic(run(record).map(Ok)).await.unwrap_or_else(|e| {
            tracing::error!(message_id = %id, error = e.message(), "the record's run panicked");
            Disposition::Redeliver
        });
        if disposition == Disposition::Redeliver {
            tracing::warn!(message_id = %id, "message returned to the queue");
            failed.push(id);
            blocked = true;
        }
    }
    failed.retain(|id| !id.is_empty());
    failed
}

/// What every record says about itself: the request metadata (message id, trace header,
/// the invocation's deadline), the key to use when the body gives none (the message id)
/// and the correlation id of its `correlationId` message attribute.
#[derive(Debug, Clone)]
pub struct RecordInfo {
    /// Request id = message id; trace id = the `AWSTraceHeader` attribute, else the
    /// invocation's; deadline = the invocation's ([`RecordInfo::within`]).
    pub meta: Meta,
    /// The key when the body gives none: the message id (docs/architecture.md §7).
    pub key: String,
    /// The `correlationId` message attribute.
    pub correlation_id: Option<String>,
}

impl RecordInfo {
    /// Read them off a record, outside any invocation (no deadline).
    pub fn of(record: &SqsMessage) -> Self {
        Self::within(record, &Meta::default())
    }

    /// Read them off a record of the batch of the invocation `batch`: the record's
    /// invocation gets the batch's deadline, and its trace id when the record has none.
    pub fn within(record: &SqsMessage, batch: &Meta) -> Self {
        let message_id = record.message_id.clone().unwrap_or_default();
        Self {
            meta: Meta {
                request_id: message_id.clone(),
                deadline_ms: batch.deadline_ms,
                trace_id: record
                    .attributes
                    .get("AWSTraceHeader")
                    .cloned()
                    .or_else(|| batch.trace_id.clone()),
            },
            key: message_id,
            correlation_id: record
                .message_attributes
                .get(CORRELATION_ATTRIBUTE)
                .and_then(|a| a.string_value.clone()),
        }
    }
}

/// The invocation of one record of the batch of `batch`.
fn invocation(record: SqsMessage, batch: &Meta) -> Invocation {
    let RecordInfo {
        meta,
        key,
        correlation_id: attribute_correlation,
        ..
    } = RecordInfo::within(&record, batch);
    let body = record.body.unwrap_or_default();
    match serde_json::from_str(&body) {
        Ok(payload) => {
            let mut envelope = Envelope::from_payload(payload);
            // A message names no caller: any sender to the queue could name any.
            envelope.caller = None;
            envelope.idempotency_key.get_or_insert(key);
            if envelope.correlation_id.is_none() {
                envelope.correlation_id = attribute_correlation;
            }
            envelope.into_invocation(Source::Sqs, &meta)
        }
        // Not JSON: the executor rejects it with the parse position and audits it under
        // the message's key; it is terminal, so it is not redelivered.
        Err(_) => Invocation {
            params: Params::Text(body),
            key: Some(key),
            source: Source::Sqs,
            request_id: Some(meta.request_id),
            correlation_id: attribute_correlation,
            caller: None,
            trace_id: meta.trace_id,
            deadline_ms: meta.deadline_ms,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, body: &str, dedup: Option<&str>) -> SqsMessage {
        let mut record = SqsMessage::default();
        record.message_id = Some(id.to_owned());
        record.body = Some(body.to_owned());
        if let Some(dedup) = dedup {
            record
                .attributes
                .insert("MessageDeduplicationId".into(), dedup.into());
            record
                .attributes
                .insert("MessageGroupId".into(), "g".into());
        }
        record
    }

    /// Every record's invocation — a body that is not JSON too, which is rejected before
    /// any handler could show it — carries the invocation's deadline and the message id
    /// as key, never the deduplication id.
    #[test]
    fn every_invocation_has_the_deadline_and_the_message_id_as_key() {
        let batch = Meta {
            request_id: "lambda-request".into(),
            deadline_ms: Some(1_763_700_000_000),
            trace_id: Some("Root=1-batch".into()),
        };
        for body in ["{\"a\": 1}", "not JSON", "{\"params\": {}}"] {
            let inv = invocation(record("m-1", body, Some("dedup-1")), &batch);
            assert_eq!(inv.deadline_ms, Some(1_763_700_000_000), "{body}");
            assert_eq!(inv.key.as_deref(), Some("m-1"), "{body}");
            assert_eq!(inv.request_id.as_deref(), Some("m-1"));
            assert_eq!(inv.trace_id.as_deref(), Some("Root=1-batch"));
        }
        let info = RecordInfo::of(&record("m-2", "{}", Some("dedup-2")));
        assert_eq!(info.meta.deadline_ms, None);
        assert_eq!(info.key, "m-2", "never the deduplication id");
    }
}
