//! Local executions end to end in one process: a project folder with a definition, test
//! actions run by the real executor on the embedded store (one SQLite file for the
//! actions' records and the executions), starts keyed by name, redrive.
//!
//! The actions count their handler runs, so "ran exactly once" is observed, not assumed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use actiondo::store::sqlite::SqliteStore;
use actiondo::{Action, ActionContext, ActionError, Catalog, Executor};
use actiondo_workflow::local::{Arns, LocalActions, LocalWorkflows, Project};
use actiondo_workflow::store::{Created, LEASE, Status, WorkflowStore};
use actiondo_workflow::{ScaledTimer, history};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Deserialize, Serialize, JsonSchema)]
struct N {
    n: i64,
}

macro_rules! counting_action {
    ($ty:ident, $name:literal, $runs:ident, $broken:ident) => {
        static $runs: AtomicU64 = AtomicU64::new(0);
        static $broken: AtomicBool = AtomicBool::new(false);
        #[derive(Debug, Default)]
        struct $ty;
        impl Action for $ty {
            type Input = N;
            type Output = N;
            const NAME: &'static str = $name;
            const DESCRIPTION: &'static str = "a test action that counts its runs";
            async fn execute(&self, input: N, _cx: &mut ActionContext) -> Result<N, ActionError> {
                $runs.fetch_add(1, Ordering::SeqCst);
                if $broken.load(Ordering::SeqCst) {
                    return Err(ActionError::transient("the test service is down"));
                }
                Ok(N { n: input.n + 1 })
            }
        }
    };
}

counting_action!(FirstStep, "first-step", FIRST_RUNS, FIRST_BROKEN);
counting_action!(SecondStep, "second-step", SECOND_RUNS, SECOND_BROKEN);
counting_action!(Gate, "gate", GATE_RUNS, GATE_BROKEN);
counting_action!(Solo, "solo", SOLO_RUNS, SOLO_BROKEN);

fn task(function: &str, next: Option<&str>) -> Value {
    let mut t = json!({
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {
            "FunctionName": format!("${{{function}}}"),
            "Payload": {
                "params": {"n.$": "$.n"},
                "idempotencyKey.$": "States.Format('{}#{}', $$.Execution.Id, $$.State.Name)",
                "correlationId.$": "$$.Execution.Id"
            }
        },
        "ResultSelector": {"n.$": "$.Payload.n"},
        "Retry": [{"ErrorEquals": ["ActionDo.Transient"], "IntervalSeconds": 2, "MaxAttempts": 1}]
    });
    match next {
        Some(n) => t["Next"] = json!(n),
        None => t["End"] = json!(true),
    }
    t
}

struct World {
    _dir: tempfile::TempDir,
    workflows: LocalWorkflows,
}

fn world(definitions: &[(&str, Value)]) -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("workflows")).expect("mkdir");
    for (name, def) in definitions {
        std::fs::write(
            dir.path()
                .join("workflows")
                .join(format!("{name}.asl.json")),
            def.to_string(),
        )
        .expect("write");
    }
    let db = dir.path().join("actiondo.db");
    let executor = Executor::new(SqliteStore::open(&db).expect("sqlite"));
    let catalog = Catalog::new()
        .with(FirstStep)
        .with(SecondStep)
        .with(Gate)
        .with(Solo);
    let store = Arc::new(WorkflowStore::open(&db).expect("workflow store"));
    let workflows = LocalWorkflows::new(
        Project::new(dir.path(), Arns::default()),
        store,
        Arc::new(LocalActions::new(executor, Arc::new(catalog))),
        Arc::new(ScaledTimer::real_time()),
    );
    World {
        _dir: dir,
        workflows,
    }
}

#[tokio::test(start_paused = true)]
async fn a_redrive_reruns_the_failed_task_and_never_the_completed_ones() {
    let def = json!({"StartAt": "A", "States": {
        "A": task("FirstStepFunctionArn", Some("B")),
        "B": task("SecondStepFunctionArn", Some("Gate")),
        "Gate": task("GateFunctionArn", None),
    }});
    let w = world(&[("three", def)]);
    GATE_BROKEN.store(true, Ordering::SeqCst);

    let failed = w
        .workflows
        .run("three", "order-1", &json!({"n": 0}))
        .await
        .expect("runs");
    assert_eq!(failed.status, Status::Failed);
    assert_eq!(failed.error.as_deref(), Some("ActionDo.Transient"));
    let cause: Value = serde_json::from_str(failed.cause.as_deref().expect("cause")).expect("JSON");
    assert_eq!(cause["errorType"], "ActionDo.Transient");
    let body: Value =
        serde_json::from_str(cause["errorMessage"].as_str().expect("message")).expect("body");
    assert_eq!(body["error"]["type"], "ActionDo.Transient");
    // The gate ran twice: the first attempt and its one retry.
    assert_eq!(
        (
            FIRST_RUNS.load(Ordering::SeqCst),
            SECOND_RUNS.load(Ordering::SeqCst),
            GATE_RUNS.load(Ordering::SeqCst)
        ),
        (1, 1, 2)
    );

    GATE_BROKEN.store(false, Ordering::SeqCst);
    let done = w
        .workflows
        .redrive("three", "order-1")
        .await
        .expect("redrives");
    assert_eq!(done.status, Status::Succeeded, "{done:?}");
    assert_eq!(done.output, Some(json!({"n": 3})));
    assert_eq!(done.redrive_count, 1);
    assert_eq!(
        (
            FIRST_RUNS.load(Ordering::SeqCst),
            SECOND_RUNS.load(Ordering::SeqCst),
            GATE_RUNS.load(Ordering::SeqCst)
        ),
        (1, 1, 3),
        "the completed Tasks ran exactly once overall"
    );

    // The history was appended to, never rewritten: the failure is still there, then
    // the redrive, the Gate's calls all under the one key.
    let events = w.workflows.history("three", "order-1").expect("history");
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let failed_at = kinds
        .iter()
        .position(|k| *k == "ExecutionFailed")
        .expect("failed");
    let redriven_at = kinds
        .iter()
        .position(|k| *k == "ExecutionRedriven")
        .expect("redriven");
    assert!(failed_at < redriven_at);
    assert_eq!(kinds.last(), Some(&"ExecutionSucceeded"));
    assert!(events.windows(2).all(|p| p[1].id == p[0].id + 1));
    let arn = Arns::default().execution("three", "order-1");
    let calls = history::task_calls(&events);
    let expected: Vec<(String, String, Option<String>)> = [
        ("A", "first-step"),
        ("B", "second-step"),
        ("Gate", "gate"),
        ("Gate", "gate"),
        ("Gate", "gate"),
    ]
    .iter()
    .map(|(s, f)| {
        (
            (*s).to_owned(),
            Arns::default().function(f),
            Some(format!("{arn}#{s}")),
        )
    })
    .collect();
    assert_eq!(calls, expected);

    // A succeeded execution is not redriven.
    let again = w.workflows.redrive("three", "order-1").await;
    assert!(again.is_err());
}

#[tokio::test(start_paused = true)]
async fn the_execution_name_is_the_idempotency_key() {
    let w = world(&[(
        "solo",
        json!({"StartAt": "S", "States": {"S": task("SoloFunctionArn", None)}}),
    )]);
    let first = w
        .workflows
        .run("solo", "same", &json!({"n": 1}))
        .await
        .expect("runs");
    assert_eq!(first.status, Status::Succeeded);
    let again = w
        .workflows
        .run("solo", "same", &json!({"n": 1}))
        .await
        .expect("the same execution");
    assert_eq!(again, first);
    assert_eq!(SOLO_RUNS.load(Ordering::SeqCst), 1);

    let other = w.workflows.run("solo", "same", &json!({"n": 2})).await;
    let err: ActionError = other.expect_err("another input").into();
    assert_eq!(err.kind().wire_name(), "ActionDo.PayloadMismatch");

    let bad_name = w.workflows.run("solo", "a b", &json!({"n": 2})).await;
    let err: ActionError = bad_name.expect_err("a bad name").into();
    assert_eq!(err.kind().wire_name(), "ActionDo.Validation");

    let unknown = w.workflows.run("nope", "x", &json!({})).await;
    let err: ActionError = unknown.expect_err("unknown").into();
    assert_eq!(err.kind().wire_name(), "ActionDo.NotFound");
}

#[test]
fn an_execution_whose_owner_stopped_renewing_is_interrupted_and_redrivable() {
    let store = WorkflowStore::in_memory().expect("store");
    let created = store
        .create("w", "e", "arn:e", &json!({}), "owner-1", 1_000)
        .expect("created");
    let Created::New(rec) = created else {
        panic!("a new execution")
    };
    let lease_ms = LEASE.as_millis() as i64;
    assert!(!rec.is_interrupted(1_000));
    // While the lease holds, nobody else takes it over.
    assert!(
        store
            .claim_redrive("w", "e", "owner-2", 1_000 + lease_ms - 1)
            .is_err()
    );
    // Once it has expired, it shows as interrupted and can be redriven.
    assert!(rec.is_interrupted(1_000 + lease_ms));
    assert_eq!(rec.view(1_000 + lease_ms)["interrupted"], json!(true));
    let claimed = store
        .claim_redrive("w", "e", "owner-2", 1_000 + lease_ms)
        .expect("claimed");
    assert_eq!(claimed.owner.as_deref(), Some("owner-2"));
    assert_eq!(claimed.redrive_count, 1);
    // The first owner can no longer finish it.
    assert!(
        store
            .finish("w", "e", "owner-1", Status::Succeeded, None, None, 2_000)
            .is_err()
    );
}

#[tokio::test]
async fn an_execution_input_over_256_kib_is_refused_and_nothing_starts() {
    let def = json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}});
    let w = world(&[("limit", def)]);
    // {"s":"…"} is 8 bytes plus the string: exactly the limit, then one byte over.
    let at_limit = json!({"s": "x".repeat(262_144 - 8)});
    assert_eq!(serde_json::to_vec(&at_limit).expect("JSON").len(), 262_144);
    let done = w
        .workflows
        .run("limit", "at-limit", &at_limit)
        .await
        .expect("runs");
    assert_eq!(done.status, Status::Succeeded);

    let over = json!({"s": "x".repeat(262_144 - 7)});
    let err = w
        .workflows
        .run("limit", "over-limit", &over)
        .await
        .expect_err("refused");
    let err: ActionError = err.into();
    assert_eq!(err.kind().wire_name(), "ActionDo.Validation");
    assert!(err.message().contains("262145 bytes"), "{}", err.message());
    assert_eq!(
        err.details().map(|d| d["limit"].clone()),
        Some(json!(262_144))
    );
    assert!(
        w.workflows
            .describe("limit", "over-limit")
            .is_err_and(|e| ActionError::from(e).kind().wire_name() == "ActionDo.NotFound"),
        "no execution was created"
    );
}
