//! The router in AWS form (issue 5): the `router` binary and two action binaries under
//! `cargo lambda watch`, DynamoDB Local behind them, the router invoking the actions through
//! the Lambda Invoke API (`AWS_ENDPOINT_URL_LAMBDA` = the harness's translating proxy, so
//! that function errors arrive as from Lambda: 200 + `X-Amz-Function-Error`).
//!
//! Requests reach the router as API Gateway HTTP API (v2) events and SQS intake batches,
//! through the Invoke API too.

use std::sync::Arc;

use actiondo::AuditFilter;
use actiondo_e2e::Stack;
use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use serde_json::{Value, json};

const HTTP_EVENT: &str =
    include_str!("../../../shared/tests/fixtures/apigateway-http-api-proxy.json");
const SQS_EVENT: &str = include_str!("../../../shared/tests/fixtures/sqs-receive-message.json");

/// The router needs the function of every action of its catalog; the two started here
/// are the ones the tests call.
async fn stack() -> Option<Stack> {
    let mut builder = Stack::builder()
        .function("router")
        .function("create-user")
        .function("score-lead")
        .env_with_lambda_url("AWS_ENDPOINT_URL_LAMBDA");
    for action in router::catalog().iter() {
        builder = builder.env(
            router::dispatch::function_env_var(action.name()),
            action.name(),
        );
    }
    builder.start().await
}

/// An API key with `scope`, created in the stack's tables as `actiondo keys create
/// --store dynamodb` would.
async fn new_key(stack: &Stack, scope: &str) -> String {
    let keys = router::KeyStore::new(Arc::new(stack.store().clone()));
    keys.create(vec![scope.to_owned()], Some("e2e".to_owned()))
        .await
        .expect("key created")
        .key
}

/// An HTTP API request event for the router.
fn request(method: &str, path: &str, headers: Value, body: Option<&Value>) -> Value {
    let mut event: Value = serde_json::from_str(HTTP_EVENT).expect("fixture is JSON");
    event["rawPath"] = json!(path);
    event["rawQueryString"] = json!("");
    event["queryStringParameters"] = json!({});
    event["pathParameters"] = json!({});
    event["routeKey"] = json!("$default");
    event["requestContext"]["http"]["method"] = json!(method);
    event["requestContext"]["http"]["path"] = json!(path);
    event["headers"] = headers;
    event["isBase64Encoded"] = json!(false);
    event["body"] = body.map_or(Value::Null, |b| json!(b.to_string()));
    event
}

/// Status, headers and JSON body of the router's answer.
async fn call(stack: &Stack, event: &Value) -> (i64, http::HeaderMap, Value) {
    let reply = stack
        .invoke("router", event)
        .await
        .expect("the router answers");
    let response: ApiGatewayV2httpResponse =
        serde_json::from_value(reply.clone()).unwrap_or_else(|e| panic!("{e}: {reply}"));
    let body = match response.body {
        Some(aws_lambda_events::encodings::Body::Text(text)) => text,
        Some(aws_lambda_events::encodings::Body::Binary(bytes)) => {
            String::from_utf8(bytes).expect("utf-8")
        }
        _ => String::new(),
    };
    let json = serde_json::from_str(&body).unwrap_or(Value::Null);
    (response.status_code, response.headers, json)
}

fn auth(key: &str) -> Value {
    json!({"content-type": "application/json", "authorization": format!("Bearer {key}")})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_invokes_actions_through_the_lambda_api() {
    let Some(stack) = stack().await else { return };
    let key = new_key(&stack, "*").await;

    // A first execution, through router → Invoke → create-user.
    let mut headers = auth(&key);
    headers["idempotency-key"] = json!("signup-router-1");
    let ada = json!({"email": "router@example.com", "name": "Ada Lovelace"});
    let (status, h, created) = call(
        &stack,
        &request("POST", "/actions/create-user", headers.clone(), Some(&ada)),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    assert!(h.get("idempotent-replayed").is_none());
    assert_eq!(created["email"], "router@example.com");
    let record = stack
        .record("create-user#signup-router-1")
        .await
        .expect("the action's own function stored the record");
    assert_eq!(record.status.as_str(), "COMPLETED");

    // The replay: same body, the replay header (the envelope answer says so).
    let (status, h, again) = call(
        &stack,
        &request("POST", "/actions/create-user", headers, Some(&ada)),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(h["idempotent-replayed"], "true");
    assert_eq!(again, created);

    // A terminal failure maps back to its status with its details: the same email under
    // another key is Rejected (422). Asked again, the stored failure is replayed, and the
    // envelope answer says so.
    let mut other = auth(&key);
    other["idempotency-key"] = json!("signup-router-2");
    let (status, h, rejected) = call(
        &stack,
        &request("POST", "/actions/create-user", other.clone(), Some(&ada)),
    )
    .await;
    assert_eq!(status, 422, "{rejected}");
    assert!(h.get("idempotent-replayed").is_none());
    assert_eq!(rejected["error"]["type"], "ActionDo.Rejected");
    assert!(rejected["error"]["details"].is_object(), "{rejected}");
    let (status, h, rejected_again) = call(
        &stack,
        &request("POST", "/actions/create-user", other, Some(&ada)),
    )
    .await;
    assert_eq!(status, 422, "{rejected_again}");
    assert_eq!(h["idempotent-replayed"], "true");
    assert_eq!(rejected_again, rejected);

    // A validation error keeps its field list through Lambda.
    let (status, _, invalid) = call(
        &stack,
        &request(
            "POST",
            "/execute",
            auth(&key),
            Some(&json!({"name": "create-user", "params": {"email": 5, "name": ""}})),
        ),
    )
    .await;
    assert_eq!(status, 400, "{invalid}");
    assert!(invalid["result"].is_null());
    assert_eq!(invalid["error"]["type"], "ActionDo.Validation");
    let fields = invalid["error"]["details"].to_string();
    assert!(
        fields.contains("email") && fields.contains("name"),
        "{invalid}"
    );

    // Asynchronous: 202 and a Location that shows the outcome once the Event invoke ran.
    let mut async_headers = auth(&key);
    async_headers["prefer"] = json!("respond-async");
    async_headers["idempotency-key"] = json!("score-async-1");
    let lead = json!({"email": "ann.lee@acme.com", "name": "Ann Lee", "freeMail": false});
    let (status, h, accepted) = call(
        &stack,
        &request("POST", "/actions/score-lead", async_headers, Some(&lead)),
    )
    .await;
    assert_eq!(status, 202, "{accepted}");
    let location = h["location"].to_str().expect("location").to_owned();
    assert_eq!(location, "/executions/score-lead/score-async-1");
    let mut described = Value::Null;
    for _ in 0..100 {
        let (status, _, body) = call(&stack, &request("GET", &location, auth(&key), None)).await;
        if status == 200 && body["execution"]["status"] == "COMPLETED" {
            described = body;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(described["execution"]["status"], "COMPLETED", "{described}");
    assert!(
        described["execution"]["result"]["score"].is_number(),
        "{described}"
    );
    assert!(!described["audit"].as_array().expect("audit").is_empty());
    // Made through the Lambda path (router → Invoke → the action's function), each record
    // names the API key as its caller (issue 11).
    let caller = format!("apikey:{}", key.split('_').nth(1).expect("a key id"));
    assert!(
        described["audit"]
            .as_array()
            .expect("audit")
            .iter()
            .all(|r| r["caller"] == caller.as_str()),
        "{described}"
    );

    // Out of scope: 403 and nothing invoked.
    let narrow = new_key(&stack, "send-*").await;
    let (status, _, forbidden) = call(
        &stack,
        &request("POST", "/actions/score-lead", auth(&narrow), Some(&lead)),
    )
    .await;
    assert_eq!(status, 403, "{forbidden}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqs_intake_runs_messages_once_and_returns_only_the_retryable() {
    let Some(stack) = stack().await else { return };
    let mut event: Value = serde_json::from_str(SQS_EVENT).expect("fixture is JSON");
    let template = event["Records"][0].clone();
    let record = |id: &str, body: Value| {
        let mut r = template.clone();
        r["messageId"] = json!(id);
        r["body"] = json!(body.to_string());
        r
    };
    let lead = json!({"email": "ann.lee@acme.com", "name": "Ann Lee"});
    event["Records"] = json!([
        record(
            "m-ok",
            json!({"name": "score-lead", "params": lead, "correlationId": "intake-1"})
        ),
        record("m-unknown", json!({"name": "no-such-action", "params": {}})),
        record("m-bad", json!("not an intake message")),
        record(
            "m-rejected",
            json!({"name": "create-user", "params": {"email": "x", "name": "X"}})
        ),
    ]);
    let reply = stack
        .invoke("router", &event)
        .await
        .expect("the router answers");
    let mut failed: Vec<&str> = reply["batchItemFailures"]
        .as_array()
        .expect("batch response")
        .iter()
        .filter_map(|f| f["itemIdentifier"].as_str())
        .collect();
    failed.sort_unstable();
    // Unreadable and unknown messages go back (then to the dead-letter queue); the
    // validation failure is terminal and audited by create-user; the good one ran.
    assert_eq!(failed, ["m-bad", "m-unknown"], "{reply}");
    assert_eq!(
        stack
            .record("score-lead#m-ok")
            .await
            .expect("record")
            .status
            .as_str(),
        "COMPLETED"
    );
    let correlated = stack
        .audit_records(AuditFilter::Correlation("intake-1".to_owned()))
        .await;
    assert_eq!(correlated.len(), 1, "{correlated:?}");

    // Delivered again: replayed, not run again.
    let again = stack
        .invoke("router", &event)
        .await
        .expect("the router answers");
    assert_eq!(again["batchItemFailures"].as_array().map(Vec::len), Some(2));
    let trail = stack.audit("score-lead#m-ok").await;
    let statuses: Vec<&str> = trail.iter().map(|r| r.status.as_str()).collect();
    assert_eq!(statuses, ["replayed", "completed"]);
}
