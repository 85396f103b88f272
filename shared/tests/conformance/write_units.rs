//! Write capacity units per execution (issue 13), as DynamoDB Local reports them with
//! `ReturnConsumedCapacity = TOTAL` (`CallCounter`). The figures are deterministic: an
//! item's size, rounded up to the next KB, per write; twice that inside a transaction.
//! BENCHMARKS.md lists them with the command that produced them.

use actiondo::{ActionOptions, Mode};
use serde_json::{Value, json};

use crate::harness::{Backend, Harness, Probe};
use crate::inv;

/// A result of about 1 KB: the probe's output with 1,024 random hex characters (which
/// gzip shrinks by about half, less than typical JSON).
fn one_kb_result(value: &str, write: Option<&str>) -> Value {
    let mut params = json!({"value": value, "noise": 1024});
    if let Some(pk) = write {
        params["writes"] = json!([{"pk": pk, "sk": "doc", "expect": "any"}]);
    }
    params
}

/// The units each write of one execution reported, by operation.
type Units = Vec<(String, f64)>;

async fn measure(h: &Harness, probe: &Probe, params: Value, key: &str) -> Option<Units> {
    h.reset_calls();
    let ex = h.executor.execute(probe, inv(params, key)).await;
    assert!(ex.outcome.is_ok(), "{:?}", ex.outcome);
    h.write_units()
}

fn pairs(expected: &[(&str, f64)]) -> Units {
    expected
        .iter()
        .map(|(o, u)| ((*o).to_owned(), *u))
        .collect()
}

/// Claim and optimistic mode, first executions and replays, with and without a staged
/// write: the units each write reports. (A replay's refused claim consumes units too,
/// the size of the record it read, but DynamoDB reports none for a refused condition.)
pub(crate) async fn write_units_per_execution(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let claim = Probe::new(ActionOptions::default());
    let optimistic = Probe::new(ActionOptions {
        mode: Mode::Optimistic,
        ..ActionOptions::default()
    });
    let mut figures = Vec::new();
    for (name, probe, write) in [
        ("claim, first", &claim, None),
        ("claim, first, one staged write", &claim, Some("wru#1")),
        ("optimistic, first", &optimistic, None),
        (
            "optimistic, first, one staged write",
            &optimistic,
            Some("wru#2"),
        ),
    ] {
        let key = format!("wru-{}", figures.len());
        let first = measure(&h, probe, one_kb_result(name, write), &key).await;
        let replay = measure(&h, probe, one_kb_result(name, write), &key).await;
        figures.push((name, first, replay));
    }
    for (name, first, replay) in &figures {
        println!("{name}: first {first:?}, replay {replay:?}");
    }
    let Some(expected) = expected() else {
        return;
    };
    for ((name, first, replay), (first_expected, replay_expected)) in figures.iter().zip(expected) {
        if let (Some(first), Some(replay)) = (first, replay) {
            assert_eq!(first, &pairs(first_expected), "{name}: first execution");
            assert_eq!(replay, &pairs(replay_expected), "{name}: replay");
        }
    }
}

/// DynamoDB Local's figures, per scenario: (first execution, replay). Local reports a
/// transactional write as 4 units per started KB of each item (AWS bills 2), a GSI write
/// like a table write, and nothing for a refused condition (the replay's claim).
///
/// | item | size | units |
/// |---|---|---|
/// | claim (`UpdateItem`, record without result) | < 1 KB | 1 |
/// | record with the 1 KB result, gzip-compressed (about 660 bytes) | < 1 KB | 4 |
/// | completion audit record (input, reference to the record's output) | < 1 KB | 4 |
/// | the same in GSI `by-type` (projection `ALL`) | < 1 KB | 4 |
/// | staged write | < 1 KB | 4 |
/// | replay's audit record and its GSI entry (`PutItem`) | < 1 KB each | 1 + 1 |
///
/// Before issue 13 the record (result as text) and the audit record (the output again)
/// took 2 KB each: 25, 29, 24 and 28 units for the four first executions.
#[allow(clippy::type_complexity)]
fn expected() -> Option<
    Vec<(
        &'static [(&'static str, f64)],
        &'static [(&'static str, f64)],
    )>,
> {
    let replay: &[(&str, f64)] = &[("PutItem", 2.0)];
    Some(vec![
        (&[("UpdateItem", 1.0), ("TransactWriteItems", 12.0)], replay),
        (&[("UpdateItem", 1.0), ("TransactWriteItems", 16.0)], replay),
        (&[("TransactWriteItems", 12.0)], replay),
        (&[("TransactWriteItems", 16.0)], replay),
    ])
}

/// A completion's output is stored once, in the idempotency record; its audit record
/// refers to it, and reading the audit shows the output while that record lives. Once
/// the record is claimed again (past its retention), the old audit record says its
/// output is gone instead of showing another's.
pub(crate) async fn a_completion_output_is_stored_once(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let probe = Probe::new(ActionOptions {
        retention: std::time::Duration::from_secs(60),
        ..ActionOptions::default()
    });
    let first = h
        .executor
        .execute(&probe, inv(json!({"value": "once", "noise": 64}), "k"))
        .await;
    let first_out: Value = first.output().expect("succeeds");
    let audit = h.audit("probe#k").await;
    assert_eq!(audit[0].details["output"], first_out);
    assert_eq!(audit[0].details["input"]["value"], "once");
    assert_eq!(
        audit[0].details.get(actiondo::audit::OUTPUT_IN_RECORD),
        None
    );
    if let Some(dynamo) = &h.dynamo {
        // The audit item itself holds the input and the reference, not the output.
        let page = dynamo
            .client()
            .query()
            .table_name(&dynamo.tables().audit)
            .key_condition_expression("execution = :e")
            .expression_attribute_values(
                ":e",
                aws_sdk_dynamodb::types::AttributeValue::S("probe#k".into()),
            )
            .send()
            .await
            .expect("query");
        let stored = match page.items()[0].get("details") {
            Some(aws_sdk_dynamodb::types::AttributeValue::S(text)) => text.clone(),
            other => panic!("details stored as {other:?}"),
        };
        let noise = first_out["padding"].as_str().expect("padding");
        assert!(!stored.contains(noise), "{stored}");
        assert!(
            stored.contains(actiondo::audit::OUTPUT_IN_RECORD),
            "{stored}"
        );
    }

    h.clock.advance_ms(61_000);
    let second = h
        .executor
        .execute(&probe, inv(json!({"value": "once", "noise": 64}), "k"))
        .await;
    assert!(!second.replayed, "past its retention the key runs again");
    let second_out: Value = second.output().expect("succeeds");
    assert_ne!(second_out, first_out);
    let audit = h.audit("probe#k").await;
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[0].details["output"], second_out);
    assert_eq!(audit[1].details.get("output"), None, "{}", audit[1].details);
    assert!(
        audit[1]
            .details
            .get(actiondo::audit::OUTPUT_UNAVAILABLE)
            .is_some(),
        "{}",
        audit[1].details
    );
    assert_eq!(audit[1].details["input"]["value"], "once");
}
