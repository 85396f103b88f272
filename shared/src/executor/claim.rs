//! Claim mode: claim the key with one conditional write, run the handler, commit its
//! outcome (or release the key) in one transaction.

use super::handler::lease_ms;
use super::{
    Execution, Executor, Prepared, entity_conflict, error_text, outcome_details, retention_s,
};
use crate::audit::{self, AuditStatus};
use crate::error::ActionError;
use crate::store::{
    Claim, ClaimOutcome, Commit, CommitOutcome, RecordStatus, RecordWrite, StoredResult,
};

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

    /// Give the key back after a failure that a retry may fix: delete our record and audit
    /// the attempt, in one transaction. If that fails too, the record stays `IN_PROGRESS`
    /// until its lease ends, and the next attempt takes it over.
    pub(super) async fn release(
        &self,
        p: &Prepared<'_>,
        lease_owner: &str,
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
        match self.store.commit(&commit).await {
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
