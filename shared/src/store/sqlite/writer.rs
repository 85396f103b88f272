//! The writer of a store file: one thread owns the file's write connection and commits
//! the writes that callers hand it while it is busy in one transaction (group commit).
//!
//! Each write is a closure over the connection that answers a value and whether its
//! changes are kept (see [`super::SqliteStore`]). A batch of several runs each write
//! inside a savepoint of its own, so that a write that fails, or that keeps nothing,
//! leaves no trace while the others stand: the outcome of every write is the one it would
//! have had in a transaction of its own, taken in the order of the batch. Every write of
//! a batch is answered only once the batch's `COMMIT` has returned, so an answer never
//! names a change that is not in the file; if the `COMMIT` fails, every write of the
//! batch is answered with that failure (even one that only read: what it read may have
//! been another write of the batch). A caller that stops waiting (its future dropped)
//! does not withdraw its write: it is committed with the others, as a request whose
//! answer was lost.
//!
//! A single write (no other waiting) is one transaction, as without the writer. Under
//! load, the cost of a transaction — taking the file's write lock, appending the changed
//! pages to the WAL, checkpointing — is shared by every write of the batch: the
//! audit records of concurrent executions fill the same index pages, which the WAL then
//! holds once per batch instead of once per write.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::{BUSY_MESSAGE, is_busy};
use crate::error::StoreError;

/// The most writes committed in one transaction.
const MAX_BATCH: usize = 128;

/// What one write did, waiting for the batch's commit.
trait Settle: Send {
    /// Whether its changes are kept (else they are rolled back to its savepoint).
    fn keep(&self) -> bool;
    /// Answer the caller, now that the batch ended: `committed` is the commit's outcome.
    fn settle(self: Box<Self>, committed: Result<(), &BatchFailure>);
}

/// One write handed to the writer.
trait Job: Send {
    /// Run it on the writer's connection (inside the batch's transaction).
    fn run(self: Box<Self>, conn: &Connection) -> Box<dyn Settle>;
    /// Answer the caller without running it: the batch could not begin.
    fn fail(self: Box<Self>, failure: &BatchFailure);
}

/// Why a whole batch failed (its `BEGIN` or its `COMMIT`), told to each of its writes.
#[derive(Debug, Clone)]
struct BatchFailure {
    busy: bool,
    text: String,
}

impl BatchFailure {
    fn new(e: &rusqlite::Error) -> Self {
        Self {
            busy: is_busy(e),
            text: e.to_string(),
        }
    }

    /// The error of one write, as `db_err` would have said it.
    fn error(&self) -> StoreError {
        StoreError::unavailable(
            if self.busy { BUSY_MESSAGE } else { "SQLite" },
            std::io::Error::other(self.text.clone()),
        )
    }
}

/// A write and where its answer goes.
struct Write<F, T> {
    f: F,
    answer: oneshot::Sender<Result<T, StoreError>>,
}

/// A write that ran: its result, waiting for the commit.
struct Ran<T> {
    result: Result<(T, bool), StoreError>,
    answer: oneshot::Sender<Result<T, StoreError>>,
}

impl<F, T> Job for Write<F, T>
where
    F: FnOnce(&Connection) -> Result<(T, bool), StoreError> + Send,
    T: Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> Box<dyn Settle> {
        let Write { f, answer } = *self;
        Box::new(Ran {
            result: f(conn),
            answer,
        })
    }

    fn fail(self: Box<Self>, failure: &BatchFailure) {
        // The caller may have gone (its future dropped): nobody to tell.
        let _ = self.answer.send(Err(failure.error()));
    }
}

impl<T: Send> Settle for Ran<T> {
    fn keep(&self) -> bool {
        matches!(self.result, Ok((_, true)))
    }

    fn settle(self: Box<Self>, committed: Result<(), &BatchFailure>) {
        let answer = match (self.result, committed) {
            // Its own failure (its changes were rolled back) stands whatever the batch did.
            (Err(e), _) => Err(e),
            (Ok(_), Err(failure)) => Err(failure.error()),
            (Ok((value, _)), Ok(())) => Ok(value),
        };
        let _ = self.answer.send(answer);
    }
}

/// The writer thread of a store file, and the way to it.
#[derive(Debug)]
pub(super) struct Writer {
    jobs: Option<mpsc::Sender<Box<dyn Job>>>,
    thread: Option<JoinHandle<()>>,
    /// How many transactions the thread has ended (committed or not), and how many
    /// writes they held: logged when the writer stops.
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    transactions: AtomicU64,
    writes: AtomicU64,
}

impl Writer {
    /// Start the writer thread; it owns `conn` until the writer is dropped.
    pub(super) fn start(conn: Connection) -> Result<Self, StoreError> {
        let (jobs, queue) = mpsc::channel::<Box<dyn Job>>();
        let counts = Arc::new(Counts::default());
        let counted = Arc::clone(&counts);
        let thread = std::thread::Builder::new()
            .name("actiondo-sqlite-writer".into())
            .spawn(move || {
                let mut conn = conn;
                while let Ok(first) = queue.recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match queue.try_recv() {
                            Ok(job) => batch.push(job),
                            Err(_) => break,
                        }
                    }
                    run_batch(&mut conn, batch, &counted);
                }
            })
            .map_err(|e| StoreError::unavailable("starting the SQLite writer thread", e))?;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(thread),
            counts,
        })
    }

    /// How many transactions the thread has ended so far.
    #[cfg(test)]
    fn transactions(&self) -> u64 {
        self.counts.transactions.load(Ordering::Relaxed)
    }

    /// Run `f` in a write transaction (shared with other writes waiting at the same time)
    /// and answer its value once that transaction is committed. `f` answers its value and
    /// whether its changes are kept; a write that is not kept, or that fails, is rolled
    /// back alone.
    pub(super) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<(T, bool), StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let stopped = || StoreError::Unavailable {
            message: "the SQLite writer thread stopped".into(),
            source: None,
        };
        self.jobs
            .as_ref()
            .ok_or_else(stopped)?
            .send(Box::new(Write { f, answer }))
            .map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }
}

impl Drop for Writer {
    /// Let the thread finish the writes already handed to it, then close the connection.
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        tracing::debug!(
            transactions = self.counts.transactions.load(Ordering::Relaxed),
            writes = self.counts.writes.load(Ordering::Relaxed),
            "the SQLite writer stopped"
        );
    }
}

/// Run one statement through the connection's statement cache.
fn run(conn: &Connection, sql: &str) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Run `batch` in one transaction and answer each write.
fn run_batch(conn: &mut Connection, batch: Vec<Box<dyn Job>>, counts: &Counts) {
    counts.transactions.fetch_add(1, Ordering::Relaxed);
    counts
        .writes
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    if let Err(e) = run(conn, "BEGIN IMMEDIATE") {
        let failure = BatchFailure::new(&e);
        batch.into_iter().for_each(|job| job.fail(&failure));
        return;
    }
    let single = batch.len() == 1;
    let mut ran: Vec<Box<dyn Settle>> = Vec::with_capacity(batch.len());
    let mut kept = false;
    let mut failure = None;
    for job in batch {
        if let Some(failure) = &failure {
            // The transaction is broken: the rest is not run.
            job.fail(failure);
            continue;
        }
        if single {
            let done = job.run(conn);
            kept = done.keep();
            ran.push(done);
            continue;
        }
        if let Err(e) = run(conn, "SAVEPOINT job") {
            let broken = BatchFailure::new(&e);
            job.fail(&broken);
            failure = Some(broken);
            continue;
        }
        let done = job.run(conn);
        let ended = if done.keep() {
            kept = true;
            run(conn, "RELEASE job")
        } else {
            run(conn, "ROLLBACK TO job").and_then(|()| run(conn, "RELEASE job"))
        };
        ran.push(done);
        if let Err(e) = ended {
            failure = Some(BatchFailure::new(&e));
        }
    }
    let committed = match failure {
        Some(failure) => Err(failure),
        None if kept => run(conn, "COMMIT").map_err(|e| BatchFailure::new(&e)),
        None => run(conn, "ROLLBACK").map_err(|e| BatchFailure::new(&e)),
    };
    if committed.is_err() && !conn.is_autocommit() {
        // A failed COMMIT may leave the transaction open: end it.
        let _ = run(conn, "ROLLBACK");
    }
    if let Err(failure) = &committed {
        tracing::warn!(error = %failure.text, writes = ran.len(), "an SQLite write transaction failed");
    }
    for done in ran {
        done.settle(committed.as_ref().map(|_| ()));
    }
}

#[cfg(test)]
mod tests {
    use super::super::db_err;
    use super::*;

    fn table() -> Connection {
        let conn = Connection::open_in_memory().expect("memory");
        conn.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)")
            .expect("table");
        conn
    }

    fn insert(
        k: &'static str,
        keep: bool,
    ) -> impl FnOnce(&Connection) -> Result<((), bool), StoreError> + Send {
        move |conn| {
            conn.execute("INSERT INTO t (k, v) VALUES (?1, 1)", [k])
                .map_err(db_err)?;
            Ok(((), keep))
        }
    }

    fn job<F, T>(f: F) -> (Box<dyn Job>, oneshot::Receiver<Result<T, StoreError>>)
    where
        F: FnOnce(&Connection) -> Result<(T, bool), StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        (Box::new(Write { f, answer }), answered)
    }

    fn keys(conn: &Connection) -> Vec<String> {
        let mut stmt = conn.prepare("SELECT k FROM t ORDER BY k").expect("select");
        stmt.query_map([], |row| row.get(0))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("keys")
    }

    /// In one batch, a write that fails and one that keeps nothing are rolled back alone;
    /// a later write sees the changes of the earlier ones, as in separate transactions
    /// taken in order; every write is answered with its own outcome.
    #[test]
    fn each_write_of_a_batch_has_the_outcome_of_its_own_transaction() {
        let mut conn = table();
        let (a, a_answer) = job(insert("a", true));
        let (dropped, dropped_answer) = job(insert("b", false));
        let (failing, failing_answer) = job(|conn: &Connection| {
            conn.execute("INSERT INTO t (k, v) VALUES ('c', 1)", [])
                .map_err(db_err)?;
            // The second insert of the same key fails: the first is rolled back with it.
            conn.execute("INSERT INTO t (k, v) VALUES ('c', 2)", [])
                .map_err(db_err)?;
            Ok(((), true))
        });
        let (sees_a, sees_a_answer) = job(|conn: &Connection| {
            let n: i64 = conn
                .query_row("SELECT COUNT(*) FROM t WHERE k = 'a'", [], |r| r.get(0))
                .map_err(db_err)?;
            Ok((n, false))
        });
        let (d, d_answer) = job(insert("d", true));
        run_batch(
            &mut conn,
            vec![a, dropped, failing, sees_a, d],
            &Counts::default(),
        );
        assert!(conn.is_autocommit(), "the batch's transaction ended");
        assert_eq!(keys(&conn), ["a", "d"]);
        assert!(a_answer.blocking_recv().expect("answered").is_ok());
        assert!(dropped_answer.blocking_recv().expect("answered").is_ok());
        assert!(matches!(
            failing_answer.blocking_recv().expect("answered"),
            Err(StoreError::Unavailable { .. })
        ));
        assert_eq!(
            sees_a_answer.blocking_recv().expect("answered").ok(),
            Some(1)
        );
        assert!(d_answer.blocking_recv().expect("answered").is_ok());
    }

    /// A batch whose transaction cannot begin answers every write with that failure and
    /// runs none of them.
    #[test]
    fn a_batch_that_cannot_begin_runs_nothing() {
        let mut conn = table();
        conn.execute_batch("BEGIN")
            .expect("a transaction already open");
        let (a, a_answer) = job(insert("a", true));
        let (b, b_answer) = job(insert("b", true));
        run_batch(&mut conn, vec![a, b], &Counts::default());
        for answer in [a_answer, b_answer] {
            assert!(matches!(
                answer.blocking_recv().expect("answered"),
                Err(StoreError::Unavailable { .. })
            ));
        }
        conn.execute_batch("ROLLBACK").expect("rolled back");
        assert!(keys(&conn).is_empty());
    }

    fn file() -> (tempfile::TempDir, std::path::PathBuf, Writer) {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("w.db");
        let conn = Connection::open(&path).expect("file");
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)",
        )
        .expect("table");
        let writer = Writer::start(conn).expect("writer");
        (dir, path, writer)
    }

    async fn insert_row(writer: &Writer, i: i64) -> Result<i64, StoreError> {
        writer
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO t (k, v) VALUES (?1, ?2)",
                    rusqlite::params![format!("k{i:02}"), i],
                )
                .map_err(db_err)?;
                Ok((i, true))
            })
            .await
    }

    /// Writes that wait while the thread is busy are committed together, in one
    /// transaction, and each is answered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_that_wait_are_committed_together() {
        let (_dir, path, writer) = file();
        let writer = Arc::new(writer);
        let (started, running) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let busy = tokio::spawn({
            let writer = Arc::clone(&writer);
            async move {
                writer
                    .write(move |_| {
                        started.send(()).expect("told");
                        released.recv().expect("released");
                        Ok(((), false))
                    })
                    .await
            }
        });
        running.recv().expect("the thread is busy");
        let all = futures::future::join_all((0..40).map(|i| insert_row(&writer, i)));
        tokio::pin!(all);
        // One poll hands the 40 writes over; then the thread may go on.
        assert!(futures::poll!(all.as_mut()).is_pending());
        release.send(()).expect("release");
        let answers = all.await;
        busy.await.expect("joined").expect("answered");
        assert_eq!(
            answers
                .into_iter()
                .map(|a| a.expect("written"))
                .collect::<Vec<_>>(),
            (0..40).collect::<Vec<_>>()
        );
        assert_eq!(
            writer.transactions(),
            2,
            "the busy write's transaction, then one for the 40"
        );
        let reader = Connection::open(&path).expect("reopened");
        assert_eq!(keys(&reader).len(), 40);
    }

    /// Writes handed to the thread are answered after their commit, and dropping the
    /// writer finishes them first.
    #[tokio::test]
    async fn the_thread_answers_after_the_commit() {
        let (_dir, path, writer) = file();
        let answers = futures::future::join_all((0..50).map(|i| insert_row(&writer, i))).await;
        assert_eq!(
            answers
                .into_iter()
                .map(|a| a.expect("written"))
                .collect::<Vec<_>>(),
            (0..50).collect::<Vec<_>>()
        );
        drop(writer);
        let reader = Connection::open(&path).expect("reopened");
        assert_eq!(keys(&reader).len(), 50);
    }
}
