//! `lambda-throughput`: executions per second of one Lambda process of this workspace, at
//! the concurrency Lambda Managed Instances give it (`AWS_LAMBDA_MAX_CONCURRENCY`).
//!
//! Serves a Runtime API on `127.0.0.1` (a free port) that hands out invocations to as many
//! `GET /2018-06-01/runtime/invocation/next` long-polls as the process keeps open, and
//! counts the answers. For each `--concurrency` value it starts the binary with
//! `AWS_LAMBDA_MAX_CONCURRENCY` set to it, warms it up (as many invocations as the
//! concurrency, not measured), then measures `--invocations` first executions (one new
//! idempotency key each) and the same invocations again (every one a replay), from the
//! first event handed out to the last answer. The params are `--params` with every `{i}`
//! replaced by the invocation's number (so that each first execution is a new entity).
//!
//! ```sh
//! cargo build --release -p create-user
//! ./tests/run.sh --servers-only -- benches/lambda-throughput.sh
//! ```
//!
//! Prints executions/s per concurrency and phase, and the number of function errors
//! (`POST …/error`), which must be 0. Nothing is asserted: it is a measuring tool
//! (BENCHMARKS.md records its figures).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use tokio::sync::{Notify, mpsc};

/// Measure one Lambda process's executions/s at several concurrencies.
#[derive(Debug, Parser)]
#[command(name = "lambda-throughput")]
struct Args {
    /// The function binary (e.g. target/release/create-user).
    binary: PathBuf,
    /// Measured invocations per phase (first executions, then replays).
    #[arg(long, default_value_t = 2000)]
    invocations: usize,
    /// The values of `AWS_LAMBDA_MAX_CONCURRENCY` to measure, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    concurrency: Vec<usize>,
    /// The params of each invocation; `{i}` is replaced by its number.
    #[arg(
        long,
        default_value = r#"{"email": "user{i}@bench.example", "name": "User {i}"}"#
    )]
    params: String,
    /// Extra environment for the binary, KEY=VALUE (repeatable). The defaults are the
    /// variables Lambda sets, dummy credentials and region us-east-1.
    #[arg(long = "env", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// How long one phase may take, seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

/// The invocations waiting for a `next`, and the answers counted.
#[derive(Debug, Default)]
struct Runtime {
    queue: Mutex<VecDeque<(String, String)>>,
    work: Notify,
    answers: AtomicUsize,
    errors: AtomicUsize,
}

impl Runtime {
    fn push(&self, events: impl IntoIterator<Item = (String, String)>) {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(events);
        self.work.notify_waiters();
    }

    fn pop(&self) -> Option<(String, String)> {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
    }
}

async fn serve(
    runtime: Arc<Runtime>,
    answered: mpsc::UnboundedSender<()>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_owned();
    if request.method() == Method::GET && path.ends_with("/runtime/invocation/next") {
        // Hold the request until there is work, as Lambda does.
        let (id, event) = loop {
            let notified = runtime.work.notified();
            if let Some(next) = runtime.pop() {
                break next;
            }
            notified.await;
        };
        return Ok(actiondo_e2e::runtime_api::invocation(&id, event));
    }
    if request.method() == Method::POST && (path.ends_with("/response") || path.ends_with("/error"))
    {
        let _ = request.into_body().collect().await;
        if path.ends_with("/error") {
            runtime.errors.fetch_add(1, Ordering::SeqCst);
        }
        runtime.answers.fetch_add(1, Ordering::SeqCst);
        let _ = answered.send(());
    }
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::ACCEPTED;
    Ok(response)
}

/// The invocations `from..to` of run `run`: a direct invocation with its own key.
fn events(args: &Args, run: &str, range: std::ops::Range<usize>) -> Vec<(String, String)> {
    range
        .map(|i| {
            let params = args.params.replace("{i}", &format!("{run}-{i}"));
            let event = format!(r#"{{"params": {params}, "idempotencyKey": "{run}-{i}"}}"#);
            (format!("{run}-{i}"), event)
        })
        .collect()
}

/// Hand out `events` and wait for as many answers.
async fn phase(
    runtime: &Runtime,
    answered: &mut mpsc::UnboundedReceiver<()>,
    events: Vec<(String, String)>,
    limit: Duration,
) -> Result<Duration, String> {
    while answered.try_recv().is_ok() {}
    let n = events.len();
    let started = Instant::now();
    runtime.push(events);
    for seen in 0..n {
        match tokio::time::timeout(limit, answered.recv()).await {
            Ok(Some(())) => {}
            _ => return Err(format!("{seen} of {n} answers within {limit:?}")),
        }
    }
    Ok(started.elapsed())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = Args::parse();
    args.binary = std::fs::canonicalize(&args.binary)?;
    let runtime = Arc::new(Runtime::default());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let addr = {
        let runtime = runtime.clone();
        actiondo_e2e::runtime_api::serve(move |request| serve(runtime.clone(), tx.clone(), request))
            .await?
    };
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    println!(
        "{}: {} invocations per phase, Runtime API on {addr}",
        args.binary.display(),
        args.invocations
    );
    let limit = Duration::from_secs(args.timeout_secs);
    for &concurrency in &args.concurrency {
        let run = format!("tp{nonce}c{concurrency}");
        let mut child = actiondo_e2e::runtime_api::function_command(&args.binary, addr, 2048)
            .env("AWS_LAMBDA_MAX_CONCURRENCY", concurrency.to_string())
            .env("ACTIONDO_METRICS", "off")
            .envs(args.env.iter().map(|(k, v)| (k, v)))
            .spawn()?;
        let measured = async {
            let warm = events(&args, &format!("{run}w"), 0..concurrency);
            phase(&runtime, &mut rx, warm, limit).await?;
            runtime.errors.store(0, Ordering::SeqCst);
            let measured = events(&args, &run, 0..args.invocations);
            let first = phase(&runtime, &mut rx, measured.clone(), limit).await?;
            let replay = phase(&runtime, &mut rx, measured, limit).await?;
            Ok::<_, String>((first, replay))
        }
        .await;
        let _ = child.kill();
        let _ = child.wait();
        let (first, replay) = measured.map_err(|e| format!("concurrency {concurrency}: {e}"))?;
        let per_sec = |d: Duration| args.invocations as f64 / d.as_secs_f64();
        println!(
            "concurrency {concurrency:>3}: first executions {:>7.0}/s, replays {:>7.0}/s, function errors {}",
            per_sec(first),
            per_sec(replay),
            runtime.errors.swap(0, Ordering::SeqCst)
        );
    }
    Ok(())
}
