//! What the store can hold, decided before the claim (docs/architecture.md §4): inputs,
//! identifiers and staged documents that DynamoDB would refuse never leave an effect
//! without its record, on every store; lost answers and refusals never re-run a handler.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actiondo::store::RecordStatus;
use actiondo::store::faulty::Fault;
use actiondo::{
    Action, ActionContext, ActionError, ActionOptions, AuditStatus, EntityKey, ErrorKind, Expect,
    Invocation, Lease, Params, Source,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::harness::{Backend, Behavior, Harness, Probe};

/// An action with an external effect (a counter standing for a webhook) that may stage
/// a put of `doc` under `pk`, and returns `data`.
#[derive(Debug, Default)]
pub(crate) struct Keeper {
    pub(crate) effects: AtomicUsize,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct KeeperInput {
    #[serde(default)]
    data: Value,
    #[serde(default)]
    pk: Option<String>,
    #[serde(default)]
    doc: Option<Value>,
    #[serde(default)]
    sleep_ms: Option<u64>,
}

impl Action for Keeper {
    type Input = KeeperInput;
    type Output = Value;
    const NAME: &'static str = "keeper";
    const DESCRIPTION: &'static str = "Posts a webhook, may stage a document, returns its data.";

    fn options(&self) -> ActionOptions {
        ActionOptions {
            lease: Lease::Fixed(Duration::from_secs(1)),
            ..ActionOptions::default()
        }
    }

    async fn execute(
        &self,
        input: KeeperInput,
        cx: &mut ActionContext,
    ) -> Result<Value, ActionError> {
        self.effects.fetch_add(1, Ordering::SeqCst);
        if let Some(ms) = input.sleep_ms {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if let (Some(pk), Some(doc)) = (input.pk, input.doc) {
            cx.put(EntityKey::new(pk, "doc"), &doc, Expect::Any)?;
        }
        Ok(input.data)
    }
}

fn nested(levels: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..levels {
        v = json!({ "a": v });
    }
    v
}

/// Values DynamoDB refuses as attribute values (a number out of range, deep nesting, an
/// empty map key). As caller data (params, results, audit details) they are stored as
/// text: the execution completes and replays byte-identical, the effect happens once.
pub(crate) async fn unstorable_values_in_caller_data_complete_and_replay(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let keeper = Keeper::default();
    let cases = [
        json!({"n": 1e200}),
        json!({"n": 1e-200}),
        nested(40),
        json!({"": 1, "m": {"": [2]}}),
    ];
    for (i, data) in cases.iter().enumerate() {
        let key = format!("data-{i}");
        let params = json!({ "data": data });
        let first = h
            .executor
            .execute(
                &keeper,
                Invocation::new(params.clone(), Source::Cli).with_key(&key),
            )
            .await;
        let first = first.outcome.expect("completed");
        let again = h
            .executor
            .execute(&keeper, Invocation::new(params, Source::Cli).with_key(&key))
            .await;
        assert!(again.replayed, "case {i}");
        assert_eq!(
            again.outcome.expect("replayed").get(),
            first.get(),
            "case {i}"
        );
        let record = h.record(&format!("keeper#{key}")).await.expect("stored");
        assert_eq!(record.status, RecordStatus::Completed, "case {i}");
        let audit = h.audit(&format!("keeper#{key}")).await;
        assert_eq!(
            h.statuses(&audit),
            [AuditStatus::Replayed, AuditStatus::Completed],
            "case {i}"
        );
        assert_eq!(
            audit[1].details["output"], *data,
            "details read back, case {i}"
        );
    }
    assert_eq!(keeper.effects.load(Ordering::SeqCst), cases.len());
}

/// The same values in a staged document fail at `cx.put`, naming the limit: a terminal
/// `ActionDo.Validation` stored and replayed, nothing written, the effect once.
pub(crate) async fn unstorable_staged_documents_fail_at_put(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let keeper = Keeper::default();
    let cases = [
        (json!({"n": 1e200}), "magnitude"),
        (json!({"n": 1e-200}), "magnitude"),
        (nested(40), "nest"),
        (json!({"m": {"": 1}}), "key"),
    ];
    for (i, (doc, limit)) in cases.iter().enumerate() {
        let key = format!("doc-{i}");
        let pk = format!("thing#{i}");
        let params = json!({ "pk": pk, "doc": doc });
        let first = h
            .executor
            .execute(
                &keeper,
                Invocation::new(params.clone(), Source::Cli).with_key(&key),
            )
            .await;
        let err = first.outcome.expect_err("refused at put");
        assert_eq!(err.kind(), ErrorKind::Validation, "case {i}");
        assert!(
            err.details().expect("details")["limit"]
                .as_str()
                .is_some_and(|l| l.contains(limit)),
            "case {i}: {err:?}"
        );
        let replay = h
            .executor
            .execute(&keeper, Invocation::new(params, Source::Cli).with_key(&key))
            .await;
        assert!(replay.replayed, "case {i}");
        assert_eq!(
            replay.outcome.expect_err("replayed").kind(),
            ErrorKind::Validation
        );
        assert!(h.entity(&pk).await.is_none(), "case {i}");
        assert_eq!(
            h.record(&format!("keeper#{key}"))
                .await
                .expect("kept")
                .status,
            RecordStatus::Failed
        );
    }
    // Key attributes: an empty or over-long partition key.
    for (i, pk) in [String::new(), "p".repeat(2049)].into_iter().enumerate() {
        let key = format!("pk-{i}");
        let ex = h
            .executor
            .execute(
                &keeper,
                Invocation::new(json!({"pk": pk, "doc": {"a": 1}}), Source::Cli).with_key(&key),
            )
            .await;
        assert_eq!(ex.outcome.expect_err("key").kind(), ErrorKind::Validation);
    }
    assert_eq!(keeper.effects.load(Ordering::SeqCst), cases.len() + 2);
}

/// Identifiers the audit stores (`correlationId`, `caller`, `traceId`, the request id)
/// are checked before the claim: `ActionDo.Validation` naming the field, no record, no
/// effect, and the rejection audited without the invalid identifier.
pub(crate) async fn invalid_identifiers_are_refused_before_the_claim(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let keeper = Keeper::default();
    let long = "c".repeat(3000);
    type Setter = Box<dyn Fn(Invocation) -> Invocation>;
    let cases: [(&str, Setter); 5] = [
        (
            "correlationId",
            Box::new(|i: Invocation| i.with_correlation_id("")),
        ),
        (
            "correlationId",
            Box::new(move |i: Invocation| i.with_correlation_id(long.clone())),
        ),
        (
            "caller",
            Box::new(|i: Invocation| Invocation {
                caller: Some("a\u{0}b".into()),
                ..i
            }),
        ),
        (
            "traceId",
            Box::new(|i: Invocation| Invocation {
                trace_id: Some(String::new()),
                ..i
            }),
        ),
        (
            "requestId",
            Box::new(|i: Invocation| i.with_request_id("r\ne")),
        ),
    ];
    for (i, (field, with)) in cases.iter().enumerate() {
        let key = format!("id-{i}");
        let inv = with(Invocation::new(json!({"data": 1}), Source::Cli).with_key(&key));
        let ex = h.executor.execute(&keeper, inv).await;
        let err = ex.outcome.expect_err("refused");
        assert_eq!(err.kind(), ErrorKind::Validation, "case {i}");
        assert_eq!(
            err.details().expect("details")["errors"][0]["path"],
            json!(field),
            "case {i}: {err:?}"
        );
        assert!(
            h.record(&format!("keeper#{key}")).await.is_none(),
            "case {i}"
        );
        let audit = h.audit(&format!("keeper#{key}")).await;
        assert_eq!(h.statuses(&audit), [AuditStatus::Rejected], "case {i}");
    }
    assert_eq!(keeper.effects.load(Ordering::SeqCst), 0);
}

/// A request whose text is not JSON is audited as its length and SHA-256, not verbatim.
pub(crate) async fn unparsable_input_is_audited_as_its_digest(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let keeper = Keeper::default();
    let text = r#"{"card": "4242424242424242""#;
    let inv = Invocation {
        params: Params::Text(text.into()),
        ..Invocation::new(Value::Null, Source::Http).with_key("bad-json")
    };
    let ex = h.executor.execute(&keeper, inv).await;
    assert_eq!(
        ex.outcome.expect_err("bad json").kind(),
        ErrorKind::Validation
    );
    let audit = h.audit("keeper#bad-json").await;
    assert_eq!(h.statuses(&audit), [AuditStatus::Rejected]);
    let input = &audit[0].details["input"];
    assert_eq!(input["bytes"], json!(text.len()));
    assert_eq!(input["sha256"].as_str().map(str::len), Some(64));
    assert!(
        !audit[0].details.to_string().contains("4242"),
        "{}",
        audit[0].details
    );
}

/// The claim applied and its answer was lost; the resent claim finds our own lease and
/// has the claim: the handler runs once, attempt 1.
pub(crate) async fn a_resent_claim_that_finds_its_own_lease_has_it(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let probe = Probe::new(ActionOptions::default());
    h.faulty.arm(Fault::LoseClaimAnswer);
    let ex = h
        .executor
        .execute(
            &probe,
            crate::inv(crate::with_write("x", "thing#own", json!("absent")), "k"),
        )
        .await;
    assert!(ex.outcome.is_ok(), "{:?}", ex.outcome);
    assert_eq!((ex.attempt, probe.calls()), (1, 1));
    assert_eq!(
        h.record("probe#k").await.expect("kept").status,
        RecordStatus::Completed
    );
    assert_eq!(h.entity("thing#own").await.expect("written").version, 1);
}

/// The commit applied and its answer was lost; the resent commit finds the record
/// completed by our own lease: completed once, the handler ran once, one audit record.
pub(crate) async fn a_lost_commit_answer_completes_once(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let probe = Probe::new(ActionOptions::default());
    h.faulty.arm(Fault::LoseCommitAnswer);
    let params = crate::with_write("x", "thing#lost", json!("absent"));
    let ex = h
        .executor
        .execute(&probe, crate::inv(params.clone(), "k"))
        .await;
    assert!(ex.outcome.is_ok(), "{:?}", ex.outcome);
    assert!(!ex.replayed);
    assert_eq!(probe.calls(), 1);
    assert_eq!(h.entity("thing#lost").await.expect("written").version, 1);
    assert_eq!(
        h.statuses(&h.audit("probe#k").await),
        [AuditStatus::Completed]
    );
    let replay = h.executor.execute(&probe, crate::inv(params, "k")).await;
    assert!(replay.replayed);
    assert_eq!(probe.calls(), 1);
}

/// A commit the store refuses (it should not: the limits are checked before) settles the
/// key as FAILED with `ActionDo.Internal`: audited, replayed, never run again.
pub(crate) async fn a_refused_commit_settles_the_key_as_failed(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let probe = Probe::new(ActionOptions::default());
    h.faulty.arm(Fault::RefuseCommit);
    let params = crate::with_write("x", "thing#refused", json!("absent"));
    let ex = h
        .executor
        .execute(&probe, crate::inv(params.clone(), "k"))
        .await;
    let err = ex.outcome.expect_err("settled");
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert_eq!(err.details().expect("details")["reason"], "store_refused");
    assert!(!err.message().contains("injected"), "{}", err.message());
    assert_eq!(
        h.record("probe#k").await.expect("kept").status,
        RecordStatus::Failed
    );
    assert!(h.entity("thing#refused").await.is_none());
    assert_eq!(h.statuses(&h.audit("probe#k").await), [AuditStatus::Failed]);
    let replay = h.executor.execute(&probe, crate::inv(params, "k")).await;
    assert!(replay.replayed);
    assert_eq!(
        replay.outcome.expect_err("replayed").kind(),
        ErrorKind::Internal
    );
    assert_eq!(probe.calls(), 1, "never run again");
}

/// The handler's budget is the lease minus the commit reserve (10 % of a 1 s lease): a
/// handler that would finish inside the lease but not inside the budget ends as an
/// audited `ActionDo.Transient`, and the key is released, not left locked.
pub(crate) async fn a_slow_handler_ends_inside_its_lease(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let keeper = Arc::new(Keeper::default());
    let ex = h
        .executor
        .execute(
            &*keeper,
            Invocation::new(json!({"sleep_ms": 950}), Source::Cli).with_key("slow"),
        )
        .await;
    let err = ex.outcome.expect_err("budget");
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert!(
        err.message().contains("within its lease"),
        "{}",
        err.message()
    );
    let record = h.record("keeper#slow").await.expect("kept");
    assert!(record.is_released(), "{record:?}");
    assert_eq!(
        h.statuses(&h.audit("keeper#slow").await),
        [AuditStatus::Retrying]
    );
}

/// Releases keep the record, so `attempt` grows per key: three retryable failures and a
/// success are attempts 1 to 4.
pub(crate) async fn attempts_grow_across_releases(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let probe = Probe::new(ActionOptions::default());
    probe.plan([
        Behavior::Transient,
        Behavior::Transient,
        Behavior::Transient,
    ]);
    let params = crate::with_write("x", "thing#grow", json!("absent"));
    let mut attempts = Vec::new();
    for _ in 0..4 {
        attempts.push(
            h.executor
                .execute(&probe, crate::inv(params.clone(), "k"))
                .await
                .attempt,
        );
    }
    assert_eq!(attempts, [1, 2, 3, 4]);
    assert_eq!(h.record("probe#k").await.expect("kept").attempt, 4);
    assert_eq!(h.entity("thing#grow").await.expect("written").version, 1);
}

/// The constants of `actiondo::limits` are DynamoDB's own: each edge case is sent to
/// DynamoDB Local as a raw `PutItem` of an entity item, and DynamoDB accepts exactly what
/// `limits::check_staged_write` accepts.
pub(crate) async fn dynamodb_refuses_exactly_what_the_limits_refuse() {
    let Some(h) = Harness::new(Backend::DynamoDbLocal).await else {
        return;
    };
    use actiondo::limits;
    use actiondo::store::StagedWrite;
    use actiondo::store::dynamodb::json_to_attr;
    use aws_sdk_dynamodb::types::AttributeValue;
    let store = h.dynamo.as_ref().expect("a DynamoDB harness");
    let put = |pk: String, sk: String, doc: AttributeValue| {
        let client = store.client().clone();
        let table = store.tables().entities.clone();
        async move {
            client
                .put_item()
                .table_name(table)
                .item("pk", AttributeValue::S(pk))
                .item("sk", AttributeValue::S(sk))
                .item("doc", doc)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| format!("{e:?}"))
        }
    };
    let mut disagreements = Vec::new();
    // Numbers, as text, at the edges of range and precision.
    for text in [
        "1e125",
        "9.9999999999999999999999999999999999999e125",
        "1e126",
        "-1e126",
        "1e-130",
        "-1e-130",
        "1e-131",
        "12345678901234567890123456789012345678",
        "123456789012345678901234567890123456789",
        "0.00000000000000000000000000000000000000000000001",
    ] {
        let ours = limits::check_number(text, "doc.n").is_ok();
        let doc = AttributeValue::M([("n".to_owned(), AttributeValue::N(text.into()))].into());
        let theirs = put("n".into(), text.into(), doc).await;
        if ours != theirs.is_ok() {
            disagreements.push(format!("number {text}: limits {ours}, DynamoDB {theirs:?}"));
        }
    }
    // Documents: nesting and map keys.
    for (name, doc) in [
        ("31 levels", nested(31)),
        ("32 levels", nested(32)),
        ("33 levels", nested(33)),
        ("an empty map key", json!({"": 1})),
        ("a nested empty map key", json!({"a": {"": 1}})),
        ("an empty string", json!({"a": ""})),
    ] {
        let ours = limits::check_document(&doc, "doc").is_ok();
        let theirs = put("doc".into(), name.into(), json_to_attr(&doc)).await;
        if ours != theirs.is_ok() {
            disagreements.push(format!(
                "document with {name}: limits {ours}, DynamoDB {theirs:?}"
            ));
        }
    }
    // Keys, and the size of an item.
    let small = || json_to_attr(&json!({"a": 1}));
    for (pk, sk) in [
        ("p".repeat(2048), "s".to_owned()),
        ("p".repeat(2049), "s".to_owned()),
        ("p".to_owned(), "s".repeat(1024)),
        ("p".to_owned(), "s".repeat(1025)),
        ("p".to_owned(), String::new()),
    ] {
        let write = StagedWrite::Put {
            key: EntityKey::new(pk.clone(), sk.clone()),
            doc: json!({"a": 1}),
            expect: Expect::Any,
        };
        let ours = limits::check_staged_write(&write).is_ok();
        let theirs = put(pk.clone(), sk.clone(), small()).await;
        if ours != theirs.is_ok() {
            disagreements.push(format!(
                "pk of {} bytes, sk of {}: limits {ours}, DynamoDB {theirs:?}",
                pk.len(),
                sk.len()
            ));
        }
    }
    // An item a little under and a little over 400 KB: the limits module counts the
    // item as written (with its version), so it refuses no later than DynamoDB does.
    for (name, padding, ours_expected, theirs_expected) in [
        ("under", limits::MAX_ITEM_BYTES - 200, true, true),
        ("over", limits::MAX_ITEM_BYTES + 10, false, false),
    ] {
        let doc = json!({"s": "x".repeat(padding)});
        let write = StagedWrite::Put {
            key: EntityKey::new("big", name),
            doc: doc.clone(),
            expect: Expect::Any,
        };
        assert_eq!(
            limits::check_staged_write(&write).is_ok(),
            ours_expected,
            "{name}"
        );
        let theirs = put("big".into(), name.into(), json_to_attr(&doc)).await;
        assert_eq!(theirs.is_ok(), theirs_expected, "{name}: {theirs:?}");
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");
}

/// Schema messages quote the values they refuse: never those of redacted fields, in the
/// answer or in the rejection's audit record.
pub(crate) async fn redacted_values_never_reach_errors_or_the_audit(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let probe = Probe::new(ActionOptions {
        redact: vec!["secret".into()],
        ..ActionOptions::default()
    });
    let params = json!({"value": "x", "secret": 987_654_321});
    let ex = h.executor.execute(&probe, crate::inv(params, "k")).await;
    let err = ex.outcome.expect_err("schema");
    assert_eq!(err.kind(), ErrorKind::Validation);
    let answer = serde_json::to_string(&err.to_body()).expect("serializes");
    assert!(!answer.contains("987654321"), "{answer}");
    let audit = h.audit("probe#k").await;
    assert_eq!(h.statuses(&audit), [AuditStatus::Rejected]);
    let details = audit[0].details.to_string();
    assert!(!details.contains("987654321"), "{details}");
    assert!(details.contains("[REDACTED]"), "{details}");
}

/// A JSON value of any shape DynamoDB may refuse as an attribute: numbers of any
/// magnitude, deep nesting, empty strings and empty map keys.
fn arbitrary_json() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let number = prop_oneof![
        any::<i64>().prop_map(Value::from),
        (prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO)
            .prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
                .map(Value::Number)),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number,
        "[a-z]{0,3}".prop_map(Value::String),
    ];
    leaf.prop_recursive(40, 120, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{0,2}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// What a case ended as: the class of the first outcome and of its replay.
fn outcome_class(ex: &actiondo::Execution) -> String {
    match &ex.outcome {
        Ok(_) => format!("ok(replayed={})", ex.replayed),
        Err(e) => format!("{}(replayed={})", e.kind().wire_name(), ex.replayed),
    }
}

/// Over arbitrary params, correlation ids and staged documents, the embedded store and
/// DynamoDB Local give the same outcome class to every case, first run and replay — the
/// embedded store refuses exactly what DynamoDB refuses.
pub(crate) async fn both_stores_agree_on_arbitrary_inputs() {
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let Some(dynamo) = Harness::new(Backend::DynamoDbLocal).await else {
        return;
    };
    let sqlite = Harness::new(Backend::Sqlite).await.expect("embedded store");
    let correlation = prop_oneof![
        Just(None),
        Just(Some(String::new())),
        "[ -~]{1,20}".prop_map(Some),
        (1000usize..1100).prop_map(|n| Some("c".repeat(n))),
        Just(Some("a\u{7}b".to_owned())),
    ];
    let staged = prop_oneof![Just(None), arbitrary_json().prop_map(Some)];
    let strategy = (arbitrary_json(), correlation, staged);
    let mut runner = TestRunner::deterministic();
    let keeper = Keeper::default();
    let mut disagreements = Vec::new();
    let cases = 64;
    for case in 0..cases {
        let (data, correlation, doc) = strategy.new_tree(&mut runner).expect("a case").current();
        let mut params = json!({ "data": data });
        if let Some(doc) = &doc {
            params["pk"] = json!(format!("thing#{case}"));
            params["doc"] = doc.clone();
        }
        let mut classes = Vec::new();
        for h in [&sqlite, &dynamo] {
            let mut class = Vec::new();
            for _ in 0..2 {
                let mut inv =
                    Invocation::new(params.clone(), Source::Cli).with_key(format!("prop-{case}"));
                inv.correlation_id = correlation.clone();
                class.push(outcome_class(&h.executor.execute(&keeper, inv).await));
            }
            let record = h.record(&format!("keeper#prop-{case}")).await;
            assert!(
                record.as_ref().is_none_or(|r| !r.is_abandoned()),
                "case {case} left its key locked: {record:?}"
            );
            classes.push(class);
        }
        if classes[0] != classes[1] {
            disagreements.push(format!(
                "case {case}: SQLite {:?}, DynamoDB {:?} for params {params}, correlation {correlation:?}",
                classes[0], classes[1]
            ));
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");
}
