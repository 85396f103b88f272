//! The conformance harness: a store per backend, a clock the tests move, a DynamoDB call
//! counter, and `probe`, an action whose behaviour each test scripts.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use actiondo::store::ObjectStore;
use actiondo::store::dynamodb::{CallCounter, DynamoStore, Tables};
use actiondo::store::faulty::FaultyStore;
use actiondo::store::s3::S3Objects;
use actiondo::store::sqlite::SqliteStore;
use actiondo::store::{Commit, IdempotencyRecord, RecordWrite, StagedWrite};
use actiondo::{
    Action, ActionContext, ActionError, ActionOptions, AuditFilter, AuditQuery, AuditRecord,
    AuditStatus, Clock, Entity, EntityKey, Execution, Executor, Expect, Invocation, Source, Store,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Notify;

/// Which store a scenario runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    /// The embedded store in memory: one connection, used in place.
    Sqlite,
    /// The embedded store in a file: its writer thread, which commits concurrent writes
    /// together, and its reading connection.
    SqliteFile,
    DynamoDbLocal,
    Moto,
}

impl Backend {
    /// Whether this is the embedded store (in memory or in a file).
    pub(crate) fn is_sqlite(self) -> bool {
        matches!(self, Backend::Sqlite | Backend::SqliteFile)
    }

    fn endpoint_var(self) -> Option<&'static str> {
        match self {
            Backend::Sqlite | Backend::SqliteFile => None,
            Backend::DynamoDbLocal => Some("ACTIONDO_TEST_DYNAMODB_LOCAL_URL"),
            Backend::Moto => Some("ACTIONDO_TEST_MOTO_URL"),
        }
    }
}

/// A clock the tests move by hand that also ticks 1 ms per reading, so that every audit
/// record of a test has its own timestamp and the newest-first order is well defined.
#[derive(Debug, Clone)]
pub(crate) struct TestClock(Arc<AtomicI64>);

impl TestClock {
    fn new() -> Self {
        Self(Arc::new(AtomicI64::new(actiondo::SystemClock.now_ms())))
    }

    pub(crate) fn advance_ms(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now_ms(&self) -> i64 {
        self.0.fetch_add(1, Ordering::SeqCst)
    }
}

pub(crate) struct Harness {
    pub(crate) faulty: Arc<FaultyStore<Arc<dyn Store>>>,
    pub(crate) executor: Executor,
    pub(crate) clock: TestClock,
    counter: Option<CallCounter>,
    backend: Backend,
    /// The DynamoDB store under the harness, on DynamoDB backends.
    pub(crate) dynamo: Option<DynamoStore>,
    /// Where the result objects are: the embedded store's table, or moto's S3.
    objects: Objects,
    /// The folder of the embedded store's file, removed with the harness.
    _dir: Option<tempfile::TempDir>,
}

/// The object store of a harness, as the tests inspect it.
enum Objects {
    None,
    Sqlite(Arc<SqliteStore>),
    /// The store's objects, and the SDK's own S3 client to list them with (an independent
    /// reader of what the signed requests wrote).
    S3(S3Objects, aws_sdk_s3::Client),
}

/// The AWS SDK settings of the test servers: `url`, a fixed region and test credentials.
fn sdk_config(url: &str) -> aws_types::SdkConfig {
    aws_types::SdkConfig::builder()
        .http_client(actiondo::aws::http_client())
        .behavior_version(actiondo::aws::BehaviorVersion::latest())
        .endpoint_url(url)
        .region(aws_types::region::Region::new("us-east-1"))
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(
                aws_credential_types::Credentials::new("test", "test", None, None, "conformance"),
            ),
        )
        .build()
}

impl Harness {
    /// A fresh, empty store of `backend` with an object store for large results (the
    /// embedded store's table; moto's S3 for the DynamoDB backends); `None` (after a loud
    /// notice) when its server is not configured and the run does not require it.
    pub(crate) async fn new(backend: Backend) -> Option<Self> {
        Self::build(backend, true).await
    }

    /// As [`new`](Self::new), without an object store: DynamoDB with no
    /// `ACTIONDO_RESULTS_BUCKET`, SQLite `without_objects`.
    pub(crate) async fn without_objects(backend: Backend) -> Option<Self> {
        Self::build(backend, false).await
    }

    async fn build(backend: Backend, with_objects: bool) -> Option<Self> {
        let mut dynamo = None;
        let mut objects = Objects::None;
        let mut dir = None;
        let (store, counter): (Arc<dyn Store>, Option<CallCounter>) = match backend.endpoint_var() {
            None => {
                let store = if backend == Backend::SqliteFile {
                    let folder = tempfile::tempdir().expect("temp dir");
                    let store =
                        SqliteStore::open(folder.path().join("actiondo.db")).expect("SQLite file");
                    dir = Some(folder);
                    store
                } else {
                    SqliteStore::in_memory().expect("in-memory SQLite")
                };
                if with_objects {
                    let store = Arc::new(store);
                    objects = Objects::Sqlite(store.clone());
                    (store, None)
                } else {
                    (Arc::new(store.without_objects()), None)
                }
            }
            Some(var) => {
                let url =
                    actiondo::testing::server_url(var, &format!("{backend:?} conformance case"))?;
                let counter = CallCounter::new();
                let config = aws_sdk_dynamodb::Config::builder()
                    .http_client(actiondo::aws::http_client())
                    .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
                    .endpoint_url(url)
                    .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
                    .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                        "test",
                        "test",
                        None,
                        None,
                        "conformance",
                    ))
                    .interceptor(counter.clone())
                    .build();
                let prefix = format!("t{}", uuid::Uuid::new_v4().simple());
                let mut store = DynamoStore::new(
                    aws_sdk_dynamodb::Client::from_conf(config),
                    Tables::with_prefix(&prefix),
                );
                store.create_tables().await.expect("tables created");
                if with_objects {
                    // Result objects in moto's S3 (at the same URL as its other services),
                    // counted with the DynamoDB requests.
                    let moto = actiondo::testing::server_url(
                        "ACTIONDO_TEST_MOTO_URL",
                        &format!("{backend:?} conformance case (S3)"),
                    )?;
                    let s3 = S3Objects::new(&sdk_config(&moto), prefix)
                        .expect("S3 objects")
                        .observe(counter.observer());
                    s3.create_bucket().await.expect("bucket created");
                    store = store.with_objects(Arc::new(s3.clone()));
                    let sdk = aws_sdk_s3::Client::from_conf(
                        aws_sdk_s3::config::Builder::from(&sdk_config(&moto))
                            .force_path_style(true)
                            .build(),
                    );
                    objects = Objects::S3(s3, sdk);
                }
                dynamo = Some(store.clone());
                (Arc::new(store), Some(counter))
            }
        };
        let faulty = Arc::new(FaultyStore::new(store));
        let clock = TestClock::new();
        let executor = Executor::from_arc(faulty.clone()).with_clock(clock.clone());
        let h = Self {
            faulty,
            executor,
            clock,
            counter,
            backend,
            dynamo,
            objects,
            _dir: dir,
        };
        h.reset_calls();
        Some(h)
    }

    /// The keys of every result object, in order.
    pub(crate) async fn object_keys(&self) -> Vec<String> {
        match &self.objects {
            Objects::None => Vec::new(),
            Objects::Sqlite(store) => store.object_keys().expect("object keys"),
            Objects::S3(s3, sdk) => {
                let listed = sdk
                    .list_objects_v2()
                    .bucket(s3.bucket())
                    .send()
                    .await
                    .expect("ListObjectsV2");
                let mut keys: Vec<String> = listed
                    .contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned))
                    .collect();
                keys.sort();
                keys
            }
        }
    }

    /// The stored bytes of one result object.
    pub(crate) async fn object(&self, key: &str) -> Option<Vec<u8>> {
        let store = self.faulty.objects().expect("an object store");
        store.get(store.bucket(), key).await.expect("object get")
    }

    pub(crate) fn reset_calls(&self) {
        if let Some(c) = &self.counter {
            c.reset();
        }
    }

    /// On DynamoDB backends, the requests sent since the last reset were exactly these.
    pub(crate) fn assert_round_trips(&self, expected: &[&str]) {
        if let Some(c) = &self.counter {
            assert_eq!(c.calls(), expected, "DynamoDB round trips");
        }
    }

    /// On DynamoDB Local, the write capacity units each write reported since the last
    /// reset, by operation (moto does not compute capacity); `None` elsewhere.
    pub(crate) fn write_units(&self) -> Option<Vec<(String, f64)>> {
        match (self.backend, &self.counter) {
            (Backend::DynamoDbLocal, Some(c)) => Some(c.write_units()),
            _ => None,
        }
    }

    pub(crate) async fn record(&self, id: &str) -> Option<IdempotencyRecord> {
        self.faulty.get_record(id).await.expect("get_record")
    }

    pub(crate) async fn entity(&self, pk: &str) -> Option<Entity> {
        self.faulty
            .get_entity(&EntityKey::new(pk, "doc"))
            .await
            .expect("get_entity")
    }

    async fn all(&self, filter: AuditFilter) -> Vec<AuditRecord> {
        let mut records = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .faulty
                .query_audit(&AuditQuery {
                    cursor: cursor.take(),
                    ..AuditQuery::new(filter.clone())
                })
                .await
                .expect("query_audit");
            records.extend(page.records);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return records,
            }
        }
    }

    /// The audit trail of one execution, newest first.
    pub(crate) async fn audit(&self, execution: &str) -> Vec<AuditRecord> {
        self.all(AuditFilter::Execution(execution.into())).await
    }

    /// The audit records of one action, newest first.
    pub(crate) async fn audit_by_type(&self, action: &str) -> Vec<AuditRecord> {
        self.all(AuditFilter::Type(action.into())).await
    }

    pub(crate) fn statuses(&self, records: &[AuditRecord]) -> Vec<AuditStatus> {
        records.iter().map(|r| r.status).collect()
    }

    pub(crate) fn spawn(
        &self,
        probe: &Arc<Probe>,
        inv: Invocation,
    ) -> tokio::task::JoinHandle<Execution> {
        let executor = self.executor.clone();
        let probe = probe.clone();
        tokio::spawn(async move { executor.execute(&*probe, inv).await })
    }
}

/// What the probe does on one call.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Behavior {
    Normal,
    Reject,
    Transient,
    Panic,
    /// Signal `started`, then wait for `release`.
    WaitForRelease,
    Sleep(Duration),
    /// After reading the counter, a rival commits a bump of it (once).
    BumpCounterBehindMyBack,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum ProbeExpect {
    Absent,
    Any,
    Version(u64),
}

#[derive(Debug, Deserialize, JsonSchema)]
struct ProbeWrite {
    pk: String,
    sk: String,
    expect: ProbeExpect,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct ProbeInput {
    value: String,
    #[serde(default)]
    writes: Vec<ProbeWrite>,
    #[serde(default)]
    secret: Option<String>,
    /// Pad the output with this many compressible characters.
    #[serde(default)]
    padding: Option<usize>,
    /// Pad the output with this many random hex characters.
    #[serde(default)]
    noise: Option<usize>,
    /// Pad the output with this many pseudo-random characters of a fixed sequence
    /// ([`text`]): gzip shrinks them to about three quarters, and the output is the same
    /// on every call.
    #[serde(default)]
    text: Option<usize>,
    /// Leave `call` and `attempt` at 0 in the output: every call returns the same result.
    #[serde(default)]
    steady: bool,
    /// Read the counter entity and write it back incremented.
    #[serde(default)]
    counter: bool,
    /// Fail this way whatever the plan says.
    #[serde(default)]
    fail: Option<ProbeFailure>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
enum ProbeFailure {
    Reject,
    Transient,
}

#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub(crate) struct ProbeOutput {
    value: String,
    secret: Option<String>,
    call: usize,
    attempt: u32,
    padding: String,
}

/// A scripted action for the conformance suite.
#[derive(Debug)]
pub(crate) struct Probe {
    options: ActionOptions,
    pub(crate) calls: AtomicUsize,
    plan: Mutex<VecDeque<Behavior>>,
    pub(crate) started: Notify,
    pub(crate) release: Notify,
    rival: OnceLock<Arc<dyn Store>>,
}

impl Probe {
    pub(crate) fn new(options: ActionOptions) -> Self {
        Self {
            options,
            calls: AtomicUsize::new(0),
            plan: Mutex::new(VecDeque::new()),
            started: Notify::new(),
            release: Notify::new(),
            rival: OnceLock::new(),
        }
    }

    /// The behaviours of the next calls, in order; later calls are `Normal`.
    pub(crate) fn plan(&self, behaviors: impl IntoIterator<Item = Behavior>) {
        self.plan.lock().expect("plan").extend(behaviors);
    }

    /// The store a `BumpCounterBehindMyBack` rival writes to.
    pub(crate) fn rival(&self, store: Arc<dyn Store>) {
        let _ = self.rival.set(store);
    }

    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Wait until a `WaitForRelease` call has started; a handler that never starts fails
    /// the test (in 10 s) rather than hanging it.
    pub(crate) async fn wait_started(&self) {
        tokio::time::timeout(Duration::from_secs(10), self.started.notified())
            .await
            .expect("the handler started");
    }

    async fn bump_counter(&self, key: &EntityKey) {
        let store = self
            .rival
            .get()
            .expect("a rival store for BumpCounterBehindMyBack");
        let audit = AuditRecord {
            execution: "rival#1".into(),
            seq: uuid::Uuid::new_v4().to_string(),
            action: "rival".into(),
            status: AuditStatus::Completed,
            details: json!({}),
            timestamp: actiondo::audit::timestamp(0),
            duration_ms: 0,
            attempt: 1,
            request_id: "rival".into(),
            source: Source::Direct,
            caller: None,
            correlation_id: None,
            trace_id: None,
        };
        let commit = Commit {
            record: RecordWrite::None,
            audit,
            writes: vec![StagedWrite::Put {
                key: key.clone(),
                doc: json!({"n": 100}),
                expect: Expect::Any,
            }],
        };
        store.commit(&commit).await.expect("the rival commits");
    }
}

impl Action for Probe {
    type Input = ProbeInput;
    type Output = ProbeOutput;
    const NAME: &'static str = "probe";
    const DESCRIPTION: &'static str = "A scripted action for the conformance suite.";

    fn options(&self) -> ActionOptions {
        self.options.clone()
    }

    async fn execute(
        &self,
        input: ProbeInput,
        cx: &mut ActionContext,
    ) -> Result<ProbeOutput, ActionError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let planned = self.plan.lock().expect("plan").pop_front();
        let behavior = match input.fail {
            Some(ProbeFailure::Reject) => Behavior::Reject,
            Some(ProbeFailure::Transient) => Behavior::Transient,
            None => planned.unwrap_or(Behavior::Normal),
        };
        for w in &input.writes {
            let expect = match w.expect {
                ProbeExpect::Absent => Expect::Absent,
                ProbeExpect::Any => Expect::Any,
                ProbeExpect::Version(v) => Expect::Version(v),
            };
            let doc = json!({"value": input.value, "by": cx.idempotency_key()});
            cx.put(EntityKey::new(&w.pk, &w.sk), &doc, expect)?;
        }
        if input.counter {
            let key = EntityKey::new("counter", "doc");
            let (n, expect) = match cx.get(&key).await? {
                Some(e) => (
                    e.doc["n"].as_u64().unwrap_or(0) + 1,
                    Expect::Version(e.version),
                ),
                None => (1, Expect::Absent),
            };
            if matches!(behavior, Behavior::BumpCounterBehindMyBack) {
                self.bump_counter(&key).await;
            }
            cx.put(key, &json!({"n": n}), expect)?;
        }
        match behavior {
            Behavior::Normal | Behavior::BumpCounterBehindMyBack => {}
            Behavior::Reject => return Err(ActionError::rejected("the probe says no")),
            Behavior::Transient => {
                return Err(ActionError::transient("the probe's dependency is down"));
            }
            Behavior::Panic => panic!("boom"),
            Behavior::WaitForRelease => {
                self.started.notify_one();
                self.release.notified().await;
            }
            Behavior::Sleep(d) => tokio::time::sleep(d).await,
        }
        let mut padding = "abcdefgh".repeat(input.padding.unwrap_or(0) / 8);
        for _ in 0..input.noise.unwrap_or(0) / 32 {
            padding.push_str(&uuid::Uuid::new_v4().simple().to_string());
        }
        padding.push_str(&text(input.text.unwrap_or(0)));
        let (call, attempt) = if input.steady {
            (0, 0)
        } else {
            (call, cx.attempt())
        };
        Ok(ProbeOutput {
            value: input.value,
            secret: input.secret,
            call,
            attempt,
            padding,
        })
    }
}

/// `len` characters of a fixed pseudo-random sequence over 64 letters, digits and `+/`
/// (6 bits a character: gzip shrinks it to about three quarters).
pub(crate) fn text(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(ALPHABET[usize::try_from(state % 64).expect("small")])
        })
        .collect()
}

/// The JSON text of the probe's output for `{"value": value, "text": len, "steady": true}`:
/// byte for byte what the executor stores.
pub(crate) fn steady_output_text(value: &str, len: usize) -> String {
    serde_json::to_string(&ProbeOutput {
        value: value.to_owned(),
        secret: None,
        call: 0,
        attempt: 0,
        padding: text(len),
    })
    .expect("serializes")
}
