//! The executor's arithmetic and timing pinned to the millisecond, on the embedded store
//! (docs/architecture.md §4.2–§4.5): the lease an attempt takes, the handler's budget,
//! retention, commit resends and their backoff, and what each store answer to a commit
//! leaves behind.
//!
//! Time is frozen: a manual clock gives the protocol its times, and tokio's paused clock
//! runs the handler's sleeps and the executor's backoff, so every number is exact. The
//! store is the embedded one behind [`Scripted`], which plays chosen answers to commits
//! (a failed send, a lost answer, a stolen lease, a refusal) and logs what the executor
//! asked of it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actiondo::store::sqlite::SqliteStore;
use actiondo::store::{
    Claim, ClaimOutcome, Commit, CommitOutcome, IdempotencyRecord, RecordStatus, RecordWrite,
};
use actiondo::{
    Action, ActionContext, ActionError, ActionOptions, AuditFilter, AuditPage, AuditQuery,
    AuditRecord, AuditStatus, Clock, Entity, EntityKey, ErrorKind, Execution, Executor, Expect,
    Invocation, Lease, Mode, Source, Store, StoreError,
};
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

/// The protocol's clock: moves only when told.
#[derive(Debug, Clone)]
struct ManualClock(Arc<AtomicI64>);

/// 2026-11-29T00:00:00.250Z: not on a second, so that second arithmetic shows.
const T0: i64 = 1_795_910_400_250;

impl ManualClock {
    fn new() -> Self {
        Self(Arc::new(AtomicI64::new(T0)))
    }
    fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
    fn set_ms(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// What the next commit meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// Applied as usual.
    Pass,
    /// Fails as a timeout, nothing written.
    Fail,
    /// Applied, then the answer is lost (a timeout).
    LoseAnswer,
    /// Refused as a request the store can never accept, nothing written.
    Refuse,
    /// Another attempt takes the lease over just before the commit arrives.
    Steal,
    /// Another attempt takes the lease over and completes the record; this send fails as
    /// a timeout, nothing of it written.
    StealAndCompleteThenFail,
}

/// The embedded store, with scripted answers to commits and a log of what was asked.
#[derive(Debug)]
struct Scripted {
    inner: Arc<SqliteStore>,
    answers: Mutex<VecDeque<Reply>>,
    /// Each primitive the executor called, in order.
    calls: Mutex<Vec<&'static str>>,
    /// When each commit was sent (tokio's clock) and what it did to the record.
    commits: Mutex<Vec<(tokio::time::Instant, &'static str)>>,
}

impl Scripted {
    fn new() -> Self {
        Self {
            inner: Arc::new(SqliteStore::in_memory().expect("in-memory SQLite")),
            answers: Mutex::new(VecDeque::new()),
            calls: Mutex::new(Vec::new()),
            commits: Mutex::new(Vec::new()),
        }
    }

    fn answer(&self, answers: impl IntoIterator<Item = Reply>) {
        self.answers.lock().expect("answers").extend(answers);
    }

    fn log(&self, call: &'static str) {
        self.calls.lock().expect("calls").push(call);
    }

    fn calls(&self) -> Vec<&'static str> {
        self.calls.lock().expect("calls").clone()
    }

    /// The kinds of the commits sent, in order (`finish`, `release`, `insert`).
    fn commit_kinds(&self) -> Vec<&'static str> {
        self.commits
            .lock()
            .expect("commits")
            .iter()
            .map(|c| c.1)
            .collect()
    }

    /// The pauses between successive commit sends.
    fn commit_gaps(&self) -> Vec<Duration> {
        let commits = self.commits.lock().expect("commits");
        commits.windows(2).map(|w| w[1].0 - w[0].0).collect()
    }

    /// Another attempt claims `id` long after our lease, with the same payload.
    async fn steal(&self, id: &str) -> Claim {
        let record = self
            .inner
            .get_record(id)
            .await
            .expect("read")
            .expect("a record to steal");
        let thief = Claim {
            id: id.to_owned(),
            payload_hash: record.payload_hash,
            lease_owner: "another-attempt".into(),
            lease_expires_at_ms: i64::MAX / 2,
            expires_at_s: i64::MAX / 2000,
            now_ms: i64::MAX / 4,
        };
        self.inner.claim(&thief).await.expect("the thief claims");
        thief
    }
}

fn timeout(what: &str) -> StoreError {
    StoreError::Unavailable {
        message: format!("scripted: {what} timed out"),
        source: None,
    }
}

#[async_trait]
impl Store for Scripted {
    async fn claim(&self, claim: &Claim) -> Result<ClaimOutcome, StoreError> {
        self.log("claim");
        self.inner.claim(claim).await
    }

    async fn commit(&self, commit: &Commit) -> Result<CommitOutcome, StoreError> {
        self.log("commit");
        let (kind, id) = match &commit.record {
            RecordWrite::Finish { id, .. } => ("finish", id.clone()),
            RecordWrite::Release { id, .. } => ("release", id.clone()),
            RecordWrite::Insert { record, .. } => ("insert", record.id.clone()),
            RecordWrite::None => ("none", String::new()),
        };
        self.commits
            .lock()
            .expect("commits")
            .push((tokio::time::Instant::now(), kind));
        let answer = self
            .answers
            .lock()
            .expect("answers")
            .pop_front()
            .unwrap_or(Reply::Pass);
        match answer {
            Reply::Pass => self.inner.commit(commit).await,
            Reply::Fail => Err(timeout("commit")),
            Reply::LoseAnswer => {
                self.inner.commit(commit).await?;
                Err(timeout("commit answer"))
            }
            Reply::Refuse => Err(StoreError::Refused("scripted: refused".into())),
            Reply::Steal => {
                self.steal(&id).await;
                self.inner.commit(commit).await
            }
            Reply::StealAndCompleteThenFail => {
                let thief = self.steal(&id).await;
                let mut audit = commit.audit.clone();
                audit.seq = format!("{}-thief", audit.seq);
                let done = Commit {
                    record: RecordWrite::Finish {
                        id: id.clone(),
                        lease_owner: thief.lease_owner,
                        status: RecordStatus::Completed,
                        result: Some(actiondo::store::StoredResult::Json("\"thief\"".into())),
                        error: None,
                        completed_at_ms: thief.now_ms,
                        expires_at_s: thief.expires_at_s,
                    },
                    audit,
                    writes: Vec::new(),
                };
                assert_eq!(
                    self.inner.commit(&done).await.expect("the thief commits"),
                    CommitOutcome::Committed
                );
                Err(timeout("commit"))
            }
        }
    }

    async fn put_audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        self.log("put_audit");
        self.inner.put_audit(record).await
    }

    async fn get_record(&self, id: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.log("get_record");
        self.inner.get_record(id).await
    }

    async fn get_entity(&self, key: &EntityKey) -> Result<Option<Entity>, StoreError> {
        self.log("get_entity");
        self.inner.get_entity(key).await
    }

    async fn query_audit(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        self.log("query_audit");
        self.inner.query_audit(query).await
    }
    async fn put_entity(
        &self,
        key: &EntityKey,
        doc: &serde_json::Value,
        expect: Expect,
    ) -> Result<bool, StoreError> {
        self.log("put_entity");
        self.inner.put_entity(key, doc, expect).await
    }
}

/// What one handler call does.
#[derive(Debug, Clone, Default)]
struct Step {
    /// Move the protocol's clock first.
    advance_ms: i64,
    /// Then sleep this long (tokio's clock).
    sleep_ms: u64,
    /// Stage a put of each `(pk, expect)`.
    puts: Vec<(String, Expect)>,
    /// The size of the text in each staged document.
    doc_bytes: usize,
    /// Then fail this way.
    fail: Option<ErrorKind>,
}

/// An action whose calls follow a script; it reports the idempotency record as the
/// handler saw it.
#[derive(Debug)]
struct Script {
    options: ActionOptions,
    clock: ManualClock,
    store: Arc<SqliteStore>,
    plan: Mutex<VecDeque<Step>>,
    calls: AtomicUsize,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct ScriptInput {
    value: String,
}

impl Action for Script {
    type Input = ScriptInput;
    type Output = Value;
    const NAME: &'static str = "script";
    const DESCRIPTION: &'static str = "Follows a script.";

    fn options(&self) -> ActionOptions {
        self.options.clone()
    }

    async fn execute(
        &self,
        input: ScriptInput,
        cx: &mut ActionContext,
    ) -> Result<Value, ActionError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let step = self
            .plan
            .lock()
            .expect("plan")
            .pop_front()
            .unwrap_or_default();
        self.clock.advance_ms(step.advance_ms);
        if step.sleep_ms > 0 {
            tokio::time::sleep(Duration::from_millis(step.sleep_ms)).await;
        }
        let seen = self
            .store
            .get_record(&format!("script#{}", cx.idempotency_key()))
            .await?
            .map(|r| {
                json!({
                    "status": r.status.as_str(),
                    "leaseExpiresAtMs": r.lease_expires_at_ms,
                    "expiresAtS": r.expires_at_s,
                    "createdAtMs": r.created_at_ms,
                })
            });
        for (pk, expect) in step.puts {
            let doc = json!({"value": input.value, "text": "t".repeat(step.doc_bytes)});
            cx.put(EntityKey::new(pk, "doc"), &doc, expect)?;
        }
        match step.fail {
            Some(ErrorKind::Rejected) => return Err(ActionError::rejected("the script says no")),
            Some(kind) => return Err(ActionError::new(kind, "the script's dependency is down")),
            None => {}
        }
        Ok(json!({"value": input.value, "call": call, "attempt": cx.attempt(), "seen": seen}))
    }
}

struct Setup {
    store: Arc<Scripted>,
    clock: ManualClock,
    executor: Executor,
    action: Script,
}

impl Setup {
    fn new(options: ActionOptions) -> Self {
        let store = Arc::new(Scripted::new());
        let clock = ManualClock::new();
        let executor = Executor::from_arc(store.clone()).with_clock(clock.clone());
        let action = Script {
            options,
            clock: clock.clone(),
            store: store.inner.clone(),
            plan: Mutex::new(VecDeque::new()),
            calls: AtomicUsize::new(0),
        };
        Self {
            store,
            clock,
            executor,
            action,
        }
    }

    fn fixed(lease_ms: u64) -> Self {
        Self::new(ActionOptions {
            lease: Lease::Fixed(Duration::from_millis(lease_ms)),
            ..ActionOptions::default()
        })
    }

    fn plan(&self, steps: impl IntoIterator<Item = Step>) {
        self.action.plan.lock().expect("plan").extend(steps);
    }

    fn calls(&self) -> usize {
        self.action.calls.load(Ordering::SeqCst)
    }

    async fn run(&self, key: &str) -> Execution {
        self.run_inv(Invocation::new(json!({"value": "x"}), Source::Cli).with_key(key))
            .await
    }

    async fn run_inv(&self, inv: Invocation) -> Execution {
        self.store.calls.lock().expect("calls").clear();
        self.store.commits.lock().expect("commits").clear();
        self.executor.execute(&self.action, inv).await
    }

    async fn record(&self, key: &str) -> IdempotencyRecord {
        self.store
            .inner
            .get_record(&format!("script#{key}"))
            .await
            .expect("read")
            .expect("a record")
    }

    async fn no_record(&self, key: &str) -> bool {
        self.store
            .inner
            .get_record(&format!("script#{key}"))
            .await
            .expect("read")
            .is_none()
    }

    async fn audit(&self, key: &str) -> Vec<AuditRecord> {
        self.store
            .inner
            .query_audit(&AuditQuery::new(AuditFilter::Execution(format!(
                "script#{key}"
            ))))
            .await
            .expect("audit")
            .records
    }

    async fn statuses(&self, key: &str) -> Vec<AuditStatus> {
        let mut records = self.audit(key).await;
        // The clock is frozen: order by the sequence's attempt and event, oldest first.
        records.sort_by(|a, b| a.seq.cmp(&b.seq));
        records.iter().map(|r| r.status).collect()
    }

    async fn entity(&self, pk: &str) -> Option<Entity> {
        self.store
            .inner
            .get_entity(&EntityKey::new(pk, "doc"))
            .await
            .expect("entity")
    }
}

fn output(ex: &Execution) -> Value {
    serde_json::from_str(ex.outcome.as_ref().expect("ok").get()).expect("json")
}

fn slow(sleep_ms: u64) -> Step {
    Step {
        sleep_ms,
        ..Step::default()
    }
}

fn failing(kind: ErrorKind) -> Step {
    Step {
        fail: Some(kind),
        ..Step::default()
    }
}

fn advancing(advance_ms: i64) -> Step {
    Step {
        advance_ms,
        ..Step::default()
    }
}

fn budget_message(ms: i64) -> String {
    format!("the handler did not finish within its lease of {ms} ms")
}

/// The handler's budget is the lease less the commit reserve: 10 % of a lease under 10 s,
/// 1 s of a longer one. A handler finishing 1 ms inside it completes; 1 ms past it is
/// `ActionDo.Transient`, naming the budget, and the key is released.
#[tokio::test(start_paused = true)]
async fn the_handler_budget_is_the_lease_less_the_commit_reserve() {
    for (lease_ms, budget_ms) in [
        (1_000, 900),
        (9_990, 8_991),
        (10_000, 9_000),
        (20_000, 19_000),
    ] {
        let s = Setup::fixed(lease_ms);
        let budget = i64::try_from(budget_ms).expect("small");
        s.plan([slow(budget_ms - 1), slow(budget_ms + 1)]);
        let inside = s.run("inside").await;
        assert!(
            inside.outcome.is_ok(),
            "lease {lease_ms}: {:?}",
            inside.outcome
        );
        let past = s.run("past").await;
        let err = past.outcome.expect_err("over budget");
        assert_eq!(err.kind(), ErrorKind::Transient, "lease {lease_ms}");
        assert_eq!(err.message(), budget_message(budget), "lease {lease_ms}");
        assert!(s.record("past").await.is_released());
        assert_eq!(s.statuses("past").await, [AuditStatus::Retrying]);
    }
}

/// Optimistic mode gives the handler the same budget.
#[tokio::test(start_paused = true)]
async fn the_optimistic_handler_budget_is_the_lease_less_the_commit_reserve() {
    let s = Setup::new(ActionOptions {
        mode: Mode::Optimistic,
        lease: Lease::Fixed(Duration::from_secs(1)),
        ..ActionOptions::default()
    });
    s.plan([slow(899), slow(901)]);
    assert!(s.run("inside").await.outcome.is_ok());
    let err = s.run("past").await.outcome.expect_err("over budget");
    assert_eq!(err.message(), budget_message(900));
    assert!(
        s.no_record("past").await,
        "nothing is held in optimistic mode"
    );
    assert_eq!(s.statuses("past").await, [AuditStatus::Retrying]);
}

/// The commit reserve of a lease (docs/architecture.md §4.2): 1 s, or 10 % of leases under 10 s.
fn budget_of(lease_ms: i64) -> i64 {
    lease_ms
        - if lease_ms >= 10_000 {
            1_000
        } else {
            lease_ms / 10
        }
}

/// The lease of an attempt: the time to the invocation's deadline, at least 1 s and at
/// most the cap; the cap without a deadline. The record the handler sees ends its lease
/// then and expires the retention after that (whole seconds), and the handler's budget
/// follows from that lease.
#[tokio::test(start_paused = true)]
async fn the_lease_comes_from_the_deadline_within_1_s_and_the_cap() {
    let cap_ms = 300_000;
    for (deadline, lease_ms) in [
        (Some(T0 + 5_000), 5_000),
        (Some(T0 + 1_000), 1_000),
        (Some(T0 + 200), 1_000),
        (Some(T0 - 60_000), 1_000),
        (Some(T0 + cap_ms), cap_ms),
        (Some(T0 + 400_000), cap_ms),
        (None, cap_ms),
    ] {
        let s = Setup::new(ActionOptions {
            retention: Duration::from_secs(3_600),
            ..ActionOptions::default()
        });
        let budget = budget_of(lease_ms);
        let sleep = u64::try_from(budget).expect("positive");
        s.plan([slow(sleep - 1), slow(sleep + 1)]);
        let inv = |key: &str| {
            let mut inv = Invocation::new(json!({"value": "x"}), Source::Direct).with_key(key);
            inv.deadline_ms = deadline;
            inv
        };
        let inside = s.run_inv(inv("inside")).await;
        let seen = &output(&inside)["seen"];
        assert_eq!(seen["status"], "IN_PROGRESS");
        assert_eq!(seen["createdAtMs"], json!(T0));
        assert_eq!(
            seen["leaseExpiresAtMs"],
            json!(T0 + lease_ms),
            "deadline {deadline:?}"
        );
        assert_eq!(
            seen["expiresAtS"],
            json!((T0 + lease_ms).div_euclid(1000) + 3_600),
            "deadline {deadline:?}"
        );
        let past = s.run_inv(inv("past")).await;
        let err = past.outcome.expect_err("over budget");
        assert_eq!(
            err.message(),
            budget_message(budget),
            "deadline {deadline:?}"
        );
    }
}

/// A fixed lease is the lease whatever the deadline; the longest one there is still
/// counts (a quarter of the range of i64 milliseconds), as does the longest retention.
#[tokio::test(start_paused = true)]
async fn fixed_leases_and_retentions_are_taken_as_they_are() {
    let s = Setup::new(ActionOptions {
        lease: Lease::Fixed(Duration::from_millis(2_500)),
        retention: Duration::from_secs(60),
        ..ActionOptions::default()
    });
    let mut inv = Invocation::new(json!({"value": "x"}), Source::Direct).with_key("fixed");
    inv.deadline_ms = Some(T0 + 100_000);
    let seen = output(&s.run_inv(inv).await)["seen"].clone();
    assert_eq!(seen["leaseExpiresAtMs"], json!(T0 + 2_500));
    assert_eq!(
        seen["expiresAtS"],
        json!((T0 + 2_500).div_euclid(1000) + 60)
    );

    let s = Setup::new(ActionOptions {
        lease: Lease::Fixed(Duration::MAX),
        retention: Duration::MAX,
        ..ActionOptions::default()
    });
    let ex = s.run("forever").await;
    let seen = output(&ex)["seen"].clone();
    assert_eq!(seen["leaseExpiresAtMs"], json!(T0 + i64::MAX / 4));
    assert_eq!(
        seen["expiresAtS"],
        json!((T0 + i64::MAX / 4).div_euclid(1000) + i64::MAX / 4)
    );
    let record = s.record("forever").await;
    assert_eq!(record.expires_at_s, T0.div_euclid(1000) + i64::MAX / 4);
    s.clock.advance_ms(1_000_000_000);
    assert!(s.run("forever").await.replayed, "kept for ever");
}

/// Retention counts from the commit: a completed or failed record expires at the commit's
/// second plus the retention; at that second it is still replayed, from the next one it
/// runs again (not a take-over). A released record keeps the expiry of its claim.
#[tokio::test(start_paused = true)]
async fn retention_counts_from_the_commit_to_the_second() {
    for mode in [Mode::Claim, Mode::Optimistic] {
        let s = Setup::new(ActionOptions {
            mode,
            retention: Duration::from_secs(60),
            ..ActionOptions::default()
        });
        // The handler takes 1.5 s of the protocol's time.
        s.plan([
            advancing(1_500),
            Step {
                advance_ms: 1_500,
                fail: Some(ErrorKind::Rejected),
                ..Step::default()
            },
        ]);
        let done_ms = T0 + 1_500;
        let expires_s = done_ms.div_euclid(1000) + 60;
        assert!(s.run("ok").await.outcome.is_ok());
        s.clock.set_ms(T0);
        let failed = s.run("failed").await;
        assert_eq!(
            failed.outcome.expect_err("rejected").kind(),
            ErrorKind::Rejected
        );
        for (key, status) in [
            ("ok", RecordStatus::Completed),
            ("failed", RecordStatus::Failed),
        ] {
            let r = s.record(key).await;
            assert_eq!(
                (r.status, r.completed_at_ms, r.expires_at_s),
                (status, Some(done_ms), expires_s),
                "{mode:?} {key}"
            );
        }

        // The last millisecond of the last second of retention: replayed.
        s.clock.set_ms((expires_s + 1) * 1000 - 1);
        let replay = s.run("ok").await;
        assert!(replay.replayed, "{mode:?}");
        // The next millisecond: expired, run again as a new execution.
        s.clock.set_ms((expires_s + 1) * 1000);
        let again = s.run("ok").await;
        assert!(again.outcome.is_ok() && !again.replayed, "{mode:?}");
        assert_eq!(output(&again)["call"], json!(s.calls()));
        let statuses = s.statuses("ok").await;
        assert!(
            !statuses.contains(&AuditStatus::TakenOver),
            "{mode:?} {statuses:?}"
        );
        let r = s.record("ok").await;
        assert_eq!(r.status, RecordStatus::Completed);
    }
}

/// A released record keeps the expiry its claim gave it.
#[tokio::test(start_paused = true)]
async fn a_release_keeps_the_claims_expiry() {
    let s = Setup::new(ActionOptions {
        lease: Lease::Fixed(Duration::from_secs(30)),
        retention: Duration::from_secs(60),
        ..ActionOptions::default()
    });
    s.plan([Step {
        advance_ms: 1_500,
        fail: Some(ErrorKind::Transient),
        ..Step::default()
    }]);
    assert!(s.run("k").await.outcome.is_err());
    let r = s.record("k").await;
    assert!(r.is_released());
    assert_eq!(r.expires_at_s, (T0 + 30_000).div_euclid(1000) + 60);
    assert_eq!(r.completed_at_ms, None);
}

/// A commit that fails in a way a retry may fix is sent again under the same lease after
/// 100 ms, then 400 ms; three sends in all. The handler runs once.
#[tokio::test(start_paused = true)]
async fn a_failed_commit_is_resent_after_100_then_400_ms() {
    let s = Setup::new(ActionOptions::default());
    s.store.answer([Reply::Fail]);
    assert!(s.run("once").await.outcome.is_ok());
    assert_eq!(s.store.commit_kinds(), ["finish", "finish"]);
    assert_eq!(s.store.commit_gaps(), [Duration::from_millis(100)]);

    s.store.answer([Reply::Fail, Reply::Fail]);
    let ex = s.run("twice").await;
    assert!(ex.outcome.is_ok());
    assert_eq!(s.store.commit_kinds(), ["finish", "finish", "finish"]);
    assert_eq!(
        s.store.commit_gaps(),
        [Duration::from_millis(100), Duration::from_millis(400)]
    );
    assert_eq!(s.statuses("twice").await, [AuditStatus::Completed]);
    assert_eq!(s.calls(), 2);
}

/// Three failed sends: the caller gets `ActionDo.Transient` with the time left on the
/// lease, and the record keeps its lease (not released) until it ends.
#[tokio::test(start_paused = true)]
async fn after_three_failed_sends_the_key_waits_for_its_lease() {
    let s = Setup::new(ActionOptions {
        lease: Lease::Fixed(Duration::from_secs(30)),
        ..ActionOptions::default()
    });
    s.plan([Step {
        advance_ms: 4_000,
        puts: vec![("thing#1".into(), Expect::Absent)],
        ..Step::default()
    }]);
    s.store
        .answer([Reply::Fail, Reply::Fail, Reply::Fail, Reply::Pass]);
    let ex = s.run("k").await;
    let err = ex.outcome.expect_err("unavailable");
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert_eq!(err.retry_after_ms(), Some(26_000));
    assert_eq!(s.store.commit_kinds(), ["finish", "finish", "finish"]);
    let r = s.record("k").await;
    assert_eq!(
        (r.status, r.lease_expires_at_ms),
        (RecordStatus::InProgress, T0 + 30_000)
    );
    assert!(s.entity("thing#1").await.is_none());
    assert!(s.audit("k").await.is_empty());
}

/// A resend is not made when its pause would reach the lease's end: 100 ms before the end
/// the commit is sent once; 101 ms before, twice.
#[tokio::test(start_paused = true)]
async fn no_resend_reaches_the_end_of_the_lease() {
    for mode in [Mode::Claim, Mode::Optimistic] {
        let s = Setup::new(ActionOptions {
            mode,
            lease: Lease::Fixed(Duration::from_secs(20)),
            ..ActionOptions::default()
        });
        // The handler uses the protocol's time up to 100 ms before the lease ends.
        s.plan([advancing(19_900)]);
        s.store.answer([Reply::Fail]);
        let ex = s.run("edge").await;
        let err = ex.outcome.expect_err("not resent");
        assert_eq!(err.kind(), ErrorKind::Transient, "{mode:?}");
        assert_eq!(s.store.commit_kinds().len(), 1, "{mode:?}");
        if mode == Mode::Claim {
            assert_eq!(err.retry_after_ms(), Some(100));
        }

        s.clock.set_ms(T0);
        s.plan([advancing(19_899)]);
        s.store.answer([Reply::Fail]);
        let ex = s.run("inside").await;
        assert!(ex.outcome.is_ok(), "{mode:?}: {:?}", ex.outcome);
        assert_eq!(s.store.commit_kinds().len(), 2, "{mode:?}");
    }
}

/// A commit whose answer was lost is sent again; the resend finds the record finished by
/// our own lease: completed once, not a replay, one audit record, and one read of the
/// record. A first send answered lease-lost reads nothing.
#[tokio::test(start_paused = true)]
async fn a_lost_answer_is_told_from_a_lost_lease_by_the_record() {
    let s = Setup::new(ActionOptions::default());
    s.plan([Step {
        puts: vec![("thing#lost".into(), Expect::Absent)],
        ..Step::default()
    }]);
    s.store.answer([Reply::LoseAnswer]);
    let ex = s.run("lost").await;
    assert!(ex.outcome.is_ok() && !ex.replayed, "{:?}", ex.outcome);
    assert_eq!(s.store.calls(), ["claim", "commit", "commit", "get_record"]);
    assert_eq!(s.statuses("lost").await, [AuditStatus::Completed]);
    assert_eq!(s.entity("thing#lost").await.expect("written").version, 1);

    // The lease was lost before the first send: nothing of the attempt written, no read.
    s.plan([Step {
        puts: vec![("thing#stolen".into(), Expect::Absent)],
        ..Step::default()
    }]);
    s.store.answer([Reply::Steal]);
    let ex = s.run("stolen").await;
    let err = ex.outcome.expect_err("lease lost");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(err.details().expect("details")["reason"], "lease_lost");
    assert_eq!(s.store.calls(), ["claim", "commit", "put_audit"]);
    assert!(s.entity("thing#stolen").await.is_none());
    assert_eq!(s.statuses("stolen").await, [AuditStatus::Retrying]);

    // A send failed, then the lease was taken over and the record completed by the other
    // attempt: the resend's lease-lost answer stands, whatever the record's status.
    s.plan([Step {
        puts: vec![("thing#taken".into(), Expect::Absent)],
        ..Step::default()
    }]);
    s.store.answer([Reply::StealAndCompleteThenFail]);
    let ex = s.run("taken").await;
    let err = ex.outcome.expect_err("lease lost");
    assert_eq!(err.details().expect("details")["reason"], "lease_lost");
    assert!(s.entity("thing#taken").await.is_none());
    assert_eq!(s.record("taken").await.lease_owner, "another-attempt");
}

/// A retryable failure whose release meets a lease taken over: the retryable error stands
/// as it is, and nothing of this attempt is written or audited.
#[tokio::test(start_paused = true)]
async fn a_release_that_finds_the_lease_taken_keeps_the_handlers_error() {
    let s = Setup::new(ActionOptions::default());
    s.plan([failing(ErrorKind::Transient)]);
    s.store.answer([Reply::Steal]);
    let ex = s.run("k").await;
    let err = ex.outcome.expect_err("transient");
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert_eq!(err.message(), "the script's dependency is down");
    assert!(s.audit("k").await.is_empty());
    assert_eq!(s.record("k").await.lease_owner, "another-attempt");
}

/// A retryable failure whose release fails on every send: the handler's error stands
/// (not the store's), with the time left on the lease; a terminal failure whose commit
/// fails on every send is the store's retryable error, not the stored-to-be one.
#[tokio::test(start_paused = true)]
async fn what_the_caller_is_told_when_no_send_of_the_outcome_arrives() {
    let s = Setup::new(ActionOptions {
        lease: Lease::Fixed(Duration::from_secs(30)),
        ..ActionOptions::default()
    });
    s.plan([failing(ErrorKind::Transient), failing(ErrorKind::Rejected)]);
    s.store.answer([Reply::Fail; 3]);
    let err = s.run("retryable").await.outcome.expect_err("transient");
    assert_eq!(err.message(), "the script's dependency is down");
    assert_eq!(err.retry_after_ms(), Some(30_000));
    assert_eq!(s.store.commit_kinds(), ["release"; 3]);
    let r = s.record("retryable").await;
    assert!(r.status == RecordStatus::InProgress && !r.is_released());

    s.store.answer([Reply::Fail; 3]);
    let err = s.run("terminal").await.outcome.expect_err("transient");
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert_eq!(err.retry_after_ms(), Some(30_000));
    assert_eq!(s.store.commit_kinds(), ["finish"; 3]);
    assert_eq!(s.record("terminal").await.status, RecordStatus::InProgress);
}

/// A release the store refuses is not settled as FAILED (only an outcome is): the
/// retryable error stands and the record keeps its lease.
#[tokio::test(start_paused = true)]
async fn a_refused_release_is_not_settled() {
    let s = Setup::new(ActionOptions::default());
    s.plan([failing(ErrorKind::Transient)]);
    s.store.answer([Reply::Refuse]);
    let err = s.run("k").await.outcome.expect_err("transient");
    assert_eq!(err.message(), "the script's dependency is down");
    let r = s.record("k").await;
    assert!(r.status == RecordStatus::InProgress && !r.is_released());
    assert_eq!(s.store.commit_kinds(), ["release"]);
    assert!(s.audit("k").await.is_empty());
}

/// A refused commit is settled as FAILED; the settling commit is resent like any other,
/// and a lost answer to it is recognised as our own.
#[tokio::test(start_paused = true)]
async fn a_refused_outcome_is_settled_even_through_a_lost_answer() {
    let s = Setup::new(ActionOptions::default());
    s.store
        .answer([Reply::Refuse, Reply::Fail, Reply::LoseAnswer]);
    let err = s.run("k").await.outcome.expect_err("settled");
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert_eq!(err.details().expect("details")["reason"], "store_refused");
    assert_eq!(s.store.commit_kinds(), ["finish"; 4]);
    let r = s.record("k").await;
    assert_eq!(r.status, RecordStatus::Failed);
    assert_eq!(s.statuses("k").await, [AuditStatus::Failed]);
    let replay = s.run("k").await;
    assert!(replay.replayed);
    assert_eq!(s.calls(), 1);
}

fn optimistic(retries: u32) -> Setup {
    Setup::new(ActionOptions {
        mode: Mode::Optimistic,
        optimistic_retries: retries,
        retention: Duration::from_secs(60),
        ..ActionOptions::default()
    })
}

/// Optimistic mode: a terminal failure is stored FAILED (attempt 1) and replayed; a
/// retryable one stores nothing but its `retrying` audit record, and a retry runs again.
#[tokio::test(start_paused = true)]
async fn optimistic_terminal_failures_are_stored_and_retryable_ones_are_not() {
    let s = optimistic(3);
    s.plan([
        failing(ErrorKind::Rejected),
        Step::default(),
        failing(ErrorKind::Transient),
    ]);
    let err = s.run("terminal").await.outcome.expect_err("rejected");
    assert_eq!(err.kind(), ErrorKind::Rejected);
    let r = s.record("terminal").await;
    assert_eq!((r.status, r.attempt), (RecordStatus::Failed, 1));
    assert_eq!(s.store.commit_kinds(), ["insert"]);
    let replay = s.run("terminal").await;
    assert!(replay.replayed);
    assert_eq!(
        replay.outcome.expect_err("replayed").kind(),
        ErrorKind::Rejected
    );
    assert_eq!(
        s.calls(),
        2,
        "the replay ran the handler (optimistic) but stored nothing new"
    );
    assert_eq!(
        s.statuses("terminal").await,
        [AuditStatus::Failed, AuditStatus::Replayed]
    );

    let err = s.run("retryable").await.outcome.expect_err("transient");
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert!(s.no_record("retryable").await);
    assert!(
        s.store.commit_kinds().is_empty(),
        "nothing claimed, nothing released"
    );
    assert_eq!(s.statuses("retryable").await, [AuditStatus::Retrying]);
    let retry = s.run("retryable").await;
    assert!(retry.outcome.is_ok() && !retry.replayed);
    assert_eq!(s.record("retryable").await.status, RecordStatus::Completed);
}

/// A staged write's condition failing runs the handler again in place, up to
/// `optimistic_retries` more times; then `ActionDo.Conflict`, audited `retrying`, with
/// nothing stored.
#[tokio::test(start_paused = true)]
async fn optimistic_conflicts_run_the_handler_again_up_to_the_limit() {
    for retries in [0, 2] {
        let s = optimistic(retries);
        // Conflicting on every run the executor should make, and a few more: a run past
        // the limit would commit.
        s.plan((0..retries + 4).map(|_| Step {
            puts: vec![("thing#c".into(), Expect::Version(7))],
            ..Step::default()
        }));
        let err = s.run("k").await.outcome.expect_err("conflict");
        assert_eq!(err.kind(), ErrorKind::Conflict, "retries {retries}");
        assert_eq!(s.calls(), usize::try_from(retries).expect("small") + 1);
        assert_eq!(s.store.commit_kinds().len(), s.calls());
        assert!(s.no_record("k").await);
        assert_eq!(s.statuses("k").await, [AuditStatus::Retrying]);
    }
}

/// An optimistic insert whose answer was lost: the resend finds our own record, which is
/// this execution's outcome, not a replay.
#[tokio::test(start_paused = true)]
async fn an_optimistic_lost_answer_is_our_own_insert() {
    let s = optimistic(3);
    s.store.answer([Reply::LoseAnswer]);
    let ex = s.run("k").await;
    assert!(ex.outcome.is_ok() && !ex.replayed, "{:?}", ex.outcome);
    assert_eq!(s.store.commit_kinds(), ["insert", "insert"]);
    assert_eq!(s.statuses("k").await, [AuditStatus::Completed]);
}

/// Staged writes too large for one transaction: the optimistic execution fails
/// terminally, recorded FAILED (resent like any commit, expiring from its commit); when
/// a live record of the key exists, that record decides (a replay).
#[tokio::test(start_paused = true)]
async fn an_optimistic_outcome_that_cannot_be_stored_is_recorded_failed() {
    let too_big = || Step {
        puts: (0..11).map(|i| (format!("big#{i}"), Expect::Any)).collect(),
        doc_bytes: 390_000,
        advance_ms: 2_000,
        ..Step::default()
    };
    let s = optimistic(3);
    s.plan([too_big()]);
    s.store.answer([Reply::Fail]);
    let err = s.run("big").await.outcome.expect_err("too big");
    assert_eq!(err.kind(), ErrorKind::Validation);
    assert_eq!(err.details().expect("details")["path"], "transaction");
    assert_eq!(s.store.commit_kinds(), ["insert", "insert"]);
    let r = s.record("big").await;
    assert_eq!(r.status, RecordStatus::Failed);
    assert_eq!(r.expires_at_s, (T0 + 2_000).div_euclid(1000) + 60);
    assert!(s.entity("big#0").await.is_none());

    // Its answer lost: still this execution's own failure, not a replay.
    s.plan([too_big()]);
    s.store.answer([Reply::LoseAnswer]);
    let ex = s.run("lost").await;
    assert!(!ex.replayed);
    assert_eq!(
        ex.outcome.expect_err("too big").kind(),
        ErrorKind::Validation
    );
    assert_eq!(s.store.commit_kinds(), ["insert", "insert"]);

    // The key completed earlier: that outcome is replayed.
    assert!(s.run("done").await.outcome.is_ok());
    s.plan([too_big()]);
    let again = s.run("done").await;
    assert!(again.replayed);
    assert!(again.outcome.is_ok());
}

/// An optimistic commit the store refuses settles the key as FAILED, `ActionDo.Internal`.
#[tokio::test(start_paused = true)]
async fn an_optimistic_refused_commit_settles_the_key_as_failed() {
    let s = optimistic(3);
    s.plan([advancing(1_000)]);
    s.store.answer([Reply::Refuse]);
    let err = s.run("k").await.outcome.expect_err("settled");
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert_eq!(err.details().expect("details")["reason"], "store_refused");
    let r = s.record("k").await;
    assert_eq!(r.status, RecordStatus::Failed);
    assert_eq!(r.expires_at_s, (T0 + 1_000).div_euclid(1000) + 60);
    assert!(s.run("k").await.replayed);
}

/// The failure record of an optimistic execution (an outcome that cannot be stored, or a
/// refused one) is resent like any commit, and like any commit never past the lease: with
/// 100 ms of a 20 s lease left, a failed send is not resent and nothing is stored.
#[tokio::test(start_paused = true)]
async fn an_optimistic_failure_record_is_resent_only_within_the_lease() {
    let too_big = |advance_ms| Step {
        puts: (0..11).map(|i| (format!("big#{i}"), Expect::Any)).collect(),
        doc_bytes: 390_000,
        advance_ms,
        ..Step::default()
    };
    for (left_ms, sent) in [(100, 1), (101, 2)] {
        let s = Setup::new(ActionOptions {
            mode: Mode::Optimistic,
            lease: Lease::Fixed(Duration::from_secs(20)),
            ..ActionOptions::default()
        });
        s.plan([too_big(20_000 - left_ms)]);
        s.store.answer([Reply::Fail]);
        let err = s.run("big").await.outcome.expect_err("too big");
        assert_eq!(err.kind(), ErrorKind::Validation);
        assert_eq!(
            s.store.commit_kinds(),
            vec!["insert"; sent],
            "{left_ms} ms left"
        );
        assert_eq!(s.no_record("big").await, sent == 1, "{left_ms} ms left");

        s.clock.set_ms(T0);
        s.plan([advancing(20_000 - left_ms)]);
        s.store.answer([Reply::Refuse, Reply::Fail]);
        let err = s.run("refused").await.outcome.expect_err("refused");
        assert_eq!(err.details().expect("details")["reason"], "store_refused");
        assert_eq!(
            s.store.commit_kinds(),
            vec!["insert"; sent + 1],
            "{left_ms} ms left"
        );
        assert_eq!(s.no_record("refused").await, sent == 1, "{left_ms} ms left");
    }
}
