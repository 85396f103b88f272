//! Claim mode: claim the key with one conditional write, run the handler, commit its
//! outcome (or release the key) in one transaction.
//!
//! After the handler has run, nothing re-runs it because of the store
//! (docs/architecture.md §4): a commit that fails in a way a retry may fix is retried
//! under the same lease ([`Executor::commit_with_retries`]), and if it still fails the
//! record keeps its lease until the lease ends — never an immediate release that would
//! invite a retry. A commit the store refuses settles the key as `FAILED`.

use std::time::Duration;

use super::handler::{commit_reserve_ms, lease_ms};
use super::{
    Execution, Executor, Prepared, ResultFailure, completion_details, entity_conflict, error_text,
    outcome_details, refused, retention_s, store_failure,
};
use crate::audit::{self, AuditStatus};
use crate::error::{ActionError, StoreError};
use crate::store::{
    Claim, ClaimOutcome, Commit, CommitOutcome, RecordStatus, RecordWrite, StoredResult,
};

/// How many times a commit is sent in all when the store fails in a way a retry may fix
/// (each send is itself retried by the SDK).
pub(super) const COMMIT_ATTEMPTS: u32 = 3;

/// The pause before the executor's `n`-th resend of a commit (n = 1, 2, …): 100 ms, 400 ms.
pub(super) fn commit_backoff(n: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(4u64.saturating_pow(n.saturating_sub(1))))
}

impl Executor {
    pub(super) async fn run_claimed(&self, p: Prepared<'_>) -> Execution {
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
            Err(e) => return self.finish(&p, 0, false, Err(store_failure(&p, e))),
            // Our own claim, applied by an earlier send whose answer was lost: it is ours.
            Ok(ClaimOutcome::Existing(record))
                if record.lease_owner == lease_owner
                    && record.status == RecordStatus::InProgress =>
            {
                tracing::info!(
                    attempt = record.attempt,
                    "the claim had applied; its answer was lost"
                );
                record.attempt
            }
            Ok(ClaimOutcome::Existing(record)) => return self.existing(&p, record).await,
            Ok(ClaimOutcome::Claimed {
                attempt,
                taken_over,
            }) => {
                if taken_over {
                    p.taken_over
                        .store(true, std::sync::atomic::Ordering::Relaxed);
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

        // The handler's budget leaves a reserve for the commit, so that a slow handler
        // ends as an audited failure while the lease still protects the key.
        let budget_ms = lease_expires_at_ms - self.clock.now_ms() - commit_reserve_ms(lease_ms);
        let handled = self.run_handler(&p, attempt, budget_ms).await;
        let now_ms = self.clock.now_ms();
        // A terminal failure: the record settles as FAILED with the error, writes dropped.
        let failed = |e: ActionError| {
            let record = finish_write(
                &p,
                &lease_owner,
                RecordStatus::Failed,
                None,
                Some(&e),
                now_ms,
            );
            (record, AuditStatus::Failed, Vec::new(), Err(e))
        };
        let (record, status, writes, outcome) = match handled {
            Ok((raw, writes)) => {
                match self.store_result(&p, raw.get(), lease_expires_at_ms).await {
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
                    Err(ResultFailure::Refused(e)) => failed(e),
                    Err(ResultFailure::Unavailable(err)) => {
                        let e = store_failure(&p, err);
                        return self.held_until_lease_end(&p, attempt, lease_expires_at_ms, e);
                    }
                }
            }
            Err(e) if e.kind().is_terminal() => failed(e),
            Err(e) => (
                release_write(&p, &lease_owner),
                AuditStatus::Retrying,
                Vec::new(),
                Err(e),
            ),
        };
        let details = match &outcome {
            Ok(raw) if status == AuditStatus::Completed => {
                completion_details(&p, raw, &lease_owner)
            }
            _ => outcome_details(&p, outcome.as_deref()),
        };
        let mut commit = Commit {
            record,
            audit: self.audit(&p, attempt, status, details),
            writes,
        };
        let (status, outcome) = match crate::limits::check_commit(&commit) {
            Ok(()) => (status, outcome),
            // What the handler returned or staged cannot be stored: a terminal failure of
            // this execution, recorded as such (nothing of it is written).
            Err(limit) => {
                let e = ActionError::validation(format!(
                    "the outcome of {} cannot be stored: {limit}",
                    p.id
                ))
                .with_details(limit.details());
                commit = Commit {
                    record: finish_write(
                        &p,
                        &lease_owner,
                        RecordStatus::Failed,
                        None,
                        Some(&e),
                        now_ms,
                    ),
                    audit: self.audit(
                        &p,
                        attempt,
                        AuditStatus::Failed,
                        outcome_details(&p, Err(&e)),
                    ),
                    writes: Vec::new(),
                };
                (AuditStatus::Failed, Err(e))
            }
        };
        match self
            .commit_with_retries(&commit, &lease_owner, lease_expires_at_ms)
            .await
        {
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
                self.release(&p, &lease_owner, lease_expires_at_ms, attempt, &e)
                    .await;
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
            Err(StoreError::Refused(refusal)) if status != AuditStatus::Retrying => {
                self.settle_refused(&p, &lease_owner, lease_expires_at_ms, attempt, &refusal)
                    .await
            }
            Err(store_err) => {
                // The outcome may or may not be stored; the record keeps its lease until
                // it ends, and the next attempt after that takes it over (or replays).
                let e = match outcome {
                    Err(e) if status == AuditStatus::Retrying => e,
                    _ => store_failure(&p, store_err),
                };
                self.held_until_lease_end(&p, attempt, lease_expires_at_ms, e)
            }
        }
    }

    /// Send `commit`, and send it again (the same commit: the DynamoDB store gives it the
    /// same `ClientRequestToken`) after a failure a retry may fix, up to
    /// [`COMMIT_ATTEMPTS`] sends and never past the lease. A lease-lost answer to a resend
    /// may mean the first send applied: the record tells.
    pub(super) async fn commit_with_retries(
        &self,
        commit: &Commit,
        lease_owner: &str,
        lease_expires_at_ms: i64,
    ) -> Result<CommitOutcome, StoreError> {
        let (result, sent) = self
            .send_within_lease("the commit", lease_expires_at_ms, || {
                self.store.commit(commit)
            })
            .await;
        match result {
            Ok(CommitOutcome::LeaseLost) if sent > 1 => {
                Ok(self.applied_earlier(commit, lease_owner).await)
            }
            other => other,
        }
    }

    /// Run `send`, and run it again after a failure a retry may fix
    /// ([`StoreError::Unavailable`]), up to [`COMMIT_ATTEMPTS`] sends in all, pausing
    /// [`commit_backoff`] between them, and never when the pause would reach
    /// `lease_end_ms`: past it another attempt may hold the key. Returns the last result
    /// and how many sends it took.
    pub(super) async fn send_within_lease<T, Fut>(
        &self,
        what: &str,
        lease_end_ms: i64,
        mut send: impl FnMut() -> Fut,
    ) -> (Result<T, StoreError>, u32)
    where
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut sent = 0;
        loop {
            sent += 1;
            match send().await {
                Err(StoreError::Unavailable { message, source }) => {
                    let pause = commit_backoff(sent);
                    let pause_ms = i64::try_from(pause.as_millis()).unwrap_or(i64::MAX);
                    if sent >= COMMIT_ATTEMPTS || self.clock.now_ms() + pause_ms >= lease_end_ms {
                        return (Err(StoreError::Unavailable { message, source }), sent);
                    }
                    tracing::warn!(sent, error = %message, "{what} failed; sending it again");
                    tokio::time::sleep(pause).await;
                }
                other => return (other, sent),
            }
        }
    }

    /// Whether a resent commit that found the lease gone had applied the first time: the
    /// record then carries our lease owner and the outcome we wrote.
    async fn applied_earlier(&self, commit: &Commit, lease_owner: &str) -> CommitOutcome {
        let (id, expected) = match &commit.record {
            RecordWrite::Finish { id, status, .. } => (id, Some(*status)),
            RecordWrite::Release { id, .. } => (id, None),
            _ => return CommitOutcome::LeaseLost,
        };
        match self.store.get_record(id).await {
            Ok(Some(r))
                if r.lease_owner == lease_owner
                    && match expected {
                        Some(status) => r.status == status,
                        None => r.is_released(),
                    } =>
            {
                CommitOutcome::Committed
            }
            _ => CommitOutcome::LeaseLost,
        }
    }

    /// The store refused to record an outcome it should have accepted (the limits are
    /// checked before): settle the key as `FAILED` with an `ActionDo.Internal` that says so
    /// — audited and replayed — rather than leave it to be run again.
    async fn settle_refused(
        &self,
        p: &Prepared<'_>,
        lease_owner: &str,
        lease_expires_at_ms: i64,
        attempt: u32,
        refusal: &str,
    ) -> Execution {
        let e = refused(p, refusal);
        let commit = Commit {
            record: finish_write(
                p,
                lease_owner,
                RecordStatus::Failed,
                None,
                Some(&e),
                self.clock.now_ms(),
            ),
            audit: self.audit(p, attempt, AuditStatus::Failed, outcome_details(p, Err(&e))),
            writes: Vec::new(),
        };
        if let Err(err) = self
            .commit_with_retries(&commit, lease_owner, lease_expires_at_ms)
            .await
        {
            tracing::error!(error = %err, "could not settle the refused outcome; the key stays locked until its lease ends");
        }
        self.finish(p, attempt, false, Err(e))
    }

    /// Give the key back after a failure that a retry may fix: end our lease (the record
    /// stays, so the next claim is the next attempt) and audit the attempt, in one
    /// transaction. If that fails too, the record stays `IN_PROGRESS` until its lease
    /// ends, and the next attempt takes it over.
    pub(super) async fn release(
        &self,
        p: &Prepared<'_>,
        lease_owner: &str,
        lease_expires_at_ms: i64,
        attempt: u32,
        e: &ActionError,
    ) {
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
        match self
            .commit_with_retries(&commit, lease_owner, lease_expires_at_ms)
            .await
        {
            Ok(CommitOutcome::Committed) => {}
            Ok(other) => tracing::warn!(?other, "releasing the record found it taken"),
            Err(err) => tracing::warn!(
                error = %err,
                "could not release the record; it stays IN_PROGRESS until its lease ends"
            ),
        }
    }
}

pub(super) fn finish_write(
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

pub(super) fn release_write(p: &Prepared<'_>, lease_owner: &str) -> RecordWrite {
    RecordWrite::Release {
        id: p.id.clone(),
        lease_owner: lease_owner.to_owned(),
    }
}
