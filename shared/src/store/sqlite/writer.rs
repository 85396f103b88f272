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
//! A write that panics is rolled back alone, like one that fails, and its caller panics
//! with the same payload (as it would have running the write itself); the thread goes on.
//! The queue holds at most [`QUEUE`] writes: beyond that a write is refused at once as
//! unavailable instead of waiting behind a file another process holds.
//!
//! A single write (no other waiting) is one transaction, as without the writer. Under
//! load, the cost of a transaction — taking the file's write lock, appending the changed
//! pages to the WAL, checkpointing — is shared by every write of the batch: the
//! audit records of concurrent executions fill the same index pages, which the WAL then
//! holds once per batch instead of once per write.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
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

/// The most writes waiting for the thread; a write beyond them is refused as unavailable.
pub(super) const QUEUE: usize = 4096;

/// What a caller is told: the write's answer, or the payload of its panic.
type Answer<T> = std::thread::Result<Result<T, StoreError>>;

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
    answer: oneshot::Sender<Answer<T>>,
}

/// A write that ran: its result (or its panic), waiting for the commit.
struct Ran<T> {
    result: std::thread::Result<Result<(T, bool), StoreError>>,
    answer: oneshot::Sender<Answer<T>>,
}

impl<F, T> Job for Write<F, T>
where
    F: FnOnce(&Connection) -> Result<(T, bool), StoreError> + Send,
    T: Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> Box<dyn Settle> {
        let Write { f, answer } = *self;
        Box::new(Ran {
            result: catch_unwind(AssertUnwindSafe(|| f(conn))),
            answer,
        })
    }

    fn fail(self: Box<Self>, failure: &BatchFailure) {
        // The caller may have gone (its future dropped): nobody to tell.
        let _ = self.answer.send(Ok(Err(failure.error())));
    }
}

impl<T: Send> Settle for Ran<T> {
    fn keep(&self) -> bool {
        matches!(self.result, Ok(Ok((_, true))))
    }

    fn settle(self: Box<Self>, committed: Result<(), &BatchFailure>) {
        let answer = match (self.result, committed) {
            // Its panic (its changes were rolled back) goes to the caller, whatever the
            // batch did.
            (Err(panic), _) => Err(panic),
            // So does its own failure.
            (Ok(Err(e)), _) => Ok(Err(e)),
            (Ok(Ok(_)), Err(failure)) => Ok(Err(failure.error())),
            (Ok(Ok((value, _))), Ok(())) => Ok(Ok(value)),
        };
        let _ = self.answer.send(answer);
    }
}

/// The writer thread of a store file, and the way to it.
#[derive(Debug)]
pub(super) struct Writer {
    jobs: Option<mpsc::SyncSender<Box<dyn Job>>>,
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
        let (jobs, queue) = mpsc::sync_channel::<Box<dyn Job>>(QUEUE);
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
                    if let Some(busy) = run_batch(&mut conn, batch, &counted) {
                        // Another process holds the file, and has for the busy timeout:
                        // the writes waiting now would each wait as long again. They
                        // are answered with the same failure at once.
                        while let Ok(job) = queue.try_recv() {
                            job.fail(&busy);
                        }
                    }
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
    /// whether its changes are kept; a write that is not kept, that fails or that panics
    /// is rolled back alone (a panic is resumed here). With [`QUEUE`] writes waiting,
    /// `StoreError::Unavailable` at once.
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
        let jobs = self.jobs.as_ref().ok_or_else(stopped)?;
        match jobs.try_send(Box::new(Write { f, answer })) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(_)) => {
                return Err(StoreError::Unavailable {
                    message: format!(
                        "the SQLite writer has {QUEUE} writes waiting (the file is busy); try again"
                    ),
                    source: None,
                });
            }
            Err(mpsc::TrySendError::Disconnected(_)) => return Err(stopped()),
        }
        match answered.await {
            Ok(Ok(answer)) => answer,
            Ok(Err(panic)) => resume_unwind(panic),
            Err(_) => Err(stopped()),
        }
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

/// Run `batch` in one transaction and answer each write. When the transaction could not
/// begin because another process holds the file, that failure.
fn run_batch(
    conn: &mut Connection,
    batch: Vec<Box<dyn Job>>,
    counts: &Counts,
) -> Option<BatchFailure> {
    counts.transactions.fetch_add(1, Ordering::Relaxed);
    let writes = batch.len();
    counts.writes.fetch_add(writes as u64, Ordering::Relaxed);
    if !conn.is_autocommit() {
        // A transaction left open by an earlier batch whose COMMIT and ROLLBACK both
        // failed: end it, or no batch could ever begin again.
        let _ = run(conn, "ROLLBACK");
    }
    if let Err(e) = run(conn, "BEGIN IMMEDIATE") {
        let failure = BatchFailure::new(&e);
        tracing::warn!(error = %failure.text, writes, "an SQLite write transaction could not begin");
        batch.into_iter().for_each(|job| job.fail(&failure));
        return failure.busy.then_some(failure);
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
        tracing::warn!(error = %failure.text, writes, "an SQLite write transaction failed");
    }
    for done in ran {
        done.settle(committed.as_ref().map(|_| ()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::db_err;
    use super::*;
    use std::time::Duration;

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

    fn job<F, T>(f: F) -> (Box<dyn Job>, oneshot::Receiver<Answer<T>>)
    where
        F: FnOnce(&Connection) -> Result<(T, bool), StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        (Box::new(Write { f, answer }), answered)
    }

    /// The answer of a write that did not panic.
    fn answer<T>(answered: oneshot::Receiver<Answer<T>>) -> Result<T, StoreError> {
        match answered.blocking_recv().expect("answered") {
            Ok(answer) => answer,
            Err(_) => panic!("the write panicked"),
        }
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
        assert!(answer(a_answer).is_ok());
        assert!(answer(dropped_answer).is_ok());
        assert!(matches!(
            answer(failing_answer),
            Err(StoreError::Unavailable { .. })
        ));
        assert_eq!(answer(sees_a_answer).ok(), Some(1));
        assert!(answer(d_answer).is_ok());
    }

    /// A write that panics is rolled back alone; its caller gets the panic, the other
    /// writes of the batch their own outcomes, and the connection goes on.
    #[test]
    fn a_write_that_panics_is_rolled_back_alone() {
        let mut conn = table();
        let (a, a_answer) = job(insert("a", true));
        let (panics, panics_answer) = job(|conn: &Connection| -> Result<((), bool), StoreError> {
            conn.execute("INSERT INTO t (k, v) VALUES ('p', 1)", [])
                .map_err(db_err)?;
            panic!("a bug in a write");
        });
        let (b, b_answer) = job(insert("b", true));
        run_batch(&mut conn, vec![a, panics, b], &Counts::default());
        assert_eq!(keys(&conn), ["a", "b"]);
        assert!(answer(a_answer).is_ok());
        assert!(answer(b_answer).is_ok());
        let payload = panics_answer
            .blocking_recv()
            .expect("answered")
            .expect_err("the panic");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"a bug in a write"));

        // Alone in its batch, the same: nothing kept.
        let (panics, panics_answer) = job(|conn: &Connection| -> Result<((), bool), StoreError> {
            conn.execute("INSERT INTO t (k, v) VALUES ('q', 1)", [])
                .map_err(db_err)?;
            panic!("again");
        });
        run_batch(&mut conn, vec![panics], &Counts::default());
        assert!(panics_answer.blocking_recv().expect("answered").is_err());
        assert!(conn.is_autocommit());
        assert_eq!(keys(&conn), ["a", "b"]);
    }

    /// A transaction left open on the connection (an earlier batch whose COMMIT and
    /// ROLLBACK both failed) is ended before the next batch, which then runs.
    #[test]
    fn a_transaction_left_open_is_ended_before_the_next_batch() {
        let mut conn = table();
        conn.execute_batch("BEGIN; INSERT INTO t (k, v) VALUES ('stale', 1)")
            .expect("a transaction left open");
        let (a, a_answer) = job(insert("a", true));
        assert!(run_batch(&mut conn, vec![a], &Counts::default()).is_none());
        assert!(answer(a_answer).is_ok());
        assert!(conn.is_autocommit());
        assert_eq!(
            keys(&conn),
            ["a"],
            "the open transaction's write was rolled back"
        );
    }

    /// When another connection holds the file past the busy timeout, the batch runs none
    /// of its writes, answers each with the busy failure, and tells the thread so.
    #[test]
    fn a_batch_that_cannot_begin_runs_nothing() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("busy.db");
        let mut conn = Connection::open(&path).expect("file");
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)",
        )
        .expect("table");
        conn.busy_timeout(Duration::from_millis(1))
            .expect("timeout");
        let other = Connection::open(&path).expect("other");
        other.execute_batch("BEGIN IMMEDIATE").expect("locked");
        let (a, a_answer) = job(insert("a", true));
        let (b, b_answer) = job(insert("b", true));
        let busy = run_batch(&mut conn, vec![a, b], &Counts::default());
        assert!(busy.is_some_and(|f| f.busy));
        for answered in [a_answer, b_answer] {
            match answer(answered) {
                Err(StoreError::Unavailable { message, .. }) => assert_eq!(message, BUSY_MESSAGE),
                other => panic!("expected busy, got {other:?}"),
            }
        }
        other.execute_batch("ROLLBACK").expect("released");
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

    /// Writes that wait while the thread is busy are committed together, at most
    /// MAX_BATCH to a transaction, and each is answered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_that_wait_are_committed_together() {
        let (_dir, path, writer) = file();
        let writer = Arc::new(writer);
        let (busy, release) = hold(&writer);
        let n = MAX_BATCH as i64 + 1;
        let all = futures::future::join_all((0..n).map(|i| insert_row(&writer, i)));
        tokio::pin!(all);
        // One poll hands the writes over; then the thread may go on.
        assert!(futures::poll!(all.as_mut()).is_pending());
        release.send(()).expect("release");
        let answers = all.await;
        busy.await.expect("joined").expect("answered");
        assert_eq!(
            answers
                .into_iter()
                .map(|a| a.expect("written"))
                .collect::<Vec<_>>(),
            (0..n).collect::<Vec<_>>()
        );
        assert_eq!(
            writer.transactions(),
            3,
            "the busy write's transaction, then one of MAX_BATCH writes and one of the last"
        );
        let reader = Connection::open(&path).expect("reopened");
        assert_eq!(keys(&reader).len(), MAX_BATCH + 1);
    }

    /// A COMMIT that fails (a deferred foreign key, which leaves the transaction open)
    /// fails every write of the batch, even one that only read, keeps none of them, and
    /// the transaction is ended at once: the file's lock is not held until the next batch.
    #[test]
    fn a_failed_commit_fails_every_write_and_ends_the_transaction() {
        let mut conn = table();
        conn.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE parent (id TEXT PRIMARY KEY);
             CREATE TABLE child (id TEXT PRIMARY KEY,
                 parent TEXT REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)",
        )
        .expect("tables");
        let (a, a_answer) = job(insert("a", true));
        let (orphan, orphan_answer) = job(|conn: &Connection| {
            conn.execute("INSERT INTO child (id, parent) VALUES ('c', 'none')", [])
                .map_err(db_err)?;
            Ok(((), true))
        });
        let (reads, reads_answer) = job(|conn: &Connection| {
            let n: i64 = conn
                .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
                .map_err(db_err)?;
            Ok((n, false))
        });
        assert!(run_batch(&mut conn, vec![a, orphan, reads], &Counts::default()).is_none());
        assert!(
            conn.is_autocommit(),
            "the failed transaction was rolled back"
        );
        assert!(keys(&conn).is_empty());
        for failed in [answer(a_answer).err(), answer(orphan_answer).err()] {
            assert!(matches!(failed, Some(StoreError::Unavailable { .. })));
        }
        assert!(answer(reads_answer).is_err());
    }

    /// Dropping the writer lets the thread finish the writes already handed to it: they
    /// are in the file once the drop returns.
    #[test]
    fn dropping_the_writer_finishes_the_writes_handed_to_it() {
        let (_dir, path, writer) = file();
        let jobs = writer.jobs.as_ref().expect("running");
        let (slow, slow_answer) = job(|conn: &Connection| {
            std::thread::sleep(Duration::from_millis(50));
            insert("slow", true)(conn)
        });
        jobs.send(slow).expect("handed over");
        let mut answers = vec![slow_answer];
        for k in ["a", "b", "c"] {
            let (write, answered) = job(insert(k, true));
            jobs.send(write).expect("handed over");
            answers.push(answered);
        }
        drop(writer);
        let reader = Connection::open(&path).expect("reopened");
        assert_eq!(keys(&reader), ["a", "b", "c", "slow"]);
        assert!(answers.into_iter().all(|a| answer(a).is_ok()));
    }

    /// Blocks the writer thread with a write until told to go on; answers once running.
    fn hold(
        writer: &Arc<Writer>,
    ) -> (
        tokio::task::JoinHandle<Result<(), StoreError>>,
        std::sync::mpsc::Sender<()>,
    ) {
        let (started, running) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let busy = tokio::spawn({
            let writer = Arc::clone(writer);
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
        (busy, release)
    }

    /// With QUEUE writes waiting, one more is refused at once; those waiting are written.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_refuses_the_next_write() {
        let (_dir, path, writer) = file();
        let writer = Arc::new(writer);
        let (busy, release) = hold(&writer);
        let waiting = futures::future::join_all((0..QUEUE as i64).map(|i| insert_row(&writer, i)));
        tokio::pin!(waiting);
        assert!(futures::poll!(waiting.as_mut()).is_pending());
        match insert_row(&writer, -1).await {
            Err(StoreError::Unavailable { message, .. }) => {
                assert!(message.contains("writes waiting"), "{message}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        release.send(()).expect("release");
        assert!(waiting.await.iter().all(Result::is_ok));
        busy.await.expect("joined").expect("answered");
        let reader = Connection::open(&path).expect("reopened");
        assert_eq!(keys(&reader).len(), QUEUE);
    }

    /// When a batch cannot begin because another process holds the file, the writes still
    /// waiting are answered busy at once, without a transaction (and its wait) each.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_busy_file_answers_every_waiting_write_at_once() {
        use std::sync::atomic::AtomicBool;
        // The writer's busy handler (a plain fn): it says when the first BEGIN waits, and
        // gives up once the test has queued the other writes.
        static WAITING: AtomicBool = AtomicBool::new(false);
        static QUEUED: AtomicBool = AtomicBool::new(false);
        fn handler(_: i32) -> bool {
            WAITING.store(true, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(1));
            !QUEUED.load(Ordering::SeqCst)
        }
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("w.db");
        let mut conn = Connection::open(&path).expect("file");
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER NOT NULL)",
        )
        .expect("table");
        let other = Connection::open(&path).expect("other");
        other.execute_batch("BEGIN IMMEDIATE").expect("locked");
        conn.busy_handler(Some(handler)).expect("handler");
        let writer = Arc::new(Writer::start(conn).expect("writer"));
        let first = tokio::spawn({
            let writer = Arc::clone(&writer);
            async move { insert_row(&writer, 1000).await }
        });
        while !WAITING.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let waiting = futures::future::join_all((0..200).map(|i| insert_row(&writer, i)));
        tokio::pin!(waiting);
        assert!(futures::poll!(waiting.as_mut()).is_pending());
        QUEUED.store(true, Ordering::SeqCst);
        let busy = |answered: Result<i64, StoreError>| match answered {
            Err(StoreError::Unavailable { message, .. }) => assert_eq!(message, BUSY_MESSAGE),
            other => panic!("expected busy, got {other:?}"),
        };
        busy(first.await.expect("joined"));
        waiting.await.into_iter().for_each(busy);
        assert_eq!(
            writer.transactions(),
            1,
            "one BEGIN that failed, none for the 200"
        );
        other.execute_batch("ROLLBACK").expect("released");
        assert!(keys(&other).is_empty());
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
