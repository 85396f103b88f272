//! Optimistic mode: run the handler first, then one transaction that inserts the finished
//! record, its audit record and the staged writes; a live record found instead decides.

use super::handler::{commit_reserve_ms, lease_ms};
use super::{
    Execution, Executor, Prepared, ResultFailure, completion_details, entity_conflict, error_text,
    outcome_details, refused, retention_s, store_failure,
};
use crate::audit::AuditStatus;
use crate::error::{ActionError, StoreError};
use crate::store::{Commit, CommitOutcome, IdempotencyRecord, RecordStatus, RecordWrite};

impl Executor {
    pub(super) async fn run_optimistic(&self, p: Prepared<'_>) -> Execution {
        // One write completes the execution: it is always attempt 1.
        tracing::Span::current().record("attempt", 1u32);
        let mut conflicts = 0;
        // Tells our own record from another's when a resent insert finds one.
        let lease_owner = uuid::Uuid::new_v4().to_string();
        loop {
            let started_ms = self.clock.now_ms();
            let lease_ms = lease_ms(&p.options, p.inv.deadline_ms, started_ms);
            let handled = self
                .run_handler(&p, 1, lease_ms - commit_reserve_ms(lease_ms))
                .await;
            let now_ms = self.clock.now_ms();
            let (status, result, writes, outcome) = match handled {
                Ok((raw, writes)) => match self
                    .store_result(&p, raw.get(), started_ms + lease_ms)
                    .await
                {
                    Ok(stored) => (RecordStatus::Completed, Some(stored), writes, Ok(raw)),
                    Err(ResultFailure::Refused(e)) => {
                        (RecordStatus::Failed, None, Vec::new(), Err(e))
                    }
                    // Nothing is held: as a failed commit, a retry runs the handler again.
                    Err(ResultFailure::Unavailable(err)) => {
                        return self.finish(&p, 1, false, Err(store_failure(&p, err)));
                    }
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
            let details = match &outcome {
                Ok(raw) => completion_details(&p, raw, &lease_owner),
                Err(e) => outcome_details(&p, Err(e)),
            };
            let record = IdempotencyRecord {
                id: p.id.clone(),
                status,
                payload_hash: p.payload_hash.clone(),
                attempt: 1,
                lease_owner: lease_owner.clone(),
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
            let commit = match crate::limits::check_commit(&commit) {
                Ok(()) => commit,
                Err(limit) => {
                    // What the handler returned or staged cannot be stored: a terminal
                    // failure, recorded as such.
                    let e = ActionError::validation(format!(
                        "the outcome of {} cannot be stored: {limit}",
                        p.id
                    ))
                    .with_details(limit.details());
                    return self
                        .insert_failed(&p, &lease_owner, started_ms + lease_ms, e)
                        .await;
                }
            };
            match self
                .commit_with_retries(&commit, &lease_owner, started_ms + lease_ms)
                .await
            {
                Ok(CommitOutcome::Committed) => return self.finish(&p, 1, false, outcome),
                // Our own insert, applied by a send whose answer was lost.
                Ok(CommitOutcome::Exists(existing)) if existing.lease_owner == lease_owner => {
                    return self.finish(&p, 1, false, outcome);
                }
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
                Err(StoreError::Refused(refusal)) => {
                    let e = refused(&p, &refusal);
                    return self
                        .insert_failed(&p, &lease_owner, started_ms + lease_ms, e)
                        .await;
                }
                // Nothing is held in optimistic mode: a retry runs the handler again, and
                // its only effects are the staged writes, which were not applied.
                Err(store_err) => {
                    return self.finish(&p, 1, false, Err(store_failure(&p, store_err)));
                }
            }
        }
    }

    /// Record a terminal failure of an optimistic execution (its writes dropped).
    async fn insert_failed(
        &self,
        p: &Prepared<'_>,
        lease_owner: &str,
        lease_end_ms: i64,
        e: ActionError,
    ) -> Execution {
        let now_ms = self.clock.now_ms();
        let record = IdempotencyRecord {
            id: p.id.clone(),
            status: RecordStatus::Failed,
            payload_hash: p.payload_hash.clone(),
            attempt: 1,
            lease_owner: lease_owner.to_owned(),
            lease_expires_at_ms: now_ms,
            expires_at_s: now_ms.div_euclid(1000) + retention_s(&p.options),
            result: None,
            error: Some(error_text(&e)),
            created_at_ms: now_ms,
            completed_at_ms: Some(now_ms),
        };
        let commit = Commit {
            record: RecordWrite::Insert { record, now_ms },
            audit: self.audit(p, 1, AuditStatus::Failed, outcome_details(p, Err(&e))),
            writes: Vec::new(),
        };
        match self
            .commit_with_retries(&commit, lease_owner, lease_end_ms)
            .await
        {
            Ok(CommitOutcome::Exists(existing)) if existing.lease_owner != lease_owner => {
                self.existing(p, existing).await
            }
            Ok(_) => self.finish(p, 1, false, Err(e)),
            Err(err) => {
                tracing::error!(error = %err, "could not record the failure");
                self.finish(p, 1, false, Err(e))
            }
        }
    }
}
