//! Storage: the records of docs/architecture.md §5 and the [`Store`] trait that each backend implements
//! with the same semantics.
//!
//! A store has few primitives — a conditional claim, one atomic commit, an audit put,
//! and reads. Every decision about what a stored record *means* (claimable, replayable,
//! in progress, mismatched) is made once, in this module and in the executor, never in
//! a backend.

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audit::{AuditPage, AuditQuery, AuditRecord};
use crate::error::StoreError;

#[cfg(all(feature = "testing", feature = "dynamodb"))]
mod call_counter;
#[cfg(feature = "dynamodb")]
pub mod dynamodb;
#[cfg(feature = "testing")]
pub mod faulty;
mod gzip;
pub mod objects;
#[cfg(feature = "aws")]
pub mod s3;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use objects::{MAX_RESULT_BYTES, ObjectRef, ObjectStore};

#[cfg(test)]
pub(crate) mod tests {
    use super::StoreConfig;

    #[test]
    fn store_config_parses_the_documented_forms() {
        assert_eq!(
            "dynamodb".parse::<StoreConfig>().ok(),
            Some(StoreConfig::DynamoDb)
        );
        assert_eq!(
            "sqlite:/tmp/x.db".parse::<StoreConfig>().ok(),
            Some(StoreConfig::Sqlite("/tmp/x.db".into()))
        );
        assert_eq!(
            "sqlite::memory:".parse::<StoreConfig>().ok(),
            Some(StoreConfig::SqliteMemory)
        );
        assert!("postgres://x".parse::<StoreConfig>().is_err());
    }

    /// Texts that compress well, not at all, and in between, of the sizes results take.
    pub(crate) fn texts() -> Vec<String> {
        let mut seed = 7u64;
        let mut noise = |len: usize| -> String {
            (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    char::from(b'!' + (seed >> 58) as u8)
                })
                .collect()
        };
        vec![
            format!("{{\"a\":\"{}\"}}", "x".repeat(600)),
            serde_json::json!({"items": (0..12).map(|i| serde_json::json!({"feature": format!("f-{i}"), "limit": i * 1000})).collect::<Vec<_>>()}).to_string(),
            noise(1_000),
            noise(100_000),
            format!("{}{}", noise(70_000), "y".repeat(200_000)),
        ]
    }

    /// Every form decodes to the text it stores.
    #[test]
    fn stored_results_decode_to_their_text() {
        for text in texts() {
            let stored = super::StoredResult::compress(text.clone());
            assert_eq!(stored.decode().expect("decodes"), text);
        }
        let stored = super::StoredResult::compress("{}".repeat(400));
        assert!(matches!(stored, super::StoredResult::Gzip(_)));
        // A member whose trailer is damaged is refused, not read.
        let super::StoredResult::Gzip(mut bytes) = stored else {
            unreachable!()
        };
        let last = bytes.len() - 5;
        bytes[last] ^= 1;
        assert!(super::StoredResult::Gzip(bytes).decode().is_err());
    }
}

/// The environment variable that selects a store: `sqlite:PATH`, `sqlite::memory:` or
/// `dynamodb`.
pub const STORE_ENV: &str = "ACTIONDO_STORE";

/// Which store to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// The embedded store in this file.
    Sqlite(std::path::PathBuf),
    /// A private embedded store in memory.
    SqliteMemory,
    /// DynamoDB, configured by [`dynamodb::DynamoStore::from_env`].
    DynamoDb,
}

impl std::str::FromStr for StoreConfig {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "dynamodb" => Ok(StoreConfig::DynamoDb),
            "sqlite::memory:" => Ok(StoreConfig::SqliteMemory),
            "sqlite" => Ok(StoreConfig::Sqlite(sqlite_default_path())),
            _ => match s.strip_prefix("sqlite:") {
                Some(path) if !path.is_empty() => Ok(StoreConfig::Sqlite(path.into())),
                _ => Err(StoreError::InvalidRequest(format!(
                    "{STORE_ENV}={s:?} is not a store; use sqlite:PATH, sqlite::memory: or dynamodb"
                ))),
            },
        }
    }
}

fn sqlite_default_path() -> std::path::PathBuf {
    ".actiondo/actiondo.db".into()
}

impl StoreConfig {
    /// The store named by `ACTIONDO_STORE` in the process environment, or `default` when
    /// it is unset.
    pub fn from_env_or(default: StoreConfig) -> Result<Self, StoreError> {
        Self::from_settings_or(&crate::config::Settings::from_env(), default)
    }

    /// The store named by `ACTIONDO_STORE` in `settings`, or `default` when it is unset
    /// or blank.
    pub fn from_settings_or(
        settings: &crate::config::Settings,
        default: StoreConfig,
    ) -> Result<Self, StoreError> {
        match settings.get_str(STORE_ENV) {
            Some(value) => value.parse(),
            None => Ok(default),
        }
    }

    /// The kind of store: `SQLite` or `DynamoDB`.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreConfig::Sqlite(_) | StoreConfig::SqliteMemory => "SQLite",
            StoreConfig::DynamoDb => "DynamoDB",
        }
    }

    /// The embedded store in its default file, `.actiondo/actiondo.db`.
    pub fn sqlite_default() -> Self {
        StoreConfig::Sqlite(sqlite_default_path())
    }

    /// Open the store (for DynamoDB: the AWS configuration and table names from the
    /// process environment).
    pub async fn open(&self) -> Result<std::sync::Arc<dyn Store>, StoreError> {
        self.open_with(&crate::config::Settings::from_env()).await
    }

    /// Open the store; DynamoDB's AWS configuration and table names come from `settings`.
    pub async fn open_with(
        &self,
        #[allow(unused_variables)] settings: &crate::config::Settings,
    ) -> Result<std::sync::Arc<dyn Store>, StoreError> {
        match self {
            #[cfg(feature = "sqlite")]
            StoreConfig::Sqlite(path) => Ok(std::sync::Arc::new(sqlite::SqliteStore::open(path)?)),
            #[cfg(feature = "sqlite")]
            StoreConfig::SqliteMemory => Ok(std::sync::Arc::new(sqlite::SqliteStore::in_memory()?)),
            #[cfg(feature = "dynamodb")]
            StoreConfig::DynamoDb => Ok(std::sync::Arc::new(dynamodb::DynamoStore::from_settings(
                settings,
            )?)),
            #[allow(unreachable_patterns)]
            other => Err(StoreError::InvalidRequest(format!(
                "this program is built without the {} store: enable the actiondo feature \
                 `{}` (a function: `cargo lambda build --features sqlite`)",
                other.kind(),
                other.kind().to_ascii_lowercase()
            ))),
        }
    }
}

/// The state of an idempotency record. `EXPIRED` is computed from `expires_at_s`, never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RecordStatus {
    /// An attempt holds the lease.
    InProgress,
    /// Done; `result` is replayed.
    Completed,
    /// Failed terminally; `error` is replayed.
    Failed,
}

impl RecordStatus {
    /// The stored name: `IN_PROGRESS`, `COMPLETED` or `FAILED`.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordStatus::InProgress => "IN_PROGRESS",
            RecordStatus::Completed => "COMPLETED",
            RecordStatus::Failed => "FAILED",
        }
    }

    /// Parse a stored name.
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "IN_PROGRESS" => Ok(RecordStatus::InProgress),
            "COMPLETED" => Ok(RecordStatus::Completed),
            "FAILED" => Ok(RecordStatus::Failed),
            other => Err(StoreError::Corrupt(format!(
                "unknown record status {other:?}"
            ))),
        }
    }
}

/// A stored result: JSON text, gzip-compressed when large, or a reference to an object
/// holding it when even that does not fit in the record (docs/architecture.md §4.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredResult {
    /// The JSON text of the output, as the handler produced it.
    Json(String),
    /// The same text, gzip-compressed.
    Gzip(Vec<u8>),
    /// The object that holds the text ([`objects`]); read it with
    /// [`ObjectStore::get`] and [`ObjectRef::decode`]. Boxed: records stay small.
    Object(Box<ObjectRef>),
}

/// Text (a result, audit `details`) longer than this is stored gzip-compressed when that
/// makes it smaller. DynamoDB bills a write per started KB of the item (twice in a
/// transaction), and the record's other attributes take about 350 bytes, an audit
/// record's about 500: text above 512 bytes would push either into a second KB
/// (docs/architecture.md §4.6).
pub const COMPRESS_ABOVE_BYTES: usize = 512;

impl StoredResult {
    /// JSON text as stored: as is up to [`COMPRESS_ABOVE_BYTES`]; above, gzip-compressed
    /// unless that is no smaller (random text). The form of every piece of caller data in
    /// records and audit (`result`, `details`): text, never a DynamoDB map, so that no
    /// number, depth or key of the caller's JSON can be refused. Readers tell the forms
    /// apart by their type (text or bytes), never by their size, so records written under
    /// another threshold read the same.
    pub fn compress(json: String) -> Self {
        if json.len() <= COMPRESS_ABOVE_BYTES {
            return StoredResult::Json(json);
        }
        match gzip::compress_smaller(json.as_bytes()) {
            Some(compressed) => StoredResult::Gzip(compressed),
            // No smaller: keep the text.
            None => StoredResult::Json(json),
        }
    }

    /// The JSON text, decompressed if needed. An [`Object`](Self::Object) is not here:
    /// `StoreError::Corrupt` (the executor reads it from its object store).
    pub fn decode(&self) -> Result<String, StoreError> {
        match self {
            StoredResult::Json(s) => Ok(s.clone()),
            StoredResult::Gzip(bytes) => gzip::decompress(bytes).map_err(|e| {
                StoreError::Corrupt(format!("stored result does not decompress: {e}"))
            }),
            StoredResult::Object(reference) => Err(StoreError::Corrupt(format!(
                "the result is in the object {reference}, not in the record"
            ))),
        }
    }

    /// The number of bytes this takes in the store (for a reference, the reference's).
    pub fn stored_len(&self) -> usize {
        match self {
            StoredResult::Json(s) => s.len(),
            StoredResult::Gzip(b) => b.len(),
            StoredResult::Object(reference) => reference.stored_len(),
        }
    }
}

/// A row of the idempotency table, keyed by `{action}#{key}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// `{action}#{key}`.
    pub id: String,
    /// The stored status.
    pub status: RecordStatus,
    /// SHA-256 (hex) of the canonical JSON of the input.
    pub payload_hash: String,
    /// How many times the record has been claimed (1 on a first execution).
    pub attempt: u32,
    /// The id of the attempt that holds (or held) the lease.
    pub lease_owner: String,
    /// When the lease ends, Unix milliseconds.
    pub lease_expires_at_ms: i64,
    /// When the record expires (DynamoDB TTL), Unix seconds.
    pub expires_at_s: i64,
    /// The output of a completed execution.
    pub result: Option<StoredResult>,
    /// The error body (JSON text) of a failed execution.
    pub error: Option<String>,
    /// When the record was first claimed, Unix milliseconds.
    pub created_at_ms: i64,
    /// When it completed or failed, Unix milliseconds.
    pub completed_at_ms: Option<i64>,
}

impl IdempotencyRecord {
    /// Whether the record has passed its retention (`expires_at_s < now`).
    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.expires_at_s < now_ms.div_euclid(1000)
    }

    /// Whether the record was released: an attempt failed in a way a retry may fix and gave
    /// its lease back (`IN_PROGRESS` with `lease_expires_at_ms` = [`RELEASED_LEASE_MS`]).
    /// The record stays, so the next claim of the same payload continues its attempts.
    pub fn is_released(&self) -> bool {
        self.status == RecordStatus::InProgress && self.lease_expires_at_ms == RELEASED_LEASE_MS
    }

    /// Whether a claim of this record takes over an abandoned attempt (an `IN_PROGRESS`
    /// whose holder never committed nor released), as opposed to a released one.
    pub fn is_abandoned(&self) -> bool {
        self.status == RecordStatus::InProgress && !self.is_released()
    }

    /// Whether a claim with `payload_hash` at `now_ms` may take this record: it expired,
    /// or it is an abandoned `IN_PROGRESS` (lease over) of the same payload. This is the
    /// condition of docs/architecture.md §4; the DynamoDB store states it as a condition expression.
    pub fn is_claimable(&self, payload_hash: &str, now_ms: i64) -> bool {
        self.is_expired(now_ms)
            || (self.status == RecordStatus::InProgress
                && self.lease_expires_at_ms < now_ms
                && self.payload_hash == payload_hash)
    }
}

/// The `lease_expires_at_ms` of a released record: its lease ended when it was released,
/// and the value tells a release from an abandoned lease.
pub const RELEASED_LEASE_MS: i64 = 0;

/// A request to claim `{action}#{key}` for one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// `{action}#{key}`.
    pub id: String,
    /// SHA-256 (hex) of the canonical input.
    pub payload_hash: String,
    /// A fresh id for this attempt.
    pub lease_owner: String,
    /// When this attempt's lease ends.
    pub lease_expires_at_ms: i64,
    /// When the record expires if nothing completes it.
    pub expires_at_s: i64,
    /// The time of the claim, Unix milliseconds.
    pub now_ms: i64,
}

impl Claim {
    /// The record this claim leaves when it takes the key as attempt `attempt`:
    /// `IN_PROGRESS`, leased to its owner, with no outcome yet.
    pub fn in_progress(&self, attempt: u32) -> IdempotencyRecord {
        IdempotencyRecord {
            id: self.id.clone(),
            status: RecordStatus::InProgress,
            payload_hash: self.payload_hash.clone(),
            attempt,
            lease_owner: self.lease_owner.clone(),
            lease_expires_at_ms: self.lease_expires_at_ms,
            expires_at_s: self.expires_at_s,
            result: None,
            error: None,
            created_at_ms: self.now_ms,
            completed_at_ms: None,
        }
    }
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The lease is ours.
    Claimed {
        /// The attempt number now stored.
        attempt: u32,
        /// Whether an abandoned `IN_PROGRESS` of an earlier attempt was taken over.
        taken_over: bool,
    },
    /// The condition failed; this is the record that stopped it.
    Existing(IdempotencyRecord),
}

/// How the completion transaction treats the idempotency record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordWrite {
    /// Claim mode: turn our `IN_PROGRESS` into `COMPLETED` or `FAILED`; the condition is
    /// `status = IN_PROGRESS AND lease_owner = :me`.
    Finish {
        /// `{action}#{key}`.
        id: String,
        /// Our lease.
        lease_owner: String,
        /// `Completed` or `Failed`.
        status: RecordStatus,
        /// The output, for `Completed`.
        result: Option<StoredResult>,
        /// The error body, for `Failed`.
        error: Option<String>,
        /// Now.
        completed_at_ms: i64,
        /// End of retention.
        expires_at_s: i64,
    },
    /// Claim mode, retryable failure: end our lease now (`lease_expires_at_ms` =
    /// [`RELEASED_LEASE_MS`]) and keep the record, so a retry of the same payload claims
    /// it again as the next attempt; the condition is
    /// `status = IN_PROGRESS AND lease_owner = :me`.
    Release {
        /// `{action}#{key}`.
        id: String,
        /// Our lease.
        lease_owner: String,
    },
    /// Optimistic mode: put the finished record if there is none or it expired.
    Insert {
        /// The complete record.
        record: IdempotencyRecord,
        /// Now, Unix milliseconds (for the expiry condition).
        now_ms: i64,
    },
    /// No record write: only the audit record (an optimistic retryable failure).
    None,
}

/// One atomic commit: the record write, the audit record and the staged entity writes,
/// all or nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Commit {
    /// What happens to the idempotency record.
    pub record: RecordWrite,
    /// The audit record of this attempt (written with `attribute_not_exists`).
    pub audit: AuditRecord,
    /// The entity writes, each with its condition.
    pub writes: Vec<StagedWrite>,
}

/// What a commit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Everything was written.
    Committed,
    /// The record condition failed in claim mode: the lease is not ours any more. Nothing
    /// was written.
    LeaseLost,
    /// The condition of staged write number `index` failed. Nothing was written.
    EntityConflict {
        /// Index into [`Commit::writes`].
        index: usize,
    },
    /// Optimistic mode: a live record exists (returned). Nothing was written.
    Exists(IdempotencyRecord),
}

/// The primary key of an entity: partition `pk`, sort `sk`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EntityKey {
    /// Partition key.
    pub pk: String,
    /// Sort key.
    pub sk: String,
}

impl EntityKey {
    /// `EntityKey { pk, sk }`.
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Self {
            pk: pk.into(),
            sk: sk.into(),
        }
    }
}

impl fmt::Display for EntityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.pk, self.sk)
    }
}

/// An item of the entity table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    /// Its key.
    pub key: EntityKey,
    /// The document (a JSON object).
    pub doc: Value,
    /// Incremented by every write; 1 after the first.
    pub version: u64,
}

/// The condition of a staged write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expect {
    /// The item must not exist.
    Absent,
    /// The item must exist with this version.
    Version(u64),
    /// No condition.
    Any,
}

impl Expect {
    /// Whether an item with `current` version (None: absent) satisfies the condition.
    pub fn holds(self, current: Option<u64>) -> bool {
        match self {
            Expect::Absent => current.is_none(),
            Expect::Version(v) => current == Some(v),
            Expect::Any => true,
        }
    }
}

/// A write to the entity table, applied only by the completion transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum StagedWrite {
    /// Put `doc` under `key`; the version becomes the old one + 1 (1 for a new item).
    Put {
        /// The item.
        key: EntityKey,
        /// Its document.
        doc: Value,
        /// The condition.
        expect: Expect,
    },
    /// Delete `key`.
    Delete {
        /// The item.
        key: EntityKey,
        /// The condition.
        expect: Expect,
    },
}

impl StagedWrite {
    /// The key written.
    pub fn key(&self) -> &EntityKey {
        match self {
            StagedWrite::Put { key, .. } | StagedWrite::Delete { key, .. } => key,
        }
    }

    /// The condition.
    pub fn expect(&self) -> Expect {
        match self {
            StagedWrite::Put { expect, .. } | StagedWrite::Delete { expect, .. } => *expect,
        }
    }

    pub(crate) fn set_expect(&mut self, new: Expect) {
        match self {
            StagedWrite::Put { expect, .. } | StagedWrite::Delete { expect, .. } => *expect = new,
        }
    }
}

/// The persistence primitives every backend implements with the same semantics
/// (proven by one conformance suite run against each).
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// One conditional write: take `claim.id` if it does not exist or
    /// [`IdempotencyRecord::is_claimable`]; otherwise return the record that stopped it,
    /// without a second read.
    async fn claim(&self, claim: &Claim) -> Result<ClaimOutcome, StoreError>;

    /// One atomic transaction: the record write, the audit record and the entity writes.
    async fn commit(&self, commit: &Commit) -> Result<CommitOutcome, StoreError>;

    /// Put one audit record on its own (replays, rejections); never overwrites.
    async fn put_audit(&self, record: &AuditRecord) -> Result<(), StoreError>;

    /// Put several audit records on their own (the replays and rejections of an SQS
    /// batch), as few requests as the store allows; never overwrites. Not atomic: on an
    /// error, some of them may be written. By default, one [`put_audit`](Self::put_audit)
    /// each.
    async fn put_audits(&self, records: &[AuditRecord]) -> Result<(), StoreError> {
        for record in records {
            self.put_audit(record).await?;
        }
        Ok(())
    }

    /// Read an idempotency record (strongly consistent).
    async fn get_record(&self, id: &str) -> Result<Option<IdempotencyRecord>, StoreError>;

    /// Read an entity (strongly consistent).
    async fn get_entity(&self, key: &EntityKey) -> Result<Option<Entity>, StoreError>;

    /// Audit records, newest first, one page at a time.
    async fn query_audit(&self, query: &AuditQuery) -> Result<AuditPage, StoreError>;

    /// One conditional entity put outside any execution, with no idempotency or audit
    /// record: bookkeeping that is no unit of work (when an API key was last used). The
    /// version becomes the old one + 1 (1 for a new item), as in a commit. `Ok(false)` when
    /// `expect` does not hold: nothing was written.
    async fn put_entity(
        &self,
        key: &EntityKey,
        doc: &Value,
        expect: Expect,
    ) -> Result<bool, StoreError>;

    /// Where results too large for their record go (docs/architecture.md §4.6): the S3
    /// bucket of `ACTIONDO_RESULTS_BUCKET` for DynamoDB, the `objects` table of the
    /// embedded store. `None` (the default): such results are `ActionDo.Validation`.
    fn objects(&self) -> Option<&dyn ObjectStore> {
        None
    }
}

#[async_trait]
impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    async fn claim(&self, claim: &Claim) -> Result<ClaimOutcome, StoreError> {
        (**self).claim(claim).await
    }

    async fn commit(&self, commit: &Commit) -> Result<CommitOutcome, StoreError> {
        (**self).commit(commit).await
    }

    async fn put_audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        (**self).put_audit(record).await
    }

    async fn put_audits(&self, records: &[AuditRecord]) -> Result<(), StoreError> {
        (**self).put_audits(records).await
    }

    async fn get_record(&self, id: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        (**self).get_record(id).await
    }

    async fn get_entity(&self, key: &EntityKey) -> Result<Option<Entity>, StoreError> {
        (**self).get_entity(key).await
    }

    async fn query_audit(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        (**self).query_audit(query).await
    }

    async fn put_entity(
        &self,
        key: &EntityKey,
        doc: &Value,
        expect: Expect,
    ) -> Result<bool, StoreError> {
        (**self).put_entity(key, doc, expect).await
    }

    fn objects(&self) -> Option<&dyn ObjectStore> {
        (**self).objects()
    }
}
