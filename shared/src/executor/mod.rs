//! The execution protocol of docs/architecture.md §4, written once: claim, execute, commit (claim mode)
//! or execute, commit (optimistic mode), over any [`Store`].
//!
//! - this module: the request's checks before any write (key, params, schema), what a
//!   stored record means for a request ([`Executor::existing`]: replay, in progress,
//!   mismatch) and the audit records;
//! - `claim`: the claim path (claim, run, commit or release);
//! - `optimistic`: the one-write path for actions with only staged writes;
//! - `handler`: one handler run — its time budget, panic capture and staged writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tracing::Instrument as _;

use crate::action::{ActionOptions, DynAction, Mode};
use crate::audit::{self, AuditRecord, AuditStatus};
use crate::clock::{Clock, SystemClock};
use crate::error::ActionError;
use crate::error::StoreError;
use crate::hash;
use crate::invocation::{Invocation, Params, idempotency_key, parse_params};
use crate::metrics::{Metrics, Observed};
use crate::store::objects::{MAX_RESULT_BYTES, ObjectRef, result_key};
use crate::store::{Commit, IdempotencyRecord, RecordStatus, StagedWrite, Store, StoredResult};

/// What an execution returned: the output (or error) and how it was obtained.
#[derive(Debug)]
pub struct Execution {
    /// The action's name.
    pub action: &'static str,
    /// The idempotency key, when the request got far enough to have a valid one.
    pub key: Option<String>,
    /// The attempt that produced the outcome (0 for a request rejected before any claim).
    pub attempt: u32,
    /// Whether the outcome is a stored one, returned without running the handler.
    pub replayed: bool,
    /// The output's JSON text (byte-identical on replay) or the error.
    pub outcome: Result<Box<RawValue>, ActionError>,
}

impl Execution {
    /// The seed SDK's response shape: `{"result": ..., "error": null}` or
    /// `{"result": null, "error": {"type", "message", "retryable", "details"}}`.
    pub fn to_response(&self) -> Response<'_> {
        match &self.outcome {
            Ok(raw) => Response {
                result: Some(raw),
                error: None,
            },
            Err(e) => Response {
                result: None,
                error: Some(e.to_body().error),
            },
        }
    }

    /// Deserialize the output.
    pub fn output<T: serde::de::DeserializeOwned>(&self) -> Result<T, ActionError> {
        match &self.outcome {
            Ok(raw) => serde_json::from_str(raw.get())
                .map_err(|e| ActionError::internal(format!("output does not deserialize: {e}"))),
            Err(e) => Err(ActionError::from_body(e.to_body())),
        }
    }

    fn rejected(action: &'static str, key: Option<String>, error: ActionError) -> Self {
        Self {
            action,
            key,
            attempt: 0,
            replayed: false,
            outcome: Err(error),
        }
    }
}

/// The seed SDK's `{result, error}` (see [`Execution::to_response`]).
#[derive(Debug, Serialize)]
pub struct Response<'a> {
    /// The output, or `null`.
    pub result: Option<&'a RawValue>,
    /// The error, or `null`.
    pub error: Option<crate::error::ErrorPayload>,
}

/// Runs actions under the protocol, over one [`Store`]. Cheap to clone; create one per
/// process and share it.
///
/// # Example
///
/// ```
/// # use actiondo::{Action, ActionContext, ActionError, Executor, Invocation, Source};
/// # use actiondo::store::sqlite::SqliteStore;
/// # #[derive(serde::Deserialize, schemars::JsonSchema)] struct In { n: u32 }
/// # struct Double;
/// # impl Action for Double {
/// #     type Input = In; type Output = u32;
/// #     const NAME: &'static str = "double"; const DESCRIPTION: &'static str = "2n";
/// #     async fn execute(&self, i: In, _: &mut ActionContext) -> Result<u32, ActionError> { Ok(i.n * 2) }
/// # }
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let executor = Executor::new(SqliteStore::in_memory()?);
/// let first = executor.execute(&Double, Invocation::new(serde_json::json!({"n": 21}), Source::Cli)).await;
/// assert_eq!(first.outcome?.get(), "42");
/// let again = executor.execute(&Double, Invocation::new(serde_json::json!({"n": 21}), Source::Cli)).await;
/// assert!(again.replayed);
/// # Ok::<_, Box<dyn std::error::Error>>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Executor {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    metrics: Option<Metrics>,
    /// Where the audit records put on their own go instead of the store, for an
    /// [`AuditBatch`] to write together.
    held_audits: Option<Arc<std::sync::Mutex<Vec<AuditRecord>>>>,
}

/// The audit records an executor from [`Executor::batching_audits`] held back, written
/// together by [`flush`](Self::flush).
#[derive(Debug)]
pub struct AuditBatch {
    store: Arc<dyn Store>,
    held: Arc<std::sync::Mutex<Vec<AuditRecord>>>,
}

impl AuditBatch {
    /// Write the records held so far with [`Store::put_audits`] (one `BatchWriteItem` per
    /// 25 on DynamoDB) and answer how many. Like an audit record put on its own, a failure
    /// is logged and changes no outcome.
    pub async fn flush(&self) -> usize {
        let records = std::mem::take(&mut *self.held.lock().unwrap_or_else(|p| p.into_inner()));
        if records.is_empty() {
            return 0;
        }
        if let Err(err) = self.store.put_audits(&records).await {
            tracing::warn!(error = %err, records = records.len(), "could not write the batch's audit records");
        }
        records.len()
    }
}

/// What the executor knows about one request once its input and key are valid.
struct Prepared<'a> {
    action: &'a dyn DynAction,
    options: ActionOptions,
    params: Value,
    key: String,
    id: String,
    payload_hash: String,
    request_id: String,
    inv: Invocation,
    started: Instant,
    /// Set when the claim took over an ended lease (for the metrics).
    taken_over: &'a AtomicBool,
}

/// Why a result was not stored.
enum ResultFailure {
    /// It can never be (too large, or no object store for it): a terminal error, recorded
    /// as `FAILED` like any other.
    Refused(ActionError),
    /// The object store failed in a way a retry may fix, after the executor's resends.
    Unavailable(StoreError),
}

/// How a handler run ended.
type HandlerResult = Result<(Box<RawValue>, Vec<StagedWrite>), ActionError>;

impl Executor {
    /// An executor over `store` with the system clock.
    pub fn new(store: impl Store) -> Self {
        Self::from_arc(Arc::new(store))
    }

    /// An executor over a shared store.
    pub fn from_arc(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            clock: Arc::new(SystemClock),
            metrics: None,
            held_audits: None,
        }
    }

    /// Emit one metrics line per execution to `metrics` (`None`: no metrics, the
    /// default). The program's edge chooses, with [`Metrics::from_env`].
    #[must_use]
    pub fn with_metrics(mut self, metrics: Option<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// This executor, but holding back the audit records it would put on their own
    /// (replays, rejections, take-overs, retries outside a commit) for the returned
    /// [`AuditBatch`] to write together: an SQS batch of replays then costs one request
    /// per record and one for all their audit records (docs/architecture.md §7.3).
    /// Commits are unchanged: a completion's audit record stays in its transaction.
    pub fn batching_audits(&self) -> (Executor, AuditBatch) {
        let held = Arc::new(std::sync::Mutex::new(Vec::new()));
        let executor = Self {
            held_audits: Some(held.clone()),
            ..self.clone()
        };
        let batch = AuditBatch {
            store: self.store.clone(),
            held,
        };
        (executor, batch)
    }

    /// Use another clock (tests of leases and retention).
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Run `action` for `inv` under the protocol. Never panics and never returns early
    /// without an outcome: every failure is in [`Execution::outcome`].
    pub async fn execute(&self, action: &dyn DynAction, inv: Invocation) -> Execution {
        let started = Instant::now();
        let taken_over = AtomicBool::new(false);
        let execution = self.run_request(action, inv, started, &taken_over).await;
        // The one place every outcome passes: the metrics line (when the edge asked).
        if let Some(metrics) = &self.metrics {
            metrics.record(
                &execution,
                Observed {
                    duration: started.elapsed(),
                    taken_over: taken_over.load(Ordering::Relaxed),
                },
            );
        }
        execution
    }

    /// [`Self::execute`] without the metrics.
    async fn run_request(
        &self,
        action: &dyn DynAction,
        mut inv: Invocation,
        started: Instant,
        taken_over: &AtomicBool,
    ) -> Execution {
        let name = action.name();
        let options = action.options();

        // A bad key is refused with nothing written: there is no valid execution to audit.
        if let Some(Err(e)) = inv.key.as_deref().map(hash::validate_key) {
            return Execution::rejected(name, None, e);
        }
        // Identifiers the audit stores must be storable (docs/architecture.md §4): an
        // invalid one is refused before the claim; the rejection's audit record (when the
        // key is valid) leaves the invalid identifiers out.
        let identifiers_error = check_identifiers(&mut inv);
        let request_id = inv
            .request_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if let Some(e) = identifiers_error {
            if let Some(key) = inv.key.clone() {
                let input = audit::unparsed_input(&inv.params);
                self.audit_rejection(name, &key, &options, &input, &e, &inv, &request_id, started)
                    .await;
            }
            return Execution::rejected(name, inv.key.clone(), e);
        }
        // The parsed params move out of the invocation (nothing reads them there again):
        // no copy of the input.
        let params = match &mut inv.params {
            Params::Json(v) => Ok(std::mem::take(v)),
            Params::Text(text) => parse_params(text),
        };
        let params = match params {
            Ok(p) => p,
            Err(e) => {
                let key = inv.key.clone();
                if let Some(key) = &key {
                    // Text that is not JSON is audited as its length and SHA-256, never
                    // verbatim: it may hold anything, redacted fields included.
                    let input = audit::unparsed_input(&inv.params);
                    self.audit_rejection(
                        name,
                        key,
                        &options,
                        &input,
                        &e,
                        &inv,
                        &request_id,
                        started,
                    )
                    .await;
                }
                return Execution::rejected(name, key, e);
            }
        };
        let payload_hash = hash::payload_hash(&params);
        let key = match idempotency_key(name, options.key_policy, inv.key.as_deref(), &params) {
            Ok(key) => key,
            Err(e) => return Execution::rejected(name, None, e),
        };
        if let Err(e) = action.check(&params) {
            // Schema and serde messages quote the values they refuse: not those of
            // redacted fields, in the answer or in the audit.
            let e = audit::scrub_error(e, &params, &options.redact);
            self.audit_rejection(
                name,
                &key,
                &options,
                &params,
                &e,
                &inv,
                &request_id,
                started,
            )
            .await;
            return Execution::rejected(name, Some(key), e);
        }
        let prepared = Prepared {
            action,
            id: format!("{name}#{key}"),
            options,
            params,
            key,
            payload_hash,
            request_id,
            inv,
            started,
            taken_over,
        };
        let span = tracing::info_span!(
            "execute",
            action = name,
            key = %prepared.key,
            request_id = %prepared.request_id,
            attempt = tracing::field::Empty
        );
        match prepared.options.mode {
            Mode::Claim => self.run_claimed(prepared).instrument(span).await,
            Mode::Optimistic => self.run_optimistic(prepared).instrument(span).await,
        }
    }

    /// A claim or an optimistic commit met a live record: mismatch, replay or in progress.
    async fn existing(&self, p: &Prepared<'_>, record: IdempotencyRecord) -> Execution {
        let name = p.action.name();
        if record.payload_hash != p.payload_hash {
            let e = ActionError::payload_mismatch(format!(
                "the idempotency key {:?} of {name} was already used with a different payload",
                p.key
            ))
            .with_details(serde_json::json!({"key": p.key}));
            let details = outcome_details(p, Err(&e));
            self.put_audit_logged(self.audit(p, record.attempt, AuditStatus::Rejected, details))
                .await;
            return self.finish(p, record.attempt, false, Err(e));
        }
        let outcome = match record.status {
            RecordStatus::InProgress => {
                let left_ms = (record.lease_expires_at_ms - self.clock.now_ms())
                    .max(0)
                    .unsigned_abs();
                let e = ActionError::in_progress(format!(
                    "{} is being executed by attempt {}; its lease ends in {left_ms} ms",
                    p.id, record.attempt
                ))
                .with_retry_after_ms(left_ms)
                .with_details(
                    serde_json::json!({"retryAfterMs": left_ms, "attempt": record.attempt}),
                );
                return self.finish(p, record.attempt, false, Err(e));
            }
            RecordStatus::Completed => match &record.result {
                Some(StoredResult::Object(reference)) => self.fetch_result(p, reference).await,
                Some(stored) => stored.decode().map_err(ActionError::from).and_then(|text| {
                    RawValue::from_string(text).map_err(|e| {
                        ActionError::internal(format!("stored result is not JSON: {e}"))
                    })
                }),
                None => Err(ActionError::internal(format!(
                    "{} is COMPLETED without a result",
                    p.id
                ))),
            },
            RecordStatus::Failed => Err(record
                .error
                .as_deref()
                .and_then(|text| serde_json::from_str(text).ok())
                .map(ActionError::from_body)
                .unwrap_or_else(|| {
                    ActionError::internal(format!("{} is FAILED without a readable error", p.id))
                })),
        };
        if p.options.audit_replays {
            let details = serde_json::json!({
                "input": audit::redact(&p.params, &p.options.redact),
                "replayOf": record.status.as_str(),
            });
            self.put_audit_logged(self.audit(p, record.attempt, AuditStatus::Replayed, details))
                .await;
        }
        self.finish(p, record.attempt, true, outcome)
    }

    /// The stored form of a result (docs/architecture.md §4.6): in the record, compressed
    /// when large, if it fits there; else written to the store's object store first (the
    /// same key for the same execution and result, sent again like a commit after a
    /// failure a retry may fix, never past `lease_end_ms`) and referred to by the record.
    async fn store_result(
        &self,
        p: &Prepared<'_>,
        json: &str,
        lease_end_ms: i64,
    ) -> Result<StoredResult, ResultFailure> {
        if json.len() > MAX_RESULT_BYTES {
            return Err(ResultFailure::Refused(
                ActionError::validation(format!(
                    "the result of {} is too large to store: {} bytes; the limit is {MAX_RESULT_BYTES} bytes, Lambda's response limit",
                    p.id,
                    json.len()
                ))
                .with_details(serde_json::json!({
                    "reason": "result_too_large",
                    "resultBytes": json.len(),
                    "limitBytes": MAX_RESULT_BYTES,
                })),
            ));
        }
        let stored = StoredResult::compress(json.to_owned());
        if crate::limits::result_fits_in_record(&p.id, &stored) {
            return Ok(stored);
        }
        let Some(objects) = self.store.objects() else {
            let limit = crate::limits::MAX_ITEM_BYTES
                .saturating_sub(crate::limits::RECORD_FIXED_BYTES + p.id.len());
            return Err(ResultFailure::Refused(
                ActionError::validation(format!(
                    "the result of {} does not fit in its idempotency record: {} bytes ({} stored); \
                     the limit is {limit} bytes stored, and no results bucket is configured \
                     (ACTIONDO_RESULTS_BUCKET) \
                     for results up to {MAX_RESULT_BYTES} bytes",
                    p.id,
                    json.len(),
                    stored.stored_len()
                ))
                .with_details(serde_json::json!({
                    "reason": "result_too_large",
                    "resultBytes": json.len(),
                    "storedBytes": stored.stored_len(),
                    "limitBytes": limit,
                })),
            ));
        };
        let sha256 = hash::sha256_hex(json.as_bytes());
        let key = result_key(p.action.name(), &p.id, &sha256);
        let (body, gzip) = match stored {
            StoredResult::Gzip(bytes) => (bytes, true),
            StoredResult::Json(text) => (text.into_bytes(), false),
            StoredResult::Object(_) => (json.as_bytes().to_vec(), false),
        };
        let (put, _) = self
            .send_within_lease("writing the result object", lease_end_ms, || {
                objects.put(&key, body.clone(), gzip)
            })
            .await;
        put.map_err(ResultFailure::Unavailable)?;
        tracing::info!(
            bytes = json.len(),
            stored = body.len(),
            key = %key,
            "the result is stored as an object"
        );
        Ok(StoredResult::Object(Box::new(ObjectRef {
            bucket: objects.bucket().to_owned(),
            key,
            bytes: u64::try_from(json.len()).unwrap_or(u64::MAX),
            sha256,
            gzip,
        })))
    }

    /// A stored result held as an object: read, checked against the record's size and
    /// SHA-256, returned byte-identical.
    async fn fetch_result(
        &self,
        p: &Prepared<'_>,
        reference: &ObjectRef,
    ) -> Result<Box<RawValue>, ActionError> {
        let Some(objects) = self.store.objects() else {
            return Err(ActionError::internal(format!(
                "the result of {} is stored as an object, and this program has no results bucket (ACTIONDO_RESULTS_BUCKET)",
                p.id
            ))
            .with_details(serde_json::json!({"reason": "no_results_bucket", "requestId": p.request_id})));
        };
        let body = match objects.get(&reference.bucket, &reference.key).await {
            Ok(Some(body)) => body,
            Ok(None) => {
                tracing::error!(object = %reference, "the result object is missing");
                return Err(ActionError::internal(format!(
                    "the stored result of {} is no longer in the results bucket (its lifecycle must keep objects as long as the records' retention)",
                    p.id
                ))
                .with_details(serde_json::json!({"reason": "result_object_missing", "requestId": p.request_id})));
            }
            Err(err) => return Err(store_failure(p, err)),
        };
        let text = reference
            .decode(body)
            .map_err(|err| store_failure(p, err))?;
        RawValue::from_string(text)
            .map_err(|e| ActionError::internal(format!("stored result is not JSON: {e}")))
    }

    /// The handler ran and its outcome could not be stored (the store or the object store
    /// failed in a way a retry may fix): the record keeps its lease until it ends, and the
    /// next attempt after that takes it over (or replays). Nothing re-runs the handler
    /// before then.
    fn held_until_lease_end(
        &self,
        p: &Prepared<'_>,
        attempt: u32,
        lease_expires_at_ms: i64,
        e: ActionError,
    ) -> Execution {
        let left_ms = (lease_expires_at_ms - self.clock.now_ms())
            .max(0)
            .unsigned_abs();
        tracing::warn!(
            left_ms,
            "the outcome could not be committed; the key stays locked until its lease ends"
        );
        self.finish(p, attempt, false, Err(e.with_retry_after_ms(left_ms)))
    }

    fn finish(
        &self,
        p: &Prepared<'_>,
        attempt: u32,
        replayed: bool,
        outcome: Result<Box<RawValue>, ActionError>,
    ) -> Execution {
        let duration_ms = p.started.elapsed().as_millis();
        match &outcome {
            // A replay says so in its message too, not only in a field.
            Ok(_) if replayed => tracing::info!(
                attempt,
                replayed,
                duration_ms,
                "execution replayed: the stored result was returned"
            ),
            Ok(_) => tracing::info!(attempt, replayed, duration_ms, "execution succeeded"),
            Err(e) if replayed => tracing::info!(
                attempt,
                replayed,
                duration_ms,
                error_type = e.kind().wire_name(),
                "execution replayed: the stored error was returned"
            ),
            Err(e) => tracing::warn!(
                attempt,
                replayed,
                duration_ms,
                error_type = e.kind().wire_name(),
                error = e.message(),
                "execution failed"
            ),
        }
        Execution {
            action: p.action.name(),
            key: Some(p.key.clone()),
            attempt,
            replayed,
            outcome,
        }
    }

    fn audit(
        &self,
        p: &Prepared<'_>,
        attempt: u32,
        status: AuditStatus,
        details: Value,
    ) -> AuditRecord {
        let scope = AuditScope {
            action: p.action.name(),
            id: &p.id,
            request_id: &p.request_id,
            inv: &p.inv,
            started: p.started,
        };
        scope.record(self.clock.now_ms(), attempt, status, details)
    }

    #[allow(clippy::too_many_arguments)]
    async fn audit_rejection(
        &self,
        action: &'static str,
        key: &str,
        options: &ActionOptions,
        input: &Value,
        e: &ActionError,
        inv: &Invocation,
        request_id: &str,
        started: Instant,
    ) {
        let id = format!("{action}#{key}");
        let scope = AuditScope {
            action,
            id: &id,
            request_id,
            inv,
            started,
        };
        let details = serde_json::json!({
            "input": audit::redact(input, &options.redact),
            "error": e.to_body().error,
        });
        self.put_audit_logged(scope.record(self.clock.now_ms(), 0, AuditStatus::Rejected, details))
            .await;
    }

    async fn put_audit_logged(&self, record: AuditRecord) {
        if let Some(held) = &self.held_audits {
            held.lock().unwrap_or_else(|p| p.into_inner()).push(record);
            return;
        }
        if let Err(err) = self.store.put_audit(&record).await {
            tracing::warn!(error = %err, status = record.status.as_str(), "could not write the audit record");
        }
    }
}

/// The fields every audit record of one request shares.
struct AuditScope<'a> {
    action: &'static str,
    id: &'a str,
    request_id: &'a str,
    inv: &'a Invocation,
    started: Instant,
}

impl AuditScope<'_> {
    fn record(&self, ts_ms: i64, attempt: u32, status: AuditStatus, details: Value) -> AuditRecord {
        AuditRecord {
            execution: self.id.to_owned(),
            seq: audit::seq(ts_ms, attempt, status, self.request_id),
            action: self.action.to_owned(),
            status,
            details: audit::bound_details(details),
            timestamp: audit::timestamp(ts_ms),
            duration_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            attempt,
            request_id: self.request_id.to_owned(),
            source: self.inv.source,
            caller: self.inv.caller.clone(),
            correlation_id: self.inv.correlation_id.clone(),
            trace_id: self.inv.trace_id.clone(),
        }
    }
}

fn retention_s(options: &ActionOptions) -> i64 {
    i64::try_from(options.retention.as_secs())
        .unwrap_or(i64::MAX / 4)
        .max(1)
}

fn entity_conflict(commit: &Commit, index: usize) -> ActionError {
    let entity = commit.writes.get(index).map(|w| w.key().to_string());
    ActionError::conflict(format!(
        "a staged write's condition failed ({}); nothing was written",
        entity.as_deref().unwrap_or("unknown entity")
    ))
    .with_details(serde_json::json!({"reason": "entity_conflict", "entity": entity}))
}

/// The stored form of an error: the JSON text of its wire body.
fn error_text(e: &ActionError) -> String {
    serde_json::to_string(&e.to_body()).unwrap_or_default()
}

/// A store failure as the caller sees it: the kind and a message without store internals
/// (which go to the log), and the request id that finds them there.
fn store_failure(p: &Prepared<'_>, err: crate::error::StoreError) -> ActionError {
    let e = ActionError::from(err);
    let details = match e.details() {
        Some(Value::Object(map)) => {
            let mut map = map.clone();
            map.insert("requestId".into(), Value::String(p.request_id.clone()));
            Value::Object(map)
        }
        _ => serde_json::json!({"requestId": p.request_id}),
    };
    e.with_details(details)
}

/// The outcome of an execution whose commit the store refused (it should not: the limits
/// are checked before): an `ActionDo.Internal` recorded as `FAILED`, so that the key is
/// settled and never run again. The refusal itself goes to the log.
fn refused(p: &Prepared<'_>, refusal: &str) -> ActionError {
    tracing::error!(
        refusal,
        "the store refused the commit; settling the key as FAILED"
    );
    ActionError::internal(format!(
        "the store refused to record the outcome of {}; the execution is settled as failed so that it is not run again",
        p.id
    ))
    .with_details(serde_json::json!({"reason": "store_refused", "requestId": p.request_id}))
}

/// An error's wire body with the redacted fields of its `details` replaced.
fn redacted_error(e: &ActionError, fields: &[String]) -> Value {
    let body = serde_json::to_value(e.to_body().error).unwrap_or(Value::Null);
    match body {
        Value::Object(mut map) => {
            if let Some(details) = map.get_mut("details") {
                *details = audit::redact(details, fields);
            }
            Value::Object(map)
        }
        other => other,
    }
}

/// Check the identifiers of `inv` that the audit stores; drop each invalid one (so that
/// the rejection can still be audited) and return the error naming them.
fn check_identifiers(inv: &mut Invocation) -> Option<ActionError> {
    let mut problems = crate::validation::FieldErrors::new();
    if let Some(Err(e)) = inv.request_id.as_deref().map(hash::validate_key) {
        problems.add(
            "requestId",
            e.message()
                .replacen("the idempotency key", "the request id", 1),
        );
        inv.request_id = None;
    }
    for (field, value) in [
        ("correlationId", &mut inv.correlation_id),
        ("caller", &mut inv.caller),
        ("traceId", &mut inv.trace_id),
    ] {
        if let Some(Err(e)) = value
            .as_deref()
            .map(|v| crate::limits::check_identifier(v, field))
        {
            problems.add(field, format!("{} (found {})", e.limit, e.found));
            *value = None;
        }
    }
    (!problems.is_empty()).then(|| problems.into_error("the invocation's identifiers"))
}

/// The audit details of a completion committed with its record: the redacted input and,
/// for the output, a reference to the record that holds it (stored once, docs/architecture.md
/// §5.2) — unless redaction changes the output, whose redacted form is then kept.
fn completion_details(p: &Prepared<'_>, raw: &RawValue, lease_owner: &str) -> Value {
    let input = audit::redact(&p.params, &p.options.redact);
    if !p.options.redact.is_empty() {
        let output = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
        let redacted = audit::redact(&output, &p.options.redact);
        if redacted != output {
            return serde_json::json!({"input": input, "output": redacted});
        }
    }
    audit::output_in_record(input, lease_owner)
}

/// Audit details: the redacted input and the redacted output or the error.
fn outcome_details(p: &Prepared<'_>, outcome: Result<&RawValue, &ActionError>) -> Value {
    let input = audit::redact(&p.params, &p.options.redact);
    match outcome {
        Ok(raw) => {
            let output = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
            serde_json::json!({"input": input, "output": audit::redact(&output, &p.options.redact)})
        }
        Err(e) => {
            serde_json::json!({"input": input, "error": redacted_error(e, &p.options.redact)})
        }
    }
}

mod claim;
mod handler;
mod optimistic;
