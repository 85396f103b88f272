//! Executions and their event history, in tables of their own in the embedded store's
//! SQLite file (`workflow_executions`, `workflow_events`).
//!
//! - An execution is keyed by (workflow, name): the name is the idempotency key. A start
//!   with a known name and the same input finds that execution; another input is
//!   `ActionDo.PayloadMismatch`.
//! - Events are appended (one transaction each), never updated or deleted.
//! - A running execution has an owner (the process driving it) and a lease the owner
//!   renews. An execution left `RUNNING` with an expired lease was interrupted (the
//!   process died); it can be redriven like a failed one.

use std::path::Path as FsPath;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use actiondo::ActionError;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::WorkflowError;
use crate::history::{Event, EventType, HistorySink, rfc3339_ms};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS workflow_executions (
    workflow            TEXT NOT NULL,
    name                TEXT NOT NULL,
    arn                 TEXT NOT NULL,
    status              TEXT NOT NULL,
    input               TEXT NOT NULL,
    input_hash          TEXT NOT NULL,
    output              TEXT,
    error               TEXT,
    cause               TEXT,
    start_ms            INTEGER NOT NULL,
    stop_ms             INTEGER,
    redrive_count       INTEGER NOT NULL,
    owner               TEXT,
    lease_expires_at_ms INTEGER NOT NULL,
    PRIMARY KEY (workflow, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS workflow_executions_by_start ON workflow_executions (start_ms);
CREATE INDEX IF NOT EXISTS workflow_executions_by_workflow_start ON workflow_executions (workflow, start_ms DESC, name);
CREATE TABLE IF NOT EXISTS workflow_events (
    workflow    TEXT NOT NULL,
    name        TEXT NOT NULL,
    id          INTEGER NOT NULL,
    previous_id INTEGER NOT NULL,
    timestamp   TEXT NOT NULL,
    type        TEXT NOT NULL,
    scope       TEXT NOT NULL,
    details     TEXT NOT NULL,
    PRIMARY KEY (workflow, name, id)
) WITHOUT ROWID;
";

/// How long a running execution's lease lasts without renewal.
pub const LEASE: Duration = Duration::from_secs(30);

/// An execution's status (Step Functions' names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Running (or interrupted, when its lease has expired).
    Running,
    /// Succeeded.
    Succeeded,
    /// Failed.
    Failed,
    /// Ran past its `TimeoutSeconds`.
    TimedOut,
}

impl Status {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "RUNNING",
            Status::Succeeded => "SUCCEEDED",
            Status::Failed => "FAILED",
            Status::TimedOut => "TIMED_OUT",
        }
    }

    /// The status of a stored name (`RUNNING`, `SUCCEEDED`, `FAILED`, `TIMED_OUT`);
    /// `None` for any other.
    pub fn named(s: &str) -> Option<Self> {
        Self::parse(s).ok()
    }

    fn parse(s: &str) -> Result<Self, WorkflowError> {
        Ok(match s {
            "RUNNING" => Status::Running,
            "SUCCEEDED" => Status::Succeeded,
            "FAILED" => Status::Failed,
            "TIMED_OUT" => Status::TimedOut,
            other => {
                return Err(ActionError::internal(format!(
                    "the workflow store holds an unknown status {other:?}"
                ))
                .into());
            }
        })
    }
}

/// One execution as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionRecord {
    /// The workflow (the definition file's name without `.asl.json`).
    pub workflow: String,
    /// The execution name (its idempotency key).
    pub name: String,
    /// Its ARN (`$$.Execution.Id`).
    pub arn: String,
    /// Its status.
    pub status: Status,
    /// Its input.
    pub input: Value,
    /// The output of a succeeded execution.
    pub output: Option<Value>,
    /// The error of a failed one.
    pub error: Option<String>,
    /// The cause of a failed one.
    pub cause: Option<String>,
    /// When it started, Unix ms.
    pub start_ms: i64,
    /// When it ended, Unix ms.
    pub stop_ms: Option<i64>,
    /// How many times it was redriven.
    pub redrive_count: u32,
    /// The process driving it while it runs.
    pub owner: Option<String>,
    /// Until when the owner holds it, Unix ms.
    pub lease_expires_at_ms: i64,
}

impl ExecutionRecord {
    /// Running, but nobody has renewed the lease: the process driving it is gone.
    pub fn is_interrupted(&self, now_ms: i64) -> bool {
        self.status == Status::Running && self.lease_expires_at_ms <= now_ms
    }

    /// The body of `GET /workflows/{name}/executions/{id}` and `actiondo workflow
    /// describe`: the fields of the Step Functions route (docs/architecture.md §8.1)
    /// plus `redriveCount` and `interrupted`.
    pub fn view(&self, now_ms: i64) -> Value {
        let mut v = json!({
            "workflow": self.workflow,
            "executionName": self.name,
            "executionArn": self.arn,
            "status": self.status.as_str(),
            "startDate": rfc3339_ms(self.start_ms),
            "input": self.input,
            "redriveCount": self.redrive_count,
        });
        if let Some(stop) = self.stop_ms {
            v["stopDate"] = json!(rfc3339_ms(stop));
        }
        if let Some(o) = &self.output {
            v["output"] = o.clone();
        }
        if self.error.is_some() || self.cause.is_some() {
            let cause = self.cause.as_deref().map(|c| {
                serde_json::from_str::<Value>(c).unwrap_or_else(|_| Value::String(c.to_owned()))
            });
            v["error"] = json!({"error": self.error, "cause": cause});
        }
        if self.is_interrupted(now_ms) {
            v["interrupted"] = json!(true);
        }
        v
    }
}

/// Where a page of [`WorkflowStore::page`] ends: the start time and name of its last
/// execution (the list is ordered by start time, newest first, then by name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagePosition {
    /// The start time of the last execution listed, Unix ms.
    pub start_ms: i64,
    /// Its name.
    pub name: String,
}

impl PagePosition {
    /// As text: `START_MS:NAME`.
    pub fn to_token(&self) -> String {
        format!("{}:{}", self.start_ms, self.name)
    }

    /// Read [`Self::to_token`]'s text; `None` for any other.
    pub fn from_token(token: &str) -> Option<Self> {
        let (start, name) = token.split_once(':')?;
        Some(Self {
            start_ms: start.parse().ok()?,
            name: name.to_owned(),
        })
    }
}

/// What a start found.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    /// A new execution, owned by the caller.
    New(ExecutionRecord),
    /// The execution of that name, with the same input.
    Existing(ExecutionRecord),
}

/// The variable that sets [`WorkflowStore::with_lease`] in seconds (tests of interrupted
/// runs shorten it).
pub const LEASE_ENV: &str = "ACTIONDO_WORKFLOW_LEASE_SECS";

/// The executions' tables.
#[derive(Debug)]
pub struct WorkflowStore {
    conn: Mutex<Connection>,
    lease: Duration,
}

fn canonical_hash(v: &Value) -> String {
    actiondo::hash::payload_hash(v)
}

impl WorkflowStore {
    /// The tables in the SQLite file at `path` (the embedded store's file), created if
    /// absent.
    pub fn open(path: impl AsRef<FsPath>) -> Result<Self, WorkflowError> {
        if let Some(dir) = path.as_ref().parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| {
                WorkflowError::Store(actiondo::StoreError::unavailable(
                    "cannot create the folder of the SQLite file",
                    e,
                ))
            })?;
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // As the embedded action store: in WAL mode, NORMAL survives a killed process
        // (what an interrupted run is) and syncs at checkpoints, not at every event.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Self::with(conn)
    }

    /// The tables in a private in-memory database.
    pub fn in_memory() -> Result<Self, WorkflowError> {
        Self::with(Connection::open_in_memory()?)
    }

    fn with(conn: Connection) -> Result<Self, WorkflowError> {
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            conn: Mutex::new(conn),
            lease: LEASE,
        })
    }

    /// Leases of `lease` instead of [`LEASE`].
    #[must_use]
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(100));
        self
    }

    /// How long a lease lasts without renewal.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    fn lock(&self) -> Result<MutexGuard<'_, Connection>, WorkflowError> {
        self.conn
            .lock()
            .map_err(|_| ActionError::internal("the workflow store's lock is poisoned").into())
    }

    fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<[Option<String>; 14]> {
        let mut out: [Option<String>; 14] = Default::default();
        for (i, slot) in out.iter_mut().enumerate() {
            let v: rusqlite::types::Value = row.get(i)?;
            *slot = match v {
                rusqlite::types::Value::Null => None,
                rusqlite::types::Value::Integer(n) => Some(n.to_string()),
                rusqlite::types::Value::Text(t) => Some(t),
                other => Some(format!("{other:?}")),
            };
        }
        Ok(out)
    }

    fn record(cols: [Option<String>; 14]) -> Result<ExecutionRecord, WorkflowError> {
        let bad = |what: &str| {
            WorkflowError::from(ActionError::internal(format!(
                "the workflow store holds an unreadable {what}"
            )))
        };
        let json = |s: &Option<String>, what: &str| -> Result<Option<Value>, WorkflowError> {
            s.as_deref()
                .map(|t| serde_json::from_str(t).map_err(|_| bad(what)))
                .transpose()
        };
        let int = |s: &Option<String>, what: &str| -> Result<Option<i64>, WorkflowError> {
            s.as_deref()
                .map(|t| t.parse::<i64>().map_err(|_| bad(what)))
                .transpose()
        };
        let [
            workflow,
            name,
            arn,
            status,
            input,
            output,
            error,
            cause,
            start,
            stop,
            redrives,
            owner,
            lease,
            _,
        ] = cols;
        Ok(ExecutionRecord {
            workflow: workflow.unwrap_or_default(),
            name: name.unwrap_or_default(),
            arn: arn.unwrap_or_default(),
            status: Status::parse(status.as_deref().unwrap_or_default())?,
            input: json(&input, "input")?.unwrap_or(Value::Null),
            output: json(&output, "output")?,
            error,
            cause,
            start_ms: int(&start, "start time")?.unwrap_or(0),
            stop_ms: int(&stop, "stop time")?,
            redrive_count: u32::try_from(int(&redrives, "redrive count")?.unwrap_or(0))
                .unwrap_or(0),
            owner,
            lease_expires_at_ms: int(&lease, "lease")?.unwrap_or(0),
        })
    }

    const COLUMNS: &'static str = "workflow, name, arn, status, input, output, error, cause, start_ms, stop_ms, redrive_count, owner, lease_expires_at_ms, input_hash";

    fn get_in(
        conn: &Connection,
        workflow: &str,
        name: &str,
    ) -> Result<Option<ExecutionRecord>, WorkflowError> {
        let sql = format!(
            "SELECT {} FROM workflow_executions WHERE workflow = ?1 AND name = ?2",
            Self::COLUMNS
        );
        let cols = conn
            .query_row(&sql, params![workflow, name], Self::read)
            .optional()?;
        cols.map(Self::record).transpose()
    }

    /// The execution `name` of `workflow`.
    pub fn get(
        &self,
        workflow: &str,
        name: &str,
    ) -> Result<Option<ExecutionRecord>, WorkflowError> {
        let conn = self.lock()?;
        Self::get_in(&conn, workflow, name)
    }

    /// The executions of `workflow` (every workflow's when `None`), newest first, at
    /// most `limit`.
    pub fn list(
        &self,
        workflow: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ExecutionRecord>, WorkflowError> {
        let conn = self.lock()?;
        let sql = format!(
            "SELECT {} FROM workflow_executions WHERE (?1 IS NULL OR workflow = ?1) ORDER BY start_ms DESC, name LIMIT ?2",
            Self::COLUMNS
        );
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt
            .query_map(
                params![workflow, i64::try_from(limit).unwrap_or(i64::MAX)],
                Self::read,
            )?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(Self::record).collect()
    }

    /// One page of the executions of `workflow`: newest first (by start time, then
    /// name), of `status` only when given, at most `limit`, after `after` (the position
    /// the previous page answered). Also answers where the next page starts, when there
    /// is one. A keyset query over `workflow_executions_by_workflow_start`: each page
    /// costs the same, however deep.
    pub fn page(
        &self,
        workflow: &str,
        status: Option<Status>,
        limit: usize,
        after: Option<&PagePosition>,
    ) -> Result<(Vec<ExecutionRecord>, Option<PagePosition>), WorkflowError> {
        let limit = limit.max(1);
        let conn = self.lock()?;
        let sql = format!(
            "SELECT {} FROM workflow_executions WHERE workflow = ?1 AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR start_ms < ?3 OR (start_ms = ?3 AND name > ?4)) ORDER BY start_ms DESC, name LIMIT ?5",
            Self::COLUMNS
        );
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt
            .query_map(
                params![
                    workflow,
                    status.map(Status::as_str),
                    after.map(|a| a.start_ms),
                    after.map(|a| a.name.as_str()),
                    // One more than asked: whether a next page exists.
                    i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX)
                ],
                Self::read,
            )?
            .collect::<Result<Vec<_>, _>>()?;
        let mut records = rows
            .into_iter()
            .map(Self::record)
            .collect::<Result<Vec<_>, _>>()?;
        let next = if records.len() > limit {
            records.truncate(limit);
            records.last().map(|r| PagePosition {
                start_ms: r.start_ms,
                name: r.name.clone(),
            })
        } else {
            None
        };
        Ok((records, next))
    }

    /// Create execution `name` of `workflow` owned by `owner`, and its
    /// `ExecutionStarted` event; or find it (same input), or refuse (another input).
    pub fn create(
        &self,
        workflow: &str,
        name: &str,
        arn: &str,
        input: &Value,
        owner: &str,
        now_ms: i64,
    ) -> Result<Created, WorkflowError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let hash = canonical_hash(input);
        let existing: Option<String> = tx
            .query_row(
                "SELECT input_hash FROM workflow_executions WHERE workflow = ?1 AND name = ?2",
                params![workflow, name],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(h) = existing {
            if h != hash {
                return Err(ActionError::payload_mismatch(format!(
                    "the execution {name:?} of {workflow} already exists with another input; use another name"
                ))
                .with_details(json!({"workflow": workflow, "executionName": name}))
                .into());
            }
            let rec = Self::get_in(&tx, workflow, name)?
                .ok_or_else(|| ActionError::internal("the execution vanished"))?;
            return Ok(Created::Existing(rec));
        }
        let lease = now_ms + self.lease.as_millis() as i64;
        tx.execute(
            "INSERT INTO workflow_executions (workflow, name, arn, status, input, input_hash, start_ms, redrive_count, owner, lease_expires_at_ms) VALUES (?1, ?2, ?3, 'RUNNING', ?4, ?5, ?6, 0, ?7, ?8)",
            params![workflow, name, arn, input.to_string(), hash, now_ms, owner, lease],
        )?;
        Self::append_in(
            &tx,
            workflow,
            name,
            EventType::ExecutionStarted,
            "",
            now_ms,
            &json!({"input": input, "stateMachine": workflow}),
        )?;
        let rec = Self::get_in(&tx, workflow, name)?
            .ok_or_else(|| ActionError::internal("the execution vanished"))?;
        tx.commit()?;
        Ok(Created::New(rec))
    }

    /// Take over a failed, timed-out or interrupted execution for a redrive: status
    /// `RUNNING`, owned by `owner`, one more redrive, an `ExecutionRedriven` event.
    pub fn claim_redrive(
        &self,
        workflow: &str,
        name: &str,
        owner: &str,
        now_ms: i64,
    ) -> Result<ExecutionRecord, WorkflowError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let rec = Self::get_in(&tx, workflow, name)?.ok_or_else(|| {
            ActionError::not_found(format!(
                "there is no execution {name:?} of workflow {workflow}"
            ))
            .with_details(json!({"workflow": workflow, "executionName": name}))
        })?;
        match rec.status {
            Status::Failed | Status::TimedOut => {}
            Status::Running if rec.is_interrupted(now_ms) => {}
            Status::Running => {
                return Err(ActionError::conflict(format!(
                    "the execution {name:?} of {workflow} is running (owned by {}); redrive it once it has failed, or when its lease has expired",
                    rec.owner.as_deref().unwrap_or("another process")
                ))
                .into());
            }
            Status::Succeeded => {
                return Err(ActionError::validation(format!(
                    "the execution {name:?} of {workflow} succeeded; only a failed, timed-out or interrupted execution can be redriven"
                ))
                .into());
            }
        }
        let lease = now_ms + self.lease.as_millis() as i64;
        tx.execute(
            "UPDATE workflow_executions SET status = 'RUNNING', output = NULL, error = NULL, cause = NULL, stop_ms = NULL, redrive_count = redrive_count + 1, owner = ?3, lease_expires_at_ms = ?4 WHERE workflow = ?1 AND name = ?2",
            params![workflow, name, owner, lease],
        )?;
        Self::append_in(
            &tx,
            workflow,
            name,
            EventType::ExecutionRedriven,
            "",
            now_ms,
            &json!({"redriveCount": rec.redrive_count + 1, "previousStatus": rec.status.as_str(), "interrupted": rec.status == Status::Running}),
        )?;
        let rec = Self::get_in(&tx, workflow, name)?
            .ok_or_else(|| ActionError::internal("the execution vanished"))?;
        tx.commit()?;
        Ok(rec)
    }

    /// Extend `owner`'s lease; false when it no longer owns the execution.
    pub fn renew(
        &self,
        workflow: &str,
        name: &str,
        owner: &str,
        now_ms: i64,
    ) -> Result<bool, WorkflowError> {
        let lease = now_ms + self.lease.as_millis() as i64;
        let n = self.lock()?.execute(
            "UPDATE workflow_executions SET lease_expires_at_ms = ?4 WHERE workflow = ?1 AND name = ?2 AND owner = ?3 AND status = 'RUNNING'",
            params![workflow, name, owner, lease],
        )?;
        Ok(n == 1)
    }

    /// Record the end of an execution `owner` drives.
    #[allow(clippy::too_many_arguments)]
    pub fn finish(
        &self,
        workflow: &str,
        name: &str,
        owner: &str,
        status: Status,
        output: Option<&Value>,
        error: Option<(&str, &str)>,
        now_ms: i64,
    ) -> Result<(), WorkflowError> {
        let n = self.lock()?.execute(
            "UPDATE workflow_executions SET status = ?4, output = ?5, error = ?6, cause = ?7, stop_ms = ?8, owner = NULL, lease_expires_at_ms = 0 WHERE workflow = ?1 AND name = ?2 AND owner = ?3",
            params![
                workflow,
                name,
                owner,
                status.as_str(),
                output.map(Value::to_string),
                error.map(|e| e.0),
                error.map(|e| e.1),
                now_ms
            ],
        )?;
        if n != 1 {
            return Err(ActionError::conflict(format!(
                "the execution {name:?} of {workflow} is no longer owned by this process (its lease expired and it was redriven)"
            ))
            .into());
        }
        Ok(())
    }

    fn append_in(
        conn: &Connection,
        workflow: &str,
        name: &str,
        kind: EventType,
        scope: &str,
        timestamp_ms: i64,
        details: &Value,
    ) -> Result<u64, WorkflowError> {
        let last: i64 = conn.query_row(
            "SELECT COALESCE(MAX(id), 0) FROM workflow_events WHERE workflow = ?1 AND name = ?2",
            params![workflow, name],
            |r| r.get(0),
        )?;
        let id = last + 1;
        conn.execute(
            "INSERT INTO workflow_events (workflow, name, id, previous_id, timestamp, type, scope, details) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![workflow, name, id, last, rfc3339_ms(timestamp_ms), kind.name(), scope, details.to_string()],
        )?;
        Ok(u64::try_from(id).unwrap_or(0))
    }

    /// Append an event to execution `name` of `workflow`.
    pub fn append(
        &self,
        workflow: &str,
        name: &str,
        kind: EventType,
        scope: &str,
        timestamp_ms: i64,
        details: &Value,
    ) -> Result<u64, WorkflowError> {
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let id = Self::append_in(&tx, workflow, name, kind, scope, timestamp_ms, details)?;
        tx.commit()?;
        Ok(id)
    }

    /// The events of execution `name` of `workflow`, oldest first.
    pub fn events(&self, workflow: &str, name: &str) -> Result<Vec<Event>, WorkflowError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare(
            "SELECT id, previous_id, timestamp, type, scope, details FROM workflow_events WHERE workflow = ?1 AND name = ?2 ORDER BY id",
        )?;
        let rows = stmt
            .query_map(params![workflow, name], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(id, prev, timestamp, kind, scope, details)| {
                Ok(Event {
                    id: u64::try_from(id).unwrap_or(0),
                    previous_event_id: u64::try_from(prev).unwrap_or(0),
                    timestamp,
                    kind,
                    scope,
                    details: serde_json::from_str(&details).map_err(|_| {
                        WorkflowError::from(ActionError::internal(
                            "the workflow store holds an unreadable event",
                        ))
                    })?,
                })
            })
            .collect()
    }
}

/// The history of one execution in a [`WorkflowStore`].
#[derive(Debug)]
pub struct StoredHistory<'a> {
    /// The store.
    pub store: &'a WorkflowStore,
    /// The workflow.
    pub workflow: &'a str,
    /// The execution.
    pub name: &'a str,
}

impl HistorySink for StoredHistory<'_> {
    fn append(
        &self,
        kind: EventType,
        scope: &str,
        timestamp_ms: i64,
        details: Value,
    ) -> Result<u64, WorkflowError> {
        self.store.append(
            self.workflow,
            self.name,
            kind,
            scope,
            timestamp_ms,
            &details,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages of `page`, followed to the end: the names on each.
    fn pages(
        store: &WorkflowStore,
        workflow: &str,
        status: Option<Status>,
        limit: usize,
    ) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let (records, next) = store
                .page(workflow, status, limit, after.as_ref())
                .expect("a page");
            out.push(records.into_iter().map(|r| r.name).collect());
            match next {
                Some(n) => {
                    assert_eq!(PagePosition::from_token(&n.to_token()), Some(n.clone()));
                    after = Some(n);
                }
                None => return out,
            }
        }
    }

    #[test]
    fn executions_are_paged_newest_first_by_workflow_and_status() {
        let store = WorkflowStore::in_memory().expect("store");
        // e0..e4 of `flow`, one a millisecond; e5 and e6 start together (ties: by name);
        // one execution of another workflow.
        let starts = [10, 11, 12, 13, 14, 15, 15];
        for (i, start) in starts.iter().enumerate() {
            let name = format!("e{i}");
            store
                .create("flow", &name, "arn", &json!({"i": i}), "me", *start)
                .expect("created");
            let status = if i % 2 == 0 {
                Status::Succeeded
            } else {
                Status::Failed
            };
            store
                .finish("flow", &name, "me", status, None, None, start + 1)
                .expect("finished");
        }
        store
            .create("other", "x", "arn", &json!({}), "me", 99)
            .expect("created");

        let names = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            pages(&store, "flow", None, 3),
            vec![
                names(&["e5", "e6", "e4"]),
                names(&["e3", "e2", "e1"]),
                names(&["e0"])
            ]
        );
        assert_eq!(
            pages(&store, "flow", None, 7),
            vec![names(&["e5", "e6", "e4", "e3", "e2", "e1", "e0"])]
        );
        assert_eq!(
            pages(&store, "flow", Some(Status::Failed), 2),
            vec![names(&["e5", "e3"]), names(&["e1"])]
        );
        assert_eq!(
            pages(&store, "flow", Some(Status::Running), 2),
            vec![Vec::<String>::new()]
        );
        assert_eq!(pages(&store, "other", None, 5), vec![names(&["x"])]);
        assert_eq!(pages(&store, "none", None, 5), vec![Vec::<String>::new()]);
        assert_eq!(PagePosition::from_token("soon:x"), None);
        assert_eq!(
            PagePosition::from_token("12:a:b"),
            Some(PagePosition {
                start_ms: 12,
                name: "a:b".to_owned()
            })
        );
        assert_eq!(Status::named("TIMED_OUT"), Some(Status::TimedOut));
        assert_eq!(Status::named("ABORTED"), None);
    }
}
