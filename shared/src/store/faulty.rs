//! Test support (feature `testing`). [`FaultyStore`]: a wrapper that makes chosen primitives fail, to prove that store
//! failures surface as `ActionDo.Transient` and leave no partial state.

use std::sync::Mutex;

use async_trait::async_trait;

use crate::audit::{AuditPage, AuditQuery, AuditRecord};
use crate::error::StoreError;
use crate::store::{
    Claim, ClaimOutcome, Commit, CommitOutcome, Entity, EntityKey, Expect, IdempotencyRecord,
    ObjectStore, RecordWrite, Store,
};

/// A store primitive that can be made to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The conditional claim.
    Claim,
    /// A commit that completes or fails the record (claim mode) or inserts it (optimistic).
    CommitOutcome,
    /// A commit that releases the record.
    Release,
    /// A lone audit put.
    PutAudit,
    /// The claim applies, its answer is lost, and it is sent again (as the SDK resends a
    /// request whose answer did not arrive): the second answer is returned.
    LoseClaimAnswer,
    /// A commit that completes, fails or inserts the record applies, and its answer is
    /// lost: the caller sees a timeout.
    LoseCommitAnswer,
    /// A commit that completes, fails or inserts the record is refused as DynamoDB refuses
    /// a request it can never accept (a `ValidationException`), with nothing written.
    RefuseCommit,
    /// Before a commit, the lease is stolen: the record is rewritten with another owner,
    /// as if this attempt had stalled past its lease and another had taken over.
    StealLease,
    /// An entity read (an API key's lookup), failing with the kind of text an AWS SDK
    /// error carries (operation, table ARN, account id), which no client may see.
    GetEntity,
    /// An idempotency record read, failing the same way.
    GetRecord,
    /// An audit query, failing the same way.
    QueryAudit,
    /// A lone entity put ([`Store::put_entity`]).
    PutEntity,
    /// The put of a result object ([`ObjectStore::put`]), before anything is written.
    PutObject,
    /// The read of a result object ([`ObjectStore::get`]).
    GetObject,
}

/// The text of an injected read failure: what DynamoDB's SDK says when a request times
/// out, table ARN and account id included.
pub const AWS_FAILURE_TEXT: &str = "DynamoDB GetItem: dispatch failure: timeout: \
    arn:aws:dynamodb:eu-west-1:123456789012:table/actiondo-entities (RequestId: \
    QX7N2KJ3V1UOL0F4M5P6R8S9T0AAJG)";

/// Wraps a store; each armed fault fires once on the next matching call, before the
/// inner store is touched (so the failed call wrote nothing), as a timeout would.
#[derive(Debug)]
pub struct FaultyStore<S> {
    inner: S,
    armed: Mutex<Vec<Fault>>,
}

impl<S: Store> FaultyStore<S> {
    /// Wrap `inner` with no fault armed.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            armed: Mutex::new(Vec::new()),
        }
    }

    /// Make the next call of `fault`'s kind fail.
    pub fn arm(&self, fault: Fault) {
        self.armed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(fault);
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn take(&self, fault: Fault) -> bool {
        let mut armed = self.armed.lock().unwrap_or_else(|p| p.into_inner());
        match armed.iter().position(|f| *f == fault) {
            Some(i) => {
                armed.remove(i);
                true
            }
            None => false,
        }
    }

    fn aws_like() -> StoreError {
        StoreError::unavailable(
            "DynamoDB read",
            std::io::Error::new(std::io::ErrorKind::TimedOut, AWS_FAILURE_TEXT),
        )
    }

    fn injected(what: &str) -> StoreError {
        StoreError::Unavailable {
            message: format!("injected fault: {what} timed out"),
            source: None,
        }
    }
}

#[async_trait]
impl<S: Store> Store for FaultyStore<S> {
    async fn claim(&self, claim: &Claim) -> Result<ClaimOutcome, StoreError> {
        if self.take(Fault::Claim) {
            return Err(Self::injected("claim"));
        }
        if self.take(Fault::LoseClaimAnswer) {
            self.inner.claim(claim).await?;
        }
        self.inner.claim(claim).await
    }

    async fn commit(&self, commit: &Commit) -> Result<CommitOutcome, StoreError> {
        let fault = match commit.record {
            RecordWrite::Release { .. } => Fault::Release,
            _ => Fault::CommitOutcome,
        };
        if self.take(fault) {
            return Err(Self::injected("commit"));
        }
        if fault == Fault::CommitOutcome {
            if self.take(Fault::RefuseCommit) {
                return Err(StoreError::Refused("injected fault: commit refused".into()));
            }
            if self.take(Fault::LoseCommitAnswer) {
                self.inner.commit(commit).await?;
                return Err(Self::injected("commit answer"));
            }
        }
        if let RecordWrite::Finish { id, .. } = &commit.record
            && self.take(Fault::StealLease)
            && let Some(record) = self.inner.get_record(id).await?
        {
            // Another attempt, far in the future, finds our lease expired and takes it.
            let thief = Claim {
                id: id.clone(),
                payload_hash: record.payload_hash,
                lease_owner: "another-attempt".into(),
                lease_expires_at_ms: i64::MAX / 2,
                expires_at_s: i64::MAX / 2000,
                now_ms: i64::MAX / 4,
            };
            self.inner.claim(&thief).await?;
        }
        self.inner.commit(commit).await
    }

    async fn put_audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        if self.take(Fault::PutAudit) {
            return Err(Self::injected("audit put"));
        }
        self.inner.put_audit(record).await
    }

    async fn put_audits(&self, records: &[AuditRecord]) -> Result<(), StoreError> {
        if self.take(Fault::PutAudit) {
            return Err(Self::injected("audit put"));
        }
        self.inner.put_audits(records).await
    }

    async fn get_record(&self, id: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        if self.take(Fault::GetRecord) {
            return Err(Self::aws_like());
        }
        self.inner.get_record(id).await
    }

    async fn get_entity(&self, key: &EntityKey) -> Result<Option<Entity>, StoreError> {
        if self.take(Fault::GetEntity) {
            return Err(Self::aws_like());
        }
        self.inner.get_entity(key).await
    }

    async fn query_audit(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        if self.take(Fault::QueryAudit) {
            return Err(Self::aws_like());
        }
        self.inner.query_audit(query).await
    }

    async fn put_entity(
        &self,
        key: &EntityKey,
        doc: &serde_json::Value,
        expect: Expect,
    ) -> Result<bool, StoreError> {
        if self.take(Fault::PutEntity) {
            return Err(Self::injected("entity put"));
        }
        self.inner.put_entity(key, doc, expect).await
    }

    /// The inner store's object store, through this wrapper (so its faults apply).
    fn objects(&self) -> Option<&dyn ObjectStore> {
        self.inner.objects().map(|_| self as &dyn ObjectStore)
    }
}

/// The inner store's object store with the faults [`Fault::PutObject`] and
/// [`Fault::GetObject`]; only reached through [`Store::objects`], which answers `None`
/// when the inner store has none.
#[async_trait]
impl<S: Store> ObjectStore for FaultyStore<S> {
    fn bucket(&self) -> &str {
        self.inner.objects().map_or("", |o| o.bucket())
    }

    async fn put(&self, key: &str, body: Vec<u8>, gzip: bool) -> Result<(), StoreError> {
        if self.take(Fault::PutObject) {
            return Err(Self::injected("object put"));
        }
        match self.inner.objects() {
            Some(objects) => objects.put(key, body, gzip).await,
            None => Err(StoreError::InvalidRequest("no object store".into())),
        }
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if self.take(Fault::GetObject) {
            return Err(Self::injected("object get"));
        }
        match self.inner.objects() {
            Some(objects) => objects.get(bucket, key).await,
            None => Err(StoreError::InvalidRequest("no object store".into())),
        }
    }
}
