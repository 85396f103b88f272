//! The corpus: small ASL definitions (`tests/corpus/*.json`), one per feature of the
//! States language, each with an input and the expected outcome: status, output or
//! error and cause, the waits the engine took (workflow seconds) and the number of Task
//! calls. Time is tokio's paused clock, so waits take no real time and are exact.
//!
//! The Tasks call four test functions by their Lambda ARN (`…:function:echo`):
//! `echo` returns its parameters, `fail` fails with `{error, cause}` of its parameters,
//! `flaky` fails `failures` times with `error` (cause `failure N`) and then returns
//! `{"attempts": N}`, `slow` returns its parameters after `seconds`, `big` returns
//! `{"bytes": N, "data": "xx…"}` whose JSON text is exactly `bytes` bytes (the payload
//! limit's cases).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use actiondo_workflow::engine::{ExecutionInfo, Outcome, TaskCall, TaskRunner};
use actiondo_workflow::{Engine, MemoryHistory, ScaledTimer, StateMachine, StatesError, Timer};
use async_trait::async_trait;
use serde_json::{Value, json};

#[derive(Debug, Default)]
struct Functions {
    calls: Mutex<HashMap<String, u64>>,
}

#[async_trait]
impl TaskRunner for Functions {
    async fn run(&self, call: TaskCall) -> Result<Value, StatesError> {
        let function = call
            .resource
            .rsplit(':')
            .next()
            .unwrap_or_default()
            .to_owned();
        let p = &call.parameters;
        let n = {
            let mut calls = self.calls.lock().expect("lock");
            let n = calls.entry(call.state.clone()).or_insert(0);
            *n += 1;
            *n
        };
        let text = |k: &str| {
            p.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        match function.as_str() {
            "echo" => Ok(p.clone()),
            "fail" => Err(StatesError::new(text("error"), text("cause"))),
            "flaky" => {
                let failures = p.get("failures").and_then(Value::as_u64).unwrap_or(0);
                if n <= failures {
                    Err(StatesError::new(text("error"), format!("failure {n}")))
                } else {
                    Ok(json!({"attempts": n}))
                }
            }
            "big" => {
                let bytes = p.get("bytes").and_then(Value::as_u64).unwrap_or(0);
                Ok(big(bytes))
            }
            "slow" => {
                let secs = p.get("seconds").and_then(Value::as_u64).unwrap_or(0);
                tokio::time::sleep(Duration::from_secs(secs)).await;
                Ok(p.clone())
            }
            other => Err(StatesError::new(
                "Lambda.ResourceNotFoundException",
                format!("no test function {other}"),
            )),
        }
    }
}

/// `{"bytes": n, "data": "xx…"}` with a JSON text of exactly `n` bytes (at least 21).
fn big(n: u64) -> Value {
    let overhead = r#"{"bytes":,"data":""}"#.len() + n.to_string().len();
    let data = "x".repeat(usize::try_from(n).unwrap_or(0).saturating_sub(overhead));
    json!({"bytes": n, "data": data})
}

/// Real time on tokio's (paused) clock, recording each completed wait in seconds.
#[derive(Debug, Default)]
struct Recording {
    waits: Mutex<Vec<f64>>,
}

#[async_trait]
impl Timer for Recording {
    fn now_ms(&self) -> i64 {
        ScaledTimer::real_time().now_ms()
    }
    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
        self.waits
            .lock()
            .expect("lock")
            .push(duration.as_secs_f64());
    }
}

fn info(input: &Value) -> ExecutionInfo {
    ExecutionInfo {
        id: "arn:aws:states:us-east-1:123456789012:execution:corpus:corpus-execution".into(),
        name: "corpus-execution".into(),
        start_time: "2026-01-01T00:00:00.000Z".into(),
        input: input.clone(),
        role_arn: "arn:aws:iam::123456789012:role/corpus".into(),
        redrive_count: 0,
        state_machine_id: "arn:aws:states:us-east-1:123456789012:stateMachine:corpus".into(),
        state_machine_name: "corpus".into(),
    }
}

fn corpus() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/corpus")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("readable");
            let name = p
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            (name, serde_json::from_str(&text).expect("JSON"))
        })
        .collect()
}

async fn run_case(case: &Value) -> (Outcome, Vec<f64>, usize) {
    let machine = StateMachine::from_value(&case["definition"]).expect("the definition parses");
    let input = case["input"].clone();
    let info = info(&input);
    let history = MemoryHistory::new();
    let timer = Recording::default();
    let functions = Functions::default();
    let engine = Engine {
        tasks: &functions,
        timer: &timer,
        history: &history,
        info: &info,
    };
    let start = machine.start_at.clone();
    let outcome = engine
        .run(&machine, &start, input, timer.now_ms())
        .await
        .expect("no store failure");
    let tasks = history
        .events()
        .iter()
        .filter(|e| e.kind == "TaskScheduled")
        .count();
    let waits = timer.waits.lock().expect("lock").clone();
    (outcome, waits, tasks)
}

#[tokio::test(start_paused = true)]
async fn every_corpus_definition_ends_as_expected() {
    let cases = corpus();
    assert!(
        cases.len() >= 25,
        "the corpus has {} definitions",
        cases.len()
    );
    let mut failures = Vec::new();
    for (name, case) in &cases {
        let expect = &case["expect"];
        let (outcome, waits, tasks) = run_case(case).await;
        let (status, output, error) = match &outcome {
            Outcome::Succeeded(o) => ("SUCCEEDED", Some(o), None),
            Outcome::Failed(e) => ("FAILED", None, Some(e)),
            Outcome::TimedOut(e) => ("TIMED_OUT", None, Some(e)),
        };
        let mut problems = Vec::new();
        if expect["status"] != status {
            problems.push(format!("status {status}, expected {}", expect["status"]));
        }
        if let Some(o) = expect.get("output")
            && output != Some(o)
        {
            problems.push(format!("output {output:?}, expected {o}"));
        }
        if let Some(e) = expect.get("error")
            && error.map(|e| e.error.as_str()) != e.as_str()
        {
            problems.push(format!("error {error:?}, expected {e}"));
        }
        if let Some(c) = expect.get("cause")
            && error.map(|e| e.cause.as_str()) != c.as_str()
        {
            problems.push(format!("cause {error:?}, expected {c}"));
        }
        if let Some(w) = expect.get("waits") {
            let want: Vec<f64> = serde_json::from_value(w.clone()).expect("waits");
            if waits != want {
                problems.push(format!("waits {waits:?}, expected {want:?}"));
            }
        }
        if let Some(w) = expect.get("maxWaits") {
            let max: Vec<f64> = serde_json::from_value(w.clone()).expect("maxWaits");
            if waits.len() != max.len() || waits.iter().zip(&max).any(|(w, m)| w > m) {
                problems.push(format!("waits {waits:?}, expected at most {max:?}"));
            }
        }
        if let Some(t) = expect.get("tasks")
            && t.as_u64() != Some(tasks as u64)
        {
            problems.push(format!("{tasks} task calls, expected {t}"));
        }
        if !problems.is_empty() {
            failures.push(format!("{name}: {}", problems.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(start_paused = true)]
async fn heartbeat_seconds_are_recorded_in_the_task_scheduled_event() {
    let case = corpus()
        .into_iter()
        .find(|(name, _)| name == "40-heartbeat-lambda-task")
        .map(|(_, case)| case)
        .expect("the heartbeat case");
    let machine = StateMachine::from_value(&case["definition"]).expect("parses");
    let info = info(&case["input"]);
    let history = MemoryHistory::new();
    let timer = Recording::default();
    let engine = Engine {
        tasks: &Functions::default(),
        timer: &timer,
        history: &history,
        info: &info,
    };
    let outcome = engine
        .run(&machine, "T", case["input"].clone(), timer.now_ms())
        .await
        .expect("runs");
    assert!(matches!(outcome, Outcome::Succeeded(_)), "{outcome:?}");
    let scheduled = history
        .events()
        .into_iter()
        .find(|e| e.kind == "TaskScheduled")
        .expect("TaskScheduled");
    assert_eq!(scheduled.details["heartbeatInSeconds"], 1);
    assert_eq!(scheduled.details["timeoutInSeconds"], 10);
}

#[test]
fn malformed_definitions_are_refused_naming_the_state_and_the_field() {
    let cases: &[(&str, Option<&str>, &str)] = &[
        ("not json", None, ""),
        (r#"{"States": {}}"#, None, "StartAt"),
        (
            r#"{"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}, "B": {"Type": "Nope"}}}"#,
            Some("B"),
            "Type",
        ),
        (
            r#"{"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "Z"}}}"#,
            Some("A"),
            "Next",
        ),
        (
            r#"{"StartAt": "A", "States": {"A": {"Type": "Pass"}}}"#,
            Some("A"),
            "Next",
        ),
        (
            r#"{"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "Bogus": 1}}}"#,
            Some("A"),
            "Bogus",
        ),
        (
            r#"{"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "InputPath": "a.b"}}}"#,
            Some("A"),
            "InputPath",
        ),
        (
            r#"{"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "ResultPath": "$.a[*]"}}}"#,
            Some("A"),
            "ResultPath",
        ),
        (
            r#"{"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "Parameters": {"x.$": "States.Nope()"}}}}"#,
            Some("A"),
            "Parameters.x.$",
        ),
        (
            r#"{"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "r", "End": true, "Retry": [{"ErrorEquals": ["X"], "BackoffRate": 0.5}]}}}"#,
            Some("A"),
            "Retry[0].BackoffRate",
        ),
        (
            r#"{"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "r", "End": true, "Catch": [{"ErrorEquals": ["States.ALL", "X"], "Next": "A"}]}}}"#,
            Some("A"),
            "Catch[0]",
        ),
        (
            r#"{"StartAt": "A", "States": {"A": {"Type": "Choice", "Choices": [{"Variable": "$.x", "StringEquals": 1, "Next": "A"}]}}}"#,
            Some("A"),
            "Choices[0].StringEquals",
        ),
        (
            r#"{"StartAt": "A", "States": {"A": {"Type": "Wait", "Seconds": 1, "Timestamp": "2020-01-01T00:00:00Z", "End": true}}}"#,
            Some("A"),
            "Seconds",
        ),
        (
            r#"{"StartAt": "A", "States": {"A": {"Type": "Map", "ItemReader": {}, "ItemProcessor": {"StartAt": "B", "States": {"B": {"Type": "Pass", "End": true}}}, "End": true}}}"#,
            Some("A"),
            "ItemReader",
        ),
        (
            r#"{"StartAt": "A", "States": {"A": {"Type": "Parallel", "Branches": [{"StartAt": "B", "States": {"B": {"Type": "Pass", "Next": "Q"}}}], "End": true}}}"#,
            Some("B"),
            "Branches[0].Next",
        ),
        (
            r#"{"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "r", "End": true, "HeartbeatSeconds": 0}}}"#,
            Some("A"),
            "HeartbeatSeconds",
        ),
        (
            r#"{"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "r", "End": true, "HeartbeatSeconds": 1.5}}}"#,
            Some("A"),
            "HeartbeatSeconds",
        ),
        (
            r#"{"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "r", "End": true, "TimeoutSeconds": 10, "HeartbeatSeconds": 10}}}"#,
            Some("A"),
            "HeartbeatSeconds",
        ),
        (
            r#"{"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "r", "End": true, "HeartbeatSeconds": 5, "HeartbeatSecondsPath": "$.h"}}}"#,
            Some("A"),
            "HeartbeatSeconds",
        ),
    ];
    for (text, state, field) in cases {
        let err = StateMachine::parse(text).expect_err(text);
        assert_eq!(err.state.as_deref(), *state, "{text}: {err}");
        if !field.is_empty() {
            let shown = format!(
                "{} {}",
                err.field.as_deref().unwrap_or_default(),
                err.message
            );
            assert!(shown.contains(field), "{text}: {err} should name {field}");
        }
        let action: actiondo::ActionError = err.into();
        assert_eq!(action.kind().wire_name(), "ActionDo.Validation");
    }
}

#[test]
fn the_seed_workflows_parse() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../workflows");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("workflows/") {
        let path = entry.expect("entry").path();
        let text = std::fs::read_to_string(&path).expect("readable");
        StateMachine::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        n += 1;
    }
    assert!(n >= 3);
}
