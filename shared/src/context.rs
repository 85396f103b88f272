//! [`ActionContext`]: what a handler knows about its execution, and its staged writes.

use std::sync::Arc;

use crate::error::ActionError;
use crate::invocation::Source;
use crate::store::{Entity, EntityKey, Expect, StagedWrite, Store};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// DynamoDB allows 100 items in one `TransactWriteItems`; the record and the audit take two.
pub const MAX_STAGED_WRITES: usize = 98;

/// The execution a handler runs in: its key, attempt and caller, and its staged writes to
/// the entity table (applied only by the completion transaction).
pub struct ActionContext {
    pub(crate) action: &'static str,
    pub(crate) key: String,
    pub(crate) attempt: u32,
    pub(crate) request_id: String,
    pub(crate) deadline_ms: Option<i64>,
    pub(crate) source: Source,
    pub(crate) correlation_id: Option<String>,
    pub(crate) caller: Option<String>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) staged: Vec<StagedWrite>,
}

impl std::fmt::Debug for ActionContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionContext")
            .field("action", &self.action)
            .field("key", &self.key)
            .field("attempt", &self.attempt)
            .field("request_id", &self.request_id)
            .field("source", &self.source)
            .field("correlation_id", &self.correlation_id)
            .field("staged", &self.staged.len())
            .finish_non_exhaustive()
    }
}

impl ActionContext {
    /// The action's name.
    pub fn action(&self) -> &'static str {
        self.action
    }

    /// The idempotency key of this execution: pass it to external services (e.g. as an
    /// `Idempotency-Key` header) so that their effects are deduplicated too.
    pub fn idempotency_key(&self) -> &str {
        &self.key
    }

    /// 1 for the first attempt; higher after a takeover of an expired lease.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The id of this invocation (the Lambda request id, the SQS message id, …).
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The invocation's deadline in Unix milliseconds, when there is one.
    pub fn deadline_ms(&self) -> Option<i64> {
        self.deadline_ms
    }

    /// Where the invocation came from.
    pub fn source(&self) -> Source {
        self.source
    }

    /// The correlation id (e.g. the Step Functions execution ARN).
    pub fn correlation_id(&self) -> Option<&str> {
        self.correlation_id.as_deref()
    }

    /// Who called, when known (the API key's name, the IAM principal).
    pub fn caller(&self) -> Option<&str> {
        self.caller.as_deref()
    }

    /// Read an entity with a strongly consistent read. A write staged earlier in this
    /// execution is seen instead of the stored item (`None` after a staged delete).
    pub async fn get(&self, key: &EntityKey) -> Result<Option<Entity>, ActionError> {
        if let Some(staged) = self.staged.iter().find(|w| w.key() == key) {
            return Ok(match staged {
                StagedWrite::Put { doc, expect, .. } => Some(Entity {
                    key: key.clone(),
                    doc: doc.clone(),
                    // What the version will be once committed; 0 when unknown (`Expect::Any`).
                    version: match expect {
                        Expect::Absent => 1,
                        Expect::Version(v) => v + 1,
                        Expect::Any => 0,
                    },
                }),
                StagedWrite::Delete { .. } => None,
            });
        }
        Ok(self.store.get_entity(key).await?)
    }

    /// [`get`](Self::get) and deserialize the document.
    pub async fn get_as<T: DeserializeOwned>(
        &self,
        key: &EntityKey,
    ) -> Result<Option<(T, u64)>, ActionError> {
        match self.get(key).await? {
            None => Ok(None),
            Some(entity) => {
                let doc = serde_json::from_value(entity.doc).map_err(|e| {
                    ActionError::internal(format!("entity {key} does not match its type: {e}"))
                })?;
                Ok(Some((doc, entity.version)))
            }
        }
    }

    /// Stage a put of `doc` (a JSON object) under `key`, applied only if the execution
    /// completes and `expect` holds then. A key or document DynamoDB would refuse
    /// ([`crate::limits`]: empty or long keys, numbers out of range, nesting over 32
    /// levels, empty map keys, items over 400 KB) is `ActionDo.Validation` at once. The stored version becomes 1 for a new item and
    /// the old version + 1 otherwise. A second write to the same key in one execution
    /// replaces the first and keeps the first's expectation.
    pub fn put(
        &mut self,
        key: EntityKey,
        doc: &impl Serialize,
        expect: Expect,
    ) -> Result<(), ActionError> {
        let doc = serde_json::to_value(doc)
            .map_err(|e| ActionError::internal(format!("entity {key} does not serialize: {e}")))?;
        if !doc.is_object() {
            return Err(ActionError::internal(format!(
                "entity {key} must be a JSON object, got {doc}"
            )));
        }
        self.stage(StagedWrite::Put { key, doc, expect })
    }

    /// Stage a delete of `key`, applied only if the execution completes and `expect` holds.
    pub fn delete(&mut self, key: EntityKey, expect: Expect) -> Result<(), ActionError> {
        self.stage(StagedWrite::Delete { key, expect })
    }

    /// The writes staged so far.
    pub fn staged(&self) -> &[StagedWrite] {
        &self.staged
    }

    fn stage(&mut self, mut write: StagedWrite) -> Result<(), ActionError> {
        // A write DynamoDB would refuse fails here, on every store, naming the limit — not
        // at the commit, after the handler's other effects.
        crate::limits::check_staged_write(&write).map_err(|limit| {
            ActionError::validation(format!("entity write refused: {limit}"))
                .with_details(limit.details())
        })?;
        if let Some(existing) = self.staged.iter_mut().find(|w| w.key() == write.key()) {
            write.set_expect(existing.expect());
            *existing = write;
            return Ok(());
        }
        if self.staged.len() >= MAX_STAGED_WRITES {
            return Err(ActionError::internal(format!(
                "an execution may stage at most {MAX_STAGED_WRITES} entity writes"
            )));
        }
        self.staged.push(write);
        Ok(())
    }
}
