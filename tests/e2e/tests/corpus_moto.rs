//! Differential fidelity of the local workflow engine on the corpus' Task definitions
//! (issue 12; docs/architecture.md §10.4): every definition of `workflow/tests/corpus/`
//! with a Task state runs twice, with the same input:
//!
//! - under moto's Step Functions interpreter, each Task invoking a real Lambda function:
//!   the corpus' functions (`echo`, `fail`, `flaky`, `slow`, `big`) as the binaries
//!   `corpus-<name>` (`actiondo_e2e::corpus`) under one `cargo lambda watch`
//!   (`actiondo_e2e::states`: moto's Lambda Invoke calls go to the watch);
//! - under the local engine, in-process: the same functions' code
//!   (`actiondo_e2e::corpus::respond`), a failure reaching Retry and Catch as Lambda
//!   reports a function error to Step Functions (`Error` = `errorType`, `Cause` = the
//!   function's error document `{"errorType", "errorMessage"}`, as the engine does for
//!   actions: `StatesError::from_action`), on tokio's paused clock (waits, backoffs and
//!   `TimeoutSeconds` take no real time), as `workflow/tests/corpus.rs` runs the corpus.
//!   In-process rather than through the binaries: the engine's clock can then be paused,
//!   and `flaky`'s count of calls belongs to one execution on this side while each
//!   binary counts over its process's life (each `flaky` payload of the corpus is used
//!   by one definition only).
//!
//! Both sides run the same definition text: each function ARN `…:function:echo` is
//! renamed `…:function:corpus-echo` (a function under `cargo lambda watch` is the binary
//! of its name). Asserted equal per definition: the status, the output, the error, the
//! cause, and the Task calls (state, function, input) in order, from each side's
//! history (moto's `LambdaFunctionScheduled` events, the engine's `TaskScheduled`). A
//! cause that is JSON text (a function's error document) is compared as JSON; a cause
//! the interpreter writes itself in prose for a `States.*` error (`States.Runtime`,
//! `States.DataLimitExceeded`, …) is not compared, its wording being no part of the
//! States language. Timing is not compared either (moto sleeps in real time, the engine
//! on a paused clock; `workflow/tests/corpus.rs` checks the engine's waits): the number
//! of calls a Retry makes is. Every Lambda Invoke moto routed to the watch is counted
//! per function and must match moto's history.
//!
//! Where moto departs from the Step Functions documentation, [`MOTO_DEVIATIONS`] says
//! how (the engine follows AWS), and the definition is reported, not compared.
//!
//! One `cargo lambda watch` and one moto serve every definition; the executions run
//! concurrently under moto, except that the definitions calling `slow` run one after
//! the other (`cargo lambda watch` runs one invocation per function at a time, and a
//! Task abandoned at its `TimeoutSeconds` keeps `slow` busy).
//!
//! Run: `./tests/run.sh --servers-only -- cargo test --offline -p actiondo-e2e --test corpus_moto`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use actiondo_e2e::corpus::{BINARY_PREFIX, Calls, FUNCTIONS, respond};
use actiondo_e2e::states::{ROLE_ARN, StepFunctions, bare_function_name};
use actiondo_e2e::{Stack, workspace_root};
use actiondo_workflow::engine::{ExecutionInfo, Outcome, TaskCall, TaskRunner};
use actiondo_workflow::{Engine, MemoryHistory, ScaledTimer, StateMachine, StatesError, Timer};
use async_trait::async_trait;
use aws_sdk_sfn::types::{ExecutionStatus, HistoryEvent, HistoryEventType};
use serde_json::Value;

/// Corpus definitions where moto departs from the Step Functions documentation, and how
/// (the engine follows AWS). Found by this test with moto 5.2.5; a listed definition
/// that no longer differs fails the test, so that the list stays true.
const MOTO_DEVIATIONS: &[(&str, &str)] = &[
    (
        "22-result-path-match-failure",
        "moto fails a ResultPath that cannot be applied (through a string) with the error \"Exception\"; AWS documents States.ResultPathMatchFailure (\"Step Functions failed to apply a state's ResultPath field to the input the state received\")",
    ),
    (
        "36-data-limit-at-the-limit",
        "moto refuses a Task result of exactly 262,144 bytes (its check is `size < 262144`); AWS's quota is 256 KiB, and only a result exceeding it is States.DataLimitExceeded",
    ),
    (
        "37-data-limit-task-result",
        "moto's States.ALL catches States.DataLimitExceeded; AWS documents it as a terminal error that States.ALL cannot catch",
    ),
    (
        "39-data-limit-parameters",
        "moto does not check a Task's input after Parameters against the payload quota (it calls the function with 299,963 bytes) and its States.ALL then catches the DataLimitExceeded of the echoed result; AWS documents both: an input over the quota after Parameters is States.DataLimitExceeded, which States.ALL cannot catch",
    ),
    (
        "41-heartbeat-path-not-below-timeout",
        "moto runs the Task with a HeartbeatSecondsPath value (10) not smaller than TimeoutSeconds (10); AWS requires HeartbeatSeconds to be a positive integer less than TimeoutSeconds, and the engine fails such a resolved value with States.Runtime, as any path that selects an invalid value",
    ),
];

/// moto 5.2.5 writes an execution's output that is a JSON string bare in
/// DescribeExecution (`States.Timeout`, not `"States.Timeout"`); AWS's `output` is JSON
/// text. Such an output is read as the string it holds, and compared.
const BARE_STRING_OUTPUT: &str = "moto writes a string output bare (not JSON text)";

/// One Task call: (state, function, input).
type Call = (String, String, Value);

/// How one side ended one definition.
#[derive(Debug, Clone, PartialEq)]
struct Ending {
    status: String,
    output: Option<Value>,
    error: Option<String>,
    /// The cause: JSON text parsed, other text as a JSON string.
    cause: Option<Value>,
    calls: Vec<Call>,
}

fn cause_value(cause: &str) -> Value {
    match serde_json::from_str::<Value>(cause) {
        Ok(v @ (Value::Object(_) | Value::Array(_))) => v,
        _ => Value::String(cause.to_owned()),
    }
}

/// `definition` with each Lambda function ARN `…:function:NAME` renamed
/// `…:function:corpus-NAME`.
fn renamed(definition: &Value) -> Value {
    let text = definition
        .to_string()
        .replace(":function:", &format!(":function:{BINARY_PREFIX}"));
    serde_json::from_str(&text).expect("still JSON")
}

/// The corpus definitions with a Task state: (name, the case with its definition
/// renamed), sorted by name.
fn task_corpus() -> Vec<(String, Value)> {
    let dir: PathBuf = workspace_root().join("workflow/tests/corpus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|p| {
            let text = std::fs::read_to_string(&p).expect("readable");
            let mut case: Value = serde_json::from_str(&text).expect("JSON");
            if !text.contains(r#""Task""#) {
                return None;
            }
            for resource in text.split(r#""Resource": ""#).skip(1) {
                let arn = resource.split('"').next().unwrap_or_default();
                let function = bare_function_name(arn);
                assert!(
                    arn.starts_with("arn:aws:lambda:") && FUNCTIONS.contains(&function),
                    "{}: the resource {arn} is not a corpus function",
                    p.display()
                );
            }
            case["definition"] = renamed(&case["definition"]);
            let name = p.file_stem()?.to_string_lossy().into_owned();
            Some((name, case))
        })
        .collect()
}

// ---------------------------------------------------------------- the engine's side

/// The corpus functions in-process, failing as Lambda reports a function error.
#[derive(Debug, Default)]
struct InProcess {
    calls: Calls,
}

#[async_trait]
impl TaskRunner for InProcess {
    async fn run(&self, call: TaskCall) -> Result<Value, StatesError> {
        let name = bare_function_name(&call.resource);
        let Some(function) = name.strip_prefix(BINARY_PREFIX) else {
            return Err(StatesError::new(
                "Lambda.ResourceNotFoundException",
                format!("Function not found: {}", call.resource),
            ));
        };
        respond(function, &call.parameters, &self.calls)
            .await
            .map_err(|diagnostic| {
                let document = serde_json::to_string(&diagnostic).unwrap_or_default();
                StatesError::new(diagnostic.error_type, document)
            })
    }
}

async fn engine_run(name: &str, case: &Value) -> Ending {
    let machine = StateMachine::from_value(&case["definition"])
        .unwrap_or_else(|e| panic!("{name}: the definition does not parse: {e}"));
    let input = case["input"].clone();
    let info = ExecutionInfo {
        id: format!("arn:aws:states:us-east-1:123456789012:execution:{name}:local"),
        name: "local".into(),
        start_time: "2026-01-01T00:00:00.000Z".into(),
        input: input.clone(),
        role_arn: ROLE_ARN.into(),
        redrive_count: 0,
        state_machine_id: format!("arn:aws:states:us-east-1:123456789012:stateMachine:{name}"),
        state_machine_name: name.into(),
    };
    let history = MemoryHistory::new();
    let timer = ScaledTimer::real_time();
    let functions = InProcess::default();
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
        .unwrap_or_else(|e| panic!("{name}: the engine failed: {e}"));
    let calls = history
        .events()
        .iter()
        .filter(|e| e.kind == "TaskScheduled")
        .map(|e| {
            (
                e.details["name"].as_str().unwrap_or_default().to_owned(),
                bare_function_name(e.details["resource"].as_str().unwrap_or_default()).to_owned(),
                e.details["parameters"].clone(),
            )
        })
        .collect();
    let (status, output, error) = match outcome {
        Outcome::Succeeded(o) => ("SUCCEEDED", Some(o), None),
        Outcome::Failed(e) => ("FAILED", None, Some(e)),
        Outcome::TimedOut(e) => ("TIMED_OUT", None, Some(e)),
    };
    Ending {
        status: status.to_owned(),
        output,
        error: error.as_ref().map(|e| e.error.clone()),
        cause: error.as_ref().map(|e| cause_value(&e.cause)),
        calls,
    }
}

/// Every case under the engine, on a runtime of its own whose clock is paused.
fn engine_side(cases: Vec<(String, Value)>) -> BTreeMap<String, Ending> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let mut endings = BTreeMap::new();
        for (name, case) in &cases {
            endings.insert(name.clone(), engine_run(name, case).await);
        }
        endings
    })
}

// ---------------------------------------------------------------- moto's side

/// The Lambda calls in moto's history: each `LambdaFunctionScheduled` (or
/// `TaskScheduled` of `lambda:invoke`) with the state entered last.
fn moto_calls(history: &[HistoryEvent]) -> Vec<Call> {
    let mut state = String::new();
    let mut calls = Vec::new();
    for event in history {
        if let Some(d) = event.state_entered_event_details() {
            d.name().clone_into(&mut state);
        }
        if let Some(d) = event.lambda_function_scheduled_event_details() {
            let input = d
                .input()
                .and_then(|i| serde_json::from_str(i).ok())
                .unwrap_or(Value::Null);
            calls.push((
                state.clone(),
                bare_function_name(d.resource()).to_owned(),
                input,
            ));
        }
        if *event.r#type() == HistoryEventType::TaskScheduled {
            let parameters: Value = event
                .task_scheduled_event_details()
                .and_then(|d| serde_json::from_str(d.parameters()).ok())
                .unwrap_or_default();
            calls.push((
                state.clone(),
                bare_function_name(parameters["FunctionName"].as_str().unwrap_or_default())
                    .to_owned(),
                parameters["Payload"].clone(),
            ));
        }
    }
    calls
}

async fn moto_start(sfn: &StepFunctions, name: &str, case: &Value) -> String {
    let machine = sfn
        .client()
        .create_state_machine()
        .name(format!("corpus-{name}"))
        .definition(case["definition"].to_string())
        .role_arn(ROLE_ARN)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{name}: moto refused the definition: {}",
                aws_sdk_sfn::error::DisplayErrorContext(&e)
            )
        });
    let started = sfn
        .client()
        .start_execution()
        .state_machine_arn(machine.state_machine_arn())
        .name(format!("corpus-{}", uuid::Uuid::new_v4().simple()))
        .input(case["input"].to_string())
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{name}: start: {}",
                aws_sdk_sfn::error::DisplayErrorContext(&e)
            )
        });
    started.execution_arn().to_owned()
}

/// How long one execution may run under moto before the test gives up (a hang guard
/// with the execution's history, not a timed assertion).
const EXECUTION_LIMIT: Duration = Duration::from_secs(300);

/// Poll the execution `arn` until it leaves `RUNNING`; its ending. The output is read as
/// moto writes it (`StepFunctions::describe` wants JSON text, and moto 5.2.5 writes a
/// string output bare: [`BARE_STRING_OUTPUT`]).
async fn moto_ending(sfn: &StepFunctions, arn: &str) -> Ending {
    let deadline = Instant::now() + EXECUTION_LIMIT;
    let described = loop {
        let d = sfn
            .client()
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
        if *d.status() != ExecutionStatus::Running {
            break d;
        }
        assert!(
            Instant::now() < deadline,
            "{arn} still RUNNING after {EXECUTION_LIMIT:?}; its history:\n{}",
            sfn.history_text(arn).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let history = sfn.history(arn).await;
    Ending {
        status: described.status().as_str().to_owned(),
        output: described.output().map(|text| {
            // See BARE_STRING_OUTPUT.
            serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
        }),
        error: described.error().map(str::to_owned),
        cause: described.cause().map(cause_value),
        calls: moto_calls(&history),
    }
}

/// The executions in waves: every definition that does not call `slow` in the first
/// with the first that does, then each other one calling `slow` alone.
fn waves(cases: &[(String, Value)]) -> Vec<Vec<usize>> {
    let slow = format!(":function:{BINARY_PREFIX}slow");
    let mut first = Vec::new();
    let mut later = Vec::new();
    let mut seen_slow = false;
    for (i, (_, case)) in cases.iter().enumerate() {
        if !case["definition"].to_string().contains(&slow) {
            first.push(i);
        } else if seen_slow {
            later.push(vec![i]);
        } else {
            seen_slow = true;
            first.push(i);
        }
    }
    std::iter::once(first).chain(later).collect()
}

// ---------------------------------------------------------------- the test

/// Whether two endings agree: everything equal, but a prose cause of a `States.*` error.
fn agree(ours: &Ending, theirs: &Ending) -> bool {
    let prose = |e: &Ending| {
        e.error.as_deref().is_some_and(|x| x.starts_with("States."))
            && e.cause.as_ref().is_none_or(Value::is_string)
    };
    let causes = ours.cause == theirs.cause || (prose(ours) && prose(theirs));
    ours.status == theirs.status
        && ours.output == theirs.output
        && ours.error == theirs.error
        && ours.calls == theirs.calls
        && causes
}

/// An ending for a failure message, at most 3000 characters (the payload limit's
/// cases carry 150,000-byte strings).
fn shown(ending: &Ending) -> String {
    let text = format!("{ending:?}");
    match text.char_indices().nth(3000) {
        Some((at, _)) => format!("{}… ({} bytes)", &text[..at], text.len()),
        None => text,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_corpus_ends_alike_under_moto_with_real_functions_and_the_engine() {
    let began = Instant::now();
    let cases = task_corpus();
    assert!(
        cases.len() >= 15,
        "{} corpus definitions with Tasks",
        cases.len()
    );
    let ours = {
        let cases = cases.clone();
        tokio::task::spawn_blocking(move || engine_side(cases))
            .await
            .expect("the engine's side")
    };
    for (name, case) in &cases {
        assert_eq!(
            ours[name].status, case["expect"]["status"],
            "{name}: the engine's status is not the corpus' expectation: {:?}",
            ours[name]
        );
    }

    let mut builder = Stack::builder();
    for f in FUNCTIONS {
        builder = builder.function(format!("{BINARY_PREFIX}{f}"));
    }
    let Some(stack) = builder.start().await else {
        return;
    };
    let functions_ready = began.elapsed();
    let Some(sfn) = StepFunctions::start(&stack).await else {
        return;
    };
    let ready = began.elapsed();

    let mut theirs: BTreeMap<String, Ending> = BTreeMap::new();
    for wave in waves(&cases) {
        let mut arns = Vec::new();
        for &i in &wave {
            let (name, case) = &cases[i];
            arns.push((name.clone(), moto_start(&sfn, name, case).await));
        }
        for (name, arn) in arns {
            let ending = moto_ending(&sfn, &arn).await;
            theirs.insert(name, ending);
        }
    }

    // Every call in moto's histories reached a function binary, and no other did.
    let mut scheduled: BTreeMap<String, usize> = BTreeMap::new();
    for ending in theirs.values() {
        for (_, function, _) in &ending.calls {
            *scheduled.entry(function.clone()).or_default() += 1;
        }
    }
    let mut routed: BTreeMap<String, usize> = BTreeMap::new();
    for invoke in sfn.invocations() {
        assert_eq!(invoke.status, 200, "an Invoke was not answered: {invoke:?}");
        *routed.entry(invoke.function).or_default() += 1;
    }
    assert_eq!(
        routed, scheduled,
        "the Invokes routed to cargo lambda watch are not the calls in moto's histories"
    );

    let mut problems = Vec::new();
    let mut table = Vec::new();
    for (name, _) in &cases {
        let (ours, theirs) = (&ours[name], &theirs[name]);
        let deviation = MOTO_DEVIATIONS.iter().find(|(n, _)| n == name);
        let agreed = agree(ours, theirs);
        let bare = if theirs.output.as_ref().is_some_and(Value::is_string) {
            format!("; {BARE_STRING_OUTPUT}")
        } else {
            String::new()
        };
        match (deviation, agreed) {
            (Some(_), true) => problems.push(format!(
                "{name}: listed in MOTO_DEVIATIONS but moto now ends it as the engine does: {}",
                shown(theirs)
            )),
            (Some((_, why)), false) => {
                table.push(format!("{name}: moto deviates from AWS: {why}"));
            }
            (None, true) => table.push(format!(
                "{name}: equal ({}, {} Task calls{bare})",
                ours.status,
                ours.calls.len()
            )),
            (None, false) => problems.push(format!(
                "{name}:\n  engine: {}\n  moto:   {}",
                shown(ours),
                shown(theirs)
            )),
        }
    }
    eprintln!(
        "corpus differential ({} definitions; functions ready after {:.1?}, moto after {:.1?}, all done after {:.1?}):\n  {}",
        cases.len(),
        functions_ready,
        ready,
        began.elapsed(),
        table.join("\n  ")
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
