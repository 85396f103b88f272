//! Optimistic mode: run the handler first, then one transaction that inserts the finished
//! record, its audit record and the staged writes; a live record found instead decides.

use super::handler::lease_ms;
use super::{
    Execution, Executor, Prepared, entity_conflict, error_text, outcome_details, retention_s,
};
use crate::audit::AuditStatus;
use crate::error::ActionError;
use crate::store::{
    Commit, CommitOutcome, IdempotencyRecord, RecordStatus, RecordWrite, StoredResult,
};

impl Executor {
    pub(super) async fn run_optimistic(&self, p: Prepared<'_>) -> Execution {
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
}
