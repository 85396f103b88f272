//! The router's Step Functions calls on the wire (`actiondo_api::Workflows`, signed
//! requests of the `awsJson1.0` protocol) against a local endpoint that answers as the
//! Step Functions API reference documents: the `X-Amz-Target` and members of each
//! request, answers read with their epoch-second timestamps, `nextToken` pages and
//! `*EventDetails`, and each error code mapped to its `ActionDo.*` answer, the messages in
//! plain words without the service's own text. moto's Step Functions covers the same
//! routes in `tests/workflows.rs`.

#[allow(dead_code)]
mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use actiondo::Catalog;
use actiondo::aws::signed::{AwsService, ClientSettings, SignedClient};
use actiondo_api::Workflows;
use axum::body::Body;
use axum::response::IntoResponse;
use common::{Reply, Setup, get, post_keyed};
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

const MACHINE: &str = "arn:aws:states:us-east-1:123456789012:stateMachine:demo";
const EXECUTION: &str = "arn:aws:states:us-east-1:123456789012:execution:demo:";

/// 2026-01-01T00:00:00Z.
const NEW_YEAR: f64 = 1_767_225_600.0;

/// What the endpoint received: the operation (`X-Amz-Target`), the content type, the body.
type Received = Arc<Mutex<Vec<(String, String, Value)>>>;

fn error(status: StatusCode, code: &str, message: &str) -> axum::response::Response {
    (
        status,
        [("content-type", "application/x-amz-json-1.0")],
        json!({"__type": format!("com.amazonaws.swf.service.v2.model#{code}"), "message": message})
            .to_string(),
    )
        .into_response()
}

fn ok(body: &Value) -> axum::response::Response {
    (
        StatusCode::OK,
        [("content-type", "application/x-amz-json-1.0")],
        body.to_string(),
    )
        .into_response()
}

/// Step Functions as its API reference answers, per operation and execution name.
async fn step_functions(
    axum::extract::State(received): axum::extract::State<Received>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let target = header("x-amz-target");
    let input: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    received
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push((target.clone(), header("content-type"), input.clone()));
    let execution = input["executionArn"]
        .as_str()
        .and_then(|arn| arn.strip_prefix(EXECUTION))
        .unwrap_or_default()
        .to_owned();
    let operation = target.strip_prefix("AWSStepFunctions.").unwrap_or_default();
    match (operation, execution.as_str()) {
        ("DescribeExecution", "run-1") => ok(&json!({
            "executionArn": format!("{EXECUTION}run-1"),
            "stateMachineArn": MACHINE,
            "name": "run-1",
            "status": "SUCCEEDED",
            "startDate": NEW_YEAR + 0.25,
            "stopDate": NEW_YEAR + 2.0,
            "input": "{\"user\":{\"email\":\"ada@example.com\"}}",
            "inputDetails": {"included": true},
            "output": "{\"done\":true}",
            "outputDetails": {"included": true},
            "redriveCount": 0,
            "redriveStatus": "NOT_REDRIVABLE"
        })),
        ("DescribeExecution", "failed") => ok(&json!({
            "executionArn": format!("{EXECUTION}failed"),
            "stateMachineArn": MACHINE,
            "name": "failed",
            "status": "FAILED",
            "startDate": NEW_YEAR,
            "stopDate": NEW_YEAR + 1.0,
            "input": "{}",
            "error": "ActionDo.Rejected",
            "cause": "{\"errorType\":\"ActionDo.Rejected\"}"
        })),
        ("DescribeExecution", "denied") => error(
            StatusCode::BAD_REQUEST,
            "AccessDeniedException",
            "User: arn:aws:sts::123456789012:assumed-role/router-role/router is not authorized to perform: states:DescribeExecution",
        ),
        ("DescribeExecution", "throttled") => error(
            StatusCode::BAD_REQUEST,
            "ThrottlingException",
            "Rate exceeded for account 123456789012",
        ),
        ("DescribeExecution", "broken") => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceUnavailable",
            "internal failure at host-123456789012",
        ),
        ("StartExecution", _) => match input["name"].as_str() {
            Some("run-1") => error(
                StatusCode::BAD_REQUEST,
                "ExecutionAlreadyExists",
                "Execution Already Exists",
            ),
            Some(name) => ok(&json!({
                "executionArn": format!("{EXECUTION}{name}"),
                "startDate": NEW_YEAR + 0.5
            })),
            None => error(StatusCode::BAD_REQUEST, "ValidationException", "no name"),
        },
        ("GetExecutionHistory", "run-1") if input.get("nextToken").is_none() => ok(&json!({
            "events": [
                {
                    "timestamp": NEW_YEAR,
                    "type": "ExecutionStarted",
                    "id": 1,
                    "executionStartedEventDetails": {
                        "input": "{\"x\":1}",
                        "inputDetails": {"truncated": false},
                        "roleArn": "arn:aws:iam::123456789012:role/states"
                    }
                },
                {
                    "timestamp": NEW_YEAR + 0.125,
                    "type": "TaskStateEntered",
                    "id": 2,
                    "previousEventId": 1,
                    "stateEnteredEventDetails": {"name": "Charge", "input": "{\"x\":1}"}
                },
                {
                    "timestamp": NEW_YEAR + 0.25,
                    "type": "TaskScheduled",
                    "id": 3,
                    "previousEventId": 2,
                    "taskScheduledEventDetails": {
                        "resourceType": "lambda",
                        "resource": "invoke",
                        "region": "us-east-1",
                        "parameters": "{\"FunctionName\":\"charge\"}"
                    }
                }
            ],
            "nextToken": "page-2"
        })),
        ("GetExecutionHistory", "run-1") => ok(&json!({
            "events": [
                {
                    "timestamp": NEW_YEAR + 1.0,
                    "type": "TaskFailed",
                    "id": 4,
                    "previousEventId": 3,
                    "taskFailedEventDetails": {
                        "resourceType": "lambda",
                        "resource": "invoke",
                        "error": "ActionDo.Rejected",
                        "cause": "declined"
                    }
                },
                {
                    "timestamp": NEW_YEAR + 1.5,
                    "type": "ExecutionFailed",
                    "id": 5,
                    "previousEventId": 4,
                    "executionFailedEventDetails": {"error": "ActionDo.Rejected", "cause": "declined"}
                }
            ]
        })),
        ("ListExecutions", _) => ok(&json!({
            "executions": [
                {
                    "executionArn": format!("{EXECUTION}run-2"),
                    "stateMachineArn": MACHINE,
                    "name": "run-2",
                    "status": "FAILED",
                    "startDate": NEW_YEAR,
                    "stopDate": NEW_YEAR + 1.5,
                    "redriveCount": 2,
                    "redriveDate": NEW_YEAR + 1.0
                },
                {
                    "executionArn": format!("{EXECUTION}run-1"),
                    "stateMachineArn": MACHINE,
                    "name": "run-1",
                    "status": "RUNNING",
                    "startDate": NEW_YEAR - 60.0
                }
            ],
            "nextToken": "more"
        })),
        ("RedriveExecution", "run-1") => error(
            StatusCode::BAD_REQUEST,
            "ExecutionNotRedrivable",
            "Execution is SUCCEEDED and cannot be redriven",
        ),
        ("RedriveExecution", "failed") => ok(&json!({"redriveDate": NEW_YEAR + 10.0})),
        ("DescribeExecution" | "GetExecutionHistory" | "RedriveExecution", _) => error(
            StatusCode::BAD_REQUEST,
            "ExecutionDoesNotExist",
            &format!("Execution Does Not Exist: '{EXECUTION}{execution}'"),
        ),
        _ => error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            &target,
        ),
    }
}

/// A router whose workflow `demo` runs on the local endpoint (quick retries), what the
/// endpoint received and its server task.
async fn router() -> (Setup, Received, tokio::task::JoinHandle<()>) {
    let received: Received = Arc::default();
    let app = axum::Router::new()
        .route("/", axum::routing::post(step_functions))
        .with_state(Arc::clone(&received));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a local port");
    let address = listener.local_addr().expect("its address");
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .await
            .expect("the endpoint serves");
    });
    let mut s = Setup::open(Catalog::new());
    s.router = s
        .api
        .clone()
        .with_workflows(workflows(&format!("http://{address}")))
        .into_router();
    (s, received, server)
}

fn workflows(url: &str) -> Workflows {
    let settings = ClientSettings {
        base_backoff: std::time::Duration::from_millis(1),
        max_backoff: std::time::Duration::from_millis(5),
        ..ClientSettings::default()
    };
    let client = SignedClient::with_settings(
        &actiondo::testing::local_aws_config(url),
        AwsService::STEP_FUNCTIONS,
        settings,
    )
    .expect("a Step Functions client");
    Workflows::new(
        client,
        BTreeMap::from([("demo".to_owned(), MACHINE.to_owned())]),
    )
}

fn received(received: &Received) -> Vec<(String, String, Value)> {
    received
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .drain(..)
        .collect()
}

fn post(uri: &str) -> http::Request<Body> {
    common::request("POST", uri)
        .body(Body::empty())
        .expect("a valid request")
}

/// The message of an error answer, checked for what it must not carry: Step Functions'
/// own text (its account, role and host names) and the client's debug text.
fn plain(reply: &Reply, status: u16, error_type: &str) -> String {
    let error = reply.error(status, error_type);
    let message = error["message"].as_str().expect("a message").to_owned();
    for leak in [
        "123456789012",
        "router-role",
        "Rate exceeded",
        "DispatchFailure",
        "ConnectorError",
        "Transport {",
        "Service {",
        "127.0.0.1",
    ] {
        assert!(!message.contains(leak), "{leak} in {message}");
    }
    message
}

#[tokio::test]
async fn an_execution_is_described_from_its_answer() {
    let (s, sent, server) = router().await;
    let reply = s.send(get("/workflows/demo/executions/run-1")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        reply.json(),
        json!({
            "workflow": "demo",
            "executionName": "run-1",
            "executionArn": format!("{EXECUTION}run-1"),
            "status": "SUCCEEDED",
            "startDate": "2026-01-01T00:00:00.25Z",
            "stopDate": "2026-01-01T00:00:02Z",
            "input": {"user": {"email": "ada@example.com"}},
            "output": {"done": true},
        })
    );
    assert_eq!(
        received(&sent),
        [(
            "AWSStepFunctions.DescribeExecution".to_owned(),
            "application/x-amz-json-1.0".to_owned(),
            json!({"executionArn": format!("{EXECUTION}run-1")}),
        )]
    );

    let failed = s.send(get("/workflows/demo/executions/failed")).await;
    assert_eq!(failed.status, StatusCode::OK, "{}", failed.text());
    assert_eq!(
        failed.json()["error"],
        json!({"error": "ActionDo.Rejected", "cause": {"errorType": "ActionDo.Rejected"}})
    );
    assert!(failed.json().get("output").is_none());

    let missing = s.send(get("/workflows/demo/executions/gone")).await;
    let message = plain(&missing, 404, "ActionDo.NotFound");
    assert_eq!(message, "there is no execution \"gone\" of workflow demo");
    server.abort();
}

#[tokio::test]
async fn a_start_sends_the_name_and_input_and_replays_a_finished_duplicate() {
    let (s, sent, server) = router().await;
    let started = s
        .send(post_keyed("/workflows/demo", r#"{"n": 1}"#, "new-1"))
        .await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{}", started.text());
    assert_eq!(
        started.json(),
        json!({
            "workflow": "demo",
            "executionName": "new-1",
            "executionArn": format!("{EXECUTION}new-1"),
            "startDate": "2026-01-01T00:00:00.5Z",
            "status": "RUNNING",
        })
    );
    let requests = received(&sent);
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].0, "AWSStepFunctions.StartExecution");
    assert_eq!(
        requests[0].2,
        json!({"stateMachineArn": MACHINE, "name": "new-1", "input": "{\"n\":1}"})
    );

    // ExecutionAlreadyExists: its description, replayed when the input is the same.
    let input = r#"{"user": {"email": "ada@example.com"}}"#;
    let replayed = s.send(post_keyed("/workflows/demo", input, "run-1")).await;
    assert_eq!(replayed.status, StatusCode::OK, "{}", replayed.text());
    assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
    assert_eq!(replayed.json()["status"], "SUCCEEDED");
    let operations: Vec<String> = received(&sent).into_iter().map(|r| r.0).collect();
    assert_eq!(
        operations,
        [
            "AWSStepFunctions.StartExecution",
            "AWSStepFunctions.DescribeExecution"
        ]
    );
    let mismatch = s
        .send(post_keyed("/workflows/demo", r#"{"other": 1}"#, "run-1"))
        .await;
    mismatch.error(422, "ActionDo.PayloadMismatch");
    server.abort();
}

#[tokio::test]
async fn the_history_is_read_page_by_page_with_its_event_details() {
    let (s, sent, server) = router().await;
    let reply = s
        .send(get("/workflows/demo/executions/run-1/history"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(
        reply.json(),
        json!({
            "workflow": "demo",
            "executionName": "run-1",
            "events": [
                {"id": 1, "previousEventId": 0, "timestamp": "2026-01-01T00:00:00Z",
                 "type": "ExecutionStarted", "details": {"input": {"x": 1}}},
                {"id": 2, "previousEventId": 1, "timestamp": "2026-01-01T00:00:00.125Z",
                 "type": "TaskStateEntered", "details": {"name": "Charge", "input": {"x": 1}}},
                {"id": 3, "previousEventId": 2, "timestamp": "2026-01-01T00:00:00.25Z",
                 "type": "TaskScheduled",
                 "details": {"resource": "invoke", "parameters": {"FunctionName": "charge"}}},
                {"id": 4, "previousEventId": 3, "timestamp": "2026-01-01T00:00:01Z",
                 "type": "TaskFailed",
                 "details": {"error": "ActionDo.Rejected", "cause": "declined"}},
                {"id": 5, "previousEventId": 4, "timestamp": "2026-01-01T00:00:01.5Z",
                 "type": "ExecutionFailed",
                 "details": {"error": "ActionDo.Rejected", "cause": "declined"}},
            ],
        })
    );
    let pages: Vec<Value> = received(&sent)
        .into_iter()
        .map(|(target, _, input)| {
            assert_eq!(target, "AWSStepFunctions.GetExecutionHistory");
            input
        })
        .collect();
    let arn = format!("{EXECUTION}run-1");
    assert_eq!(
        pages,
        [
            json!({"executionArn": arn, "maxResults": 1000}),
            json!({"executionArn": arn, "maxResults": 1000, "nextToken": "page-2"}),
        ]
    );
    let missing = s
        .send(get("/workflows/demo/executions/never/history"))
        .await;
    plain(&missing, 404, "ActionDo.NotFound");
    server.abort();
}

#[tokio::test]
async fn executions_are_listed_with_the_filter_the_page_size_and_the_token() {
    let (s, sent, server) = router().await;
    let first = s
        .send(get("/workflows/demo/executions?status=FAILED&limit=2"))
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let body = first.json();
    assert_eq!(
        body["executions"],
        json!([
            {"executionName": "run-2", "status": "FAILED", "startDate": "2026-01-01T00:00:00Z",
             "stopDate": "2026-01-01T00:00:01.5Z", "redriveCount": 2},
            {"executionName": "run-1", "status": "RUNNING", "startDate": "2025-12-31T23:59:00Z"},
        ])
    );
    let cursor = body["cursor"].as_str().expect("a cursor").to_owned();
    let next = s
        .send(get(&format!(
            "/workflows/demo/executions?status=FAILED&limit=2&cursor={cursor}"
        )))
        .await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.text());
    let inputs: Vec<Value> = received(&sent)
        .into_iter()
        .map(|(target, _, input)| {
            assert_eq!(target, "AWSStepFunctions.ListExecutions");
            input
        })
        .collect();
    assert_eq!(
        inputs,
        [
            json!({"stateMachineArn": MACHINE, "maxResults": 2, "statusFilter": "FAILED"}),
            json!({"stateMachineArn": MACHINE, "maxResults": 2, "statusFilter": "FAILED", "nextToken": "more"}),
        ]
    );
    server.abort();
}

#[tokio::test]
async fn a_redrive_sends_an_idempotency_token_and_says_why_it_cannot() {
    let (s, sent, server) = router().await;
    let redriven = s
        .send(post("/workflows/demo/executions/failed/redrive"))
        .await;
    assert_eq!(redriven.status, StatusCode::ACCEPTED, "{}", redriven.text());
    assert_eq!(redriven.json()["status"], "FAILED");
    let requests = received(&sent);
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0].0, "AWSStepFunctions.RedriveExecution");
    assert_eq!(requests[1].0, "AWSStepFunctions.DescribeExecution");
    let input = &requests[0].2;
    assert_eq!(input["executionArn"], format!("{EXECUTION}failed"));
    let token = input["clientToken"].as_str().expect("a client token");
    // A version 4 UUID, as the SDKs make it.
    let groups: Vec<usize> = token.split('-').map(str::len).collect();
    assert_eq!(groups, [8, 4, 4, 4, 12], "{token}");
    assert_eq!(&token[14..15], "4", "{token}");
    assert!(token.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));

    let again = s
        .send(post("/workflows/demo/executions/failed/redrive"))
        .await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    let second = received(&sent);
    assert_ne!(
        second[0].2["clientToken"], input["clientToken"],
        "one per redrive"
    );

    let refused = s
        .send(post("/workflows/demo/executions/run-1/redrive"))
        .await;
    let error = refused.error(409, "ActionDo.Conflict");
    assert_eq!(
        error["message"],
        "the execution \"run-1\" of demo cannot be redriven: Execution is SUCCEEDED and cannot be redriven"
    );
    let missing = s
        .send(post("/workflows/demo/executions/nope/redrive"))
        .await;
    plain(&missing, 404, "ActionDo.NotFound");
    server.abort();
}

/// Denied is a deployment problem (500), throttling and a 5xx answer are transient (503,
/// after the client's retries); each message names Step Functions' error code and not its
/// text.
#[tokio::test]
async fn service_errors_are_said_in_plain_words() {
    let (s, sent, server) = router().await;
    let denied = s.send(get("/workflows/demo/executions/denied")).await;
    let message = plain(&denied, 500, "ActionDo.Internal");
    assert!(
        message.starts_with(
            "describing workflow demo failed: Step Functions answered AccessDeniedException (HTTP 400) (the log of this request has the cause)"
        ),
        "{message}"
    );
    assert_eq!(received(&sent).len(), 1, "a client error is sent once");

    let throttled = s.send(get("/workflows/demo/executions/throttled")).await;
    let message = plain(&throttled, 503, "ActionDo.Transient");
    assert!(
        message.starts_with(
            "describing workflow demo failed: Step Functions answered ThrottlingException (HTTP 400); try again (the log of this request has the cause)"
        ),
        "{message}"
    );
    assert_eq!(received(&sent).len(), 3, "throttling is sent three times");

    let broken = s.send(get("/workflows/demo/executions/broken")).await;
    let message = plain(&broken, 503, "ActionDo.Transient");
    assert!(
        message.starts_with(
            "describing workflow demo failed: Step Functions answered ServiceUnavailable (HTTP 500); try again"
        ),
        "{message}"
    );
    assert_eq!(received(&sent).len(), 3);
    server.abort();
}

/// The gap of issue 13: a Step Functions that cannot be reached answered a 503 whose
/// message was the SDK's debug text (`DispatchFailure { source: ConnectorError … }`).
/// Now it says what failed; the cause is in the log line of the request.
#[tokio::test]
async fn an_unreachable_step_functions_is_a_503_in_plain_words() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a local port");
    let url = format!("http://{}", listener.local_addr().expect("its address"));
    drop(listener);
    let mut s = Setup::open(Catalog::new());
    s.router = s.api.clone().with_workflows(workflows(&url)).into_router();
    for (request, doing) in [
        (post_keyed("/workflows/demo", "{}", "k1"), "starting"),
        (get("/workflows/demo/executions/k1"), "describing"),
        (
            get("/workflows/demo/executions/k1/history"),
            "reading the history of",
        ),
        (
            get("/workflows/demo/executions"),
            "listing the executions of",
        ),
        (post("/workflows/demo/executions/k1/redrive"), "redriving"),
    ] {
        let reply = s.send(request).await;
        let message = plain(&reply, 503, "ActionDo.Transient");
        let expected = format!(
            "{doing} workflow demo failed: Step Functions could not be reached; try again (the log of this request has the cause) (request id "
        );
        assert!(message.starts_with(&expected), "{message}");
        assert_eq!(reply.json()["error"]["retryable"], true);
    }
}
