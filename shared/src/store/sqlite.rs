//! The embedded store: the three tables of docs/architecture.md §5 in one SQLite file, with the same
//! semantics as DynamoDB.
//!
//! Each write primitive is one SQLite transaction begun with `BEGIN IMMEDIATE` (the write
//! lock is taken first, so a condition checked inside cannot change before the write). The
//! file is in WAL mode with a busy timeout, so several processes can share it. Within a
//! process a file has two connections: one for writes, owned by a writer thread that
//! commits the writes of concurrent callers in one transaction (each in a savepoint of its
//! own, each answered once that transaction is committed: [`writer`]), and one for reads,
//! which WAL lets run beside the writes. A store in memory has one connection, used in
//! place.
//!
//! What a write stores as text (the audit record's JSON, an entity's document) is built
//! before the write is handed over, outside the write lock.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use crate::audit::{AuditFilter, AuditPage, AuditQuery, AuditRecord};
use crate::error::StoreError;
use crate::limits;
use crate::store::{
    Claim, ClaimOutcome, Commit, CommitOutcome, Entity, EntityKey, Expect, IdempotencyRecord,
    ObjectRef, ObjectStore, RELEASED_LEASE_MS, RecordStatus, RecordWrite, StagedWrite, Store,
    StoredResult,
};

mod writer;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS idempotency (
    id                  TEXT PRIMARY KEY,
    status              TEXT NOT NULL,
    payload_hash        TEXT NOT NULL,
    attempt             INTEGER NOT NULL,
    lease_owner         TEXT NOT NULL,
    lease_expires_at_ms INTEGER NOT NULL,
    expires_at_s        INTEGER NOT NULL,
    result_json         TEXT,
    result_gz           BLOB,
    error               TEXT,
    created_at_ms       INTEGER NOT NULL,
    completed_at_ms     INTEGER,
    result_ref          TEXT
);
CREATE TABLE IF NOT EXISTS audit (
    execution      TEXT NOT NULL,
    seq            TEXT NOT NULL,
    type           TEXT NOT NULL,
    timestamp      TEXT NOT NULL,
    correlation_id TEXT,
    record         TEXT NOT NULL,
    PRIMARY KEY (execution, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS audit_by_time ON audit (timestamp, execution, seq);
CREATE INDEX IF NOT EXISTS audit_by_type ON audit (type, timestamp);
-- The records with a correlation id only, as DynamoDB's index of them: a record without
-- one costs no entry. Files of earlier versions indexed every record.
DROP INDEX IF EXISTS audit_by_correlation;
CREATE INDEX IF NOT EXISTS audit_by_correlation_id ON audit (correlation_id, timestamp)
    WHERE correlation_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS objects (
    bucket TEXT NOT NULL,
    key    TEXT NOT NULL,
    body   BLOB NOT NULL,
    gzip   INTEGER NOT NULL,
    PRIMARY KEY (bucket, key)
);
CREATE TABLE IF NOT EXISTS entities (
    pk      TEXT NOT NULL,
    sk      TEXT NOT NULL,
    doc     TEXT NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (pk, sk)
) WITHOUT ROWID;
";

/// The embedded SQLite store.
#[derive(Debug)]
pub struct SqliteStore {
    db: Db,
    path: Option<PathBuf>,
    /// Whether results too large for a record go to the `objects` table.
    objects: bool,
}

/// How the store reaches its database.
#[derive(Debug)]
enum Db {
    /// In memory: the one connection that sees the database, used in place under a lock.
    Memory(Mutex<Connection>),
    /// A file: writes through the writer thread, reads on a connection of their own.
    File {
        writer: writer::Writer,
        reader: Mutex<Connection>,
    },
}

/// The bucket name of the embedded store's result objects (its `objects` table).
pub const LOCAL_BUCKET: &str = "local";

/// The size the WAL file is cut back to after a checkpoint, whatever size the largest
/// batch of writes grew it to (bytes).
const WAL_SIZE_LIMIT: i64 = 64 << 20;

/// What a failure says when another connection holds the file.
const BUSY_MESSAGE: &str = "the SQLite database is locked by another process";

/// Whether `e` says that another connection holds the file (busy, locked).
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
    if matches!(
        f.code,
        rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
    ))
}

fn db_err(e: rusqlite::Error) -> StoreError {
    if is_busy(&e) {
        StoreError::unavailable(BUSY_MESSAGE, e)
    } else {
        StoreError::unavailable("SQLite", e)
    }
}

impl SqliteStore {
    /// Open (creating if needed) the store in the file at `path`, and its parent folder.
    ///
    /// `":memory:"` is [`in_memory`](Self::in_memory); any other name SQLite would open
    /// as a database that is not a file of its own (a `file:` URI with `mode=memory`, an
    /// empty name) is refused (`StoreError::InvalidRequest`): the store's writing and
    /// reading connections must open the same file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        if path.as_os_str() == ":memory:" {
            return Self::in_memory();
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::unavailable(format!("creating {}", dir.display()), e))?;
        }
        let conn = Connection::open(path).map_err(db_err)?;
        conn.busy_timeout(Duration::from_secs(10)).map_err(db_err)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(db_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::InvalidRequest(format!(
                "{} is not a database file SQLite can share between connections (its journal \
                 mode is {mode}, not WAL); name a file, or use sqlite::memory: for a store in memory",
                path.display()
            )));
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db_err)?;
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)
            .map_err(db_err)?;
        init(&conn)?;
        // The reader opens the file once its tables exist; it never writes.
        let reader = Connection::open(path).map_err(db_err)?;
        reader
            .busy_timeout(Duration::from_secs(10))
            .map_err(db_err)?;
        reader
            .pragma_update(None, "query_only", true)
            .map_err(db_err)?;
        Ok(Self {
            db: Db::File {
                writer: writer::Writer::start(conn)?,
                reader: Mutex::new(reader),
            },
            path: Some(path.to_path_buf()),
            objects: true,
        })
    }

    /// A private store in memory (tests, benchmarks).
    pub fn in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory().map_err(db_err)?;
        init(&conn)?;
        Ok(Self {
            db: Db::Memory(Mutex::new(conn)),
            path: None,
            objects: true,
        })
    }

    /// This store without an object store: a result too large for its record is
    /// `ActionDo.Validation`, as with DynamoDB and no `ACTIONDO_RESULTS_BUCKET`.
    #[must_use]
    pub fn without_objects(mut self) -> Self {
        self.objects = false;
        self
    }

    /// The keys of the result objects in the `objects` table, in order (operators, tests).
    pub fn object_keys(&self) -> Result<Vec<String>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare("SELECT key FROM objects ORDER BY bucket, key")
                .map_err(db_err)?;
            stmt.query_map([], |row| row.get::<_, String>(0))
                .map_err(db_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)
        })
    }

    /// The file, unless in memory.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Run `f` on the reading connection, outside any write transaction (each statement
    /// reads the last committed state).
    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let conn = match &self.db {
            Db::Memory(conn) => conn,
            Db::File { reader, .. } => reader,
        };
        f(&conn.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Run `f` in a write transaction and answer its value once that is committed. `f`
    /// answers its value and whether its changes are kept: when not (a condition failed),
    /// or when `f` fails, whatever it wrote is rolled back. On a file, `f` runs on the
    /// writer thread, possibly in one transaction with other writes ([`writer`]).
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<(T, bool), StoreError> + Send + 'static,
        T: Send + 'static,
    {
        match &self.db {
            Db::Memory(conn) => in_place(conn, f),
            Db::File { writer, .. } => writer.write(f).await,
        }
    }
}

/// Run `f` in a write transaction of its own on `conn` (the store in memory): see
/// [`SqliteStore::write`].
fn in_place<T>(
    conn: &Mutex<Connection>,
    f: impl FnOnce(&Connection) -> Result<(T, bool), StoreError>,
) -> Result<T, StoreError> {
    let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_err)?;
    let (value, keep) = f(&tx)?;
    if keep {
        tx.commit().map_err(db_err)?;
    }
    // Otherwise the transaction rolls back on drop.
    Ok(value)
}

/// Create the tables (and bring files of earlier versions up to date).
fn init(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(SCHEMA).map_err(db_err)?;
    // Files written before results could live in objects.
    let has_ref: bool = conn
        .query_row(
            "SELECT COUNT(*) FROM pragma_table_info('idempotency') WHERE name = 'result_ref'",
            [],
            |row| row.get::<_, i64>(0),
        )
        .map_err(db_err)?
        > 0;
    if !has_ref {
        conn.execute_batch("ALTER TABLE idempotency ADD COLUMN result_ref TEXT")
            .map_err(db_err)?;
    }
    Ok(())
}

/// Run one write through the connection's statement cache (SQLite compiles each SQL text
/// once per connection).
fn exec(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<usize, StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut statement| statement.execute(params))
        .map_err(db_err)
}

const RECORD_COLUMNS: &str = "id, status, payload_hash, attempt, lease_owner, lease_expires_at_ms, \
     expires_at_s, result_json, result_gz, error, created_at_ms, completed_at_ms, result_ref";

fn read_record(row: &Row<'_>) -> rusqlite::Result<(IdempotencyRecord, String)> {
    let status: String = row.get(1)?;
    let result_json: Option<String> = row.get(7)?;
    let result_gz: Option<Vec<u8>> = row.get(8)?;
    let result_ref: Option<String> = row.get(12)?;
    // A reference that does not parse reads as no result: the executor says the record
    // is COMPLETED without one.
    let reference = result_ref
        .and_then(|text| serde_json::from_str::<ObjectRef>(&text).ok())
        .map(|reference| StoredResult::Object(Box::new(reference)));
    let record = IdempotencyRecord {
        id: row.get(0)?,
        status: RecordStatus::InProgress, // replaced below, once the text is checked
        payload_hash: row.get(2)?,
        attempt: row.get(3)?,
        lease_owner: row.get(4)?,
        lease_expires_at_ms: row.get(5)?,
        expires_at_s: row.get(6)?,
        result: reference
            .or(result_gz.map(StoredResult::Gzip))
            .or(result_json.map(StoredResult::Json)),
        error: row.get(9)?,
        created_at_ms: row.get(10)?,
        completed_at_ms: row.get(11)?,
    };
    Ok((record, status))
}

fn get_record(conn: &Connection, id: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
    let found = conn
        .prepare_cached(&format!(
            "SELECT {RECORD_COLUMNS} FROM idempotency WHERE id = ?1"
        ))
        .and_then(|mut statement| statement.query_row([id], read_record))
        .optional()
        .map_err(db_err)?;
    found
        .map(|(mut record, status)| {
            record.status = RecordStatus::parse(&status)?;
            Ok(record)
        })
        .transpose()
}

/// The `result_json`, `result_gz` and `result_ref` columns of a result.
fn result_columns(result: Option<&StoredResult>) -> (Option<&str>, Option<&[u8]>, Option<String>) {
    match result {
        Some(StoredResult::Json(s)) => (Some(s.as_str()), None, None),
        Some(StoredResult::Gzip(b)) => (None, Some(b.as_slice()), None),
        Some(StoredResult::Object(reference)) => {
            (None, None, serde_json::to_string(reference).ok())
        }
        None => (None, None, None),
    }
}

fn put_record(conn: &Connection, r: &IdempotencyRecord) -> Result<(), StoreError> {
    let (json, gz, reference) = result_columns(r.result.as_ref());
    exec(
        conn,
        &format!(
            "INSERT OR REPLACE INTO idempotency ({RECORD_COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
        ),
        params![
            r.id,
            r.status.as_str(),
            r.payload_hash,
            r.attempt,
            r.lease_owner,
            r.lease_expires_at_ms,
            r.expires_at_s,
            json,
            gz,
            r.error,
            r.created_at_ms,
            r.completed_at_ms,
            reference
        ],
    )?;
    Ok(())
}

fn entity_version(conn: &Connection, key: &EntityKey) -> Result<Option<u64>, StoreError> {
    conn.prepare_cached("SELECT version FROM entities WHERE pk = ?1 AND sk = ?2")
        .and_then(|mut statement| {
            statement.query_row(params![key.pk, key.sk], |row| row.get::<_, i64>(0))
        })
        .optional()
        .map_err(db_err)
        .map(|v| v.map(|v| v.unsigned_abs()))
}

/// An audit record as the audit table stores it: its keys and its JSON text.
struct AuditRow {
    execution: String,
    seq: String,
    action: String,
    timestamp: String,
    correlation_id: Option<String>,
    json: String,
}

impl AuditRow {
    fn of(record: &AuditRecord) -> Result<Self, StoreError> {
        Ok(Self {
            execution: record.execution.clone(),
            seq: record.seq.clone(),
            action: record.action.clone(),
            timestamp: record.timestamp.clone(),
            correlation_id: record.correlation_id.clone(),
            json: serde_json::to_string(record).map_err(|e| {
                StoreError::Corrupt(format!("audit record does not serialize: {e}"))
            })?,
        })
    }
}

fn insert_audit(conn: &Connection, row: &AuditRow) -> Result<(), StoreError> {
    let inserted = exec(
        conn,
        "INSERT OR IGNORE INTO audit (execution, seq, type, timestamp, correlation_id, record) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            row.execution,
            row.seq,
            row.action,
            row.timestamp,
            row.correlation_id,
            row.json
        ],
    )?;
    if inserted == 0 {
        return Err(StoreError::Corrupt(format!(
            "audit record {} {} exists already; audit records are never overwritten",
            row.execution, row.seq
        )));
    }
    Ok(())
}

/// The audit record of a commit: as text already (handed to the writer thread), or to be
/// serialized once the commit's conditions hold (in place).
enum AuditText<'a> {
    Row(AuditRow),
    Record(&'a AuditRecord),
}

/// A staged write with its document as text (`None`: a delete).
struct EntityWrite {
    key: EntityKey,
    expect: Expect,
    doc: Option<String>,
}

impl EntityWrite {
    fn of(write: &StagedWrite) -> Self {
        Self {
            key: write.key().clone(),
            expect: write.expect(),
            doc: match write {
                StagedWrite::Put { doc, .. } => Some(doc.to_string()),
                StagedWrite::Delete { .. } => None,
            },
        }
    }
}

fn put_entity(conn: &Connection, key: &EntityKey, doc: &str) -> Result<(), StoreError> {
    exec(
        conn,
        "INSERT INTO entities (pk, sk, doc, version) VALUES (?1, ?2, ?3, 1) \
         ON CONFLICT (pk, sk) DO UPDATE SET doc = excluded.doc, version = version + 1",
        params![key.pk, key.sk, doc],
    )
    .map(|_| ())
}

/// The claim transaction: take the record if there is none or it is claimable, else
/// answer it.
fn claim_in(conn: &Connection, claim: &Claim) -> Result<(ClaimOutcome, bool), StoreError> {
    let existing = get_record(conn, &claim.id)?;
    let (attempt, taken_over) = match &existing {
        None => (1, false),
        Some(old) if old.is_claimable(&claim.payload_hash, claim.now_ms) => {
            (old.attempt.saturating_add(1), old.is_abandoned())
        }
        Some(old) => return Ok((ClaimOutcome::Existing(old.clone()), false)),
    };
    put_record(conn, &claim.in_progress(attempt))?;
    Ok((
        ClaimOutcome::Claimed {
            attempt,
            taken_over,
        },
        true,
    ))
}

/// The completion transaction: the record's condition first, then each entity's; the
/// first that fails answers, and whatever the transaction wrote before it is rolled back.
fn commit_in(
    conn: &Connection,
    record: &RecordWrite,
    audit: &AuditText<'_>,
    writes: &[EntityWrite],
) -> Result<(CommitOutcome, bool), StoreError> {
    match record {
        RecordWrite::Finish {
            id,
            lease_owner,
            status,
            result,
            error,
            completed_at_ms,
            expires_at_s,
        } => {
            // The condition is part of the update: `status = IN_PROGRESS AND
            // lease_owner = :me`.
            let (json, gz, reference) = result_columns(result.as_ref());
            let updated = exec(
                conn,
                "UPDATE idempotency SET status = ?2, result_json = ?3, result_gz = ?4, \
                 error = ?5, completed_at_ms = ?6, expires_at_s = ?7, result_ref = ?8 \
                 WHERE id = ?1 AND status = ?9 AND lease_owner = ?10",
                params![
                    id,
                    status.as_str(),
                    json,
                    gz,
                    error,
                    completed_at_ms,
                    expires_at_s,
                    reference,
                    RecordStatus::InProgress.as_str(),
                    lease_owner
                ],
            )?;
            if updated == 0 {
                return Ok((CommitOutcome::LeaseLost, false));
            }
        }
        RecordWrite::Release { id, lease_owner } => {
            let updated = exec(
                conn,
                "UPDATE idempotency SET lease_expires_at_ms = ?2 \
                 WHERE id = ?1 AND status = ?3 AND lease_owner = ?4",
                params![
                    id,
                    RELEASED_LEASE_MS,
                    RecordStatus::InProgress.as_str(),
                    lease_owner
                ],
            )?;
            if updated == 0 {
                return Ok((CommitOutcome::LeaseLost, false));
            }
        }
        RecordWrite::Insert { record, now_ms } => {
            if let Some(old) = get_record(conn, &record.id)?
                && !old.is_expired(*now_ms)
            {
                return Ok((CommitOutcome::Exists(old), false));
            }
            put_record(conn, record)?;
        }
        RecordWrite::None => {}
    }
    // Every entity condition holds before any entity is written.
    for (index, write) in writes.iter().enumerate() {
        if !write.expect.holds(entity_version(conn, &write.key)?) {
            return Ok((CommitOutcome::EntityConflict { index }, false));
        }
    }
    match audit {
        AuditText::Row(row) => insert_audit(conn, row)?,
        AuditText::Record(record) => insert_audit(conn, &AuditRow::of(record)?)?,
    }
    for write in writes {
        match &write.doc {
            Some(doc) => put_entity(conn, &write.key, doc)?,
            None => {
                exec(
                    conn,
                    "DELETE FROM entities WHERE pk = ?1 AND sk = ?2",
                    params![write.key.pk, write.key.sk],
                )?;
            }
        }
    }
    Ok((CommitOutcome::Committed, true))
}

/// The query of a page of audit records, newest first: `filter_sql` tests `?1`.
fn audit_query(filter_sql: &str) -> String {
    format!(
        "SELECT record, timestamp, execution, seq FROM audit WHERE {filter_sql} \
         AND (?2 IS NULL OR timestamp >= ?2) \
         AND (?3 IS NULL OR (timestamp, execution, seq) < (?3, ?4, ?5)) \
         ORDER BY timestamp DESC, execution DESC, seq DESC LIMIT ?6"
    )
}

/// The position of the last record of a page.
#[derive(serde::Serialize, serde::Deserialize)]
struct Cursor {
    timestamp: String,
    execution: String,
    seq: String,
}

#[async_trait]
impl Store for SqliteStore {
    async fn claim(&self, claim: &Claim) -> Result<ClaimOutcome, StoreError> {
        limits::check_claim(claim).map_err(|e| StoreError::Refused(e.to_string()))?;
        let writer = match &self.db {
            // In memory no other connection can hold the write lock, and the claim's
            // transaction reads the record anyway: one transaction, in place.
            Db::Memory(conn) => return in_place(conn, |conn| claim_in(conn, claim)),
            Db::File { writer, .. } => writer,
        };
        // A record no claim may take now (a live COMPLETED or FAILED one above all: a
        // replay) is answered from a read, without the write lock: the conditional claim
        // would have found the very same record in that state and written nothing, so the
        // outcome is that of a claim taken at the moment of the read.
        if let Some(old) = self.read(|conn| get_record(conn, &claim.id))?
            && !old.is_claimable(&claim.payload_hash, claim.now_ms)
        {
            return Ok(ClaimOutcome::Existing(old));
        }
        let claim = claim.clone();
        writer.write(move |conn| claim_in(conn, &claim)).await
    }

    async fn commit(&self, commit: &Commit) -> Result<CommitOutcome, StoreError> {
        limits::check_commit(commit).map_err(|e| StoreError::Refused(e.to_string()))?;
        let writes: Vec<EntityWrite> = commit.writes.iter().map(EntityWrite::of).collect();
        let writer = match &self.db {
            Db::Memory(conn) => {
                let audit = AuditText::Record(&commit.audit);
                return in_place(conn, |conn| {
                    commit_in(conn, &commit.record, &audit, &writes)
                });
            }
            Db::File { writer, .. } => writer,
        };
        // An optimistic commit that meets a live record (a replay) is answered from a
        // read, as a claim is: its transaction would have found the same record first and
        // written nothing.
        if let RecordWrite::Insert { record, now_ms } = &commit.record
            && let Some(old) = self.read(|conn| get_record(conn, &record.id))?
            && !old.is_expired(*now_ms)
        {
            return Ok(CommitOutcome::Exists(old));
        }
        let record = commit.record.clone();
        let audit = AuditText::Row(AuditRow::of(&commit.audit)?);
        writer
            .write(move |conn| commit_in(conn, &record, &audit, &writes))
            .await
    }

    async fn put_audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        limits::check_audit(record).map_err(|e| StoreError::Refused(e.to_string()))?;
        let row = AuditRow::of(record)?;
        self.write(move |conn| insert_audit(conn, &row).map(|()| ((), true)))
            .await
    }

    async fn put_audits(&self, records: &[AuditRecord]) -> Result<(), StoreError> {
        for record in records {
            limits::check_audit(record).map_err(|e| StoreError::Refused(e.to_string()))?;
        }
        let rows = records
            .iter()
            .map(AuditRow::of)
            .collect::<Result<Vec<_>, _>>()?;
        self.write(move |conn| {
            rows.iter()
                .try_for_each(|row| insert_audit(conn, row))
                .map(|()| ((), true))
        })
        .await
    }

    async fn get_record(&self, id: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.read(|conn| get_record(conn, id))
    }

    async fn get_entity(&self, key: &EntityKey) -> Result<Option<Entity>, StoreError> {
        let row = self.read(|conn| {
            conn.prepare_cached("SELECT doc, version FROM entities WHERE pk = ?1 AND sk = ?2")
                .and_then(|mut statement| {
                    statement.query_row(params![key.pk, key.sk], |row| {
                        Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                    })
                })
                .optional()
                .map_err(db_err)
        })?;
        row.map(|(doc, version)| {
            Ok(Entity {
                key: key.clone(),
                doc: serde_json::from_str(&doc)
                    .map_err(|e| StoreError::Corrupt(format!("entity {key}: {e}")))?,
                version: version.unsigned_abs(),
            })
        })
        .transpose()
    }

    async fn put_entity(
        &self,
        key: &EntityKey,
        doc: &serde_json::Value,
        expect: Expect,
    ) -> Result<bool, StoreError> {
        let key = key.clone();
        let doc = doc.to_string();
        self.write(move |conn| {
            if !expect.holds(entity_version(conn, &key)?) {
                return Ok((false, false));
            }
            put_entity(conn, &key, &doc)?;
            Ok((true, true))
        })
        .await
    }

    async fn query_audit(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        let limit = query.page_size();
        let (filter_sql, filter_value) = match &query.filter {
            AuditFilter::All => ("1 = 1 AND ?1 IS NULL", None),
            AuditFilter::Execution(e) => ("execution = ?1", Some(e.as_str())),
            AuditFilter::Type(t) => ("type = ?1", Some(t.as_str())),
            AuditFilter::Correlation(c) => ("correlation_id = ?1", Some(c.as_str())),
        };
        let cursor: Option<Cursor> = query
            .cursor
            .as_deref()
            .map(|c| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(c)
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok())
                    .ok_or_else(|| {
                        StoreError::InvalidRequest(format!("invalid audit cursor {c:?}"))
                    })
            })
            .transpose()?;
        let sql = audit_query(filter_sql);
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&sql).map_err(db_err)?;
            let rows = stmt
                .query_map(
                    params![
                        filter_value,
                        query.since,
                        cursor.as_ref().map(|c| &c.timestamp),
                        cursor.as_ref().map(|c| &c.execution),
                        cursor.as_ref().map(|c| &c.seq),
                        i64::try_from(limit + 1).unwrap_or(i64::MAX),
                    ],
                    |row| {
                        Ok((
                            row.get::<_, String>(0)?,
                            Cursor {
                                timestamp: row.get(1)?,
                                execution: row.get(2)?,
                                seq: row.get(3)?,
                            },
                        ))
                    },
                )
                .map_err(db_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)?;
            let more = rows.len() > limit;
            let mut records: Vec<AuditRecord> = Vec::with_capacity(limit);
            let mut last = None;
            for (json, position) in rows.into_iter().take(limit) {
                records.push(
                    serde_json::from_str(&json)
                        .map_err(|e| StoreError::Corrupt(format!("audit record: {e}")))?,
                );
                last = Some(position);
            }
            // Completion outputs stored once, in their idempotency record.
            crate::audit::resolve_outputs(&mut records, |id| get_record(conn, id))?;
            let next_cursor = if more {
                last.and_then(|c| serde_json::to_vec(&c).ok())
                    .map(|b| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
            } else {
                None
            };
            Ok(AuditPage {
                records,
                next_cursor,
            })
        })
    }

    fn objects(&self) -> Option<&dyn ObjectStore> {
        self.objects.then_some(self as &dyn ObjectStore)
    }
}

/// The local object store: the `objects` table, written in a transaction of its own
/// before the commit, as S3 is written before the DynamoDB transaction.
#[async_trait]
impl ObjectStore for SqliteStore {
    fn bucket(&self) -> &str {
        LOCAL_BUCKET
    }

    async fn put(&self, key: &str, body: Vec<u8>, gzip: bool) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.write(move |conn| {
            exec(
                conn,
                "INSERT OR REPLACE INTO objects (bucket, key, body, gzip) VALUES (?1, ?2, ?3, ?4)",
                params![LOCAL_BUCKET, key, body, gzip],
            )
            .map(|_| ((), true))
        })
        .await
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached("SELECT body FROM objects WHERE bucket = ?1 AND key = ?2")
                .and_then(|mut statement| {
                    statement.query_row(params![bucket, key], |row| row.get::<_, Vec<u8>>(0))
                })
                .optional()
                .map_err(db_err)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: std::ffi::c_int) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    /// A database held by another process (busy, locked) is said so; any other failure is
    /// SQLite's own. (Through the store, a busy file answers only after the 10 s busy
    /// timeout, hence a test of the classification itself.)
    #[test]
    fn busy_and_locked_databases_are_told_apart_from_other_failures() {
        for code in [rusqlite::ffi::SQLITE_BUSY, rusqlite::ffi::SQLITE_LOCKED] {
            match db_err(failure(code)) {
                StoreError::Unavailable { message, source } => {
                    assert_eq!(message, "the SQLite database is locked by another process");
                    assert!(source.is_some());
                }
                other => panic!("{other:?}"),
            }
        }
        for code in [rusqlite::ffi::SQLITE_NOTADB, rusqlite::ffi::SQLITE_IOERR] {
            match db_err(failure(code)) {
                StoreError::Unavailable { message, .. } => assert_eq!(message, "SQLite"),
                other => panic!("{other:?}"),
            }
        }
    }

    fn indexes(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit' AND sql IS NOT NULL ORDER BY name")
            .expect("query");
        stmt.query_map([], |row| row.get(0))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("names")
    }

    /// Audit records by correlation id are read from the index of the records that have
    /// one (which a record without one does not enter).
    #[test]
    fn correlated_audit_records_are_read_from_their_index() {
        let conn = Connection::open_in_memory().expect("memory");
        init(&conn).expect("tables");
        let plan: Vec<String> = conn
            .prepare(&format!(
                "EXPLAIN QUERY PLAN {}",
                audit_query("correlation_id = ?1")
            ))
            .expect("plan")
            .query_map(
                params![
                    "c",
                    None::<String>,
                    None::<String>,
                    None::<String>,
                    None::<String>,
                    10
                ],
                |row| row.get::<_, String>(3),
            )
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("plan");
        assert_eq!(
            plan,
            ["SEARCH audit USING INDEX audit_by_correlation_id (correlation_id=?)"]
        );
    }

    /// A file of an earlier version, whose correlation index held every record, gets the
    /// index of the correlated records instead when opened.
    #[test]
    fn files_of_earlier_versions_get_the_index_of_correlated_records() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("old.db");
        let old = Connection::open(&path).expect("file");
        init(&old).expect("tables");
        old.execute_batch(
            "DROP INDEX audit_by_correlation_id; \
             CREATE INDEX audit_by_correlation ON audit (correlation_id, timestamp)",
        )
        .expect("the old index");
        assert_eq!(
            indexes(&old),
            ["audit_by_correlation", "audit_by_time", "audit_by_type"]
        );
        drop(old);
        let store = SqliteStore::open(&path).expect("opens");
        store
            .read(|conn| {
                assert_eq!(
                    indexes(conn),
                    ["audit_by_correlation_id", "audit_by_time", "audit_by_type"]
                );
                Ok(())
            })
            .expect("read");
    }
}
