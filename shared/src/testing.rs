//! Helpers for the tests of actions: an executor on the embedded store, running an action
//! with a key (and retrying on `ActionDo.Conflict` as a client would), reading errors and
//! audit trails, and [`SlowReads`], a store that makes concurrent executions interleave.
//!
//! Feature `testing` (with `sqlite`); [`http`] needs feature `testing-http` (crate
//! `wiremock`). An action crate enables it for its tests only:
//!
//! ```toml
//! [dev-dependencies]
//! actiondo = { workspace = true, features = ["testing"] }
//! ```
//!
//! # Example
//!
//! ```
//! use actiondo::testing::{self, TestResult};
//! use actiondo::{Action, ActionContext, ActionError, ErrorKind, FieldErrors};
//! # use schemars::JsonSchema;
//! # use serde::{Deserialize, Serialize};
//! # #[derive(Deserialize, JsonSchema)]
//! # struct Input { name: String }
//! # #[derive(Serialize, Deserialize, JsonSchema)]
//! # struct Output { greeting: String }
//! # struct Greet;
//! # impl Action for Greet {
//! #     type Input = Input;
//! #     type Output = Output;
//! #     const NAME: &'static str = "greet";
//! #     const DESCRIPTION: &'static str = "Greets.";
//! #     fn validate(&self, input: &Input) -> Result<(), ActionError> {
//! #         let mut errors = FieldErrors::new();
//! #         if input.name.trim().is_empty() { errors.add("/name", "must not be blank"); }
//! #         errors.into_result(Self::NAME)
//! #     }
//! #     async fn execute(&self, input: Input, _: &mut ActionContext) -> Result<Output, ActionError> {
//! #         Ok(Output { greeting: format!("Hi {}", input.name) })
//! #     }
//! # }
//!
//! # tokio::runtime::Runtime::new()?.block_on(async {
//! let executor = testing::executor()?;
//! let bad = testing::run(&executor, &Greet, serde_json::json!({"name": " "}), "k").await;
//! assert_eq!(testing::error_kind(&bad), Some(ErrorKind::Validation));
//! assert_eq!(testing::error_paths(&bad), vec!["/name"]);
//! # Ok::<_, Box<dyn std::error::Error>>(()) })?;
//! # TestResult::Ok(())
//! ```

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::action::DynAction;
use crate::audit::{AuditFilter, AuditPage, AuditQuery, AuditRecord, AuditStatus};
use crate::error::{ActionError, ErrorKind, StoreError};
use crate::executor::{Execution, Executor};
use crate::invocation::Invocation;
use crate::invocation::Source;
use crate::store::sqlite::SqliteStore;
use crate::store::{
    Claim, ClaimOutcome, Commit, CommitOutcome, Entity, EntityKey, Expect, IdempotencyRecord, Store,
};

/// The result of a test that uses `?`.
pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// How many times [`run_retrying`] retries an execution answered `ActionDo.Conflict`.
pub const MAX_CONFLICT_RETRIES: u32 = 50;

/// An executor on a fresh in-memory SQLite store.
pub fn executor() -> Result<Executor, StoreError> {
    Ok(Executor::new(SqliteStore::in_memory()?))
}

/// Execute `action` with `params` under the idempotency key `key`, from the CLI.
pub async fn run(
    executor: &Executor,
    action: &dyn DynAction,
    params: Value,
    key: &str,
) -> Execution {
    executor
        .execute(action, Invocation::new(params, Source::Cli).with_key(key))
        .await
}

/// [`run`] like a real client: an execution answered `ActionDo.Conflict` (an entity
/// condition lost to a concurrent execution) is run again, at most
/// [`MAX_CONFLICT_RETRIES`] times. The last execution, and how many conflicts were
/// answered before it.
pub async fn run_retrying(
    executor: &Executor,
    action: &dyn DynAction,
    params: Value,
    key: &str,
) -> (Execution, u32) {
    let mut conflicts = 0;
    loop {
        let execution = run(executor, action, params.clone(), key).await;
        match &execution.outcome {
            Err(e) if e.kind() == ErrorKind::Conflict && conflicts < MAX_CONFLICT_RETRIES => {
                conflicts += 1;
                tokio::task::yield_now().await;
            }
            _ => return (execution, conflicts),
        }
    }
}

/// The error of an execution, if it failed.
pub fn error(execution: &Execution) -> Option<&ActionError> {
    execution.outcome.as_ref().err()
}

/// The kind of an execution's error, if it failed.
pub fn error_kind(execution: &Execution) -> Option<ErrorKind> {
    error(execution).map(ActionError::kind)
}

/// The message of an execution's error; empty if it succeeded.
pub fn error_message(execution: &Execution) -> String {
    error(execution)
        .map(|e| e.message().to_owned())
        .unwrap_or_default()
}

/// The details of an execution's error, if it failed with details.
pub fn error_details(execution: &Execution) -> Option<Value> {
    error(execution).and_then(|e| e.details().cloned())
}

/// The `path` of each problem an execution's `ActionDo.Validation` error lists
/// (`details.errors[].path`), in order; empty if it succeeded or lists none.
pub fn error_paths(execution: &Execution) -> Vec<String> {
    error(execution).map(paths).unwrap_or_default()
}

/// The `path` of each problem an error lists (`details.errors[].path`), in order.
pub fn paths(error: &ActionError) -> Vec<String> {
    error
        .details()
        .and_then(|d| d["errors"].as_array())
        .map(|errors| {
            errors
                .iter()
                .filter_map(|p| p["path"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// An error and each of its sources, as one text (to prove that none shows a secret).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        chain.push_str(&s.to_string());
        source = s.source();
    }
    chain
}

/// The statuses of the audit records of one execution (`<action>#<key>`), newest first.
pub async fn audit_statuses(
    executor: &Executor,
    execution_id: &str,
) -> Result<Vec<AuditStatus>, StoreError> {
    let page = executor
        .store()
        .query_audit(&AuditQuery::new(AuditFilter::Execution(
            execution_id.to_owned(),
        )))
        .await?;
    Ok(page.records.iter().map(|r| r.status).collect())
}

/// A local TCP port where nothing listens (it was free a moment ago): a service that
/// cannot be reached.
pub fn unused_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The region of [`local_aws_config`].
#[cfg(feature = "aws")]
pub const LOCAL_REGION: &str = "us-east-1";

/// The AWS SDK configuration of a local emulator at `endpoint` (DynamoDB Local, moto,
/// `cargo lambda watch`): region [`LOCAL_REGION`], dummy credentials, actiondo's HTTP
/// client ([`crate::aws::http_client`]). Add per-client settings with the service's
/// `config::Builder::from(&config)`, e.g. `.retry_config(RetryConfig::disabled())`.
#[cfg(feature = "aws")]
pub fn local_aws_config(endpoint: &str) -> aws_types::SdkConfig {
    use aws_credential_types::Credentials;
    use aws_credential_types::provider::SharedCredentialsProvider;
    aws_types::SdkConfig::builder()
        .behavior_version(crate::aws::BehaviorVersion::latest())
        .region(aws_types::region::Region::new(LOCAL_REGION))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "test", "test", None, None, "local",
        )))
        .http_client(crate::aws::http_client())
        .endpoint_url(endpoint)
        .build()
}

/// A store whose entity reads take a little while (2 ms unless
/// [`with_delay`](Self::with_delay)), so that concurrent executions really interleave
/// between their reads and their commit — the window in which entity conditions must
/// catch a lost update.
#[derive(Debug)]
pub struct SlowReads<S> {
    inner: S,
    delay: Duration,
}

impl<S: Store> SlowReads<S> {
    /// Wrap `inner`; each entity read takes 2 ms longer.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            delay: Duration::from_millis(2),
        }
    }

    /// Each entity read takes `delay` longer.
    #[must_use]
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

#[async_trait]
impl<S: Store> Store for SlowReads<S> {
    async fn claim(&self, claim: &Claim) -> Result<ClaimOutcome, StoreError> {
        self.inner.claim(claim).await
    }

    async fn commit(&self, commit: &Commit) -> Result<CommitOutcome, StoreError> {
        self.inner.commit(commit).await
    }

    async fn put_audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        self.inner.put_audit(record).await
    }

    async fn get_record(&self, id: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.inner.get_record(id).await
    }

    async fn get_entity(&self, key: &EntityKey) -> Result<Option<Entity>, StoreError> {
        let entity = self.inner.get_entity(key).await;
        tokio::time::sleep(self.delay).await;
        entity
    }

    async fn query_audit(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        self.inner.query_audit(query).await
    }
    async fn put_entity(
        &self,
        key: &EntityKey,
        doc: &serde_json::Value,
        expect: Expect,
    ) -> Result<bool, StoreError> {
        self.inner.put_entity(key, doc, expect).await
    }
}

/// Helpers for tests against a local HTTP server (crate `wiremock`) that records its
/// requests. Feature `testing-http`.
#[cfg(feature = "testing-http")]
pub mod http {
    use std::collections::BTreeMap;

    use wiremock::matchers::method;
    use wiremock::{Mock, MockServer, Request, ResponseTemplate};

    /// A local server that answers every request with `verb` (`"GET"`, `"POST"`…) with
    /// `response` (any other request gets a 404).
    pub async fn answering(verb: &str, response: ResponseTemplate) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method(verb))
            .respond_with(response)
            .mount(&server)
            .await;
        server
    }

    /// A local server that answers the first request with `verb` with `first` (say, a
    /// 503) and every later one with `then`: a failure that a retry overcomes.
    pub async fn failing_once(
        verb: &str,
        first: ResponseTemplate,
        then: ResponseTemplate,
    ) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method(verb))
            .respond_with(first)
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method(verb))
            .respond_with(then)
            .mount(&server)
            .await;
        server
    }

    /// The requests `server` received, oldest first.
    pub async fn received(server: &MockServer) -> Vec<Request> {
        server.received_requests().await.unwrap_or_default()
    }

    /// The `Idempotency-Key` header of a request, if it has a readable one.
    pub fn idempotency_key(request: &Request) -> Option<&str> {
        request
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
    }

    /// The `Idempotency-Key` of each request that has one, in order.
    pub fn idempotency_keys(requests: &[Request]) -> Vec<String> {
        requests
            .iter()
            .filter_map(idempotency_key)
            .map(str::to_owned)
            .collect()
    }

    /// The fields of a form-encoded request body (a repeated field keeps its last value).
    pub fn form(request: &Request) -> BTreeMap<String, String> {
        form_urlencoded::parse(&request.body).into_owned().collect()
    }
}

/// A clock that stands still until the test moves it: leases and retention end when the
/// test says so. Starts at the system's time; clones share the time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<std::sync::atomic::AtomicI64>);

impl ManualClock {
    /// A clock at the system's current time.
    pub fn new() -> Self {
        Self(Arc::new(std::sync::atomic::AtomicI64::new(
            crate::Clock::now_ms(&crate::SystemClock),
        )))
    }

    /// Move the time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX / 4);
        self.0.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl crate::Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Whether the key `id` (`{action}#{key}`) is free for a retry of the same payload: no
/// record, or a released one — an attempt that failed in a way a retry may fix gives its
/// lease back and keeps the record, so that the next attempt counts on
/// (docs/architecture.md §4).
pub async fn key_is_free(store: &Arc<dyn Store>, id: &str) -> Result<bool, StoreError> {
    Ok(store
        .get_record(id)
        .await?
        .is_none_or(|record| record.is_released()))
}

/// The variable that turns a missing server or tool into a failure (set by
/// `./tests/run.sh`; `CI=true` does the same).
pub const REQUIRE_INFRA_ENV: &str = "ACTIONDO_TEST_REQUIRE_INFRA";

/// Whether a missing server or tool fails the run (the test runner, CI) rather than
/// skipping the test loudly: `ACTIONDO_TEST_REQUIRE_INFRA=1` or `CI=true`.
pub fn infra_required() -> bool {
    std::env::var(REQUIRE_INFRA_ENV).is_ok_and(|v| v == "1")
        || std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The one rule for "is a server required?": the URL of the server that `var` names
/// (`ACTIONDO_TEST_DYNAMODB_LOCAL_URL`, `ACTIONDO_TEST_MOTO_URL`, both set by
/// `./tests/run.sh`); when it is not set, `None` after a `NOT RUN` line on standard error
/// naming `what` — or a panic when [`infra_required`], so that nothing is ever skipped
/// silently where the servers must be.
///
/// # Panics
///
/// When `var` is not set and [`infra_required`].
#[track_caller]
pub fn server_url(var: &str, what: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                !infra_required(),
                "{var} is not set, and this run requires it for {what} ({REQUIRE_INFRA_ENV}=1 or CI=true); run ./tests/run.sh"
            );
            // Past libtest's output capture, so that the line shows in a passing run too.
            use std::io::Write as _;
            let line = format!(
                "\n*** NOT RUN: {what} — {var} is not set; ./tests/run.sh starts the server. ***\n"
            );
            let _ = std::io::stderr().write_all(line.as_bytes());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Action, ActionContext, Expect};
    use schemars::JsonSchema;
    use serde::{Deserialize, Serialize};

    #[derive(Deserialize, JsonSchema)]
    struct Input {
        n: u64,
    }

    #[derive(Serialize, Deserialize, JsonSchema)]
    struct Output {
        n: u64,
    }

    /// Reads one counter entity and writes it back incremented: concurrent executions
    /// conflict.
    struct Bump;

    impl Action for Bump {
        type Input = Input;
        type Output = Output;
        const NAME: &'static str = "bump";
        const DESCRIPTION: &'static str = "Bumps a counter.";

        fn options(&self) -> crate::ActionOptions {
            crate::ActionOptions {
                mode: crate::Mode::Optimistic,
                optimistic_retries: 0,
                ..crate::ActionOptions::default()
            }
        }

        async fn execute(
            &self,
            input: Input,
            cx: &mut ActionContext,
        ) -> Result<Output, ActionError> {
            let key = EntityKey::new("counter", "c");
            let (n, expect) = match cx.get_as::<Output>(&key).await? {
                None => (0, Expect::Absent),
                Some((doc, version)) => (doc.n, Expect::Version(version)),
            };
            let n = n + input.n;
            cx.put(key, &Output { n }, expect)?;
            Ok(Output { n })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn retrying_on_conflict_applies_every_execution_once() -> TestResult {
        let executor = Executor::new(SlowReads::new(SqliteStore::in_memory()?));
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let executor = executor.clone();
                tokio::spawn(async move {
                    run_retrying(
                        &executor,
                        &Bump,
                        serde_json::json!({"n": 1}),
                        &format!("k{i}"),
                    )
                    .await
                })
            })
            .collect();
        let mut conflicts = 0;
        let mut seen = Vec::new();
        for task in tasks {
            let (execution, c) = task.await?;
            conflicts += c;
            seen.push(execution.output::<Output>()?.n);
        }
        seen.sort_unstable();
        assert_eq!(seen, (1..=8).collect::<Vec<u64>>());
        let stored = executor
            .store()
            .get_entity(&EntityKey::new("counter", "c"))
            .await?
            .ok_or("no counter")?;
        assert_eq!((stored.doc["n"].as_u64(), stored.version), (Some(8), 8));
        eprintln!("{conflicts} conflicts");
        Ok(())
    }

    #[tokio::test]
    async fn errors_and_audit_are_read() -> TestResult {
        let executor = executor()?;
        let bad = run(&executor, &Bump, serde_json::json!({"n": "x"}), "bad").await;
        assert_eq!(error_kind(&bad), Some(ErrorKind::Validation));
        assert_eq!(error_paths(&bad), vec!["/n"]);
        assert!(error_message(&bad).starts_with("invalid params for bump: /n: "));
        assert!(error_details(&bad).is_some());
        let ok = run(&executor, &Bump, serde_json::json!({"n": 2}), "ok").await;
        assert_eq!(error_kind(&ok), None);
        assert_eq!(error_message(&ok), "");
        run(&executor, &Bump, serde_json::json!({"n": 2}), "ok").await;
        assert_eq!(
            audit_statuses(&executor, "bump#ok").await?,
            vec![AuditStatus::Replayed, AuditStatus::Completed]
        );
        let chain = error_chain(
            &ActionError::transient("outer").with_source(std::io::Error::other("inner")),
        );
        assert!(
            chain.contains("outer") && chain.contains("inner"),
            "{chain}"
        );
        assert!(unused_port()? > 0);
        Ok(())
    }
}
