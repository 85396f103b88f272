//! `lambda-startup`: how fast a Lambda binary of this workspace starts.
//!
//! Serves a Runtime API on `127.0.0.1` (a free port), then, `--runs` times: starts the
//! binary with `AWS_LAMBDA_RUNTIME_API` pointing at it and the variables Lambda sets, and
//! measures from just before the process is spawned to the moment its first
//! `GET /2018-06-01/runtime/invocation/next` arrives: the binary's own share of a cold
//! start (loading, tracing set-up, the store's configuration, the runtime's client). With
//! `--event`, that first `next` is answered with the event, and the time to the
//! function's answer (`POST .../response` or `.../error`) is measured too. The process is
//! killed after each run. One unmeasured run comes first (page cache).
//!
//! ```sh
//! cargo build --release -p create-user
//! cargo run --release -p actiondo-e2e --bin lambda-startup -- \
//!     --runs 50 --env ACTIONDO_STORE=dynamodb target/release/create-user
//! ```
//!
//! Prints min / p50 / p90 / max in milliseconds. Nothing is asserted: it is a measuring
//! tool (BENCHMARKS.md records its figures).

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use tokio::sync::mpsc;

/// Measure a Lambda binary's start-up against a local Runtime API.
#[derive(Debug, Parser)]
#[command(name = "lambda-startup")]
struct Args {
    /// The function binary (e.g. target/release/create-user).
    binary: PathBuf,
    /// How many measured starts.
    #[arg(long, default_value_t = 30)]
    runs: usize,
    /// Extra environment for the binary, KEY=VALUE (repeatable). The defaults are the
    /// variables Lambda sets, dummy credentials and region us-east-1.
    #[arg(long = "env", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Answer the first `next` with this event (JSON text) and time the answer too.
    #[arg(long)]
    event: Option<String>,
    /// How long to wait for the binary in one run, seconds.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

/// What the Runtime API saw, with the time it saw it.
#[derive(Debug, Clone, Copy)]
enum Seen {
    Next(Instant),
    Answer(Instant),
}

#[derive(Debug, Default)]
struct Runtime {
    /// The event to give the next `next` (taken once per run).
    event: Mutex<Option<String>>,
}

async fn serve(
    runtime: Arc<Runtime>,
    seen: mpsc::UnboundedSender<Seen>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let now = Instant::now();
    let path = request.uri().path().to_owned();
    if request.method() == Method::GET && path.ends_with("/runtime/invocation/next") {
        let _ = seen.send(Seen::Next(now));
        let event = runtime
            .event
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        return match event {
            Some(event) => Ok(actiondo_e2e::runtime_api::invocation(
                "startup-bench-1",
                event,
            )),
            // No work: hold the request, as Lambda does between invocations.
            None => std::future::pending().await,
        };
    }
    if request.method() == Method::POST && (path.ends_with("/response") || path.ends_with("/error"))
    {
        let _ = request.into_body().collect().await;
        let _ = seen.send(Seen::Answer(now));
    }
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::ACCEPTED;
    Ok(response)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Nearest rank.
    let rank = (p / 100.0 * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn report(what: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    println!(
        "{what}: min {:.2} ms, p50 {:.2} ms, p90 {:.2} ms, max {:.2} ms ({} runs)",
        percentile(&ms, 0.0),
        percentile(&ms, 50.0),
        percentile(&ms, 90.0),
        percentile(&ms, 100.0),
        ms.len()
    );
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = Args::parse();
    // A bare file name would be looked up on PATH.
    args.binary = std::fs::canonicalize(&args.binary)?;
    let runtime = Arc::new(Runtime::default());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let addr = {
        let runtime = runtime.clone();
        actiondo_e2e::runtime_api::serve(move |request| serve(runtime.clone(), tx.clone(), request))
            .await?
    };

    let size = std::fs::metadata(&args.binary)?.len();
    println!(
        "{} ({:.2} MB), Runtime API on {addr}",
        args.binary.display(),
        size as f64 / 1_000_000.0
    );
    let limit = Duration::from_secs(args.timeout_secs);
    let mut to_next = Vec::new();
    let mut to_answer = Vec::new();
    for run in 0..=args.runs {
        while rx.try_recv().is_ok() {}
        *runtime.event.lock().unwrap_or_else(|p| p.into_inner()) = args.event.clone();
        let mut command = actiondo_e2e::runtime_api::function_command(&args.binary, addr, 128);
        command.envs(args.env.iter().map(|(k, v)| (k, v)));
        let started = Instant::now();
        let mut child = command.spawn()?;
        let mut next = None;
        let mut answer = None;
        let deadline = tokio::time::Instant::now() + limit;
        while next.is_none() || (args.event.is_some() && answer.is_none()) {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(Seen::Next(t))) => next = next.or(Some(t)),
                Ok(Some(Seen::Answer(t))) => answer = answer.or(Some(t)),
                Ok(None) => break,
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "run {run}: no request from {} within {limit:?} (does it start? try it with --env and its output)",
                        args.binary.display()
                    )
                    .into());
                }
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        if run == 0 {
            continue; // warm-up
        }
        if let Some(t) = next {
            to_next.push(t.duration_since(started).as_secs_f64() * 1000.0);
        }
        if let Some(t) = answer {
            to_answer.push(t.duration_since(started).as_secs_f64() * 1000.0);
        }
    }
    report(
        "process start -> first GET /runtime/invocation/next",
        to_next,
    );
    if args.event.is_some() {
        report("process start -> answer to the first event", to_answer);
    }
    Ok(())
}
