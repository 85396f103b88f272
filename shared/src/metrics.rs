//! CloudWatch metrics of executions: one Embedded Metric Format (EMF) line per execution
//! (docs/architecture.md §11).
//!
//! The executor knows each execution's outcome in one place, the end of
//! [`Executor::execute`](crate::Executor::execute), and hands it to its [`Metrics`] when it
//! has one. Only the program's edge decides whether it has one: [`crate::run`] (every
//! action's Lambda function) takes [`Metrics::from_env`], which is on in Lambda and off
//! elsewhere unless `ACTIONDO_METRICS=emf`; an executor built in a test or a library
//! emits nothing.
//!
//! One line, namespace [`NAMESPACE`], by `action` and in total (an empty dimension set,
//! which `template.yaml`'s failure alarm watches):
//!
//! | metric | unit | value |
//! |---|---|---|
//! | `Executions` | Count | 1 for every execution, replays and refusals included |
//! | `Replays` | Count | 1 when a stored outcome was returned (the handler did not run) |
//! | `Failures` | Count | 1 when a request that was not a replay ended in an error; also published by `[action, errorType]` |
//! | `Duration` | Milliseconds | from the request's start to its outcome |
//! | `Takeovers` | Count | 1 when this attempt claimed a record whose lease had ended |
//! | `Conflicts` | Count | 1 when the outcome is `ActionDo.Conflict` (lease lost, entity conflict) |
//!
//! A replayed failure counts as a replay, not as a failure: a failure is counted once,
//! when it happens, however often it is replayed. The line also carries, as plain log
//! fields that CloudWatch Logs Insights can query, `outcome` (`completed`, `replayed` or
//! `failed`), `replayed`, `key`, `attempt` and, on an error, `errorType`.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::executor::Execution;

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "ActionDo";

/// The variable that turns the metrics on outside Lambda (`emf`) or off in it (`off`).
pub const METRICS_ENV: &str = "ACTIONDO_METRICS";

/// What one execution contributes to the metrics, besides the [`Execution`] itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    /// From the request's start to its outcome.
    pub duration: Duration,
    /// Whether this attempt took over a record whose lease had ended.
    pub taken_over: bool,
}

/// Where the EMF lines go: standard output (Lambda sends it to CloudWatch Logs, which
/// extracts the metrics), or any writer (tests). Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// EMF lines on standard output.
    pub fn stdout() -> Self {
        Self::to_writer(std::io::stdout())
    }

    /// EMF lines written to `out`, one `write_all` per line.
    pub fn to_writer(out: impl Write + Send + 'static) -> Self {
        Self {
            out: Arc::new(Mutex::new(Box::new(out))),
        }
    }

    /// The metrics a program's edge should emit: on standard output in Lambda
    /// (`AWS_LAMBDA_FUNCTION_NAME` is set) unless `ACTIONDO_METRICS=off`, or anywhere with
    /// `ACTIONDO_METRICS=emf`; otherwise none.
    pub fn from_env() -> Option<Self> {
        Self::from_settings(&crate::config::Settings::from_env())
    }

    /// As [`from_env`](Self::from_env), with `settings`.
    pub fn from_settings(settings: &crate::config::Settings) -> Option<Self> {
        let setting = settings.get_str(METRICS_ENV).unwrap_or_default();
        let in_lambda = settings.is_present("AWS_LAMBDA_FUNCTION_NAME");
        match setting.trim() {
            "emf" => Some(Self::stdout()),
            "off" => None,
            _ if in_lambda => Some(Self::stdout()),
            _ => None,
        }
    }

    /// Write the EMF line of `execution`. A failed write is logged, never raised: metrics
    /// never change an execution's outcome.
    pub fn record(&self, execution: &Execution, observed: Observed) {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut line = emf_line(execution, observed, now_ms).to_string();
        line.push('\n');
        let written = match self.out.lock() {
            Ok(mut out) => out.write_all(line.as_bytes()).and_then(|()| out.flush()),
            Err(poisoned) => {
                let mut out = poisoned.into_inner();
                out.write_all(line.as_bytes()).and_then(|()| out.flush())
            }
        };
        if let Err(e) = written {
            tracing::warn!(error = %e, "could not write the metrics line");
        }
    }
}

/// The EMF document of one execution at `timestamp_ms` (see the module's table).
pub fn emf_line(execution: &Execution, observed: Observed, timestamp_ms: i64) -> Value {
    let error = execution.outcome.as_ref().err();
    let failed = error.is_some() && !execution.replayed;
    let count = |b: bool| u8::from(b);
    let metric = |name: &str, unit: &str| json!({"Name": name, "Unit": unit});
    let mut directives = vec![json!({
        "Namespace": NAMESPACE,
        // By action, and across actions (the empty set): the alarm on failures watches
        // the latter.
        "Dimensions": [["action"], []],
        "Metrics": [
            metric("Executions", "Count"),
            metric("Replays", "Count"),
            metric("Failures", "Count"),
            metric("Duration", "Milliseconds"),
            metric("Takeovers", "Count"),
            metric("Conflicts", "Count"),
        ],
    })];
    if failed {
        // Failures by error type: a directive of its own, so that the other metrics are
        // not published under a dimension set a success does not have.
        directives.push(json!({
            "Namespace": NAMESPACE,
            "Dimensions": [["action", "errorType"]],
            "Metrics": [metric("Failures", "Count")],
        }));
    }
    let outcome = if execution.replayed {
        "replayed"
    } else if failed {
        "failed"
    } else {
        "completed"
    };
    let mut line = json!({
        "_aws": {"Timestamp": timestamp_ms, "CloudWatchMetrics": directives},
        "action": execution.action,
        "Executions": 1,
        "Replays": count(execution.replayed),
        "Failures": count(failed),
        "Duration": u64::try_from(observed.duration.as_millis()).unwrap_or(u64::MAX),
        "Takeovers": count(observed.taken_over),
        "Conflicts": count(error.is_some_and(|e| e.kind() == crate::ErrorKind::Conflict)),
        "outcome": outcome,
        "replayed": execution.replayed,
        "attempt": execution.attempt,
        "key": execution.key,
    });
    if let Some(e) = error {
        line["errorType"] = json!(e.kind().wire_name());
    }
    line
}
