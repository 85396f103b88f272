//! Differential fidelity: the corpus definitions without Task states (those with Tasks
//! need real Lambda functions: `tests/e2e/tests/corpus_moto.rs` runs them) run under
//! moto's Step Functions interpreter (`ACTIONDO_TEST_MOTO_URL`, started by `./tests/run.sh`) and under this
//! engine; both must end in the same status and output, and the same error (and cause,
//! where the definition sets it).
//!
//! Where moto is wrong against the AWS documentation, [`MOTO_DEVIATIONS`] says how, and
//! the engine follows AWS: those cases are checked against the corpus' expectation only.
//!
//! Without `ACTIONDO_TEST_MOTO_URL` the test prints `*** NOT RUN ***` and passes, unless
//! `ACTIONDO_TEST_REQUIRE_INFRA=1` or `CI=true`.
//!
//! Run: `./tests/run.sh --servers-only -- cargo test --offline -p actiondo-workflow --test moto`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use actiondo_workflow::engine::{ExecutionInfo, Outcome, TaskCall, TaskRunner};
use actiondo_workflow::{Engine, MemoryHistory, ScaledTimer, StateMachine, StatesError, Timer};
use async_trait::async_trait;
use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::Value;

/// Corpus cases where moto departs from AWS, and why (the engine follows AWS).
/// Found by this test with moto 5.2.5.
const MOTO_DEVIATIONS: &[(&str, &str)] = &[
    (
        "02-pass-parameters-context",
        "$$.Execution.Name is null in moto; AWS documents Execution.Name in the context object",
    ),
    (
        "05-choice-and-or-not",
        "moto's DescribeExecution has no output when the output is a JSON string (\"other\"); AWS returns any JSON value",
    ),
    (
        "06-choice-no-match",
        "moto fails with States.Runtime; AWS documents States.NoChoiceMatched for a Choice without a match and without Default",
    ),
    (
        "07-choice-tests-and-paths",
        "moto raises a TypeError comparing timestamps with offsets (TimestampLessThanPath); AWS compares RFC 3339 timestamps",
    ),
    (
        "08-choice-missing-variable",
        "moto takes the Default when a Variable selects nothing; AWS fails with States.Runtime (Invalid path …: The choice state's condition path references an invalid value)",
    ),
    (
        "29-intrinsics-json",
        "moto fails on the escapes \\{ \\} \\' of States.Format; AWS documents them",
    ),
    (
        "30-intrinsics-arrays",
        "moto's States.ArrayUnique raises TypeError (unhashable type: 'dict') on objects; AWS takes an array of any JSON values",
    ),
    (
        "34-execution-timeout",
        "moto reports TIMED_OUT without an error; the engine names it States.Timeout, the error of AWS's ExecutionTimedOut event",
    ),
];

#[derive(Debug)]
struct NoTasks;

#[async_trait]
impl TaskRunner for NoTasks {
    async fn run(&self, call: TaskCall) -> Result<Value, StatesError> {
        Err(StatesError::runtime(format!(
            "no Task expected: {}",
            call.resource
        )))
    }
}

fn task_free_corpus() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/corpus")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|p| {
            let text = std::fs::read_to_string(&p).expect("readable");
            (!text.contains("\"Task\"")).then(|| {
                let name = p
                    .file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                (name, serde_json::from_str(&text).expect("JSON"))
            })
        })
        .collect()
}

/// (status, output, error, cause) as Step Functions names them.
type Ending = (String, Option<Value>, Option<String>, Option<String>);

async fn local(name: &str, case: &Value) -> Ending {
    let machine = StateMachine::from_value(&case["definition"]).expect("parses");
    let input = case["input"].clone();
    let info = ExecutionInfo {
        id: format!("arn:aws:states:us-east-1:123456789012:execution:{name}:local"),
        name: "local".into(),
        start_time: "2026-01-01T00:00:00.000Z".into(),
        input: input.clone(),
        role_arn: String::new(),
        redrive_count: 0,
        state_machine_id: String::new(),
        state_machine_name: name.into(),
    };
    let history = MemoryHistory::new();
    let timer = ScaledTimer::real_time();
    let engine = Engine {
        tasks: &NoTasks,
        timer: &timer,
        history: &history,
        info: &info,
    };
    let start = machine.start_at.clone();
    match engine
        .run(&machine, &start, input, timer.now_ms())
        .await
        .expect("runs")
    {
        Outcome::Succeeded(o) => ("SUCCEEDED".into(), Some(o), None, None),
        Outcome::Failed(e) => ("FAILED".into(), None, Some(e.error), Some(e.cause)),
        Outcome::TimedOut(e) => ("TIMED_OUT".into(), None, Some(e.error), Some(e.cause)),
    }
}

async fn under_moto(client: &aws_sdk_sfn::Client, name: &str, case: &Value) -> Ending {
    let machine = client
        .create_state_machine()
        .name(format!("corpus-{name}-{}", uuid::Uuid::new_v4().simple()))
        .definition(case["definition"].to_string())
        .role_arn("arn:aws:iam::123456789012:role/corpus")
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{name}: create: {}",
                aws_sdk_sfn::error::DisplayErrorContext(&e)
            )
        });
    let started = client
        .start_execution()
        .state_machine_arn(machine.state_machine_arn())
        .input(case["input"].to_string())
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{name}: start: {}",
                aws_sdk_sfn::error::DisplayErrorContext(&e)
            )
        });
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let d = client
            .describe_execution()
            .execution_arn(started.execution_arn())
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{name}: describe: {}",
                    aws_sdk_sfn::error::DisplayErrorContext(&e)
                )
            });
        if *d.status() != ExecutionStatus::Running {
            let output = d.output().and_then(|o| serde_json::from_str(o).ok());
            return (
                d.status().as_str().to_owned(),
                output,
                d.error().map(str::to_owned),
                d.cause().map(str::to_owned),
            );
        }
        assert!(
            Instant::now() < deadline,
            "{name}: still RUNNING under moto"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_free_corpus_definitions_end_alike_under_moto_and_the_engine() {
    let Some(url) = actiondo::testing::server_url(
        "ACTIONDO_TEST_MOTO_URL",
        "the differential test against moto's Step Functions interpreter",
    ) else {
        return;
    };
    let config = reqwest::Client::new()
        .post(format!("{url}/moto-api/config"))
        .json(&serde_json::json!({"stepfunctions": {"execute_state_machine": true}}))
        .send()
        .await
        .expect("moto's config API");
    assert!(config.status().is_success(), "{config:?}");
    let client = aws_sdk_sfn::Client::new(&actiondo::testing::local_aws_config(&url));

    let cases = task_free_corpus();
    assert!(cases.len() >= 15, "{} task-free cases", cases.len());
    let runs = cases.iter().map(|(name, case)| {
        let client = client.clone();
        async move {
            let (ours, theirs) = tokio::join!(local(name, case), under_moto(&client, name, case));
            (name.clone(), case.clone(), ours, theirs)
        }
    });
    let mut problems = Vec::new();
    for (name, case, ours, theirs) in futures::future::join_all(runs).await {
        if let Some((_, why)) = MOTO_DEVIATIONS.iter().find(|(n, _)| *n == name) {
            eprintln!("{name}: moto differs from AWS ({why}); moto: {theirs:?}");
            continue;
        }
        let cause_matters = case["expect"].get("cause").is_some();
        let same = ours.0 == theirs.0
            && ours.1 == theirs.1
            && ours.2 == theirs.2
            && (!cause_matters || ours.3 == theirs.3);
        if !same {
            problems.push(format!("{name}:\n  engine: {ours:?}\n  moto:   {theirs:?}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
