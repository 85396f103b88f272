//! The engine's overhead per state (BENCHMARKS.md, "Workflow engine"): a workflow of four
//! Lambda Tasks (the seed workflows' envelope, ResultSelector and ResultPath) whose action
//! does no I/O of its own.
//!
//! 1. engine alone: Tasks answered at once, history in memory — the interpreter's cost;
//! 2. local: `LocalWorkflows::run` with the action on the executor and the executions'
//!    tables, all on one SQLite file (what `actiondo workflow run` does);
//! 3. the executor alone on the same file, one run of the action, to subtract from 2.
//!
//! Run: `cargo bench -p actiondo-workflow --bench engine`. Measured, never asserted.

#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use actiondo::store::sqlite::SqliteStore;
use actiondo::{Action, ActionContext, ActionError, Catalog, Executor, Invocation, Source};
use actiondo_workflow::engine::{ExecutionInfo, TaskCall, TaskRunner};
use actiondo_workflow::local::{Arns, LocalActions, LocalWorkflows, Project};
use actiondo_workflow::store::WorkflowStore;
use actiondo_workflow::{Engine, MemoryHistory, ScaledTimer, StateMachine, StatesError, Timer};
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
struct N {
    n: i64,
}

#[derive(Debug, Default)]
struct Increment;

impl Action for Increment {
    type Input = N;
    type Output = N;
    const NAME: &'static str = "increment";
    const DESCRIPTION: &'static str = "adds one, no I/O";
    async fn execute(&self, input: N, _cx: &mut ActionContext) -> Result<N, ActionError> {
        Ok(N { n: input.n + 1 })
    }
}

#[derive(Debug)]
struct Immediate;

#[async_trait]
impl TaskRunner for Immediate {
    async fn run(&self, call: TaskCall) -> Result<Value, StatesError> {
        let n = call.parameters["Payload"]["params"]["n"]
            .as_i64()
            .unwrap_or(0);
        Ok(json!({"ExecutedVersion": "$LATEST", "Payload": {"n": n + 1}, "StatusCode": 200}))
    }
}

fn definition() -> Value {
    let task = |next: Option<&str>| {
        let mut t = json!({
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {
                "FunctionName": "${IncrementFunctionArn}",
                "Payload": {
                    "params": {"n.$": "$.n"},
                    "idempotencyKey.$": "States.Format('{}#{}', $$.Execution.Id, $$.State.Name)",
                    "correlationId.$": "$$.Execution.Id"
                }
            },
            "ResultSelector": {"n.$": "$.Payload.n"},
            "ResultPath": "$",
            "Retry": [{"ErrorEquals": ["ActionDo.Transient"], "MaxAttempts": 2}]
        });
        match next {
            Some(n) => t["Next"] = json!(n),
            None => t["End"] = json!(true),
        }
        t
    };
    json!({"StartAt": "A", "States": {"A": task(Some("B")), "B": task(Some("C")), "C": task(Some("D")), "D": task(None)}})
}

const STATES: u32 = 4;

fn per_state(total: Duration, runs: u32) -> f64 {
    total.as_secs_f64() * 1e6 / f64::from(runs * STATES)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let def = definition();
    let text = def.to_string().replace(
        "${IncrementFunctionArn}",
        &Arns::default().function("increment"),
    );
    let machine = StateMachine::parse(&text).expect("parses");
    let timer = ScaledTimer::real_time();

    // 1. The engine alone.
    let runs = 5_000;
    let started = Instant::now();
    for i in 0..runs {
        let info = ExecutionInfo {
            id: format!("arn:aws:states:local:000000000000:execution:bench:{i}"),
            name: i.to_string(),
            start_time: "2026-01-01T00:00:00.000Z".into(),
            input: json!({"n": 0}),
            role_arn: String::new(),
            redrive_count: 0,
            state_machine_id: String::new(),
            state_machine_name: "bench".into(),
        };
        let history = MemoryHistory::new();
        let engine = Engine {
            tasks: &Immediate,
            timer: &timer,
            history: &history,
            info: &info,
        };
        let out = engine
            .run(&machine, "A", json!({"n": 0}), timer.now_ms())
            .await
            .expect("runs");
        assert!(matches!(out, actiondo_workflow::Outcome::Succeeded(_)));
    }
    let engine_alone = per_state(started.elapsed(), runs);

    // 2. Local: executor + executions on one SQLite file.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("workflows")).expect("mkdir");
    std::fs::write(dir.path().join("workflows/bench.asl.json"), def.to_string()).expect("write");
    let db = dir.path().join("actiondo.db");
    let executor = Executor::new(SqliteStore::open(&db).expect("sqlite"));
    let local = LocalWorkflows::new(
        Project::new(dir.path(), Arns::default()),
        Arc::new(WorkflowStore::open(&db).expect("store")),
        Arc::new(LocalActions::new(
            executor.clone(),
            Arc::new(Catalog::new().with(Increment)),
        )),
        Arc::new(timer),
    );
    let runs = 300;
    let started = Instant::now();
    for i in 0..runs {
        let rec = local
            .run("bench", &format!("run-{i}"), &json!({"n": 0}))
            .await
            .expect("runs");
        assert_eq!(rec.output, Some(json!({"n": 4})));
    }
    let local_total = per_state(started.elapsed(), runs);

    // 3. The executor alone, one action run per "state".
    let action = Increment;
    let started = Instant::now();
    for i in 0..runs * STATES {
        let inv =
            Invocation::new(json!({"n": 0}), Source::StepFunctions).with_key(format!("direct-{i}"));
        executor.execute(&action, inv).await.outcome.expect("ok");
    }
    let executor_alone = started.elapsed().as_secs_f64() * 1e6 / f64::from(runs * STATES);

    println!(
        "engine alone (Tasks answered at once, history in memory): {engine_alone:.1} µs per state"
    );
    println!(
        "local run (executor + executions on one SQLite file):    {local_total:.1} µs per state"
    );
    println!(
        "executor alone on the same file (one action run):        {executor_alone:.1} µs per run"
    );
    println!(
        "engine + history overhead per state (local - executor):  {:.1} µs",
        local_total - executor_alone
    );
}
