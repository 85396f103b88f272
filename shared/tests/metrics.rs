//! The metrics line of an execution (docs/architecture.md §11): valid Embedded Metric
//! Format (the specification's JSON Schema, `fixtures/cloudwatch-emf.schema.json`, plus
//! its rule that every referenced dimension and metric is a member of the root), with the
//! right values for a first execution, a replay, a failure, a takeover and a conflict;
//! and none at all from an executor that was not given metrics.

use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use actiondo::metrics::{Metrics, NAMESPACE};
use actiondo::store::sqlite::SqliteStore;
use actiondo::store::{Claim, ClaimOutcome};
use actiondo::{Action, ActionContext, ActionError, Executor, Invocation, Source};
use serde_json::{Value, json};

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct In {
    /// `ok`, `fail` (terminal), `flaky` (transient the first time), `conflict`.
    mode: String,
}

#[derive(Default)]
struct Moody {
    flaky_runs: AtomicU32,
}

impl Action for Moody {
    type Input = In;
    type Output = String;
    const NAME: &'static str = "moody";
    const DESCRIPTION: &'static str = "succeeds, fails or conflicts as asked";

    async fn execute(&self, input: In, _cx: &mut ActionContext) -> Result<String, ActionError> {
        match input.mode.as_str() {
            "fail" => Err(ActionError::rejected("refused, as asked")),
            "conflict" => Err(ActionError::conflict("conflicted, as asked")),
            "flaky" if self.flaky_runs.fetch_add(1, Ordering::SeqCst) == 0 => {
                Err(ActionError::transient("not now"))
            }
            _ => Ok(input.mode),
        }
    }
}

/// A writer into a shared buffer.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    /// The lines written so far, each parsed as JSON (and the buffer emptied).
    fn take_lines(&self) -> Vec<Value> {
        let bytes = std::mem::take(&mut *self.0.lock().expect("buffer"));
        let text = String::from_utf8(bytes).expect("utf-8");
        assert!(text.is_empty() || text.ends_with('\n'), "{text:?}");
        text.lines()
            .map(|l| serde_json::from_str(l).expect("each line is one JSON document"))
            .collect()
    }
}

/// Validate `line` against the specification's schema and its root-member rules.
fn assert_valid_emf(line: &Value) {
    let schema: Value = serde_json::from_str(include_str!("fixtures/cloudwatch-emf.schema.json"))
        .expect("the schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator.iter_errors(line).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?} in {line}");
    for directive in line["_aws"]["CloudWatchMetrics"]
        .as_array()
        .expect("directives")
    {
        for set in directive["Dimensions"].as_array().expect("dimension sets") {
            for dimension in set.as_array().expect("a dimension set") {
                let name = dimension.as_str().expect("a name");
                assert!(
                    line[name].is_string(),
                    "dimension {name} must be a string member of the root: {line}"
                );
            }
        }
        for metric in directive["Metrics"].as_array().expect("metrics") {
            let name = metric["Name"].as_str().expect("a name");
            assert!(
                line[name].is_number(),
                "metric {name} must be a number member of the root: {line}"
            );
        }
    }
}

/// The metric values of `line`, by name.
fn values(line: &Value) -> Value {
    json!({
        "Executions": line["Executions"],
        "Replays": line["Replays"],
        "Failures": line["Failures"],
        "Takeovers": line["Takeovers"],
        "Conflicts": line["Conflicts"],
    })
}

fn setup() -> (Executor, Buffer) {
    let buffer = Buffer::default();
    let executor = Executor::new(SqliteStore::in_memory().expect("store"))
        .with_metrics(Some(Metrics::to_writer(buffer.clone())));
    (executor, buffer)
}

async fn run(executor: &Executor, action: &Moody, mode: &str, key: &str) {
    executor
        .execute(
            action,
            Invocation::new(json!({"mode": mode}), Source::Direct).with_key(key),
        )
        .await;
}

#[tokio::test]
async fn a_first_execution_and_its_replay() {
    let (executor, buffer) = setup();
    let action = Moody::default();
    run(&executor, &action, "ok", "k1").await;
    let lines = buffer.take_lines();
    assert_eq!(lines.len(), 1, "one line per execution: {lines:?}");
    let first = &lines[0];
    assert_valid_emf(first);
    let directives = first["_aws"]["CloudWatchMetrics"]
        .as_array()
        .expect("directives");
    assert_eq!(
        directives.len(),
        1,
        "no errorType set on a success: {first}"
    );
    assert_eq!(directives[0]["Namespace"], NAMESPACE);
    assert_eq!(directives[0]["Dimensions"], json!([["action"], []]));
    assert_eq!(first["action"], "moody");
    assert_eq!(
        values(first),
        json!({"Executions": 1, "Replays": 0, "Failures": 0, "Takeovers": 0, "Conflicts": 0})
    );
    assert!(first["Duration"].as_u64().is_some(), "{first}");
    assert_eq!(first["outcome"], "completed");
    assert_eq!(first["replayed"], false);
    assert_eq!(first["key"], "k1");
    assert_eq!(first["attempt"], 1);
    assert!(first.get("errorType").is_none(), "{first}");

    run(&executor, &action, "ok", "k1").await;
    let lines = buffer.take_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let replay = &lines[0];
    assert_valid_emf(replay);
    assert_eq!(
        values(replay),
        json!({"Executions": 1, "Replays": 1, "Failures": 0, "Takeovers": 0, "Conflicts": 0})
    );
    assert_eq!(replay["outcome"], "replayed");
    assert_eq!(replay["replayed"], true);
}

#[tokio::test]
async fn a_failure_is_counted_by_error_type_once() {
    let (executor, buffer) = setup();
    let action = Moody::default();
    run(&executor, &action, "fail", "k2").await;
    let lines = buffer.take_lines();
    let failed = &lines[0];
    assert_valid_emf(failed);
    assert_eq!(
        values(failed),
        json!({"Executions": 1, "Replays": 0, "Failures": 1, "Takeovers": 0, "Conflicts": 0})
    );
    assert_eq!(failed["errorType"], "ActionDo.Rejected");
    assert_eq!(failed["outcome"], "failed");
    let directives = failed["_aws"]["CloudWatchMetrics"]
        .as_array()
        .expect("directives");
    assert_eq!(directives.len(), 2, "{failed}");
    assert_eq!(
        directives[1]["Dimensions"],
        json!([["action", "errorType"]])
    );
    assert_eq!(
        directives[1]["Metrics"],
        json!([{"Name": "Failures", "Unit": "Count"}])
    );

    // The stored failure replayed: a replay, not a second failure.
    run(&executor, &action, "fail", "k2").await;
    let replay = &buffer.take_lines()[0];
    assert_valid_emf(replay);
    assert_eq!(
        values(replay),
        json!({"Executions": 1, "Replays": 1, "Failures": 0, "Takeovers": 0, "Conflicts": 0})
    );
    assert_eq!(replay["errorType"], "ActionDo.Rejected");
    assert_eq!(
        replay["_aws"]["CloudWatchMetrics"].as_array().map(Vec::len),
        Some(1)
    );

    // A request refused before any claim is an execution and a failure too.
    executor
        .execute(
            &action,
            Invocation::new(json!({"mode": 3}), Source::Direct).with_key("k3"),
        )
        .await;
    let refused = &buffer.take_lines()[0];
    assert_valid_emf(refused);
    assert_eq!(refused["Failures"], 1);
    assert_eq!(refused["errorType"], "ActionDo.Validation");
    assert_eq!(refused["attempt"], 0);
}

#[tokio::test]
async fn takeovers_and_conflicts_are_counted() {
    let (executor, buffer) = setup();
    let action = Moody::default();
    // A transient failure releases the key: the next attempt is no takeover.
    run(&executor, &action, "flaky", "k4").await;
    let transient = &buffer.take_lines()[0];
    assert_valid_emf(transient);
    assert_eq!(transient["errorType"], "ActionDo.Transient");
    run(&executor, &action, "flaky", "k4").await;
    let retried = &buffer.take_lines()[0];
    assert_eq!(retried["Takeovers"], 0, "{retried}");
    assert_eq!(retried["attempt"], 2);

    // An attempt that claimed and never finished (a crashed process): its lease ended,
    // the next request with the same payload takes the record over.
    let now_ms = chrono::Utc::now().timestamp_millis();
    let claimed = executor
        .store()
        .claim(&Claim {
            id: "moody#k7".to_owned(),
            payload_hash: actiondo::hash::payload_hash(&json!({"mode": "ok"})),
            lease_owner: "crashed".to_owned(),
            lease_expires_at_ms: now_ms - 1_000,
            expires_at_s: now_ms / 1000 + 3_600,
            now_ms: now_ms - 2_000,
        })
        .await
        .expect("claim");
    assert!(
        matches!(claimed, ClaimOutcome::Claimed { .. }),
        "{claimed:?}"
    );
    run(&executor, &action, "ok", "k7").await;
    let taken = &buffer.take_lines()[0];
    assert_valid_emf(taken);
    assert_eq!(
        values(taken),
        json!({"Executions": 1, "Replays": 0, "Failures": 0, "Takeovers": 1, "Conflicts": 0})
    );
    assert_eq!(taken["attempt"], 2);

    run(&executor, &action, "conflict", "k5").await;
    let conflict = &buffer.take_lines()[0];
    assert_valid_emf(conflict);
    assert_eq!(
        values(conflict),
        json!({"Executions": 1, "Replays": 0, "Failures": 1, "Takeovers": 0, "Conflicts": 1})
    );
    assert_eq!(conflict["errorType"], "ActionDo.Conflict");
}

#[tokio::test]
async fn the_schema_refuses_what_the_specification_refuses() {
    // The validator is not vacuous: documents the specification refuses fail it.
    let schema: Value = serde_json::from_str(include_str!("fixtures/cloudwatch-emf.schema.json"))
        .expect("the schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let good = json!({"_aws": {"Timestamp": 1, "CloudWatchMetrics": [
        {"Namespace": "N", "Dimensions": [["a"]], "Metrics": [{"Name": "M", "Unit": "Count"}]}
    ]}, "a": "x", "M": 1});
    assert!(validator.is_valid(&good));
    for bad in [
        json!({"M": 1}),
        json!({"_aws": {"Timestamp": "now", "CloudWatchMetrics": []}}),
        json!({"_aws": {"Timestamp": 1, "CloudWatchMetrics": [{"Namespace": "N", "Dimensions": [["a"]], "Metrics": [{"Name": "M", "Unit": "Counts"}]}]}}),
        json!({"_aws": {"Timestamp": 1, "CloudWatchMetrics": [{"Namespace": "", "Dimensions": [["a"]], "Metrics": [{"Name": "M"}]}]}}),
        json!({"_aws": {"Timestamp": 1, "CloudWatchMetrics": [{"Namespace": "N", "Dimensions": [], "Metrics": [{"Name": "M"}]}]}}),
        json!({"_aws": {"Timestamp": 1, "CloudWatchMetrics": [{"Namespace": "N", "Dimensions": [["a"]], "Metrics": []}]}}),
    ] {
        assert!(!validator.is_valid(&bad), "{bad}");
    }
}

#[test]
fn metrics_are_off_outside_lambda_unless_asked() {
    // What `actiondo::run` gives its executor: nothing outside Lambda without
    // ACTIONDO_METRICS (so test and CLI output carries no metrics lines).
    if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_none()
        && std::env::var_os(actiondo::metrics::METRICS_ENV).is_none()
    {
        assert!(Metrics::from_env().is_none());
    }
}
