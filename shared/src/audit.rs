//! Audit records (docs/architecture.md §5): one per attempt outcome, written once, never updated.
//!
//! The shape follows the seed:
//! `{"type": "send-email", "status": "completed", "details": {...}, "timestamp": "2023-10-27T10:30:00.000Z"}`
//! plus the execution, sequence, attempt, request, source, caller, correlation and trace ids.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::StoreError;
use crate::invocation::Source;
use crate::store::StoredResult;

/// Audit details larger than this are replaced by a summary (an audit item must fit in
/// one DynamoDB item next to its other attributes).
pub const MAX_DETAILS_BYTES: usize = 64 * 1024;

/// The most records one audit page returns.
pub const MAX_PAGE_LIMIT: usize = 100;

/// What happened in one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditStatus {
    /// The handler succeeded and its result committed.
    Completed,
    /// The handler failed terminally; the error is stored and replayed.
    Failed,
    /// The attempt failed in a way a retry may fix; the key was released.
    Retrying,
    /// A stored outcome was returned without running the handler.
    Replayed,
    /// The request was refused before the claim (bad input, bad key, payload mismatch).
    Rejected,
    /// An abandoned attempt's expired lease was taken over by this one.
    TakenOver,
}

impl AuditStatus {
    /// The stored name (`completed`, `taken_over`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            AuditStatus::Completed => "completed",
            AuditStatus::Failed => "failed",
            AuditStatus::Retrying => "retrying",
            AuditStatus::Replayed => "replayed",
            AuditStatus::Rejected => "rejected",
            AuditStatus::TakenOver => "taken_over",
        }
    }
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// `{action}#{key}`: the partition of the audit table.
    pub execution: String,
    /// `{ts_ms:013}#{attempt:03}#{event}#{request_id}#{nonce}`: the sort key, unique per
    /// event ([`seq`]).
    pub seq: String,
    /// The action's name.
    #[serde(rename = "type")]
    pub action: String,
    /// What happened.
    pub status: AuditStatus,
    /// `{input (redacted), output | error}`.
    pub details: Value,
    /// RFC 3339, UTC, milliseconds (`2023-10-27T10:30:00.000Z`): sorts as text.
    pub timestamp: String,
    /// How long the attempt took.
    pub duration_ms: u64,
    /// The attempt number.
    pub attempt: u32,
    /// The invocation's request id.
    pub request_id: String,
    /// Where the invocation came from.
    pub source: Source,
    /// Who called, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<String>,
    /// The correlation id (e.g. a Step Functions execution).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The X-Ray trace id, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// The sort key of an audit record: time, attempt, event, request id, and 32 random bits,
/// so that two events that agree on all the rest (an SQS message redelivered in the same
/// millisecond carries the same request id) never collide, and the write-once condition
/// of the audit table never refuses a real event.
pub fn seq(ts_ms: i64, attempt: u32, status: AuditStatus, request_id: &str) -> String {
    let nonce = uuid::Uuid::new_v4().as_u128() as u32;
    format!(
        "{ts_ms:013}#{attempt:03}#{}#{request_id}#{nonce:08x}",
        status.as_str()
    )
}

/// RFC 3339 with milliseconds in UTC, fixed width so that text order is time order.
pub fn timestamp(ts_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ts_ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Replace the value of every field named in `fields`, at any depth, by `"[REDACTED]"`.
pub fn redact(value: &Value, fields: &[String]) -> Value {
    if fields.is_empty() {
        return value.clone();
    }
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if fields.iter().any(|f| f == k) {
                        Value::String("[REDACTED]".into())
                    } else {
                        redact(v, fields)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| redact(v, fields)).collect()),
        other => other.clone(),
    }
}

/// The values of the fields named in `fields`, at any depth, as they may appear quoted in
/// an error message: strings as themselves, other values as their JSON text.
fn redacted_values(value: &Value, fields: &[String], out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if fields.iter().any(|f| f == k) {
                    collect_scalars(v, out);
                } else {
                    redacted_values(v, fields, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| redacted_values(v, fields, out)),
        _ => {}
    }
}

fn collect_scalars(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) if !s.is_empty() => out.push(s.clone()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Array(items) => items.iter().for_each(|v| collect_scalars(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_scalars(v, out)),
        _ => {}
    }
}

fn scrub_text(text: &str, secrets: &[String]) -> String {
    secrets.iter().fold(text.to_owned(), |t, secret| {
        t.replace(secret.as_str(), "[REDACTED]")
    })
}

fn scrub_value(value: &Value, secrets: &[String]) -> Value {
    match value {
        Value::String(s) => Value::String(scrub_text(s, secrets)),
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| scrub_value(v, secrets)).collect())
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), scrub_value(v, secrets)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// `e` with every value of a redacted field of `input` replaced by `"[REDACTED]"` in its
/// message and details: validation messages (JSON Schema, serde) quote the values they
/// refuse, and a redacted field's value must not reach the answer or the audit.
pub fn scrub_error(e: crate::ActionError, input: &Value, fields: &[String]) -> crate::ActionError {
    let mut secrets = Vec::new();
    redacted_values(input, fields, &mut secrets);
    if secrets.is_empty() {
        return e;
    }
    // Longest first, so that a secret that contains another is replaced whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut scrubbed = crate::ActionError::new(e.kind(), scrub_text(e.message(), &secrets));
    if let Some(details) = e.details() {
        scrubbed = scrubbed.with_details(scrub_value(details, &secrets));
    }
    scrubbed
}

/// Keep `details` within [`MAX_DETAILS_BYTES`]: a larger value is replaced by its size
/// and SHA-256 so that the audit write can never fail for size.
pub fn bound_details(details: Value) -> Value {
    // Counted without building the text (the limit checks count it again); the text is
    // built only to digest details over the limit.
    if crate::limits::details_text_len(&details) <= MAX_DETAILS_BYTES {
        return details;
    }
    let text = details.to_string();
    serde_json::json!({
        "truncated": true,
        "bytes": text.len(),
        "sha256": crate::hash::sha256_hex(text.as_bytes()),
    })
}

/// The input of a request as the audit shows it before it is parsed: parsed JSON as it
/// is (redacted later like any input), text as its length and SHA-256 only.
pub fn unparsed_input(params: &crate::invocation::Params) -> Value {
    match params {
        crate::invocation::Params::Json(v) => v.clone(),
        crate::invocation::Params::Text(t) => serde_json::json!({
            "unparsed": true,
            "bytes": t.len(),
            "sha256": crate::hash::sha256_hex(t.as_bytes()),
        }),
    }
}

/// `details` as the stores write them: JSON text, gzip-compressed when large
/// ([`StoredResult::compress`]), never a DynamoDB map — so no number, depth or key of the
/// caller's data can make the audit write fail.
pub fn stored_details(details: &Value) -> StoredResult {
    StoredResult::compress(details.to_string())
}

/// `details` read back from their stored form.
pub fn details_from_stored(stored: &StoredResult) -> Result<Value, StoreError> {
    let text = stored.decode()?;
    serde_json::from_str(&text)
        .map_err(|e| StoreError::Corrupt(format!("audit details are not JSON: {e}")))
}

/// The field of completion `details` that stands for the output when the idempotency
/// record holds it: the record's lease owner (a fresh id per claim). A completion's
/// output is stored once, in the record; reading the audit
/// ([`crate::Store::query_audit`]) puts it back as `output` while that record lives
/// (docs/architecture.md §5.2).
pub const OUTPUT_IN_RECORD: &str = "outputInRecord";

/// The field that stands for `output` when the record refers to an object holding it
/// (docs/architecture.md §4.6): `{bucket, key, bytes, sha256}`.
pub const OUTPUT_OBJECT: &str = "outputObject";

/// The field that replaces `output` when the record that held it is gone (expired, or
/// claimed again after its retention).
pub const OUTPUT_UNAVAILABLE: &str = "outputUnavailable";

/// The details of a completion whose output the record written with it holds: the
/// (redacted) input and a reference to the record ([`OUTPUT_IN_RECORD`]).
pub fn output_in_record(input: Value, lease_owner: &str) -> Value {
    let mut map = serde_json::Map::with_capacity(2);
    map.insert("input".into(), input);
    map.insert(
        OUTPUT_IN_RECORD.into(),
        Value::String(lease_owner.to_owned()),
    );
    Value::Object(map)
}

/// The lease owner the details refer to for their output, if they do.
pub fn output_reference(details: &Value) -> Option<&str> {
    details.get(OUTPUT_IN_RECORD).and_then(Value::as_str)
}

/// The executions whose records the audit records of a page refer to, each once.
pub fn referenced_records(records: &[AuditRecord]) -> Vec<String> {
    let mut ids: Vec<String> = records
        .iter()
        .filter(|r| output_reference(&r.details).is_some())
        .map(|r| r.execution.clone())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Put back the output of every record whose details refer to their idempotency
/// record: `output` when `lookup` finds that record still holding it (same lease owner,
/// `COMPLETED`), [`OUTPUT_UNAVAILABLE`] otherwise.
pub fn resolve_outputs(
    records: &mut [AuditRecord],
    mut lookup: impl FnMut(&str) -> Result<Option<crate::store::IdempotencyRecord>, StoreError>,
) -> Result<(), StoreError> {
    for record in records {
        let Some(owner) = output_reference(&record.details).map(str::to_owned) else {
            continue;
        };
        let held = lookup(&record.execution)?.filter(|r| {
            r.lease_owner == owner && r.status == crate::store::RecordStatus::Completed
        });
        let output = match held.as_ref().and_then(|r| r.result.as_ref()) {
            // An output too large for its record is in an object: the audit names it
            // rather than read up to 6 MiB per record of the page.
            Some(StoredResult::Object(reference)) => {
                if let Value::Object(map) = &mut record.details {
                    map.remove(OUTPUT_IN_RECORD);
                    map.insert(
                        OUTPUT_OBJECT.into(),
                        serde_json::json!({
                            "bucket": reference.bucket,
                            "key": reference.key,
                            "bytes": reference.bytes,
                            "sha256": reference.sha256,
                        }),
                    );
                }
                continue;
            }
            Some(stored) => {
                let text = stored.decode()?;
                Some(serde_json::from_str::<Value>(&text).map_err(|e| {
                    StoreError::Corrupt(format!(
                        "{}: stored result is not JSON: {e}",
                        r_id(held.as_ref())
                    ))
                })?)
            }
            None => None,
        };
        if let Value::Object(map) = &mut record.details {
            match output {
                Some(output) => {
                    map.remove(OUTPUT_IN_RECORD);
                    map.insert("output".into(), output);
                }
                None => {
                    map.insert(
                        OUTPUT_UNAVAILABLE.into(),
                        Value::String(
                            "the idempotency record that held the output has expired".into(),
                        ),
                    );
                }
            }
        }
    }
    Ok(())
}

fn r_id(record: Option<&crate::store::IdempotencyRecord>) -> &str {
    record.map_or("", |r| r.id.as_str())
}

/// Which audit records to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditFilter {
    /// Every record (the embedded store; DynamoDB needs one of the others).
    All,
    /// The records of one execution, `{action}#{key}`.
    Execution(String),
    /// The records of one action (GSI `by-type`).
    Type(String),
    /// The records of one correlation id (GSI `by-correlation`).
    Correlation(String),
}

/// A page request for audit records, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    /// Which records.
    pub filter: AuditFilter,
    /// Only records at or after this RFC 3339 timestamp.
    pub since: Option<String>,
    /// At most this many (capped at [`MAX_PAGE_LIMIT`]).
    pub limit: usize,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl AuditQuery {
    /// The first page of `filter`, 50 records.
    pub fn new(filter: AuditFilter) -> Self {
        Self {
            filter,
            since: None,
            limit: 50,
            cursor: None,
        }
    }

    /// The effective page size: 1 to [`MAX_PAGE_LIMIT`].
    pub fn page_size(&self) -> usize {
        self.limit.clamp(1, MAX_PAGE_LIMIT)
    }
}

/// One page of audit records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    /// Newest first.
    pub records: Vec<AuditRecord>,
    /// Pass as [`AuditQuery::cursor`] for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redaction_reaches_nested_fields_and_arrays() {
        let input =
            json!({"card": {"number": "4242", "exp": "12/30"}, "items": [{"number": 1}], "n": 2});
        let out = redact(&input, &["number".to_owned()]);
        assert_eq!(
            out,
            json!({"card": {"number": "[REDACTED]", "exp": "12/30"}, "items": [{"number": "[REDACTED]"}], "n": 2})
        );
    }

    #[test]
    fn seq_and_timestamp_sort_as_text_in_time_order() {
        let a = seq(5, 2, AuditStatus::TakenOver, "r");
        assert!(a.starts_with("0000000000005#002#taken_over#r#"), "{a}");
        assert_ne!(
            a,
            seq(5, 2, AuditStatus::TakenOver, "r"),
            "unique per event"
        );
        assert!(timestamp(999) < timestamp(1000));
        assert_eq!(timestamp(1_698_402_600_000), "2023-10-27T10:30:00.000Z");
    }

    #[test]
    fn error_messages_lose_the_values_of_redacted_fields() {
        let input = json!({"card": {"number": "4242424242424242", "cvc": 123}, "name": "Ada"});
        let e = crate::ActionError::validation(
            "invalid params: \"4242424242424242\" is not of type integer; 123 is too short",
        )
        .with_details(
            json!({"errors": [{"message": "\"4242424242424242\" is not of type integer"}]}),
        );
        let fields = ["number".to_owned(), "cvc".to_owned()];
        let scrubbed = scrub_error(e, &input, &fields);
        assert_eq!(scrubbed.kind(), crate::ErrorKind::Validation);
        assert!(
            !scrubbed.message().contains("4242"),
            "{}",
            scrubbed.message()
        );
        assert!(
            !scrubbed.message().contains("123"),
            "{}",
            scrubbed.message()
        );
        assert!(
            !scrubbed
                .details()
                .expect("details")
                .to_string()
                .contains("4242")
        );
        let untouched = scrub_error(
            crate::ActionError::validation("Ada is fine"),
            &input,
            &fields,
        );
        assert_eq!(untouched.message(), "Ada is fine");
    }

    #[test]
    fn oversized_details_are_summarised() {
        let big = json!({"output": "x".repeat(MAX_DETAILS_BYTES)});
        let bounded = bound_details(big);
        assert_eq!(bounded["truncated"], json!(true));
        assert!(bounded.to_string().len() < 200);
    }
}
