//! Every trigger of docs/architecture.md §7, fed real sample events (see `fixtures/README.md`) through
//! `Handler::handle`, on the embedded store.
#![cfg(feature = "lambda")]

#[allow(dead_code)]
#[path = "conformance/harness.rs"]
mod harness;

use std::sync::{Arc, Mutex};

use actiondo::store::sqlite::SqliteStore;
use actiondo::store::{Claim, ClaimOutcome, Commit, CommitOutcome, IdempotencyRecord};
use actiondo::trigger::RawEvent;
use actiondo::{
    Action, ActionContext, ActionError, ActionOptions, AuditPage, AuditQuery, AuditRecord,
    AuditStatus, Entity, EntityKey, ErrorKind, Executor, Expect, Handler, Source, Store,
    StoreError,
};
use base64::Engine as _;
use harness::{Backend, Harness, Probe};
use lambda_runtime::{Context, Diagnostic};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};

const SQS: &str = include_str!("fixtures/sqs-receive-message.json");
const APIGW_V1: &str = include_str!("fixtures/apigateway-aws-proxy.json");
const APIGW_V2: &str = include_str!("fixtures/apigateway-http-api-proxy.json");
const ALB: &str = include_str!("fixtures/alb-request.json");
const EVENTBRIDGE: &str = include_str!("fixtures/eventbridge-scheduled-event.json");
const S3: &str = include_str!("fixtures/s3-put.json");

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is JSON")
}

fn context(request_id: &str) -> Context {
    let mut cx = Context::default();
    cx.request_id = request_id.into();
    cx
}

async fn setup() -> (Harness, Arc<Probe>, Handler) {
    let h = Harness::new(Backend::Sqlite)
        .await
        .expect("SQLite is always there");
    let probe = Arc::new(Probe::new(ActionOptions::default()));
    let handler = Handler::new(h.executor.clone(), probe.clone());
    (h, probe, handler)
}

/// An SQS event of `messages` (id, body, optional FIFO group and deduplication id), built
/// from the SAM sample record.
fn sqs_event(messages: &[(&str, Value, Option<&str>, Option<&str>)]) -> Value {
    let sample = fixture(SQS)["Records"][0].clone();
    let records: Vec<Value> = messages
        .iter()
        .map(|(id, body, group, dedup)| {
            let mut record = sample.clone();
            record["messageId"] = json!(id);
            record["body"] = json!(body.to_string());
            if let Some(group) = group {
                record["attributes"]["MessageGroupId"] = json!(group);
                record["eventSourceARN"] = json!("arn:aws:sqs:us-east-1:123456789012:MyQueue.fifo");
            }
            if let Some(dedup) = dedup {
                record["attributes"]["MessageDeduplicationId"] = json!(dedup);
            }
            record
        })
        .collect();
    json!({ "Records": records })
}

fn failures(reply: &Value) -> Vec<String> {
    reply["batchItemFailures"]
        .as_array()
        .expect("batch response")
        .iter()
        .map(|f| f["itemIdentifier"].as_str().expect("id").to_owned())
        .collect()
}

async fn handle(handler: &Handler, event: Value) -> Result<Value, actiondo::ActionError> {
    let reply = handler.handle(event, &context("req-1")).await?;
    Ok(serde_json::to_value(reply).expect("serializes"))
}

#[tokio::test]
async fn sqs_message_delivered_twice_runs_once() {
    let (h, probe, handler) = setup().await;
    let event = sqs_event(&[("m-1", json!({"value": "x"}), None, None)]);
    for _ in 0..2 {
        let reply = handle(&handler, event.clone()).await.expect("batch");
        assert!(failures(&reply).is_empty());
    }
    assert_eq!(probe.calls(), 1, "the redelivery replayed");
    // The message id is the key; the audit says it came from SQS.
    let audit = h.audit("probe#m-1").await;
    assert_eq!(
        h.statuses(&audit),
        [AuditStatus::Replayed, AuditStatus::Completed]
    );
    assert!(audit.iter().all(|a| a.source == Source::Sqs));
}

/// A batch's audit records put on their own are written together: on DynamoDB, 10
/// replays cost 10 claims and one `BatchWriteItem` (11 round trips, not 20); every
/// replay is audited, on every store.
async fn a_batch_of_replays_writes_its_audit_records_together(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let probe = Arc::new(Probe::new(ActionOptions::default()));
    let handler = Handler::new(h.executor.clone(), probe.clone());
    let ids: Vec<String> = (0..10).map(|i| format!("r-{i}")).collect();
    let messages: Vec<(&str, Value, Option<&str>, Option<&str>)> = ids
        .iter()
        .map(|id| (id.as_str(), json!({"value": id}), None, None))
        .collect();
    let event = sqs_event(&messages);
    let first = handle(&handler, event.clone()).await.expect("batch");
    assert!(failures(&first).is_empty());
    h.reset_calls();
    let again = handle(&handler, event).await.expect("batch");
    assert!(failures(&again).is_empty());
    let mut expected = vec!["UpdateItem"; 10];
    expected.push("BatchWriteItem");
    h.assert_round_trips(&expected);
    assert_eq!(probe.calls(), 10, "every redelivery replayed");
    for id in &ids {
        let audit = h.audit(&format!("probe#{id}")).await;
        assert_eq!(
            h.statuses(&audit),
            [AuditStatus::Replayed, AuditStatus::Completed],
            "{id}"
        );
    }
}

#[tokio::test]
async fn a_batch_of_replays_writes_its_audit_records_together_on_sqlite() {
    a_batch_of_replays_writes_its_audit_records_together(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_batch_of_replays_writes_its_audit_records_together_on_dynamodb_local() {
    a_batch_of_replays_writes_its_audit_records_together(Backend::DynamoDbLocal).await;
}

#[tokio::test]
async fn a_batch_of_replays_writes_its_audit_records_together_on_moto() {
    a_batch_of_replays_writes_its_audit_records_together(Backend::Moto).await;
}

#[tokio::test]
async fn sqs_mixed_batch_reports_exactly_the_retryable_failures() {
    let (h, _probe, handler) = setup().await;
    let event = sqs_event(&[
        ("ok", json!({"value": "a"}), None, None),
        (
            "busy",
            json!({"value": "b", "fail": "transient"}),
            None,
            None,
        ),
        ("no", json!({"value": "c", "fail": "reject"}), None, None),
        ("garbage", json!("not an object"), None, None),
        (
            "env",
            json!({"params": {"value": "d"}, "idempotencyKey": "explicit", "correlationId": "run-9"}),
            None,
            None,
        ),
    ]);
    let reply = handle(&handler, event).await.expect("batch");
    assert_eq!(
        failures(&reply),
        ["busy"],
        "terminal failures are not redelivered"
    );
    assert_eq!(
        h.statuses(&h.audit("probe#no").await),
        [AuditStatus::Failed]
    );
    assert_eq!(
        h.statuses(&h.audit("probe#garbage").await),
        [AuditStatus::Rejected]
    );
    let explicit = h.audit("probe#explicit").await;
    assert_eq!(explicit[0].correlation_id.as_deref(), Some("run-9"));
}

#[tokio::test]
async fn sqs_fifo_group_stops_after_its_first_failure() {
    let (_h, probe, handler) = setup().await;
    let event = sqs_event(&[
        ("a1", json!({"value": "a1"}), Some("A"), Some("d-a1")),
        ("b1", json!({"value": "b1"}), Some("B"), Some("d-b1")),
        (
            "a2",
            json!({"value": "a2", "fail": "transient"}),
            Some("A"),
            Some("d-a2"),
        ),
        ("a3", json!({"value": "a3"}), Some("A"), Some("d-a3")),
        ("b2", json!({"value": "b2"}), Some("B"), Some("d-b2")),
    ]);
    let reply = handle(&handler, event).await.expect("batch");
    let mut failed = failures(&reply);
    failed.sort();
    assert_eq!(
        failed,
        ["a2", "a3"],
        "the rest of group A waits; group B goes on"
    );
    assert_eq!(probe.calls(), 4, "a3 never ran");
}

/// docs/architecture.md §7: the FIFO deduplication id is a 5-minute window in SQS and must not become a
/// 24-hour key. Two messages that share one (a sender reusing it after the window) are two
/// executions, each under its message id; an explicit key still wins.
#[tokio::test]
async fn sqs_fifo_deduplication_id_is_never_the_key() {
    let (h, probe, handler) = setup().await;
    for id in ["m-1", "m-2"] {
        let event = sqs_event(&[(id, json!({"value": "x"}), Some("G"), Some("order-7"))]);
        assert!(failures(&handle(&handler, event).await.expect("batch")).is_empty());
    }
    assert_eq!(probe.calls(), 2, "two messages, two executions");
    assert!(h.audit("probe#order-7").await.is_empty());
    assert_eq!(
        h.statuses(&h.audit("probe#m-1").await),
        [AuditStatus::Completed]
    );
    assert_eq!(
        h.statuses(&h.audit("probe#m-2").await),
        [AuditStatus::Completed]
    );

    let explicit = sqs_event(&[(
        "m-3",
        json!({"params": {"value": "y"}, "idempotencyKey": "order-8"}),
        Some("G"),
        Some("order-7"),
    )]);
    assert!(failures(&handle(&handler, explicit).await.expect("batch")).is_empty());
    assert_eq!(h.audit("probe#order-8").await.len(), 1);
    assert!(h.audit("probe#m-3").await.is_empty());
}

fn http_event(template: &str, body: &str, headers: &[(&str, &str)]) -> Value {
    let mut event = fixture(template);
    event["body"] = json!(body);
    event["isBase64Encoded"] = json!(false);
    let mut map = serde_json::Map::new();
    map.insert("content-type".into(), json!("application/json"));
    for (k, v) in headers {
        map.insert((*k).into(), json!(v));
    }
    event["headers"] = Value::Object(map);
    if event.get("multiValueHeaders").is_some() {
        event["multiValueHeaders"] = json!({});
    }
    match event.get("requestContext").and_then(|rc| rc.get("http")) {
        Some(_) => event["requestContext"]["http"]["method"] = json!("POST"),
        None => event["httpMethod"] = json!("POST"),
    }
    event
}

/// A response header, from `headers` or (REST API, ALB) `multiValueHeaders`.
fn header<'a>(reply: &'a Value, name: &str) -> Option<&'a str> {
    ["headers", "multiValueHeaders"].iter().find_map(|field| {
        let (_, value) = reply[*field]
            .as_object()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))?;
        value.as_str().or_else(|| value.get(0)?.as_str())
    })
}

#[tokio::test]
async fn api_gateway_replay_carries_the_replay_header() {
    for template in [APIGW_V1, APIGW_V2, ALB] {
        let (_h, probe, handler) = setup().await;
        let event = http_event(
            template,
            r#"{"value": "hi"}"#,
            &[("Idempotency-Key", "order-1")],
        );
        let first = handle(&handler, event.clone()).await.expect("http");
        assert_eq!(first["statusCode"], 200, "{first}");
        assert_eq!(header(&first, "idempotent-replayed"), None);
        assert_eq!(
            header(&first, "idempotency-key"),
            Some("order-1"),
            "{first}"
        );
        let body: Value =
            serde_json::from_str(first["body"].as_str().expect("body")).expect("json");
        assert_eq!(body["value"], "hi");

        let again = handle(&handler, event).await.expect("http");
        assert_eq!(again["statusCode"], 200);
        assert_eq!(header(&again, "idempotent-replayed"), Some("true"));
        assert_eq!(again["body"], first["body"], "byte-identical");
        assert_eq!(probe.calls(), 1);
    }
}

#[tokio::test]
async fn api_gateway_errors_follow_the_design_table() {
    let (h, probe, handler) = setup().await;
    let malformed = handle(
        &handler,
        http_event(APIGW_V2, r#"{"value": "#, &[("Idempotency-Key", "bad")]),
    )
    .await
    .expect("http");
    assert_eq!(malformed["statusCode"], 400);
    let body: Value =
        serde_json::from_str(malformed["body"].as_str().expect("body")).expect("json");
    assert_eq!(body["error"]["type"], "ActionDo.Validation");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("msg")
            .contains("column"),
        "{body}"
    );
    assert_eq!(
        h.statuses(&h.audit("probe#bad").await),
        [AuditStatus::Rejected]
    );

    let huge = format!(
        r#"{{"value": "{}"}}"#,
        "x".repeat(actiondo::trigger::http::MAX_BODY_BYTES)
    );
    let too_large = handle(&handler, http_event(APIGW_V1, &huge, &[]))
        .await
        .expect("http");
    assert_eq!(too_large["statusCode"], 413);

    // A business rejection is stored: the same request again replays it, with the header.
    let declined = http_event(
        APIGW_V2,
        r#"{"value": "x", "fail": "reject"}"#,
        &[("Idempotency-Key", "r")],
    );
    let rejected = handle(&handler, declined.clone()).await.expect("http");
    assert_eq!(rejected["statusCode"], 422);
    assert_eq!(header(&rejected, "idempotent-replayed"), None);
    let replayed = handle(&handler, declined).await.expect("http");
    assert_eq!(replayed["statusCode"], 422);
    assert_eq!(header(&replayed, "idempotent-replayed"), Some("true"));
    assert_eq!(probe.calls(), 1);
}

#[tokio::test]
async fn step_functions_envelope_with_a_terminal_error_raises_its_wire_name() {
    let (_h, _probe, handler) = setup().await;
    let task = json!({
        "params": {"value": "x", "fail": "reject"},
        "idempotencyKey": "arn:aws:states:us-east-1:123456789012:execution:onboarding:run-1#Charge",
        "correlationId": "arn:aws:states:us-east-1:123456789012:execution:onboarding:run-1",
    });
    let err = handler
        .handle(task, &context("req-9"))
        .await
        .expect_err("function error");
    let diagnostic = Diagnostic::from(err);
    assert_eq!(diagnostic.error_type, "ActionDo.Rejected");
    let cause: Value = serde_json::from_str(&diagnostic.error_message).expect("JSON cause");
    assert_eq!(cause["error"]["retryable"], false);

    let invalid = handler
        .handle(
            json!({"params": {"value": 1}, "idempotencyKey": "k"}),
            &context("req-10"),
        )
        .await
        .expect_err("invalid");
    assert_eq!(Diagnostic::from(invalid).error_type, "ActionDo.Validation");
}

#[tokio::test]
async fn direct_invoke_returns_the_output_or_the_envelope() {
    let (h, _probe, handler) = setup().await;
    let bare = handle(&handler, json!({"value": "bare"}))
        .await
        .expect("output");
    assert_eq!(bare["value"], "bare");

    let task = json!({
        "params": {"value": "env"},
        "idempotencyKey": "k1",
        "correlationId": "arn:aws:states:us-east-1:1:execution:sm:run-2",
        "respond": "envelope",
    });
    let first = handle(&handler, task.clone()).await.expect("envelope");
    assert_eq!(first["result"]["value"], "env");
    assert_eq!(
        first["execution"],
        json!({"key": "k1", "attempt": 1, "replayed": false})
    );
    let again = handle(&handler, task).await.expect("envelope");
    assert_eq!(again["execution"]["replayed"], true);
    assert_eq!(again["error"], Value::Null);
    let audit = h.audit("probe#k1").await;
    assert!(audit.iter().all(|a| a.source == Source::StepFunctions));
    assert!(audit.iter().all(|a| a.request_id == "req-1"));
}

/// The router's `caller` in a direct invocation reaches the audit record (issue 11); a
/// caller in an SQS message or an EventBridge detail is dropped (anyone who may send there
/// could name any caller).
#[tokio::test]
async fn the_caller_of_a_direct_invocation_reaches_the_audit() {
    let (h, _probe, handler) = setup().await;
    let routed = json!({
        "params": {"value": "routed"},
        "idempotencyKey": "k-caller",
        "caller": "apikey:0123456789abcdef",
        "respond": "envelope",
    });
    let answer = handle(&handler, routed).await.expect("an answer");
    assert_eq!(answer["result"]["value"], "routed");
    let audit = h.audit("probe#k-caller").await;
    assert!(!audit.is_empty());
    assert!(
        audit
            .iter()
            .all(|a| a.caller.as_deref() == Some("apikey:0123456789abcdef")),
        "{audit:?}"
    );

    let mut event = fixture(EVENTBRIDGE);
    event["detail"] =
        json!({"params": {"value": "bus"}, "idempotencyKey": "k-bus", "caller": "apikey:forged"});
    handle(&handler, event).await.expect("output");
    let audit = h.audit("probe#k-bus").await;
    assert!(
        !audit.is_empty() && audit.iter().all(|a| a.caller.is_none()),
        "{audit:?}"
    );

    let queued = json!({"params": {"value": "queued"}, "idempotencyKey": "k-queue", "caller": "apikey:forged"});
    let reply = handle(&handler, sqs_event(&[("m-caller", queued, None, None)]))
        .await
        .expect("a batch answer");
    assert!(failures(&reply).is_empty(), "{reply}");
    let audit = h.audit("probe#k-queue").await;
    assert!(
        !audit.is_empty() && audit.iter().all(|a| a.caller.is_none()),
        "{audit:?}"
    );
}

/// With `respond: "envelope"`, a terminal failure is an answer, not a function error, so
/// that its replay says it is one; a retryable failure stays a function error.
#[tokio::test]
async fn the_envelope_carries_terminal_failures_and_their_replays() {
    let (_h, probe, handler) = setup().await;
    let task = json!({
        "params": {"value": "x", "fail": "reject"},
        "idempotencyKey": "k-rejected",
        "respond": "envelope",
    });
    let first = handle(&handler, task.clone()).await.expect("an answer");
    assert_eq!(first["result"], Value::Null);
    assert_eq!(first["error"]["type"], "ActionDo.Rejected");
    assert_eq!(first["error"]["retryable"], false);
    assert_eq!(
        first["execution"],
        json!({"key": "k-rejected", "attempt": 1, "replayed": false})
    );
    let again = handle(&handler, task).await.expect("an answer");
    assert_eq!(again["error"], first["error"]);
    assert_eq!(again["execution"]["replayed"], true);
    assert_eq!(probe.calls(), 1, "the stored failure is replayed");

    let transient = handler
        .handle(
            json!({
                "params": {"value": "y", "fail": "transient"},
                "idempotencyKey": "k-transient",
                "respond": "envelope",
            }),
            &context("req-11"),
        )
        .await
        .expect_err("a function error");
    assert_eq!(Diagnostic::from(transient).error_type, "ActionDo.Transient");
}

#[tokio::test]
async fn eventbridge_event_id_is_the_key() {
    let (h, probe, handler) = setup().await;
    let mut event = fixture(EVENTBRIDGE);
    event["detail"] = json!({"value": "from-a-rule"});
    for _ in 0..2 {
        let out = handle(&handler, event.clone()).await.expect("output");
        assert_eq!(out["value"], "from-a-rule");
    }
    assert_eq!(probe.calls(), 1, "a redelivered event replays");
    let audit = h.audit("probe#cdc73f9d-aea9-11e3-9d5a-835b769c0d9c").await;
    assert_eq!(audit.len(), 2);
    assert!(audit.iter().all(|a| a.source == Source::EventBridge));
    assert_eq!(
        audit[0].correlation_id.as_deref(),
        Some("cdc73f9d-aea9-11e3-9d5a-835b769c0d9c")
    );

    event["detail"] = json!({"value": "x", "fail": "reject"});
    event["id"] = json!("another-event");
    let err = handle(&handler, event).await.expect_err("function error");
    assert_eq!(err.kind(), ErrorKind::Rejected);
}

#[tokio::test]
async fn unrecognised_events_name_the_shapes_accepted() {
    let (h, probe, handler) = setup().await;
    let err = handle(&handler, fixture(S3)).await.expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::Validation);
    assert!(err.message().contains("aws:s3"), "{}", err.message());
    assert!(err.message().contains("SQS event") && err.message().contains("API Gateway"));
    assert_eq!(probe.calls(), 0);
    assert!(h.audit_by_type("probe").await.is_empty());
}

fn base64_event(template: &str, body: &str) -> Value {
    let mut event = http_event(template, body, &[]);
    event["isBase64Encoded"] = json!(true);
    event
}

fn error_body(reply: &Value) -> Value {
    serde_json::from_str(reply["body"].as_str().expect("a body")).expect("a JSON body")
}

/// A body marked `isBase64Encoded` that is not base64 made lambda_http panic (Lambda saw
/// errorType `&alloc::boxed::Box<dyn core::any::Any + core::marker::Send>`); it is a 400
/// with `ActionDo.Validation` in the shape of each front end, and nothing runs.
#[tokio::test]
async fn a_body_that_is_not_base64_is_a_400_on_every_http_shape() {
    for template in [APIGW_V1, APIGW_V2, ALB] {
        let (h, probe, handler) = setup().await;
        let reply = handle(&handler, base64_event(template, "not base64!"))
            .await
            .expect("an HTTP answer, not a function error");
        assert_eq!(reply["statusCode"], 400, "{reply}");
        let body = error_body(&reply);
        assert_eq!(body["error"]["type"], "ActionDo.Validation");
        assert_eq!(body["error"]["retryable"], false);
        let message = body["error"]["message"].as_str().expect("message");
        assert!(
            message.contains("isBase64Encoded") && message.contains("base64"),
            "{message}"
        );
        assert_eq!(header(&reply, "content-type"), Some("application/json"));
        assert_eq!(probe.calls(), 0);
        assert!(h.audit_by_type("probe").await.is_empty());

        // A body that is base64 is decoded.
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(r#"{"value": "from base64"}"#);
        let reply = handle(&handler, base64_event(template, &encoded))
            .await
            .expect("http");
        assert_eq!(reply["statusCode"], 200, "{reply}");
        assert_eq!(error_body(&reply)["value"], "from base64");
    }
}

/// The other inputs lambda_http panicked on: a `Host` that is not a host is a 400; a path
/// or raw query string with characters a URI cannot hold is encoded and served.
#[tokio::test]
async fn hosts_paths_and_queries_lambda_http_panicked_on_are_answered() {
    let (_h, probe, handler) = setup().await;
    let mut event = http_event(APIGW_V1, r#"{"value": "x"}"#, &[("host", "a b")]);
    event["multiValueHeaders"] = json!({});
    let reply = handle(&handler, event).await.expect("http");
    assert_eq!(reply["statusCode"], 400, "{reply}");
    let body = error_body(&reply);
    assert_eq!(body["error"]["type"], "ActionDo.Validation");
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("host"),
        "{body}"
    );
    assert_eq!(probe.calls(), 0);

    let mut event = http_event(APIGW_V2, r#"{"value": "y"}"#, &[]);
    event["rawPath"] = json!("/a b/ü");
    event["rawQueryString"] = json!("q=a b");
    let reply = handle(&handler, event).await.expect("http");
    assert_eq!(reply["statusCode"], 200, "{reply}");

    let mut event = http_event(ALB, r#"{"value": "z"}"#, &[]);
    event["multiValueQueryStringParameters"] = json!({"a": []});
    let reply = handle(&handler, event).await.expect("http");
    assert_eq!(reply["statusCode"], 200, "{reply}");
    assert_eq!(reply["statusDescription"], "200 OK");
    assert_eq!(probe.calls(), 2);
}

/// Whatever panics in the dispatch of an event (here the store), Lambda sees
/// `ActionDo.Internal` naming the panic, never a Rust type name; SQS redelivers the
/// record; HTTP answers 500 in its own shape.
#[tokio::test]
async fn a_panic_in_dispatch_is_actiondo_internal() {
    let handler = Handler::new(
        Executor::new(PanickingStore(Arc::new(
            SqliteStore::in_memory().expect("SQLite"),
        ))),
        Arc::new(Probe::new(ActionOptions::default())),
    );
    let err = handler
        .handle(
            json!({"params": {"value": "x"}, "idempotencyKey": "boom"}),
            &context("req-p"),
        )
        .await
        .expect_err("a function error");
    let diagnostic = Diagnostic::from(err);
    assert_eq!(diagnostic.error_type, "ActionDo.Internal");
    let cause: Value = serde_json::from_str(&diagnostic.error_message).expect("JSON");
    let message = cause["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("panic") && message.contains("the store blew up"),
        "{message}"
    );
    assert_eq!(cause["error"]["retryable"], true);

    // FIFO: the record that panicked and the rest of its group go back; other groups
    // and other keys go on.
    let event = sqs_event(&[
        ("ok", json!({"value": "a"}), Some("A"), None),
        (
            "p",
            json!({"params": {"value": "b"}, "idempotencyKey": "boom"}),
            Some("B"),
            None,
        ),
        ("after", json!({"value": "c"}), Some("B"), None),
    ]);
    let reply = handle(&handler, event).await.expect("a batch answer");
    let mut failed = failures(&reply);
    failed.sort();
    assert_eq!(failed, ["after", "p"]);

    let reply = handle(
        &handler,
        http_event(
            APIGW_V2,
            r#"{"value": "x"}"#,
            &[("Idempotency-Key", "boom")],
        ),
    )
    .await
    .expect("an HTTP answer");
    assert_eq!(reply["statusCode"], 500, "{reply}");
    assert_eq!(error_body(&reply)["error"]["type"], "ActionDo.Internal");
}

/// A payload that is not JSON `serde_json` reads (the runtime's own error would have
/// reached Lambda as `lambda_runtime::deserializer::DeserializeError`) is
/// `ActionDo.Validation`.
#[tokio::test]
async fn an_event_that_is_not_json_is_a_validation_error() {
    let (_h, probe, handler) = setup().await;
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    for bytes in [&b"not json"[..], b"", b"{\"a\":", deep.as_bytes()] {
        let event = RawEvent::from_slice(bytes);
        assert!(matches!(event, RawEvent::Unreadable(_)), "{event:?}");
        let err = handler
            .handle_raw(event, &context("req-raw"))
            .await
            .expect_err("refused");
        assert_eq!(Diagnostic::from(err).error_type, "ActionDo.Validation");
    }
    let reply = handler
        .handle_raw(
            RawEvent::from_slice(br#"{"value": "raw"}"#),
            &context("req-raw"),
        )
        .await
        .expect("output");
    assert_eq!(serde_json::to_value(reply).expect("json")["value"], "raw");
    assert_eq!(probe.calls(), 1);
}

/// A store that panics when a claim's key is `boom` (a bug below the executor, outside
/// the handler's own panic capture).
#[derive(Debug)]
struct PanickingStore(Arc<dyn Store>);

#[async_trait::async_trait]
impl Store for PanickingStore {
    async fn claim(&self, claim: &Claim) -> Result<ClaimOutcome, StoreError> {
        assert!(!claim.id.ends_with("#boom"), "the store blew up");
        self.0.claim(claim).await
    }

    async fn commit(&self, commit: &Commit) -> Result<CommitOutcome, StoreError> {
        self.0.commit(commit).await
    }

    async fn put_audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        self.0.put_audit(record).await
    }

    async fn get_record(&self, id: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        self.0.get_record(id).await
    }

    async fn get_entity(&self, key: &EntityKey) -> Result<Option<Entity>, StoreError> {
        self.0.get_entity(key).await
    }

    async fn query_audit(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        self.0.query_audit(query).await
    }
    async fn put_entity(
        &self,
        key: &EntityKey,
        doc: &serde_json::Value,
        expect: Expect,
    ) -> Result<bool, StoreError> {
        self.0.put_entity(key, doc, expect).await
    }
}

/// An SQS-triggered handler has until the Lambda deadline, like every other trigger
/// (docs/architecture.md §4): each record's invocation carries it, standard and FIFO alike.
#[tokio::test]
async fn every_sqs_record_carries_the_invocation_deadline() {
    let seen = Arc::new(Seen::default());
    let handler = Handler::new(
        Executor::new(SqliteStore::in_memory().expect("SQLite")),
        seen.clone(),
    );
    let deadline_ms = chrono::Utc::now().timestamp_millis() + 60_000;
    let mut cx = context("req-sqs");
    cx.deadline = u64::try_from(deadline_ms).expect("positive");
    let event = sqs_event(&[
        ("s-1", json!({}), None, None),
        (
            "s-2",
            json!({"params": {}, "idempotencyKey": "k-2"}),
            None,
            None,
        ),
        ("f-1", json!({}), Some("G"), Some("d-1")),
    ]);
    let reply = handler.handle(event, &cx).await.expect("batch");
    assert!(failures(&serde_json::to_value(reply).expect("json")).is_empty());
    let mut deadlines = seen.deadlines();
    deadlines.sort();
    assert_eq!(
        deadlines,
        [
            ("f-1".to_owned(), Some(deadline_ms)),
            ("k-2".to_owned(), Some(deadline_ms)),
            ("s-1".to_owned(), Some(deadline_ms)),
        ]
    );
}

/// Records the key and deadline each execution saw.
#[derive(Debug, Default)]
struct Seen {
    deadlines: Mutex<Vec<(String, Option<i64>)>>,
}

impl Seen {
    fn deadlines(&self) -> Vec<(String, Option<i64>)> {
        self.deadlines.lock().expect("lock").clone()
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
struct Empty {}

impl Action for Seen {
    type Input = Empty;
    type Output = bool;
    const NAME: &'static str = "seen";
    const DESCRIPTION: &'static str = "Records the deadline of each execution.";

    async fn execute(&self, _: Empty, cx: &mut ActionContext) -> Result<bool, ActionError> {
        self.deadlines
            .lock()
            .expect("lock")
            .push((cx.idempotency_key().to_owned(), cx.deadline_ms()));
        Ok(true)
    }
}

/// docs/architecture.md §4: a replay is byte-identical. The envelope form embeds the stored output as
/// it is: no key reordering, no `1.0` → `1`, no `1e2` → `100`.
#[tokio::test]
async fn the_envelope_embeds_the_stored_result_byte_for_byte() {
    let handler = Handler::new(
        Executor::new(SqliteStore::in_memory().expect("SQLite")),
        Arc::new(Verbatim),
    );
    let output = r#"{"b":1,"a":1.0,"n":1e2}"#;
    let task = json!({
        "params": {"json": output},
        "idempotencyKey": "k-verbatim",
        "respond": "envelope",
    });
    let mut answers = Vec::new();
    for _ in 0..2 {
        let reply = handler
            .handle(task.clone(), &context("req-v"))
            .await
            .expect("an answer");
        answers.push(serde_json::to_string(&reply).expect("serializes"));
    }
    assert_eq!(
        answers[0],
        format!(
            r#"{{"result":{output},"error":null,"execution":{{"key":"k-verbatim","attempt":1,"replayed":false}}}}"#
        )
    );
    assert_eq!(
        answers[1],
        answers[0].replace(r#""replayed":false"#, r#""replayed":true"#)
    );

    // The bare output, first and replayed, is the same text.
    let bare = json!({"params": {"json": output}, "idempotencyKey": "k-bare"});
    for _ in 0..2 {
        let reply = handler
            .handle(bare.clone(), &context("req-b"))
            .await
            .expect("output");
        assert_eq!(serde_json::to_string(&reply).expect("serializes"), output);
    }
}

/// Returns the JSON text it is given, byte for byte.
#[derive(Debug)]
struct Verbatim;

#[derive(Debug, Deserialize, JsonSchema)]
struct VerbatimInput {
    json: String,
}

/// JSON text that serializes as it is.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
struct RawJson(#[schemars(with = "Value")] Box<RawValue>);

impl Action for Verbatim {
    type Input = VerbatimInput;
    type Output = RawJson;
    const NAME: &'static str = "verbatim";
    const DESCRIPTION: &'static str = "Returns its JSON text as it is.";

    async fn execute(
        &self,
        input: VerbatimInput,
        _: &mut ActionContext,
    ) -> Result<RawJson, ActionError> {
        RawValue::from_string(input.json)
            .map(RawJson)
            .map_err(|e| ActionError::validation(e.to_string()))
    }
}
