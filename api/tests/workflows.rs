//! `POST /workflows/{name}`, `GET /workflows/{name}/executions` and `GET
//! /workflows/{name}/executions/{id}` against a real
//! Step Functions API: moto's server (`ACTIONDO_TEST_MOTO_URL`, started by
//! `./tests/run.sh`). Skipped without it under a plain `cargo test`; a failure when the run
//! requires the servers (`ACTIONDO_TEST_REQUIRE_INFRA=1`).

use std::collections::BTreeMap;
use std::sync::Arc;

use actiondo::Executor;
use actiondo::aws::signed::{AwsService, SignedClient};
use actiondo::store::sqlite::SqliteStore;
use actiondo_api::{Api, Auth, InProcess, Workflows};
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

fn moto_url() -> Option<String> {
    actiondo::testing::server_url("ACTIONDO_TEST_MOTO_URL", "Step Functions on moto")
}

/// The SDK's client, for what the router never does (create and stop state machines).
fn sfn_client(url: &str) -> aws_sdk_sfn::Client {
    aws_sdk_sfn::Client::new(&actiondo::testing::local_aws_config(url))
}

/// The router's Step Functions: signed requests to moto.
fn workflows(url: &str, machines: BTreeMap<String, String>) -> Workflows {
    let client = SignedClient::new(
        &actiondo::testing::local_aws_config(url),
        AwsService::STEP_FUNCTIONS,
    )
    .expect("a Step Functions client");
    Workflows::new(client, machines)
}

async fn call(
    app: &axum::Router,
    request: Request<String>,
) -> (StatusCode, http::HeaderMap, Value) {
    let response = app
        .clone()
        .oneshot(request.map(axum::body::Body::from))
        .await
        .expect("infallible");
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (parts.status, parts.headers, value)
}

fn start(execution: Option<&str>, input: &Value) -> Request<String> {
    let mut builder = Request::post("/workflows/demo").header("content-type", "application/json");
    if let Some(name) = execution {
        builder = builder.header("idempotency-key", name);
    }
    builder.body(input.to_string()).expect("request")
}

#[tokio::test]
async fn workflow_executions_are_named_by_the_idempotency_key() {
    let Some(url) = moto_url() else { return };
    let client = sfn_client(&url);
    let machine = client
        .create_state_machine()
        .name(format!("demo-{}", uuid::Uuid::new_v4().simple()))
        .definition(
            json!({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": true}}})
                .to_string(),
        )
        .role_arn("arn:aws:iam::123456789012:role/states")
        .send()
        .await
        .expect("create state machine");
    let arn = machine.state_machine_arn().to_owned();
    let store = Arc::new(SqliteStore::in_memory().expect("store"));
    let api = Api::new(
        actiondo_catalog::catalog(),
        Arc::new(InProcess::new(
            actiondo_catalog::catalog(),
            Executor::from_arc(store.clone()),
        )),
        store,
        Auth::Disabled,
    )
    .with_workflows(workflows(
        &url,
        BTreeMap::from([("demo".to_owned(), arn.clone())]),
    ));
    let app = api.into_router();
    let input = json!({"user": {"email": "ada@example.com"}});

    // A start: 202, the execution named by the key, and where to look.
    let (status, headers, body) = call(&app, start(Some("run-1"), &input)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body:#}");
    assert_eq!(headers["location"], "/workflows/demo/executions/run-1");
    assert_eq!(body["executionName"], "run-1");
    let execution_arn = body["executionArn"].as_str().expect("arn").to_owned();
    assert!(execution_arn.ends_with(":run-1"), "{execution_arn}");

    // A duplicate start while it runs: the same execution.
    let (status, _, again) = call(&app, start(Some("run-1"), &input)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again:#}");
    assert_eq!(again["executionArn"], json!(execution_arn));

    // The same name with another input: 422, nothing started.
    let (status, _, mismatch) = call(&app, start(Some("run-1"), &json!({"other": 1}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{mismatch:#}");
    assert_eq!(mismatch["error"]["type"], "ActionDo.PayloadMismatch");

    // Described through the router.
    let describe = |id: &str| {
        Request::get(format!("/workflows/demo/executions/{id}"))
            .body(String::new())
            .expect("request")
    };
    let (status, _, described) = call(&app, describe("run-1")).await;
    assert_eq!(status, StatusCode::OK, "{described:#}");
    assert_eq!(described["status"], "RUNNING");
    assert_eq!(described["input"], input);

    // Once it has finished, a duplicate start replays its description.
    client
        .stop_execution()
        .execution_arn(&execution_arn)
        .send()
        .await
        .expect("stop");
    let (status, headers, replayed) = call(&app, start(Some("run-1"), &input)).await;
    assert_eq!(status, StatusCode::OK, "{replayed:#}");
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(replayed["status"], "ABORTED");
    assert_eq!(replayed["executionArn"], json!(execution_arn));

    // Without a key, the name is the SHA-256 of the input: starting twice is one execution.
    let (status, headers, derived) = call(&app, start(None, &json!({"n": 1}))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{derived:#}");
    let name = headers["idempotency-key"].to_str().expect("key").to_owned();
    assert_eq!(name, actiondo::hash::payload_hash(&json!({"n": 1})));
    let (_, _, derived_again) = call(&app, start(None, &json!({"n": 1}))).await;
    assert_eq!(derived_again["executionArn"], derived["executionArn"]);

    // Unknown execution, unknown workflow, bad execution name.
    let (status, _, missing) = call(&app, describe("never-started")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing:#}");
    let unknown = Request::post("/workflows/nope")
        .header("content-type", "application/json")
        .body("{}".to_owned())
        .expect("request");
    let (status, _, body) = call(&app, unknown).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body:#}");
    // It names the workflow asked for and no other: a scoped key must not learn the
    // workflows outside its scope (GET /workflows lists the ones it may run).
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("\"nope\""), "{body:#}");
    assert!(!message.contains("demo"), "{body:#}");
    assert_eq!(body["error"]["details"], json!({"workflow": "nope"}));
    let (status, _, body) = call(&app, start(Some("a b#c"), &input)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body:#}");
}

/// `GET /workflows/{name}/executions/{id}/history` through the SDK to Step Functions
/// (moto answers its fixed history: a Pass state "A State" entered and exited), and the
/// console's graph coloured from it.
#[tokio::test]
async fn an_execution_history_colours_the_console_graph() {
    let Some(url) = moto_url() else { return };
    let client = sfn_client(&url);
    let definition =
        json!({"StartAt": "A State", "States": {"A State": {"Type": "Pass", "End": true}}});
    let machine = client
        .create_state_machine()
        .name(format!("history-{}", uuid::Uuid::new_v4().simple()))
        .definition(definition.to_string())
        .role_arn("arn:aws:iam::123456789012:role/states")
        .send()
        .await
        .expect("create state machine");
    let store = Arc::new(SqliteStore::in_memory().expect("store"));
    let api = Api::new(
        actiondo_catalog::catalog(),
        Arc::new(InProcess::new(
            actiondo_catalog::catalog(),
            Executor::from_arc(store.clone()),
        )),
        store,
        Auth::Disabled,
    )
    .with_workflows(workflows(
        &url,
        BTreeMap::from([("demo".to_owned(), machine.state_machine_arn().to_owned())]),
    ))
    .with_workflow_definitions(BTreeMap::from([("demo".to_owned(), definition)]));
    let app = actiondo_api::console::with_console(api.into_router());
    let (status, _, _) = call(&app, start(Some("run-h"), &json!({}))).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let get = |uri: &str| Request::get(uri).body(String::new()).expect("request");
    let (status, _, history) = call(&app, get("/workflows/demo/executions/run-h/history")).await;
    assert_eq!(status, StatusCode::OK, "{history:#}");
    let events = history["events"].as_array().expect("events");
    assert!(!events.is_empty());
    for event in events {
        assert!(event["type"].is_string() && event["id"].is_i64(), "{event}");
    }
    assert!(
        events.iter().any(|e| e["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("StateExited"))
            && e["details"]["name"] == "A State"),
        "{history:#}"
    );
    let (status, _, body) = call(&app, get("/workflows/demo/executions/never/history")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body:#}");
    assert_eq!(body["error"]["type"], "ActionDo.NotFound");

    let response = app
        .clone()
        .oneshot(
            Request::get("/console/workflows/demo?execution=run-h")
                .body(axum::body::Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let html = String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes()
            .to_vec(),
    )
    .expect("utf-8");
    assert!(
        html.contains(r#"data-state="A State" data-outcome="succeeded""#),
        "{html}"
    );
    // Step Functions redrives failed executions only: nothing to redrive here.
    assert!(
        !html.contains(r#"id="redrive""#),
        "no redrive for a succeeded execution"
    );
    assert!(
        html.contains(r#"<table id="history">"#)
            && html.contains(r#"data-type="ExecutionSucceeded""#),
        "the history is listed: {html}"
    );
}

/// `GET /workflows/{name}/executions` through the SDK's `ListExecutions`: newest first,
/// paged with the API's cursor (Step Functions' `nextToken` inside), filtered by status.
#[tokio::test]
async fn a_workflows_executions_are_listed_newest_first_and_paged() {
    let Some(url) = moto_url() else { return };
    let client = sfn_client(&url);
    let machine = client
        .create_state_machine()
        .name(format!("list-{}", uuid::Uuid::new_v4().simple()))
        .definition(
            json!({"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": true}}})
                .to_string(),
        )
        .role_arn("arn:aws:iam::123456789012:role/states")
        .send()
        .await
        .expect("create state machine");
    let store = Arc::new(SqliteStore::in_memory().expect("store"));
    let api = Api::new(
        actiondo_catalog::catalog(),
        Arc::new(InProcess::new(
            actiondo_catalog::catalog(),
            Executor::from_arc(store.clone()),
        )),
        store,
        Auth::Disabled,
    )
    .with_workflows(workflows(
        &url,
        BTreeMap::from([("demo".to_owned(), machine.state_machine_arn().to_owned())]),
    ));
    let app = api.into_router();
    let get = |uri: &str| Request::get(uri).body(String::new()).expect("request");
    let names = |body: &Value| -> Vec<String> {
        body["executions"]
            .as_array()
            .expect("executions")
            .iter()
            .map(|e| e["executionName"].as_str().expect("a name").to_owned())
            .collect()
    };

    // None yet: an empty list, no cursor.
    let (status, _, empty) = call(&app, get("/workflows/demo/executions")).await;
    assert_eq!(status, StatusCode::OK, "{empty:#}");
    assert_eq!(empty["executions"], json!([]));
    assert!(empty.get("cursor").is_none(), "{empty:#}");

    let mut arns = BTreeMap::new();
    for name in ["run-a", "run-b", "run-c"] {
        let (status, _, body) = call(&app, start(Some(name), &json!({"n": name}))).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body:#}");
        arns.insert(name, body["executionArn"].as_str().expect("arn").to_owned());
    }
    client
        .stop_execution()
        .execution_arn(&arns["run-b"])
        .send()
        .await
        .expect("stop");

    // Page 1 of 2: the two newest, and a cursor.
    let (status, _, first) = call(&app, get("/workflows/demo/executions?limit=2")).await;
    assert_eq!(status, StatusCode::OK, "{first:#}");
    assert_eq!(names(&first), ["run-c", "run-b"], "{first:#}");
    let run_c = &first["executions"][0];
    assert_eq!(run_c["status"], "RUNNING");
    assert!(
        run_c["startDate"]
            .as_str()
            .is_some_and(|d| d.ends_with('Z')),
        "{run_c}"
    );
    assert!(run_c.get("stopDate").is_none(), "{run_c}");
    let run_b = &first["executions"][1];
    assert_eq!(run_b["status"], "ABORTED");
    assert!(run_b["stopDate"].is_string(), "{run_b}");
    let cursor = first["cursor"].as_str().expect("a cursor").to_owned();

    // Page 2: the oldest, and no cursor.
    let (status, _, second) = call(
        &app,
        get(&format!(
            "/workflows/demo/executions?limit=2&cursor={cursor}"
        )),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{second:#}");
    assert_eq!(names(&second), ["run-a"], "{second:#}");
    assert!(second.get("cursor").is_none(), "{second:#}");

    // By status (Step Functions' statusFilter).
    let (status, _, aborted) = call(&app, get("/workflows/demo/executions?status=ABORTED")).await;
    assert_eq!(status, StatusCode::OK, "{aborted:#}");
    assert_eq!(names(&aborted), ["run-b"], "{aborted:#}");
    let (_, _, running) = call(&app, get("/workflows/demo/executions?status=RUNNING")).await;
    assert_eq!(names(&running), ["run-c", "run-a"], "{running:#}");

    // A cursor of another query, a token Step Functions never wrote, a bad limit: 400; an
    // unknown workflow: 404.
    let (status, _, body) = call(
        &app,
        get(&format!(
            "/workflows/demo/executions?status=RUNNING&cursor={cursor}"
        )),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body:#}");
    assert_eq!(body["error"]["type"], "ActionDo.Validation");
    let forged = actiondo_api::workflows::encode_cursor(
        "demo",
        &actiondo_api::workflows::list_query("demo", None, 2, None).expect("a query"),
        "not-a-token",
    );
    let (status, _, body) = call(
        &app,
        get(&format!(
            "/workflows/demo/executions?limit=2&cursor={forged}"
        )),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body:#}");
    assert_eq!(body["error"]["type"], "ActionDo.Validation");
    let (status, _, body) = call(&app, get("/workflows/demo/executions?limit=1000")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body:#}");
    let (status, _, body) = call(&app, get("/workflows/nope/executions")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body:#}");
    assert_eq!(body["error"]["type"], "ActionDo.NotFound");
}
