//! The execution protocol under DynamoDB's own failures (docs/architecture.md §4, "What the store can
//! hold, decided before the claim": after the handler has run, nothing re-runs it because
//! of the store; a retried claim that finds its own lease has the claim; a failed commit
//! or release leaves the record `IN_PROGRESS` until its lease ends).
//!
//! Each test runs [`Executor`] over a [`DynamoStore`] whose client talks to DynamoDB Local
//! through [`FaultProxy`], which loses answers, delays, throttles and fails requests; a
//! second store on the same tables reads DynamoDB Local directly, so that the assertions
//! see the truth and the proxy counts only the executor's requests.
//!
//! The executor's client is the store's own ([`DynamoStore::client_config`]) with two
//! changes that make a scenario take seconds rather than minutes: an attempt timeout of
//! [`ATTEMPT_TIMEOUT`] (a [`Fault::Delay`] of [`SLOW`] outlasts it) and an initial retry
//! backoff of [`BACKOFF`]. The number of attempts is the standard retry mode's,
//! [`SDK_ATTEMPTS`], set explicitly so the scenarios can count on it.
//!
//! DynamoDB Local comes from `./tests/run.sh` (`ACTIONDO_TEST_DYNAMODB_LOCAL_URL`);
//! without it a test prints `skipped: ...`, or fails when `ACTIONDO_TEST_REQUIRE_INFRA=1`
//! ([`actiondo_e2e::dynamodb_local_url`]).
//!
//! The soak's seed is printed; `ACTIONDO_FAULTS_SEED=N` repeats its draws,
//! `ACTIONDO_FAULTS_SOAK_KEYS=N` changes its size (default 100 keys × 3 calls).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actiondo::store::dynamodb::{DynamoStore, Tables};
use actiondo::store::{IdempotencyRecord, RecordStatus};
use actiondo::testing::local_aws_config;
use actiondo::{
    Action, ActionContext, ActionError, ActionOptions, AuditFilter, AuditQuery, AuditRecord,
    AuditStatus, EntityKey, ErrorKind, Execution, Executor, Expect, Invocation, Lease, Source,
    Store as _,
};
use actiondo_e2e::faults::{Fault, FaultProxy, op};
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use serde_json::{Value, json};

/// The executor client's attempt timeout.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// A delay that outlasts [`ATTEMPT_TIMEOUT`].
const SLOW: Duration = Duration::from_millis(1_300);
/// The executor client's initial retry backoff (the SDK's default is 1 s).
const BACKOFF: Duration = Duration::from_millis(100);
/// Attempts per SDK call (the standard retry mode's).
const SDK_ATTEMPTS: u32 = 3;

// ---------------------------------------------------------------- test actions

/// Stages one entity write, `stage#{key}`/`doc` with [`Expect::Absent`], and returns
/// `{"key", "run"}` where `run` is new for every handler run: a second run that committed
/// would show as a second entity write refused, or as a replay that differs.
struct Stage {
    lease: Lease,
    runs: AtomicUsize,
    /// How many of the next runs fail with `ActionDo.Transient` before staging anything.
    transient_failures: AtomicUsize,
}

impl Stage {
    fn new(lease: Lease) -> Self {
        Self {
            lease,
            runs: AtomicUsize::new(0),
            transient_failures: AtomicUsize::new(0),
        }
    }

    fn failing_first(self, runs: usize) -> Self {
        self.transient_failures.store(runs, Ordering::SeqCst);
        self
    }

    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }

    fn entity(key: &str) -> EntityKey {
        EntityKey::new(format!("stage#{key}"), "doc")
    }
}

impl Action for Stage {
    type Input = Value;
    type Output = Value;
    const NAME: &'static str = "fault-stage";
    const DESCRIPTION: &'static str = "Stages one entity write (a test action).";

    fn options(&self) -> ActionOptions {
        ActionOptions {
            lease: self.lease,
            ..ActionOptions::default()
        }
    }

    async fn execute(&self, input: Value, cx: &mut ActionContext) -> Result<Value, ActionError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let scripted = self
            .transient_failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if scripted {
            return Err(ActionError::transient("a scripted dependency failure"));
        }
        let key = cx.idempotency_key().to_owned();
        let run = uuid::Uuid::new_v4().to_string();
        cx.put(
            Stage::entity(&key),
            &json!({"run": run, "input": input}),
            Expect::Absent,
        )?;
        Ok(json!({"key": key, "run": run}))
    }
}

/// One run of an external effect: its key and when it started and ended.
type EffectRun = (String, Instant, Instant);

/// An "external effect": records (key, start, end) and takes a few milliseconds; stages
/// nothing. Its runs must never overlap per key (docs/architecture.md §4, "Guarantees to test").
struct Effect {
    lease: Lease,
    runs: Mutex<Vec<EffectRun>>,
}

impl Effect {
    fn new(lease: Lease) -> Self {
        Self {
            lease,
            runs: Mutex::new(Vec::new()),
        }
    }

    fn runs(&self) -> Vec<EffectRun> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Action for Effect {
    type Input = Value;
    type Output = Value;
    const NAME: &'static str = "fault-effect";
    const DESCRIPTION: &'static str = "Performs an external effect (a test action).";

    fn options(&self) -> ActionOptions {
        ActionOptions {
            lease: self.lease,
            ..ActionOptions::default()
        }
    }

    async fn execute(&self, _input: Value, cx: &mut ActionContext) -> Result<Value, ActionError> {
        let started = Instant::now();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let ended = Instant::now();
        let key = cx.idempotency_key().to_owned();
        self.runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((key.clone(), started, ended));
        Ok(json!({"key": key, "run": uuid::Uuid::new_v4().to_string()}))
    }
}

// ---------------------------------------------------------------- the world

/// One test's tables, proxy, executor and a direct view of the tables.
struct World {
    proxy: FaultProxy,
    executor: Executor,
    /// The same tables, read without the proxy.
    truth: DynamoStore,
}

impl World {
    /// Fresh tables on DynamoDB Local and a proxy in front of it; `None` when the test is
    /// skipped.
    async fn new() -> Option<Self> {
        let url = actiondo_e2e::dynamodb_local_url()?;
        let tables = Tables::with_prefix(&format!("faults{}", uuid::Uuid::new_v4().simple()));
        let truth = DynamoStore::new(
            aws_sdk_dynamodb::Client::from_conf(DynamoStore::client_config(&local_aws_config(
                &url,
            ))),
            tables.clone(),
        );
        if let Err(e) = truth.create_tables().await {
            panic!("creating the tables on DynamoDB Local at {url}: {e}");
        }
        let proxy = match FaultProxy::start(&url).await {
            Ok(proxy) => proxy,
            Err(e) => panic!("starting the fault proxy: {e}"),
        };
        let config = DynamoStore::client_config(&local_aws_config(&proxy.url()))
            .to_builder()
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(DynamoStore::CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .build(),
            )
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(SDK_ATTEMPTS)
                    .with_initial_backoff(BACKOFF),
            )
            .build();
        let store = DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(config), tables);
        Some(Self {
            proxy,
            executor: Executor::new(store),
            truth,
        })
    }

    async fn run(&self, action: &dyn actiondo::DynAction, key: &str, params: Value) -> Execution {
        run(&self.executor, action, key, params).await
    }

    async fn record(&self, id: &str) -> Option<IdempotencyRecord> {
        match self.truth.get_record(id).await {
            Ok(record) => record,
            Err(e) => panic!("reading the record {id}: {e}"),
        }
    }

    /// The entity's version, if it exists.
    async fn version(&self, key: &EntityKey) -> Option<u64> {
        match self.truth.get_entity(key).await {
            Ok(entity) => entity.map(|e| e.version),
            Err(e) => panic!("reading the entity {key:?}: {e}"),
        }
    }

    async fn audit(&self, id: &str) -> Vec<AuditRecord> {
        let mut records = Vec::new();
        let mut cursor = None;
        loop {
            let query = AuditQuery {
                cursor: cursor.take(),
                ..AuditQuery::new(AuditFilter::Execution(id.to_owned()))
            };
            let page = match self.truth.query_audit(&query).await {
                Ok(page) => page,
                Err(e) => panic!("reading the audit of {id}: {e}"),
            };
            records.extend(page.records);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return records,
            }
        }
    }

    /// How many audit rows of `id` have `status`.
    async fn audited(&self, id: &str, status: AuditStatus) -> usize {
        self.audit(id)
            .await
            .iter()
            .filter(|r| r.status == status)
            .count()
    }
}

async fn run(
    executor: &Executor,
    action: &dyn actiondo::DynAction,
    key: &str,
    params: Value,
) -> Execution {
    executor
        .execute(
            action,
            Invocation::new(params, Source::Direct).with_key(key),
        )
        .await
}

/// The output text of a successful execution.
fn output(execution: &Execution) -> &str {
    match &execution.outcome {
        Ok(raw) => raw.get(),
        Err(e) => panic!(
            "expected a result, got {} (attempt {}): {}",
            e.kind(),
            execution.attempt,
            e.message()
        ),
    }
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default(),
    )
    .unwrap_or(i64::MAX)
}

/// The record is `COMPLETED` with `attempt` and stores `output`.
fn assert_completed(record: Option<&IdempotencyRecord>, attempt: u32, output: &str) {
    let Some(record) = record else {
        panic!("no record: the execution left nothing behind");
    };
    assert_eq!(
        (record.status, record.attempt),
        (RecordStatus::Completed, attempt),
        "{record:?}"
    );
    let stored = record
        .result
        .as_ref()
        .map(|r| r.decode().expect("the stored result decodes"));
    assert_eq!(stored.as_deref(), Some(output), "the stored result");
}

// ---------------------------------------------------------------- scenarios

/// (a) The claim applies but its answer is lost; the SDK resends it and DynamoDB refuses
/// the resend (the record exists, its lease is live). The record is ours: the retried
/// claim must find its own `lease_owner` and go on, not answer `InProgress`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_claim_answer_still_claims() {
    let Some(w) = World::new().await else { return };
    w.proxy.fail(op::UPDATE_ITEM, 1..=1, Fault::LoseResponse);
    let action = Stage::new(Lease::default());
    let first = w.run(&action, "a", json!({"n": 1})).await;
    let out = output(&first).to_owned();
    assert_eq!((first.attempt, first.replayed), (1, false));
    assert_eq!(action.runs(), 1, "the handler ran once");
    assert_eq!(
        (
            w.proxy.count(op::UPDATE_ITEM),
            w.proxy.faults(op::UPDATE_ITEM)
        ),
        (2, 1),
        "the lost claim and the SDK's resend; {}",
        w.proxy.summary()
    );
    assert_completed(w.record("fault-stage#a").await.as_ref(), 1, &out);
    assert_eq!(w.version(&Stage::entity("a")).await, Some(1));
    assert_eq!(w.audited("fault-stage#a", AuditStatus::Completed).await, 1);
    let replay = w.run(&action, "a", json!({"n": 1})).await;
    assert!(replay.replayed);
    assert_eq!(output(&replay), out, "the replay is byte-identical");
    assert_eq!(action.runs(), 1);
}

/// (b) The commit applies but its answer is lost; the resent commit must not apply twice
/// nor turn a committed execution into an error: it completed, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_commit_answer_completes_once() {
    let Some(w) = World::new().await else { return };
    w.proxy
        .fail(op::TRANSACT_WRITE_ITEMS, 1..=1, Fault::LoseResponse);
    let action = Stage::new(Lease::default());
    let first = w.run(&action, "b", json!({"n": 2})).await;
    let out = output(&first).to_owned();
    assert_eq!((first.attempt, first.replayed), (1, false));
    assert_eq!(action.runs(), 1, "the handler ran once");
    assert!(
        w.proxy.count(op::TRANSACT_WRITE_ITEMS) >= 2,
        "the commit was resent; {}",
        w.proxy.summary()
    );
    assert_completed(w.record("fault-stage#b").await.as_ref(), 1, &out);
    assert_eq!(w.version(&Stage::entity("b")).await, Some(1));
    let audit = w.audit("fault-stage#b").await;
    let statuses: Vec<AuditStatus> = audit.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [AuditStatus::Completed], "{audit:#?}");
    let replay = w.run(&action, "b", json!({"n": 2})).await;
    assert!(replay.replayed);
    assert_eq!(output(&replay), out, "the replay is byte-identical");
    assert_eq!(action.runs(), 1);
}

/// (c) The commit is throttled more often than one SDK call retries
/// ([`SDK_ATTEMPTS`] + 1 times), then DynamoDB accepts it: the executor retries the
/// commit under the same lease, and the handler's one run completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_commit_is_retried_under_the_same_lease() {
    let Some(w) = World::new().await else { return };
    let throttled = u64::from(SDK_ATTEMPTS) + 1;
    w.proxy
        .fail(op::TRANSACT_WRITE_ITEMS, 1..=throttled, Fault::Throttle);
    let action = Stage::new(Lease::default());
    let first = w.run(&action, "c", json!({"n": 3})).await;
    let summary = w.proxy.summary();
    let out = match &first.outcome {
        Ok(raw) => raw.get().to_owned(),
        Err(e) => panic!(
            "expected the commit to be retried until DynamoDB took it, got {}: {}; record {:?}; {summary}",
            e.kind(),
            e.message(),
            w.record("fault-stage#c").await
        ),
    };
    assert_eq!(action.runs(), 1, "the handler ran once");
    assert_eq!(
        w.proxy.faults(op::TRANSACT_WRITE_ITEMS),
        usize::try_from(throttled).unwrap_or_default(),
        "{summary}"
    );
    assert!(
        w.proxy.count(op::TRANSACT_WRITE_ITEMS) > usize::try_from(throttled).unwrap_or_default(),
        "{summary}"
    );
    assert_completed(w.record("fault-stage#c").await.as_ref(), 1, &out);
    assert_eq!(w.version(&Stage::entity("c")).await, Some(1));
    assert_eq!(w.audited("fault-stage#c", AuditStatus::Completed).await, 1);
}

/// (d) The handler fails with a retryable error and every `TransactWriteItems` fails:
/// the release cannot be written. The record stays `IN_PROGRESS` until its lease ends: a
/// retry before then is `InProgress`, a retry after takes over (attempt 2) and completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_release_holds_the_key_until_the_lease_ends() {
    let Some(w) = World::new().await else { return };
    let lease = Duration::from_secs(3);
    let action = Stage::new(Lease::Fixed(lease)).failing_first(1);
    w.proxy.fail(
        op::TRANSACT_WRITE_ITEMS,
        1..=u64::MAX,
        Fault::InternalServerError,
    );
    let id = "fault-stage#d";
    let first = w.run(&action, "d", json!({"n": 4})).await;
    match &first.outcome {
        Err(e) => assert!(e.is_retryable(), "{}: {}", e.kind(), e.message()),
        Ok(raw) => panic!("every commit failed, yet: {}", raw.get()),
    }
    assert_eq!(action.runs(), 1);
    let Some(held) = w.record(id).await else {
        panic!("the record is gone: the failed release deleted it anyway");
    };
    assert_eq!((held.status, held.attempt), (RecordStatus::InProgress, 1));
    assert!(
        now_ms() + 200 < held.lease_expires_at_ms,
        "the first call returned {} ms after its lease ended; a retry can no longer find the key held",
        now_ms() - held.lease_expires_at_ms
    );

    let early = w.run(&action, "d", json!({"n": 4})).await;
    match &early.outcome {
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::InProgress, "{}", e.message());
            assert!(e.retry_after_ms().is_some_and(|ms| ms > 0), "{e:?}");
        }
        Ok(raw) => panic!("the key was held, yet: {}", raw.get()),
    }
    assert_eq!(action.runs(), 1, "no run while the lease lives");

    w.proxy.stop_faults();
    let wait_ms = (held.lease_expires_at_ms - now_ms()).max(0) + 200;
    tokio::time::sleep(Duration::from_millis(wait_ms.unsigned_abs())).await;
    let late = w.run(&action, "d", json!({"n": 4})).await;
    let out = output(&late).to_owned();
    assert_eq!((late.attempt, late.replayed), (2, false));
    assert_eq!(action.runs(), 2);
    assert_completed(w.record(id).await.as_ref(), 2, &out);
    assert_eq!(w.version(&Stage::entity("d")).await, Some(1));
    assert_eq!(w.audited(id, AuditStatus::TakenOver).await, 1);
    assert_eq!(w.audited(id, AuditStatus::Completed).await, 1);
}

/// (e) The commit meets a transaction conflict once (another transaction on the record):
/// not a reason to run the handler again; the executor retries the commit, the handler's
/// one run completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_conflict_on_the_commit_is_retried() {
    let Some(w) = World::new().await else { return };
    w.proxy
        .fail(op::TRANSACT_WRITE_ITEMS, 1..=1, Fault::TransactionConflict);
    let action = Stage::new(Lease::default());
    let first = w.run(&action, "e", json!({"n": 5})).await;
    let summary = w.proxy.summary();
    let out = match &first.outcome {
        Ok(raw) => raw.get().to_owned(),
        Err(e) => panic!(
            "expected the commit to be retried, got {}: {}; record {:?}; {summary}",
            e.kind(),
            e.message(),
            w.record("fault-stage#e").await
        ),
    };
    assert_eq!(action.runs(), 1, "the handler ran once");
    assert_eq!(w.proxy.count(op::TRANSACT_WRITE_ITEMS), 2, "{summary}");
    assert_completed(w.record("fault-stage#e").await.as_ref(), 1, &out);
    assert_eq!(w.version(&Stage::entity("e")).await, Some(1));
    assert_eq!(w.audited("fault-stage#e", AuditStatus::Completed).await, 1);
}

/// The premise of (b): DynamoDB Local, like DynamoDB, answers a `TransactWriteItems`
/// resent with the same `ClientRequestToken` with success and applies it once, and the
/// SDK's own resend carries the same token. Without it, (b) would prove nothing about
/// resent commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_local_honours_client_request_tokens() {
    use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
    let Some(w) = World::new().await else { return };
    let put = |token: &str| {
        let put = Put::builder()
            .table_name(&w.truth.tables().idempotency)
            .item("id", AttributeValue::S("probe#token".into()))
            .condition_expression("attribute_not_exists(id)")
            .build()
            .expect("a complete Put");
        w.truth
            .client()
            .transact_write_items()
            .client_request_token(token)
            .transact_items(TransactWriteItem::builder().put(put).build())
            .send()
    };
    put("token-1").await.expect("the first write applies");
    put("token-1")
        .await
        .expect("the same token again is answered with success, not a failed condition");
    let other = put("token-2").await;
    assert!(
        other.is_err(),
        "another token is a new transaction, whose condition fails: {other:?}"
    );
}

// ---------------------------------------------------------------- soak

/// How many times one call is retried before the soak gives up on it.
const MAX_TRIES: u32 = 40;

/// How a call ended: the output text, or the error.
type Settled = Result<String, String>;

/// The params of soak key number `i`.
fn soak_params(i: usize) -> Value {
    json!({"key": format!("k{i:03}"), "n": i})
}

/// Call until the outcome is not retryable or [`MAX_TRIES`]; a retryable error waits its
/// retry-after, else the lease. The final outcome (output text or error) and the tries.
async fn call_until_settled(
    executor: &Executor,
    action: &dyn actiondo::DynAction,
    key: &str,
    params: &Value,
    lease: Duration,
) -> (Settled, u32) {
    let mut last = String::new();
    for tries in 1..=MAX_TRIES {
        let execution = run(executor, action, key, params.clone()).await;
        match execution.outcome {
            Ok(raw) => return (Ok(raw.get().to_owned()), tries),
            Err(e) if e.is_retryable() => {
                let wait = e
                    .retry_after_ms()
                    .map_or(lease, Duration::from_millis)
                    .max(Duration::from_millis(50));
                last = format!("{}: {}", e.kind(), e.message());
                tokio::time::sleep(wait).await;
            }
            Err(e) => return (Err(format!("{}: {}", e.kind(), e.message())), tries),
        }
    }
    (
        Err(format!("still retryable after {MAX_TRIES} tries: {last}")),
        MAX_TRIES,
    )
}

/// How the three calls of one soak key are made.
#[derive(Debug, Clone, Copy)]
enum Calls {
    /// All three at once.
    Concurrent,
    /// Two at once, then one.
    TwoThenOne,
    /// One after the other.
    Sequential,
}

fn soak_seed() -> u64 {
    std::env::var("ACTIONDO_FAULTS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}

/// (f) Hundreds of executions of both actions, keys reused (replays, concurrent calls),
/// under 10 % random faults on every operation. Whatever happens, a staged write is
/// applied at most once and only with its `COMPLETED` record; no record stays
/// `IN_PROGRESS`; external effects of one key never overlap; every call of one key ends
/// with the same bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_soak_under_random_faults_keeps_every_guarantee() {
    let Some(w) = World::new().await else { return };
    let seed = soak_seed();
    let keys: usize = std::env::var("ACTIONDO_FAULTS_SOAK_KEYS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    eprintln!(
        "soak: seed {seed} (ACTIONDO_FAULTS_SEED={seed} repeats the draws), {keys} keys x 3 calls"
    );
    let lease = Duration::from_secs(2);
    let stage = Arc::new(Stage::new(Lease::Fixed(lease)));
    let effect = Arc::new(Effect::new(Lease::Fixed(lease)));
    w.proxy.fail_randomly(
        seed,
        0.10,
        &[
            Fault::LoseResponse,
            Fault::Delay(SLOW),
            Fault::Throttle,
            Fault::InternalServerError,
            Fault::TransactionConflict,
        ],
    );
    let started = Instant::now();
    let limit = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..keys {
        let key = format!("k{i:03}");
        let params = soak_params(i);
        let action: Arc<dyn actiondo::DynAction> = if i % 2 == 0 {
            stage.clone()
        } else {
            effect.clone()
        };
        let calls = match i % 3 {
            0 => Calls::Concurrent,
            1 => Calls::TwoThenOne,
            _ => Calls::Sequential,
        };
        let executor = w.executor.clone();
        let limit = limit.clone();
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let call = || call_until_settled(&executor, action.as_ref(), &key, &params, lease);
            let outcomes = match calls {
                Calls::Concurrent => {
                    let (a, b, c) = tokio::join!(call(), call(), call());
                    vec![a, b, c]
                }
                Calls::TwoThenOne => {
                    let (a, b) = tokio::join!(call(), call());
                    vec![a, b, call().await]
                }
                Calls::Sequential => vec![call().await, call().await, call().await],
            };
            (i, key, action.name(), outcomes)
        });
    }
    let mut outcomes: BTreeMap<String, (usize, &'static str, Vec<Settled>)> = BTreeMap::new();
    let mut tries = 0;
    while let Some(joined) = tasks.join_next().await {
        let (i, key, name, results) = joined.expect("a soak task panicked");
        tries += results.iter().map(|(_, t)| t).sum::<u32>();
        outcomes.insert(
            key,
            (i, name, results.into_iter().map(|(r, _)| r).collect()),
        );
    }
    eprintln!(
        "soak: {} calls ({tries} executions) in {:?}; {}; handler runs: {} staged, {} effects",
        keys * 3,
        started.elapsed(),
        w.proxy.summary(),
        stage.runs(),
        effect.runs().len()
    );

    // The end: no more faults; wait past every lease, then settle what is left.
    w.proxy.stop_faults();
    tokio::time::sleep(lease + Duration::from_millis(300)).await;
    let mut unsettled = Vec::new();
    for (key, (i, name, results)) in &mut outcomes {
        let id = format!("{name}#{key}");
        let record = w.record(&id).await;
        if record.as_ref().map(|r| r.status) != Some(RecordStatus::Completed) {
            unsettled.push(format!(
                "{id}: {:?}",
                record.as_ref().map(|r| (r.status, r.attempt))
            ));
            let action: &dyn actiondo::DynAction = if *name == Stage::NAME {
                stage.as_ref()
            } else {
                effect.as_ref()
            };
            let params = soak_params(*i);
            let (settled, _) = call_until_settled(&w.executor, action, key, &params, lease).await;
            results.push(settled);
        }
    }
    if !unsettled.is_empty() {
        eprintln!(
            "soak: {} keys not COMPLETED when the calls ended, settled afterwards: {unsettled:?}",
            unsettled.len()
        );
    }

    let mut problems = Vec::new();
    for (key, (_, name, results)) in &outcomes {
        let id = format!("{name}#{key}");
        // Every call of the key ends with the same bytes (first run or replay).
        let first = &results[0];
        if let Err(e) = first {
            problems.push(format!("{id}: a call ended in {e}"));
        }
        if results.iter().any(|r| r != first) {
            problems.push(format!("{id}: the calls ended differently: {results:?}"));
        }
        let record = w.record(&id).await;
        let completed = record.as_ref().map(|r| r.status) == Some(RecordStatus::Completed);
        if !completed {
            problems.push(format!(
                "{id}: the record is {:?} after the end",
                record.as_ref().map(|r| (r.status, r.attempt))
            ));
        }
        let stored = record
            .as_ref()
            .and_then(|r| r.result.as_ref())
            .and_then(|r| r.decode().ok());
        if completed && stored.as_ref() != first.as_ref().ok() {
            problems.push(format!(
                "{id}: the calls returned {first:?}, the record stores {stored:?}"
            ));
        }
        // Exactly one `completed` audit row: the commit applied once.
        let completions = w.audited(&id, AuditStatus::Completed).await;
        if completions != usize::from(completed) {
            problems.push(format!("{id}: {completions} `completed` audit rows"));
        }
        if *name == Stage::NAME {
            // The staged write exists iff the record is COMPLETED, written once, by the
            // run whose result the record stores.
            let entity = w.truth.get_entity(&Stage::entity(key)).await;
            let entity = match entity {
                Ok(entity) => entity,
                Err(e) => panic!("reading the entity of {id}: {e}"),
            };
            match (&entity, completed) {
                (None, false) => {}
                (Some(e), true) => {
                    let stored_run = stored
                        .as_deref()
                        .and_then(|s| serde_json::from_str::<Value>(s).ok())
                        .map(|v| v["run"].clone());
                    if e.version != 1 || Some(&e.doc["run"]) != stored_run.as_ref() {
                        problems.push(format!(
                            "{id}: entity version {} by run {}, record by run {stored_run:?}",
                            e.version, e.doc["run"]
                        ));
                    }
                }
                (entity, completed) => problems.push(format!(
                    "{id}: entity {entity:?} but record COMPLETED = {completed}"
                )),
            }
        }
    }
    // External effects of one key never overlap in time.
    let mut by_key: HashMap<String, Vec<(Instant, Instant)>> = HashMap::new();
    for (key, start, end) in effect.runs() {
        by_key.entry(key).or_default().push((start, end));
    }
    for (key, mut spans) in by_key {
        spans.sort();
        for pair in spans.windows(2) {
            if pair[1].0 < pair[0].1 {
                problems.push(format!(
                    "fault-effect#{key}: two runs overlapped ({} runs)",
                    spans.len()
                ));
                break;
            }
        }
    }
    eprintln!(
        "soak: checked in {:?} in all; handler runs: {} staged for {} keys, {} effects for {} keys",
        started.elapsed(),
        stage.runs(),
        keys.div_ceil(2),
        effect.runs().len(),
        keys / 2,
    );
    assert!(
        problems.is_empty(),
        "seed {seed}: {} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
