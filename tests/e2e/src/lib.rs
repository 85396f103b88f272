//! # actiondo-e2e — the end-to-end harness of action.do
//!
//! The real function binaries of the workspace, run by `cargo lambda watch` (the Lambda
//! Runtime and Invoke APIs), storing in DynamoDB Local, driven by `aws-sdk-lambda` through
//! the Invoke API with real event shapes. docs/architecture.md §9.
//!
//! A [`Stack`] is one test's world:
//!
//! - three fresh DynamoDB tables with a per-stack prefix on DynamoDB Local, created with
//!   [`DynamoStore::create_tables`];
//! - one `cargo lambda watch -A 127.0.0.1 -P <free port> --ignore-changes` in the workspace
//!   (module [`watch`]), whose functions get `ACTIONDO_STORE=dynamodb`, the endpoint, the
//!   table names and dummy credentials, and run offline (`CARGO_NET_OFFLINE=true`);
//! - a translating proxy in front of it (module [`proxy`]), so that a function error
//!   reaches the SDK as from Lambda: `200` + `X-Amz-Function-Error: Unhandled` with the
//!   `{"errorType", "errorMessage"}` payload;
//! - an [`aws_sdk_lambda::Client`] on the proxy, no retries, and helpers to invoke a
//!   function by its bare name and read the store.
//!
//! Dropping the stack stops the watch and every process it started, also when a test
//! panics (the log of a failed test is printed and kept).
//!
//! ## Servers and skipping
//!
//! As in the other suites: `./tests/run.sh` starts DynamoDB Local, exports
//! `ACTIONDO_TEST_DYNAMODB_LOCAL_URL` and `ACTIONDO_TEST_REQUIRE_INFRA=1`, puts
//! `cargo-lambda` on `PATH` (from `.tools/bin`) and builds the function binaries first.
//! Under a plain `cargo test`, a missing server or a missing `cargo-lambda` makes
//! [`StackBuilder::start`] print a `skipped: ...` line and return `None`; with
//! `ACTIONDO_TEST_REQUIRE_INFRA=1` (or `CI=true`) it panics instead, so that nothing is
//! skipped silently. Tests that need DynamoDB Local only (the fault scenarios of
//! `tests/faults.rs`) ask [`dynamodb_local_url`], which decides the same way.
//!
//! ## Faults
//!
//! Module [`faults`]: a proxy in front of DynamoDB Local that loses answers, delays,
//! throttles and fails requests by operation and call number, or at random with a seed,
//! and records every request.
//!
//! ## Settings
//!
//! - `ACTIONDO_E2E_START_SECS` (default 600): how long the start of each function (its
//!   first invoke, which may have to build it) may take before the stack gives up;
//! - `ACTIONDO_E2E_INVOKE_SECS` (default 120): the limit of any later invoke.
//!
//! These are hang guards with clear messages, not timed assertions.
//!
//! # Example
//!
//! ```no_run
//! # async fn example() {
//! use actiondo_e2e::Stack;
//! use serde_json::json;
//!
//! let Some(stack) = Stack::builder().function("create-user").start().await else {
//!     return; // skipped: no DynamoDB Local or no cargo-lambda (plain `cargo test`)
//! };
//! let task = json!({"params": {"email": "ada@example.com", "name": "Ada"}, "idempotencyKey": "k1"});
//! let user = stack.invoke("create-user", &task).await.expect("created");
//! assert_eq!(user["email"], "ada@example.com");
//! let again = stack.invoke("create-user", &task).await.expect("replayed");
//! assert_eq!(again, user);
//! # }
//! ```
#![warn(missing_docs, rust_2018_idioms)]
#![forbid(unsafe_code)]

pub mod corpus;
pub mod faults;
pub mod proxy;
pub mod runtime_api;
pub mod states;
pub mod watch;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use actiondo::store::dynamodb::{DynamoStore, Tables};
use actiondo::testing::local_aws_config;
use actiondo::{AuditFilter, AuditQuery, AuditRecord, Entity, EntityKey, ErrorBody, Store as _};
use aws_sdk_lambda::primitives::Blob;
use serde_json::Value;

pub use faults::{Fault, FaultProxy};
pub use proxy::LambdaProxy;
pub use watch::Watch;

/// The variable naming the DynamoDB Local endpoint (set by `./tests/run.sh`).
pub const DYNAMODB_LOCAL_URL_ENV: &str = "ACTIONDO_TEST_DYNAMODB_LOCAL_URL";
/// The variable that turns a missing server or tool into a failure.
pub use actiondo::testing::REQUIRE_INFRA_ENV;
/// The variable naming the test tools folder (`.tools`, set by `./tests/run.sh`).
pub const TOOLS_DIR_ENV: &str = "ACTIONDO_TOOLS_DIR";
/// The limit of each function's start, in seconds.
pub const START_SECS_ENV: &str = "ACTIONDO_E2E_START_SECS";
/// The limit of every later invoke, in seconds.
pub const INVOKE_SECS_ENV: &str = "ACTIONDO_E2E_INVOKE_SECS";

/// The region every client and function uses.
pub const REGION: &str = actiondo::testing::LOCAL_REGION;

/// An event no function of this workspace handles (an S3 notification): `actiondo::run`
/// refuses it with `ActionDo.Validation` before touching the store. [`Stack`] invokes it
/// to start each function; any answer means the function is up.
pub const WARM_UP_EVENT: &str =
    r#"{"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put"}]}"#;

pub use actiondo::testing::infra_required;

/// The workspace root (where the root `Cargo.toml` is).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The `cargo-lambda` executable: on `PATH`, else in `$ACTIONDO_TOOLS_DIR/bin`, else in
/// the workspace's `.tools/bin` (where `./tests/run.sh` installs it).
pub fn find_cargo_lambda() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let tools = std::env::var_os(TOOLS_DIR_ENV)
        .map(|d| PathBuf::from(d).join("bin"))
        .into_iter()
        .chain([workspace_root().join(".tools/bin")]);
    on_path
        .into_iter()
        .chain(tools)
        .map(|dir| dir.join("cargo-lambda"))
        .find(|candidate| candidate.is_file())
}

/// The DynamoDB Local endpoint, or why there is none.
fn dynamodb_local() -> Result<String, String> {
    std::env::var(DYNAMODB_LOCAL_URL_ENV)
        .ok()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| format!("{DYNAMODB_LOCAL_URL_ENV} is not set (DynamoDB Local)"))
}

/// What a run needs, or why it cannot run: (DynamoDB Local URL, cargo-lambda).
fn prerequisites() -> Result<(String, PathBuf), String> {
    let url = dynamodb_local()?;
    let cargo_lambda = find_cargo_lambda().ok_or_else(|| {
        "cargo-lambda is not installed (not on PATH, nor in .tools/bin)".to_owned()
    })?;
    Ok((url, cargo_lambda))
}

fn secs_from_env(var: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|s| *s > 0)
            .unwrap_or(default),
    )
}

/// A function error, as the Invoke API reports it (`X-Amz-Function-Error` set and a
/// `{"errorType", "errorMessage"}` payload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionError {
    /// `errorType`: for actiondo, the wire name (`ActionDo.Rejected`, ...).
    pub error_type: String,
    /// `errorMessage`: for actiondo, the JSON error body.
    pub error_message: String,
    /// The `X-Amz-Function-Error` value (`Unhandled`).
    pub function_error: String,
}

impl FunctionError {
    /// The actiondo error body carried in `errorMessage`, if it is one.
    pub fn body(&self) -> Option<ErrorBody> {
        serde_json::from_str(&self.error_message).ok()
    }
}

impl std::fmt::Display for FunctionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "function error {} ({}): {}",
            self.error_type, self.function_error, self.error_message
        )
    }
}

impl std::error::Error for FunctionError {}

/// Builds a [`Stack`]: which functions to start, and extra environment for them.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct StackBuilder {
    functions: Vec<String>,
    env: Vec<(String, String)>,
    lambda_url_env: Vec<String>,
}

impl StackBuilder {
    /// Start `name` (a binary of the workspace) before the test runs.
    pub fn function(mut self, name: impl Into<String>) -> Self {
        self.functions.push(name.into());
        self
    }

    /// Give the functions this environment variable (on top of the store's settings).
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Give the functions the variable `key` set to the Lambda endpoint of this stack (the
    /// translating proxy), e.g. `AWS_ENDPOINT_URL_LAMBDA` for a function that invokes
    /// others, as the router does.
    pub fn env_with_lambda_url(mut self, key: impl Into<String>) -> Self {
        self.lambda_url_env.push(key.into());
        self
    }

    /// Create the tables, start the watch and the proxy, and start each function.
    ///
    /// `None` after a `skipped: ...` line when DynamoDB Local or cargo-lambda is missing
    /// under a plain `cargo test`.
    ///
    /// # Panics
    ///
    /// When they are missing and [`infra_required`]; when the tables cannot be created;
    /// when the watch or a function does not start (the message carries the watch's log).
    pub async fn start(self) -> Option<Stack> {
        let test = std::thread::current()
            .name()
            .unwrap_or("this test")
            .to_owned();
        let (url, cargo_lambda) = match prerequisites() {
            Ok(found) => found,
            Err(missing) => {
                skip(&test, &missing);
                return None;
            }
        };
        let prefix = format!("e2e{}", uuid::Uuid::new_v4().simple());
        let tables = Tables::with_prefix(&prefix);
        let store = DynamoStore::new(dynamodb_client(&url), tables.clone());
        if let Err(e) = store.create_tables().await {
            panic!("creating the tables {prefix}-* on DynamoDB Local at {url}: {e}");
        }
        let mut env: Vec<(String, String)> = [
            ("ACTIONDO_STORE", "dynamodb"),
            ("AWS_ENDPOINT_URL_DYNAMODB", url.as_str()),
            (Tables::IDEMPOTENCY_ENV, tables.idempotency.as_str()),
            (Tables::AUDIT_ENV, tables.audit.as_str()),
            (Tables::ENTITIES_ENV, tables.entities.as_str()),
            ("AWS_REGION", REGION),
            ("AWS_DEFAULT_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("CARGO_NET_OFFLINE", "true"),
            ("NO_PROXY", "127.0.0.1,localhost"),
            ("no_proxy", "127.0.0.1,localhost"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        env.extend(self.env);
        // The proxy's port is taken first, so that functions calling the Invoke API can
        // be told where it is.
        let listener = match tokio::net::TcpListener::bind(("127.0.0.1", 0)).await {
            Ok(listener) => listener,
            Err(e) => panic!("no free port on 127.0.0.1 for the proxy: {e}"),
        };
        let proxy_url = match listener.local_addr() {
            Ok(addr) => format!("http://{addr}"),
            Err(e) => panic!("the proxy's address: {e}"),
        };
        env.extend(
            self.lambda_url_env
                .into_iter()
                .map(|key| (key, proxy_url.clone())),
        );

        let watch = start_watch(&cargo_lambda, &env, &prefix).await;
        let proxy = match LambdaProxy::serve(listener, watch.addr()) {
            Ok(proxy) => proxy,
            Err(e) => panic!("starting the proxy: {e}"),
        };
        let stack = Stack {
            lambda: lambda_client(&proxy.url()),
            proxy,
            watch,
            store,
            prefix,
            invoke_limit: secs_from_env(INVOKE_SECS_ENV, 120),
        };
        let start_limit = secs_from_env(START_SECS_ENV, 600);
        let warm_up: Value = serde_json::from_str(WARM_UP_EVENT).unwrap_or_default();
        for function in &self.functions {
            if let Err(e) = stack.invoke_within(function, &warm_up, start_limit).await {
                panic!("{function} did not start under cargo lambda watch: {e}");
            }
        }
        Some(stack)
    }
}

async fn start_watch(cargo_lambda: &Path, env: &[(String, String)], prefix: &str) -> Watch {
    let mut last_error = String::new();
    // A free port is picked, released and handed over; another process may take it in
    // between, so a watch that cannot listen is retried on another port.
    for _ in 0..3 {
        let port = match actiondo_harness::net::free_port() {
            Ok(port) => port,
            Err(e) => panic!("no free port on 127.0.0.1: {e}"),
        };
        let log = std::env::temp_dir().join(format!("actiondo-{prefix}-watch-{port}.log"));
        let watch = match Watch::spawn(cargo_lambda, &workspace_root(), port, env, log) {
            Ok(watch) => watch,
            Err(e) => panic!("starting {}: {e}", cargo_lambda.display()),
        };
        match watch.wait_listening(Duration::from_secs(60)).await {
            Ok(()) => return watch,
            Err(e) => last_error = e,
        }
    }
    panic!("{last_error}")
}

/// The test `test` cannot run because `missing` is missing: print a `skipped: ...` line,
/// or panic when [`infra_required`].
///
/// # Panics
///
/// When [`infra_required`]: nothing is skipped silently.
#[track_caller]
pub fn skip(test: &str, missing: &str) {
    assert!(
        !infra_required(),
        "{missing}, and this run requires it ({REQUIRE_INFRA_ENV}=1 or CI=true); run ./tests/run.sh"
    );
    // Past libtest's output capture (it takes the print macros only), so that the line
    // shows in a passing run too.
    let line = format!("skipped: {test}: {missing}; ./tests/run.sh provides it\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// The DynamoDB Local endpoint (`ACTIONDO_TEST_DYNAMODB_LOCAL_URL`), for tests that need
/// DynamoDB Local but no functions; `None` after [`skip`]'s `skipped: ...` line when it is
/// not set.
///
/// # Panics
///
/// When it is not set and [`infra_required`].
#[track_caller]
pub fn dynamodb_local_url() -> Option<String> {
    match dynamodb_local() {
        Ok(url) => Some(url),
        Err(missing) => {
            let test = std::thread::current()
                .name()
                .unwrap_or("this test")
                .to_owned();
            skip(&test, &missing);
            None
        }
    }
}

/// A DynamoDB client for DynamoDB Local at `url` (dummy credentials).
pub fn dynamodb_client(url: &str) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&local_aws_config(url))
}

/// A Lambda client for the endpoint `url` (dummy credentials). Retries are off: an
/// invoke retried behind a test's back would show up as a replay in the audit.
pub fn lambda_client(url: &str) -> aws_sdk_lambda::Client {
    let config = aws_sdk_lambda::config::Builder::from(&local_aws_config(url))
        .retry_config(aws_sdk_lambda::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_lambda::Client::from_conf(config)
}

/// One test's functions, store and clients; see the crate documentation.
#[derive(Debug)]
pub struct Stack {
    lambda: aws_sdk_lambda::Client,
    proxy: LambdaProxy,
    watch: Watch,
    store: DynamoStore,
    prefix: String,
    invoke_limit: Duration,
}

impl Stack {
    /// A builder; add the functions the test invokes.
    pub fn builder() -> StackBuilder {
        StackBuilder::default()
    }

    /// The Lambda client (endpoint: the proxy).
    pub fn lambda(&self) -> &aws_sdk_lambda::Client {
        &self.lambda
    }

    /// The proxy's URL, the Lambda endpoint of this stack.
    pub fn lambda_url(&self) -> String {
        self.proxy.url()
    }

    /// The store the functions use (DynamoDB Local, this stack's tables).
    pub fn store(&self) -> &DynamoStore {
        &self.store
    }

    /// This stack's table names.
    pub fn tables(&self) -> &Tables {
        self.store.tables()
    }

    /// The prefix of this stack's table names.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The watch process (its log, its state).
    pub fn watch(&self) -> &Watch {
        &self.watch
    }

    /// Keep and print the watch's log when the stack is dropped, even after a pass.
    pub fn keep_log(&mut self) {
        self.watch.keep_log();
    }

    /// Invoke `function` (bare name) synchronously with `payload`: the function's JSON
    /// result, or its function error.
    ///
    /// # Panics
    ///
    /// When the Invoke call itself fails (no answer, a 404 for an unknown function, the
    /// function process ended: the message carries the watch's log), or the result is not
    /// JSON.
    pub async fn invoke(&self, function: &str, payload: &Value) -> Result<Value, FunctionError> {
        match self
            .invoke_within(function, payload, self.invoke_limit)
            .await
        {
            Ok(outcome) => outcome,
            Err(e) => panic!("invoking {function}: {e}"),
        }
    }

    /// Invoke and tell a function error apart from a failed call (outer `Err`, a
    /// description with the watch's log).
    async fn invoke_within(
        &self,
        function: &str,
        payload: &Value,
        limit: Duration,
    ) -> Result<Result<Value, FunctionError>, String> {
        let body = serde_json::to_vec(payload).map_err(|e| e.to_string())?;
        let failures_before = self.watch.failures();
        let call = self
            .lambda
            .invoke()
            .function_name(function)
            .payload(Blob::new(body))
            .send();
        let output = tokio::select! {
            output = call => output,
            reason = self.watch_failure(failures_before) => return Err(reason),
            () = tokio::time::sleep(limit) => {
                return Err(format!(
                    "no answer within {limit:?} (see {START_SECS_ENV}/{INVOKE_SECS_ENV}); the watch's log:\n{}",
                    self.watch.log_tail(40)
                ));
            }
        };
        let output = output.map_err(|e| {
            format!(
                "the Invoke call failed: {}; the watch's log:\n{}",
                aws_sdk_lambda::error::DisplayErrorContext(&e),
                self.watch.log_tail(40)
            )
        })?;
        let bytes = output.payload().map(Blob::as_ref).unwrap_or_default();
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            format!(
                "{function} answered a payload that is not JSON ({e}): {}",
                String::from_utf8_lossy(bytes)
            )
        })?;
        Ok(match output.function_error() {
            None => Ok(value),
            Some(kind) => Err(FunctionError {
                error_type: value["errorType"].as_str().unwrap_or_default().to_owned(),
                error_message: value["errorMessage"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                function_error: kind.to_owned(),
            }),
        })
    }

    /// Resolves when the watch ends or logs a function process that ended.
    async fn watch_failure(&self, failures_before: usize) -> String {
        loop {
            if let Some(status) = self.watch.exited() {
                return format!(
                    "cargo lambda watch exited ({status}); its log:\n{}",
                    self.watch.log_tail(40)
                );
            }
            if self.watch.failures() > failures_before {
                return format!(
                    "a function process ended or did not build; the watch's log:\n{}",
                    self.watch.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The idempotency record `{action}#{key}`.
    ///
    /// # Panics
    ///
    /// When the store cannot be read.
    pub async fn record(&self, id: &str) -> Option<actiondo::store::IdempotencyRecord> {
        match self.store.get_record(id).await {
            Ok(record) => record,
            Err(e) => panic!("reading the record {id}: {e}"),
        }
    }

    /// The entity `key`.
    ///
    /// # Panics
    ///
    /// When the store cannot be read.
    pub async fn entity(&self, key: &EntityKey) -> Option<Entity> {
        match self.store.get_entity(key).await {
            Ok(entity) => entity,
            Err(e) => panic!("reading the entity {key:?}: {e}"),
        }
    }

    /// Every audit record matching `filter`, newest first (all pages).
    ///
    /// # Panics
    ///
    /// When the store cannot be read.
    pub async fn audit_records(&self, filter: AuditFilter) -> Vec<AuditRecord> {
        let mut records = Vec::new();
        let mut cursor = None;
        loop {
            let query = AuditQuery {
                cursor: cursor.take(),
                ..AuditQuery::new(filter.clone())
            };
            let page = match self.store.query_audit(&query).await {
                Ok(page) => page,
                Err(e) => panic!("reading the audit ({filter:?}): {e}"),
            };
            records.extend(page.records);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return records,
            }
        }
    }

    /// The audit trail of the execution `{action}#{key}`, newest first.
    pub async fn audit(&self, execution: &str) -> Vec<AuditRecord> {
        self.audit_records(AuditFilter::Execution(execution.into()))
            .await
    }
}
