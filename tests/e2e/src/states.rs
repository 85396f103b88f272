//! Step Functions, locally: the state machines of `workflows/` executed by moto's ASL
//! interpreter, their Lambda tasks run by the real action binaries of a [`Stack`].
//!
//! # How the pieces connect (docs/architecture.md §9)
//!
//! ```text
//!  test ──aws-sdk-sfn──▶ front proxy ──(everything else)──▶ moto_server (ASL interpreter)
//!                          ▲    │                                │
//!                          │    └─(Invoke)─▶ Stack's proxy ─▶ cargo lambda watch ─▶ binaries
//!                          └──────── Lambda Invoke of a Task ────┘ (http://localhost:$MOTO_PORT)
//! ```
//!
//! - A dedicated `moto_server -H 127.0.0.1 -p <free port>` per [`StepFunctions`], with
//!   state-machine execution switched on (`POST /moto-api/config
//!   {"stepfunctions": {"execute_state_machine": true}}`). Its interpreter calls Lambda
//!   with boto3 at `http://localhost:$MOTO_PORT` (moto 5.2.5:
//!   `moto/stepfunctions/parser/asl/utils/boto_client.py`, `moto.settings.moto_server_port`),
//!   so moto is started with `MOTO_PORT` = the port of the front proxy.
//! - The front proxy (hyper, on `127.0.0.1`) sends `POST /2015-03-31/functions/{name or
//!   ARN}/invocations` to the [`Stack`]'s Lambda endpoint (its translating proxy in front
//!   of `cargo lambda watch`) with the function ARN rewritten to the bare function name
//!   (which is what cargo-lambda serves), and every other request to moto, unchanged.
//!   It records each Invoke it routed ([`StepFunctions::invocations`]).
//! - The state machines are created from `workflows/*.asl.json` with each
//!   `${XFunctionArn}` placeholder (template.yaml's `DefinitionSubstitutions`) replaced by
//!   `arn:aws:lambda:us-east-1:123456789012:function:<package>`, the package derived from
//!   the placeholder (`ValidateLeadFunctionArn` → `validate-lead`) and required to exist
//!   under `functions/`: [`substitute_function_arns`].
//!
//! Dropping a [`StepFunctions`] stops the proxy and moto's process group (`SIGTERM`, then
//! `SIGKILL`), also when a test panics; moto's log is then printed and kept.
//!
//! # Skipping
//!
//! As for [`Stack`]: without `moto_server` (on `PATH`, in `$ACTIONDO_TOOLS_DIR/bin` or
//! `.tools/bin`), [`StepFunctions::start`] prints a `skipped: ...` line and returns `None`
//! under a plain `cargo test`, and panics when [`infra_required`].
//!
//! # Settings
//!
//! `ACTIONDO_E2E_EXECUTION_SECS` (default 600): how long [`StepFunctions::wait`] waits for
//! an execution to leave `RUNNING` before it gives up with the execution's history. A
//! hang guard with a clear message, not a timed assertion.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actiondo_harness::Group;
use aws_sdk_sfn::types::{ExecutionStatus, HistoryEvent};
use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::proxy::{FUNCTION_ERROR_HEADER, is_invoke_path};
use crate::{REGION, Stack, TOOLS_DIR_ENV, infra_required, workspace_root};

/// The limit of one execution, in seconds (see the module documentation).
pub const EXECUTION_SECS_ENV: &str = "ACTIONDO_E2E_EXECUTION_SECS";
/// The account moto answers for (its default), in every ARN.
pub const ACCOUNT_ID: &str = "123456789012";
/// The role the state machines are created with (moto does not check it).
pub const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/actiondo-workflows";
/// The suffix of the placeholders that name a function's ARN in `workflows/*.asl.json`.
pub const FUNCTION_ARN_SUFFIX: &str = "FunctionArn";
/// How long moto may take to start answering HTTP.
pub const MOTO_START_LIMIT: Duration = Duration::from_secs(60);
/// How long moto gets to stop on `SIGTERM` before its process group is killed.
pub const MOTO_STOP_GRACE: Duration = Duration::from_secs(5);

type Upstream = Client<HttpConnector, Full<Bytes>>;

/// The `moto_server` executable: on `PATH`, else in `$ACTIONDO_TOOLS_DIR/bin`, else in the
/// workspace's `.tools/bin` (where `./tests/run.sh` installs it).
pub fn find_moto_server() -> Option<PathBuf> {
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
        .map(|dir| dir.join("moto_server"))
        .find(|candidate| candidate.is_file())
}

/// The ARN of the function of `package` (a binary of the workspace), as the state
/// machines name it.
pub fn function_arn(package: &str) -> String {
    format!("arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{package}")
}

/// The ARN of the execution `name` of the state machine `workflow`, as moto builds it.
pub fn execution_arn(workflow: &str, name: &str) -> String {
    format!("arn:aws:states:{REGION}:{ACCOUNT_ID}:execution:{workflow}:{name}")
}

/// The package named by a `DefinitionSubstitutions` placeholder:
/// `ValidateLeadFunctionArn` → `validate-lead`, `CreateOrUpdateContactFunctionArn` →
/// `create-or-update-contact`. `None` for a placeholder that is not `<UpperCamel>FunctionArn`.
pub fn package_of_placeholder(placeholder: &str) -> Option<String> {
    let stem = placeholder.strip_suffix(FUNCTION_ARN_SUFFIX)?;
    if !stem.starts_with(|c: char| c.is_ascii_uppercase())
        || !stem.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return None;
    }
    let mut package = String::with_capacity(stem.len() + 4);
    for c in stem.chars() {
        if c.is_ascii_uppercase() {
            if !package.is_empty() {
                package.push('-');
            }
            package.push(c.to_ascii_lowercase());
        } else {
            package.push(c);
        }
    }
    Some(package)
}

/// `definition` with every `${XFunctionArn}` replaced by [`function_arn`] of its package
/// (see [`package_of_placeholder`]), and the packages it names, in order of appearance.
///
/// # Errors
///
/// A placeholder that is not a function ARN's, that is not closed, or whose package is
/// not a folder of `functions/`: the definition would not deploy either.
pub fn substitute_function_arns(definition: &str) -> Result<(String, Vec<String>), String> {
    let functions = workspace_root().join("functions");
    let mut out = String::with_capacity(definition.len() + 512);
    let mut packages: Vec<String> = Vec::new();
    let mut rest = definition;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("an unclosed placeholder: {}", &rest[start..]))?;
        let placeholder = &after[..end];
        let package = package_of_placeholder(placeholder).ok_or_else(|| {
            format!("the placeholder ${{{placeholder}}} is not <Name>{FUNCTION_ARN_SUFFIX}")
        })?;
        if !functions.join(&package).join("Cargo.toml").is_file() {
            return Err(format!(
                "the placeholder ${{{placeholder}}} names the package {package}, which is not in {}",
                functions.display()
            ));
        }
        out.push_str(&function_arn(&package));
        if !packages.contains(&package) {
            packages.push(package);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok((out, packages))
}

/// The workflows of `workflows/`: (name, file), the name being the file's without
/// `.asl.json` (`user-onboarding`), sorted by name.
pub fn workflow_files() -> Vec<(String, PathBuf)> {
    let dir = workspace_root().join("workflows");
    let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| {
                    let path = entry.path();
                    let name = path
                        .file_name()?
                        .to_str()?
                        .strip_suffix(".asl.json")?
                        .to_owned();
                    Some((name, path))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Decode the `%XX` escapes of a URI path segment (invalid escapes are kept as they are).
pub fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            // Two hex digits: at most 255.
            out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The bare function name of a Lambda `FunctionName`: a name stays, a full or partial
/// ARN (`arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`,
/// `ACCOUNT:function:NAME`) gives `NAME`.
pub fn bare_function_name(function: &str) -> &str {
    match function.split_once(":function:") {
        Some((_, name)) => name.split(':').next().unwrap_or(name),
        None => function,
    }
}

/// The bare function name an Invoke path calls
/// (`/2015-03-31/functions/{FunctionName}/invocations`, the name percent-encoded), or
/// `None` for any other path.
pub fn invoked_function(path: &str) -> Option<String> {
    if !is_invoke_path(path) {
        return None;
    }
    let encoded = path
        .strip_prefix("/2015-03-31/functions/")?
        .strip_suffix("/invocations")?;
    let function = percent_decode(encoded);
    Some(bare_function_name(&function).to_owned())
}

/// One Lambda Invoke a Task made, as the front proxy routed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutedInvoke {
    /// The bare function name.
    pub function: String,
    /// The HTTP status of the answer (after the Stack's translation: 200 for a function
    /// error too).
    pub status: u16,
    /// The `X-Amz-Function-Error` of the answer (`Unhandled` for a function error).
    pub function_error: Option<String>,
}

/// The front proxy on `MOTO_PORT`: Invoke calls to the Lambda endpoint, the rest to moto.
#[derive(Debug)]
struct FrontProxy {
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Clone, Copy)]
struct Routes {
    lambda: SocketAddr,
    moto: SocketAddr,
}

impl FrontProxy {
    async fn start(routes: Routes, log: Arc<Mutex<Vec<RoutedInvoke>>>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let client: Upstream = Client::builder(TokioExecutor::new()).build_http();
        let server = tokio::spawn(async move {
            // Owned by this task: aborting it drops the set, which aborts the connections.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let client = client.clone();
                let log = Arc::clone(&log);
                let service = hyper::service::service_fn(move |request| {
                    route(client.clone(), routes, Arc::clone(&log), request)
                });
                connections.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(Self { addr, server })
    }
}

impl Drop for FrontProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn route(
    client: Upstream,
    routes: Routes,
    log: Arc<Mutex<Vec<RoutedInvoke>>>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let invoked = (request.method() == Method::POST)
        .then(|| invoked_function(request.uri().path()))
        .flatten();
    let (upstream, path_and_query) = match &invoked {
        Some(function) => {
            let query = request
                .uri()
                .query()
                .map(|q| format!("?{q}"))
                .unwrap_or_default();
            (
                routes.lambda,
                format!("/2015-03-31/functions/{function}/invocations{query}"),
            )
        }
        None => (
            routes.moto,
            request
                .uri()
                .path_and_query()
                .map_or_else(|| "/".to_owned(), ToString::to_string),
        ),
    };
    let response = match relay(&client, upstream, &path_and_query, request).await {
        Ok(response) => response,
        Err(message) => {
            let mut response = Response::new(Full::new(Bytes::from(message)));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response
        }
    };
    if let Some(function) = invoked {
        let routed = RoutedInvoke {
            function,
            status: response.status().as_u16(),
            function_error: response
                .headers()
                .get(FUNCTION_ERROR_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        };
        log.lock().unwrap_or_else(|p| p.into_inner()).push(routed);
    }
    Ok(response)
}

async fn relay(
    client: &Upstream,
    upstream: SocketAddr,
    path_and_query: &str,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, String> {
    let (mut parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("front proxy: reading the request body: {e}"))?
        .to_bytes();
    parts.uri = format!("http://{upstream}{path_and_query}")
        .parse()
        .map_err(|e| format!("front proxy: bad upstream URI: {e}"))?;
    // The body is whole: the client sets the length and the upstream's Host.
    for header in [HOST, CONTENT_LENGTH, TRANSFER_ENCODING] {
        parts.headers.remove(header);
    }
    let answer = client
        .request(Request::from_parts(parts, Full::new(body)))
        .await
        .map_err(|e| format!("front proxy: {upstream} did not answer: {e}"))?;
    let (mut parts, body) = answer.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("front proxy: reading the answer of {upstream}: {e}"))?
        .to_bytes();
    parts.headers.remove(TRANSFER_ENCODING);
    parts.headers.remove(CONTENT_LENGTH);
    Ok(Response::from_parts(parts, Full::new(body)))
}

/// A running `moto_server` in a process group of its own (stopped on drop).
#[derive(Debug)]
struct MotoServer {
    group: Group,
    addr: SocketAddr,
}

impl MotoServer {
    fn spawn(moto_server: &Path, port: u16, moto_port: u16, log: PathBuf) -> std::io::Result<Self> {
        let mut command = Command::new(moto_server);
        command
            .args(["-H", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .env("MOTO_PORT", moto_port.to_string())
            // The interpreter's boto3 client calls http://localhost:$MOTO_PORT: never
            // through an HTTP proxy of the environment.
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost")
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy");
        let mut group =
            Group::spawn("moto_server", &mut command, log)?.with_stop_grace(MOTO_STOP_GRACE);
        group.register_pid_file(&format!("moto_server on port {port}"));
        Ok(Self {
            group,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        })
    }

    fn exited(&self) -> Option<ExitStatus> {
        self.group.exited()
    }

    fn log_tail(&self, n: usize) -> String {
        self.group.log_tail(n)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        self.group.stop();
        if std::thread::panicking() {
            eprintln!(
                "--- moto_server log ({}), last lines:\n{}\n---",
                self.group.log_path().display(),
                self.log_tail(60)
            );
        } else {
            let _ = std::fs::remove_file(self.group.log_path());
        }
    }
}

/// An HTTP exchange with moto's own API (`/moto-api/...`): (status, body).
async fn moto_api(
    client: &Upstream,
    addr: SocketAddr,
    method: Method,
    path: &str,
    body: &str,
) -> Result<(StatusCode, String), String> {
    let request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_owned())))
        .map_err(|e| e.to_string())?;
    let answer = client.request(request).await.map_err(|e| e.to_string())?;
    let status = answer.status();
    let bytes = answer
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

/// How an execution ended (or where it was when asked).
#[derive(Debug, Clone, PartialEq)]
pub struct Execution {
    /// The execution ARN (the correlation id of every action it ran).
    pub arn: String,
    /// `SUCCEEDED`, `FAILED`, …
    pub status: ExecutionStatus,
    /// The output, when it succeeded.
    pub output: Option<Value>,
    /// The error name, when it failed.
    pub error: Option<String>,
    /// The cause, when it failed.
    pub cause: Option<String>,
}

/// One test's Step Functions: moto's interpreter with the workflows of `workflows/`
/// created, in front of a [`Stack`]'s functions. See the module documentation.
#[derive(Debug)]
pub struct StepFunctions {
    client: aws_sdk_sfn::Client,
    machines: BTreeMap<String, String>,
    invokes: Arc<Mutex<Vec<RoutedInvoke>>>,
    execution_limit: Duration,
    // Dropped in this order: the proxy, then moto.
    front: FrontProxy,
    moto: MotoServer,
}

impl StepFunctions {
    /// Start moto and the front proxy for `stack`, and create every workflow of
    /// `workflows/` (named as its file: `user-onboarding`).
    ///
    /// `None` after a `skipped: ...` line when `moto_server` is missing under a plain
    /// `cargo test`.
    ///
    /// # Panics
    ///
    /// When `moto_server` is missing and [`infra_required`]; when moto does not start;
    /// when a workflow cannot be read, substituted or created (the message says which and
    /// why).
    pub async fn start(stack: &Stack) -> Option<Self> {
        let Some(moto_server) = find_moto_server() else {
            let missing = "moto_server is not installed (not on PATH, nor in .tools/bin)";
            assert!(
                !infra_required(),
                "{missing}, and this run requires it ({}=1 or CI=true); run ./tests/run.sh",
                crate::REQUIRE_INFRA_ENV
            );
            let test = std::thread::current()
                .name()
                .unwrap_or("this test")
                .to_owned();
            let line = format!("skipped: {test}: {missing}; ./tests/run.sh provides it\n");
            let _ = std::io::stderr().write_all(line.as_bytes());
            return None;
        };
        let lambda = stack
            .lambda_url()
            .trim_start_matches("http://")
            .parse::<SocketAddr>()
            .unwrap_or_else(|e| panic!("the stack's Lambda URL {}: {e}", stack.lambda_url()));
        let invokes = Arc::new(Mutex::new(Vec::new()));
        let (front, moto) = start_moto(&moto_server, lambda, &invokes, stack.prefix()).await;
        let client = sfn_client(&format!("http://{}", front.addr));
        let mut this = Self {
            client,
            machines: BTreeMap::new(),
            invokes,
            execution_limit: crate::secs_from_env(EXECUTION_SECS_ENV, 600),
            front,
            moto,
        };
        for (name, file) in workflow_files() {
            this.create(&name, &file).await;
        }
        assert!(
            !this.machines.is_empty(),
            "no workflows/*.asl.json under {}",
            workspace_root().display()
        );
        Some(this)
    }

    async fn create(&mut self, name: &str, file: &Path) {
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        let (definition, _) = substitute_function_arns(&text)
            .unwrap_or_else(|e| panic!("substituting {}: {e}", file.display()));
        let created = self
            .client
            .create_state_machine()
            .name(name)
            .definition(definition)
            .role_arn(ROLE_ARN)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "creating the state machine {name} from {} on moto: {}; moto's log:\n{}",
                    file.display(),
                    aws_sdk_sfn::error::DisplayErrorContext(&e),
                    self.moto.log_tail(30)
                )
            });
        self.machines
            .insert(name.to_owned(), created.state_machine_arn().to_owned());
    }

    /// The Step Functions client (endpoint: the front proxy, i.e. moto).
    pub fn client(&self) -> &aws_sdk_sfn::Client {
        &self.client
    }

    /// The URL clients use (`http://127.0.0.1:<MOTO_PORT>`).
    pub fn url(&self) -> String {
        format!("http://{}", self.front.addr)
    }

    /// The workflows created, by name, with their state machine ARNs.
    pub fn state_machines(&self) -> &BTreeMap<String, String> {
        &self.machines
    }

    /// The ARN of the state machine `workflow`.
    ///
    /// # Panics
    ///
    /// When there is no such workflow.
    pub fn state_machine_arn(&self, workflow: &str) -> &str {
        self.machines.get(workflow).map_or_else(
            || {
                panic!(
                    "no workflow {workflow}; there are {:?}",
                    self.machines.keys().collect::<Vec<_>>()
                )
            },
            String::as_str,
        )
    }

    /// Every Lambda Invoke the state machines made so far, in order.
    pub fn invocations(&self) -> Vec<RoutedInvoke> {
        self.invokes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Start an execution of `workflow` named `name` with `input`; its ARN.
    ///
    /// # Panics
    ///
    /// When moto refuses it.
    pub async fn start_execution(&self, workflow: &str, name: &str, input: &Value) -> String {
        let started = self
            .client
            .start_execution()
            .state_machine_arn(self.state_machine_arn(workflow))
            .name(name)
            .input(input.to_string())
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "starting {workflow} ({name}): {}",
                    aws_sdk_sfn::error::DisplayErrorContext(&e)
                )
            });
        started.execution_arn().to_owned()
    }

    /// The execution `arn` as it is now.
    ///
    /// # Panics
    ///
    /// When moto does not describe it.
    pub async fn describe(&self, arn: &str) -> Execution {
        let described = self
            .client
            .describe_execution()
            .execution_arn(arn)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "describing {arn}: {}",
                    aws_sdk_sfn::error::DisplayErrorContext(&e)
                )
            });
        let output = described.output().map(|text| {
            serde_json::from_str(text)
                .unwrap_or_else(|e| panic!("the output of {arn} is not JSON ({e}): {text}"))
        });
        Execution {
            arn: arn.to_owned(),
            status: described.status().clone(),
            output,
            error: described.error().map(str::to_owned),
            cause: described.cause().map(str::to_owned),
        }
    }

    /// Poll the execution `arn` until it is no longer `RUNNING`; how it ended.
    ///
    /// # Panics
    ///
    /// When it still runs after `ACTIONDO_E2E_EXECUTION_SECS` (a hang guard: the message
    /// carries its history and moto's log), or when moto ends.
    pub async fn wait(&mut self, arn: &str) -> Execution {
        let deadline = Instant::now() + self.execution_limit;
        loop {
            let execution = self.describe(arn).await;
            if execution.status != ExecutionStatus::Running {
                return execution;
            }
            if let Some(status) = self.moto.exited() {
                panic!(
                    "moto_server exited ({status}) while {arn} ran; its log:\n{}",
                    self.moto.log_tail(40)
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "{arn} still RUNNING after {:?} (see {EXECUTION_SECS_ENV}); its history:\n{}\nmoto's log:\n{}",
                    self.execution_limit,
                    self.history_text(arn).await,
                    self.moto.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Start an execution of `workflow` (named `name`) and wait for its end.
    pub async fn run(&mut self, workflow: &str, name: &str, input: &Value) -> Execution {
        let arn = self.start_execution(workflow, name, input).await;
        self.wait(&arn).await
    }

    /// The history of the execution `arn`, oldest event first (all pages).
    ///
    /// # Panics
    ///
    /// When moto does not answer it.
    pub async fn history(&self, arn: &str) -> Vec<HistoryEvent> {
        let mut events = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .get_execution_history()
                .execution_arn(arn)
                .set_next_token(token.take())
                .send()
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "reading the history of {arn}: {}",
                        aws_sdk_sfn::error::DisplayErrorContext(&e)
                    )
                });
            events.extend(page.events().iter().cloned());
            match page.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                _ => return events,
            }
        }
    }

    /// The states the execution `arn` entered, in order (`TaskStateEntered`,
    /// `ChoiceStateEntered`, … events' names).
    pub async fn states_entered(&self, arn: &str) -> Vec<String> {
        self.history(arn)
            .await
            .iter()
            .filter_map(|event| event.state_entered_event_details())
            .map(|details| details.name().to_owned())
            .collect()
    }

    /// The history of `arn` as text, one event a line (type, state, error and cause), for
    /// failure messages.
    pub async fn history_text(&self, arn: &str) -> String {
        self.history(arn)
            .await
            .iter()
            .map(describe_event)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// One history event on a line: its id, type, the state it entered or left, and the
/// error and cause of a failure.
pub fn describe_event(event: &HistoryEvent) -> String {
    let mut line = format!("{:>3} {}", event.id(), event.r#type().as_str());
    if let Some(d) = event.state_entered_event_details() {
        line.push_str(&format!(" {}", d.name()));
    }
    if let Some(d) = event.state_exited_event_details() {
        line.push_str(&format!(" {}", d.name()));
    }
    let failure = event
        .task_failed_event_details()
        .map(|d| (d.error(), d.cause()))
        .or_else(|| {
            event
                .execution_failed_event_details()
                .map(|d| (d.error(), d.cause()))
        })
        .or_else(|| {
            event
                .lambda_function_failed_event_details()
                .map(|d| (d.error(), d.cause()))
        });
    if let Some((error, cause)) = failure {
        line.push_str(&format!(
            " error={} cause={}",
            error.unwrap_or("-"),
            cause.unwrap_or("-")
        ));
    }
    line
}

/// Start the front proxy and moto (retried on other ports when moto cannot listen on the
/// one it was handed), and switch state-machine execution on.
async fn start_moto(
    moto_server: &Path,
    lambda: SocketAddr,
    invokes: &Arc<Mutex<Vec<RoutedInvoke>>>,
    prefix: &str,
) -> (FrontProxy, MotoServer) {
    let client: Upstream = Client::builder(TokioExecutor::new()).build_http();
    let mut last_error = String::new();
    for _ in 0..3 {
        let port = match actiondo_harness::net::free_port() {
            Ok(port) => port,
            Err(e) => panic!("no free port on 127.0.0.1: {e}"),
        };
        let routes = Routes {
            lambda,
            moto: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let front = FrontProxy::start(routes, Arc::clone(invokes))
            .await
            .unwrap_or_else(|e| panic!("starting the front proxy: {e}"));
        let log = std::env::temp_dir().join(format!("actiondo-{prefix}-moto-{port}.log"));
        let mut moto = MotoServer::spawn(moto_server, port, front.addr.port(), log)
            .unwrap_or_else(|e| panic!("starting {}: {e}", moto_server.display()));
        match wait_moto(&client, &mut moto).await {
            Ok(()) => return (front, moto),
            Err(e) => last_error = e,
        }
    }
    panic!("{last_error}")
}

/// Wait until moto answers, then configure it to execute state machines.
async fn wait_moto(client: &Upstream, moto: &mut MotoServer) -> Result<(), String> {
    let started = Instant::now();
    let what = format!("answer on {}", moto.addr);
    loop {
        let ready = moto_api(client, moto.addr, Method::GET, "/moto-api/", "")
            .await
            .is_ok();
        if moto
            .group
            .readiness(&what, ready, started, MOTO_START_LIMIT)?
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let config = r#"{"stepfunctions": {"execute_state_machine": true}}"#;
    match moto_api(client, moto.addr, Method::POST, "/moto-api/config", config).await {
        Ok((status, _)) if status.is_success() => Ok(()),
        Ok((status, body)) => panic!("moto refused {config} on /moto-api/config: {status} {body}"),
        Err(e) => panic!("configuring moto (/moto-api/config): {e}"),
    }
}

/// A Step Functions client for the endpoint `url` (dummy credentials, no retries: a
/// retried StartExecution would hide what moto answered).
pub fn sfn_client(url: &str) -> aws_sdk_sfn::Client {
    let config = aws_sdk_sfn::config::Builder::from(&actiondo::testing::local_aws_config(url))
        .retry_config(aws_sdk_sfn::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_sfn::Client::from_conf(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_name_packages() {
        assert_eq!(
            package_of_placeholder("ValidateLeadFunctionArn").as_deref(),
            Some("validate-lead")
        );
        assert_eq!(
            package_of_placeholder("CreateOrUpdateContactFunctionArn").as_deref(),
            Some("create-or-update-contact")
        );
        assert_eq!(package_of_placeholder("ValidateLead"), None);
        assert_eq!(package_of_placeholder("stageFunctionArn"), None);
        assert_eq!(package_of_placeholder("FunctionArn"), None);
    }

    #[test]
    fn definitions_get_function_arns() {
        let (out, packages) = substitute_function_arns(
            r#"{"a": "${SendEmailFunctionArn}", "b": "${MarkUserFunctionArn}", "c": "${SendEmailFunctionArn}"}"#,
        )
        .expect("known packages");
        assert_eq!(
            out,
            r#"{"a": "arn:aws:lambda:us-east-1:123456789012:function:send-email", "b": "arn:aws:lambda:us-east-1:123456789012:function:mark-user", "c": "arn:aws:lambda:us-east-1:123456789012:function:send-email"}"#
        );
        assert_eq!(packages, ["send-email", "mark-user"]);
        assert!(substitute_function_arns(r#"{"a": "${NoSuchThingFunctionArn}"}"#).is_err());
        assert!(substitute_function_arns(r#"{"a": "${Stage}"}"#).is_err());
        assert!(substitute_function_arns(r#"{"a": "${SendEmailFunctionArn"}"#).is_err());
    }

    #[test]
    fn every_workflow_substitutes() {
        let files = workflow_files();
        assert!(!files.is_empty());
        for (name, file) in files {
            let text = std::fs::read_to_string(&file).expect("readable");
            let (out, packages) = substitute_function_arns(&text).expect("substitutes");
            assert!(!out.contains("${"), "{name}: a placeholder is left");
            assert!(!packages.is_empty(), "{name} invokes no function");
        }
    }

    #[test]
    fn invoke_paths_give_bare_names() {
        let arn = "arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Avalidate-lead";
        assert_eq!(
            invoked_function(&format!("/2015-03-31/functions/{arn}/invocations")).as_deref(),
            Some("validate-lead")
        );
        assert_eq!(
            invoked_function(
                "/2015-03-31/functions/arn:aws:lambda:us-east-1:123456789012:function:mark-user:live/invocations"
            )
            .as_deref(),
            Some("mark-user")
        );
        assert_eq!(
            invoked_function("/2015-03-31/functions/send-email/invocations").as_deref(),
            Some("send-email")
        );
        assert_eq!(invoked_function("/2015-03-31/functions/send-email"), None);
        assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
    }
}
