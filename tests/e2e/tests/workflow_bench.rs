//! The cost of a workflow under moto + `cargo lambda watch`, next to the local engine's
//! (BENCHMARKS.md, "Workflow engine overhead per state (issue 12)"): the four-Task shape
//! of `workflow/benches/engine.rs` (the seed workflows' envelope with `States.Format`,
//! `ResultSelector`, `ResultPath`, a `Retry`), each Task the real `score-lead` action,
//! which calls no outside service (its only I/O is its store: DynamoDB Local under
//! moto, the embedded SQLite file locally).
//!
//! - moto: the state machine under moto's interpreter, each Task an Invoke of the
//!   `score-lead` binary under `cargo lambda watch` (through the e2e proxies); measured
//!   from `StartExecution` to the `DescribeExecution` that sees it end (polled every
//!   20 ms);
//! - local: `actiondo workflow run` on the same definition, the action in-process;
//!   measured around the process (its start-up included) and, from its history, from
//!   `ExecutionStarted` to the end.
//!
//! Measured, never asserted: `#[ignore]`d, run it with
//! `./tests/run.sh --servers-only -- cargo test --offline -p actiondo-e2e --test workflow_bench -- --ignored --nocapture`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use actiondo_e2e::states::{StepFunctions, substitute_function_arns};
use actiondo_e2e::{Stack, workspace_root};
use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::{Value, json};

const RUNS: usize = 20;
const TASKS: u32 = 4;

fn definition() -> Value {
    let task = |next: Option<&str>| {
        let mut t = json!({
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {
                "FunctionName": "${ScoreLeadFunctionArn}",
                "Payload": {
                    "params.$": "$.lead",
                    "idempotencyKey.$": "States.Format('{}#{}', $$.Execution.Id, $$.State.Name)",
                    "correlationId.$": "$$.Execution.Id"
                }
            },
            "ResultSelector": {"qualified.$": "$.Payload.qualified"},
            "ResultPath": "$.score",
            "Retry": [{"ErrorEquals": ["ActionDo.Transient"], "MaxAttempts": 2}]
        });
        match next {
            Some(n) => t["Next"] = json!(n),
            None => t["End"] = json!(true),
        }
        t
    };
    json!({"StartAt": "T1", "States": {
        "T1": task(Some("T2")), "T2": task(Some("T3")), "T3": task(Some("T4")), "T4": task(None)
    }})
}

fn input() -> Value {
    json!({"lead": {"email": "ann.lee@acme.com", "name": "Ann Lee", "company": "Acme",
                    "phone": "+12015550123", "source": "demo request"}})
}

fn actiondo_binary() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = Command::new(cargo)
        .args([
            "build",
            "--offline",
            "--quiet",
            "-p",
            "actiondo-cli",
            "--bin",
            "actiondo",
        ])
        .current_dir(workspace_root())
        .status()
        .expect("cargo runs");
    assert!(built.success(), "cargo build -p actiondo-cli failed");
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .join("actiondo")
}

/// The milliseconds into the day of an event's `timestamp` (`YYYY-MM-DDTHH:MM:SS.mmmZ`).
fn ms_of_day(event: &Value) -> f64 {
    let t = event["timestamp"].as_str().unwrap_or_default();
    let field = |a: usize, b: usize| {
        t.get(a..b)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (field(11, 13) * 3600.0 + field(14, 16) * 60.0 + field(17, 23)) * 1000.0
}

fn summary(label: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    eprintln!(
        "{label}: per execution p50 {:.1} ms, p90 {:.1} ms, min {:.1} ms; per state p50 {:.2} ms ({RUNS} runs of {TASKS} Tasks)",
        at(0.5),
        at(0.9),
        ms[0],
        at(0.5) / f64::from(TASKS)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run with --ignored --nocapture (BENCHMARKS.md)"]
async fn four_task_workflow_under_moto_and_the_local_engine() {
    let Some(stack) = Stack::builder().function("score-lead").start().await else {
        return;
    };
    let Some(sfn) = StepFunctions::start(&stack).await else {
        return;
    };
    let (text, _) = substitute_function_arns(&definition().to_string()).expect("substitutes");
    let machine = sfn
        .client()
        .create_state_machine()
        .name("bench-four-tasks")
        .definition(text)
        .role_arn(actiondo_e2e::states::ROLE_ARN)
        .send()
        .await
        .expect("created")
        .state_machine_arn()
        .to_owned();

    // moto: one unmeasured run first.
    let mut moto_ms = Vec::new();
    for i in 0..=RUNS {
        let started = Instant::now();
        let arn = sfn
            .client()
            .start_execution()
            .state_machine_arn(&machine)
            .name(format!("bench-{i}-{}", uuid::Uuid::new_v4().simple()))
            .input(input().to_string())
            .send()
            .await
            .expect("started")
            .execution_arn()
            .to_owned();
        loop {
            let d = sfn
                .client()
                .describe_execution()
                .execution_arn(&arn)
                .send()
                .await
                .expect("described");
            if *d.status() != ExecutionStatus::Running {
                assert_eq!(*d.status(), ExecutionStatus::Succeeded, "{d:?}");
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if i > 0 {
            moto_ms.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    summary("moto + cargo lambda watch", moto_ms);

    // The local engine: the same definition in a project folder of its own.
    let project = tempfile::tempdir().expect("a folder");
    std::fs::create_dir_all(project.path().join("workflows")).expect("mkdir");
    std::fs::write(
        project.path().join("workflows/bench.asl.json"),
        definition().to_string(),
    )
    .expect("write");
    let binary = tokio::task::spawn_blocking(actiondo_binary)
        .await
        .expect("built");
    let db = format!("sqlite:{}", project.path().join("actiondo.db").display());
    let (mut process_ms, mut engine_ms) = (Vec::new(), Vec::new());
    for i in 0..=RUNS {
        let name = format!("bench-{i}");
        let started = Instant::now();
        let out = Command::new(&binary)
            .current_dir(project.path())
            .env("ACTIONDO_STORE", &db)
            .args(["workflow", "run", "bench", "--input"])
            .arg(input().to_string())
            .args(["--name", &name])
            .output()
            .expect("actiondo runs");
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        assert!(out.status.success(), "{out:?}");
        let history = Command::new(&binary)
            .current_dir(project.path())
            .env("ACTIONDO_STORE", &db)
            .args(["workflow", "history", "bench", &name, "--json"])
            .output()
            .expect("actiondo runs");
        let events: Vec<Value> = serde_json::from_slice(&history.stdout).expect("JSON");
        let span = events.last().map(ms_of_day).unwrap_or_default()
            - events.first().map(ms_of_day).unwrap_or_default();
        if i > 0 {
            process_ms.push(elapsed);
            engine_ms.push(span);
        }
    }
    summary("local engine, the actiondo process", process_ms);
    summary("local engine, ExecutionStarted to the end", engine_ms);
}
