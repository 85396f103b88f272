//! The execution protocol of DESIGN §4, written once: claim, execute, commit (claim mode)
//! or execute, commit (optimistic mode), over any [`Store`].

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use serde::Serialize;
use serde_json::Value;
use serde_json::value::RawValue;
use tracing::Instrument as _;

use crate::action::{ActionOptions, DynAction, KeyPolicy, Lease, Mode};
use crate::audit::{self, AuditRecord, AuditStatus};
use crate::clock::{Clock, SystemClock};
use crate::context::{ActionContext, Source};
use crate::error::ActionError;
use crate::hash;
use crate::store::{
    Claim, ClaimOutcome, Commit, CommitOutcome, IdempotencyRecord, RecordStatus, RecordWrite,
    StagedWrite, Store, StoredResult,
};

/// The parameters of an invocation, parsed or not yet parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Params {
    /// Already-parsed JSON.
    Json(Value),
    /// JSON text; a parse error is a rejected request (`ActionDo.Validation` with the
    /// line and column), audited when the invocation carries a valid key.
    Text(String),
}

/// One request to run an action: its parameters and what the trigger knows about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// The parameters.
    pub params: Params,
    /// The idempotency key given by the caller; derived from the input when absent (the
    /// default [`KeyPolicy`]).
    pub key: Option<String>,
    /// Where the invocation came from.
    pub source: Source,
    /// The request id (Lambda request id, SQS message id…); a fresh UUID when absent.
    pub request_id: Option<String>,
    /// Correlates executions (a Step Functions execution, a workflow run).
    pub correlation_id: Option<String>,
    /// Who called.
    pub caller: Option<String>,
    /// The X-Ray trace id.
    pub trace_id: Option<String>,
    /// The invocation's deadline, Unix milliseconds (the Lambda deadline).
    pub deadline_ms: Option<i64>,
}

impl Invocation {
    /// An invocation of `params` from `source` with nothing else known.
    pub fn new(params: Value, source: Source) -> Self {
        Self {
            params: Params::Json(params),
            key: None,
            source,
            request_id: None,
            correlation_id: None,
            caller: None,
            trace_id: None,
            deadline_ms: None,
        }
    }

    /// Set the idempotency key.
    #[must_use]
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Set the correlation id.
    #[must_use]
    pub fn with_correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Set the request id.
    #[must_use]
    pub fn with_request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = Some(id.into());
        self
    }
}

/// Parse params given as JSON text; malformed JSON is `ActionDo.Validation` naming the
/// problem and its position (`details: {"line", "column"}`), as every front end reports it.
pub fn parse_params(text: &str) -> Result<Value, ActionError> {
    serde_json::from_str::<Value>(text).map_err(|e| {
        // serde's text ends with its own "at line L column C"; say it once.
        let text = e.to_string();
        let what = text
            .rsplit_once(" at line ")
            .map_or(text.as_str(), |(w, _)| w);
        ActionError::validation(format!(
            "params are not valid JSON: {what} (line {}, column {})",
            e.line(),
            e.column()
        ))
        .with_details(serde_json::json!({"line": e.line(), "column": e.column()}))
    })
}

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
        }
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
        let name = action.name();
        let options = action.options();
        let request_id = inv
            .request_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());

        // A bad key is refused with nothing written: there is no valid execution to audit.
        if let Some(Err(e)) = inv.key.as_deref().map(hash::validate_key) {
            return Execution::rejected(name, None, e);
        }
        let params = match &inv.params {
            Params::Json(v) => Ok(v.clone()),
            Params::Text(text) => parse_params(text),
        };
        let params = match params {
            Ok(p) => p,
            Err(e) => {
                let key = inv.key.clone();
                if let Some(key) = &key {
                    let input = match &inv.params {
                        Params::Text(t) => Value::String(t.clone()),
                        Params::Json(v) => v.clone(),
                    };
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
        let key = match (inv.key.clone(), options.key_policy) {
            (Some(key), _) => key,
            (None, KeyPolicy::Derived) => payload_hash.clone(),
            (None, KeyPolicy::Required) => {
                return Execution::rejected(
                    name,
                    None,
                    ActionError::validation(format!(
                        "{name} requires an idempotency key (Idempotency-Key header, idempotencyKey field, or --key)"
                    )),
                );
            }
        };
        if let Err(e) = action.check(&params) {
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

    async fn run_claimed(&self, p: Prepared<'_>) -> Execution {
        let now_ms = self.clock.now_ms();
        let lease_ms = lease_ms(&p.options, p.inv.deadline_ms, now_ms);
        let lease_owner = uuid::Uuid::new_v4().to_string();
        let lease_expires_at_ms = now_ms + lease_ms;
        let claim = Claim {
            id: p.id.clone(),
            payload_hash: p.payload_hash.clone(),
            lease_owner: lease_owner.clone(),
            lease_expires_at_ms,
            expires_at_s: lease_expires_at_ms.div_euclid(1000) + retention_s(&p.options),
            now_ms,
        };
        let attempt = match self.store.claim(&claim).await {
            Err(e) => return self.finish(&p, 0, false, Err(ActionError::from(e))),
            Ok(ClaimOutcome::Existing(record)) => return self.existing(&p, record).await,
            Ok(ClaimOutcome::Claimed {
                attempt,
                taken_over,
            }) => {
                if taken_over {
                    tracing::info!(attempt, "took over an expired lease");
                    let details = serde_json::json!({
                        "input": audit::redact(&p.params, &p.options.redact),
                        "previousAttempt": attempt.saturating_sub(1),
                    });
                    self.put_audit_logged(self.audit(&p, attempt, AuditStatus::TakenOver, details))
                        .await;
                }
                attempt
            }
        };
        tracing::Span::current().record("attempt", attempt);

        let handled = self
            .run_handler(&p, attempt, lease_expires_at_ms - self.clock.now_ms())
            .await;
        let now_ms = self.clock.now_ms();
        let (record, status, writes, outcome) = match handled {
            Ok((raw, writes)) => match StoredResult::encode(raw.get()) {
                Ok(stored) => (
                    finish_write(
                        &p,
                        &lease_owner,
                        RecordStatus::Completed,
                        Some(stored),
                        None,
                        now_ms,
                    ),
                    AuditStatus::Completed,
                    writes,
                    Ok(raw),
                ),
                Err(e) => (
                    finish_write(
                        &p,
                        &lease_owner,
                        RecordStatus::Failed,
                        None,
                        Some(&e),
                        now_ms,
                    ),
                    AuditStatus::Failed,
                    Vec::new(),
                    Err(e),
                ),
            },
            Err(e) if e.kind().is_terminal() => (
                finish_write(
                    &p,
                    &lease_owner,
                    RecordStatus::Failed,
                    None,
                    Some(&e),
                    now_ms,
                ),
                AuditStatus::Failed,
                Vec::new(),
                Err(e),
            ),
            Err(e) => (
                release_write(&p, &lease_owner),
                AuditStatus::Retrying,
                Vec::new(),
                Err(e),
            ),
        };
        let details = outcome_details(&p, outcome.as_deref());
        let commit = Commit {
            record,
            audit: self.audit(&p, attempt, status, details),
            writes,
        };
        match self.store.commit(&commit).await {
            Ok(CommitOutcome::Committed) => self.finish(&p, attempt, false, outcome),
            Ok(CommitOutcome::LeaseLost) => {
                if status == AuditStatus::Retrying {
                    // Our release found the lease gone: someone else holds the key now;
                    // the retryable error stands.
                    return self.finish(&p, attempt, false, outcome);
                }
                let e = ActionError::conflict(format!(
                    "the lease on {} was lost before the commit; nothing of attempt {attempt} was written",
                    p.id
                ))
                .with_details(serde_json::json!({"reason": "lease_lost"}));
                let details = outcome_details(&p, Err(&e));
                self.put_audit_logged(self.audit(&p, attempt, AuditStatus::Retrying, details))
                    .await;
                self.finish(&p, attempt, false, Err(e))
            }
            Ok(CommitOutcome::EntityConflict { index }) => {
                let e = entity_conflict(&commit, index);
                self.release(&p, &lease_owner, attempt, &e).await;
                self.finish(&p, attempt, false, Err(e))
            }
            Ok(CommitOutcome::Exists(_)) => self.finish(
                &p,
                attempt,
                false,
                Err(ActionError::internal(
                    "the store answered an optimistic outcome to a claim-mode commit",
                )),
            ),
            Err(store_err) => {
                let e = ActionError::from(store_err);
                if status != AuditStatus::Retrying {
                    self.release(&p, &lease_owner, attempt, &e).await;
                }
                self.finish(&p, attempt, false, Err(e))
            }
        }
    }

    async fn run_optimistic(&self, p: Prepared<'_>) -> Execution {
        // One write completes the execution: it is always attempt 1.
        tracing::Span::current().record("attempt", 1u32);
        let mut conflicts = 0;
        loop {
            let budget_ms = lease_ms(&p.options, p.inv.deadline_ms, self.clock.now_ms());
            let handled = self.run_handler(&p, 1, budget_ms).await;
            let now_ms = self.clock.now_ms();
            let (status, result, writes, outcome) = match handled {
                Ok((raw, writes)) => match StoredResult::encode(raw.get()) {
                    Ok(stored) => (RecordStatus::Completed, Some(stored), writes, Ok(raw)),
                    Err(e) => (RecordStatus::Failed, None, Vec::new(), Err(e)),
                },
                Err(e) if e.kind().is_terminal() => {
                    (RecordStatus::Failed, None, Vec::new(), Err(e))
                }
                Err(e) => {
                    // Nothing was claimed, so nothing is released: only the audit.
                    let details = outcome_details(&p, Err(&e));
                    self.put_audit_logged(self.audit(&p, 1, AuditStatus::Retrying, details))
                        .await;
                    return self.finish(&p, 1, false, Err(e));
                }
            };
            let audit_status = match status {
                RecordStatus::Completed => AuditStatus::Completed,
                _ => AuditStatus::Failed,
            };
            let details = outcome_details(&p, outcome.as_deref());
            let record = IdempotencyRecord {
                id: p.id.clone(),
                status,
                payload_hash: p.payload_hash.clone(),
                attempt: 1,
                lease_owner: p.request_id.clone(),
                lease_expires_at_ms: now_ms,
                expires_at_s: now_ms.div_euclid(1000) + retention_s(&p.options),
                result,
                error: outcome.as_ref().err().map(error_text),
                created_at_ms: now_ms,
                completed_at_ms: Some(now_ms),
            };
            let commit = Commit {
                record: RecordWrite::Insert { record, now_ms },
                audit: self.audit(&p, 1, audit_status, details),
                writes,
            };
            match self.store.commit(&commit).await {
                Ok(CommitOutcome::Committed) => return self.finish(&p, 1, false, outcome),
                Ok(CommitOutcome::Exists(existing)) => return self.existing(&p, existing).await,
                Ok(CommitOutcome::EntityConflict { index }) => {
                    conflicts += 1;
                    if conflicts <= p.options.optimistic_retries {
                        tracing::debug!(conflicts, "entity conflict; running again in place");
                        continue;
                    }
                    let e = entity_conflict(&commit, index);
                    let details = outcome_details(&p, Err(&e));
                    self.put_audit_logged(self.audit(&p, 1, AuditStatus::Retrying, details))
                        .await;
                    return self.finish(&p, 1, false, Err(e));
                }
                Ok(CommitOutcome::LeaseLost) => {
                    let e = ActionError::internal(
                        "the store answered lease-lost to an optimistic commit",
                    );
                    return self.finish(&p, 1, false, Err(e));
                }
                Err(store_err) => return self.finish(&p, 1, false, Err(store_err.into())),
            }
        }
    }

    /// Run the handler with panic capture and a time budget; return its output and the
    /// writes it staged.
    async fn run_handler(&self, p: &Prepared<'_>, attempt: u32, budget_ms: i64) -> HandlerResult {
        let mut cx = ActionContext {
            action: p.action.name(),
            key: p.key.clone(),
            attempt,
            request_id: p.request_id.clone(),
            deadline_ms: p.inv.deadline_ms,
            source: p.inv.source,
            correlation_id: p.inv.correlation_id.clone(),
            caller: p.inv.caller.clone(),
            store: self.store.clone(),
            staged: Vec::new(),
        };
        let budget_ms = budget_ms.max(1);
        let run = AssertUnwindSafe(p.action.call(&p.params, &mut cx)).catch_unwind();
        let result = match tokio::time::timeout(
            Duration::from_millis(budget_ms.unsigned_abs()),
            run,
        )
        .await
        {
            Err(_) => Err(ActionError::transient(format!(
                "the handler did not finish within its lease of {budget_ms} ms"
            ))),
            Ok(Err(panic)) => Err(ActionError::internal(format!(
                "the handler panicked: {}",
                panic_message(panic.as_ref())
            ))),
            Ok(Ok(result)) => result,
        };
        result.map(|raw| (raw, cx.staged))
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

    /// Give the key back after a failure that a retry may fix: delete our record and audit
    /// the attempt, in one transaction. If that fails too, the record stays `IN_PROGRESS`
    /// until its lease ends, and the next attempt takes it over.
    async fn release(&self, p: &Prepared<'_>, lease_owner: &str, attempt: u32, e: &ActionError) {
        let commit = Commit {
            record: release_write(p, lease_owner),
            audit: self.audit(
                p,
                attempt,
                AuditStatus::Retrying,
                outcome_details(p, Err(e)),
            ),
            writes: Vec::new(),
        };
        match self.store.commit(&commit).await {
            Ok(CommitOutcome::Committed) => {}
            Ok(other) => tracing::warn!(?other, "releasing the record found it taken"),
            Err(err) => tracing::warn!(
                error = %err,
                "could not release the record; it stays IN_PROGRESS until its lease ends"
            ),
        }
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
            Ok(_) => tracing::info!(attempt, replayed, duration_ms, "execution succeeded"),
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

/// The lease of one attempt, in milliseconds.
fn lease_ms(options: &ActionOptions, deadline_ms: Option<i64>, now_ms: i64) -> i64 {
    let ms = match options.lease {
        Lease::Fixed(d) => duration_ms(d),
        Lease::RemainingTime { cap } => {
            let cap = duration_ms(cap);
            match deadline_ms {
                Some(deadline) => (deadline - now_ms).max(1_000).min(cap),
                None => cap,
            }
        }
    };
    ms.max(1)
}

fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

fn retention_s(options: &ActionOptions) -> i64 {
    i64::try_from(options.retention.as_secs())
        .unwrap_or(i64::MAX / 4)
        .max(1)
}

fn finish_write(
    p: &Prepared<'_>,
    lease_owner: &str,
    status: RecordStatus,
    result: Option<StoredResult>,
    error: Option<&ActionError>,
    now_ms: i64,
) -> RecordWrite {
    RecordWrite::Finish {
        id: p.id.clone(),
        lease_owner: lease_owner.to_owned(),
        status,
        result,
        error: error.map(error_text),
        completed_at_ms: now_ms,
        expires_at_s: now_ms.div_euclid(1000) + retention_s(&p.options),
    }
}

fn release_write(p: &Prepared<'_>, lease_owner: &str) -> RecordWrite {
    RecordWrite::Release {
        id: p.id.clone(),
        lease_owner: lease_owner.to_owned(),
    }
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

/// Audit details: the redacted input and the redacted output or the error.
fn outcome_details(p: &Prepared<'_>, outcome: Result<&RawValue, &ActionError>) -> Value {
    let input = audit::redact(&p.params, &p.options.redact);
    match outcome {
        Ok(raw) => {
            let output = serde_json::from_str(raw.get()).unwrap_or(Value::Null);
            serde_json::json!({"input": input, "output": audit::redact(&output, &p.options.redact)})
        }
        Err(e) => serde_json::json!({"input": input, "error": e.to_body().error}),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a non-string panic payload)".to_owned()
    }
}
