//! How the router reaches the actions' functions: function errors mapped back to their
//! `ActionError`, the environment that names the functions, and `LambdaDispatcher`
//! driving a local endpoint of the Lambda Invoke API (the routes answer with the statuses
//! of the functions' errors, throttling is 503 with `Retry-After`).

#[allow(dead_code)]
#[path = "../../../api/tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use actiondo::aws::signed::{AwsService, ClientSettings, SignedClient};
use actiondo::config::Settings;
use actiondo::{ActionError, Catalog, ErrorKind};
use actiondo_api::{Api, Auth};
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::routing::post;
use common::{Flaky, Gated, Reply, post_keyed};
use http::{HeaderMap, StatusCode};
use router::LambdaDispatcher;
use router::dispatch::{function_env_var, function_error};
use serde_json::{Value, json};
use tower::ServiceExt as _;

fn diagnostic(error: &ActionError) -> Vec<u8> {
    json!({
        "errorType": error.kind().wire_name(),
        "errorMessage": serde_json::to_string(&error.to_body()).expect("serializes"),
    })
    .to_string()
    .into_bytes()
}

#[test]
fn a_function_error_maps_back_to_its_action_error() {
    let rejected = ActionError::rejected("card declined")
        .with_details(json!({"reason": "card_declined", "code": 51}));
    let back = function_error("process-payment-fn", &diagnostic(&rejected));
    assert_eq!(back.kind(), ErrorKind::Rejected);
    assert_eq!(back.message(), "card declined");
    assert_eq!(
        back.details(),
        Some(&json!({"reason": "card_declined", "code": 51}))
    );
    assert_eq!(back.http_status(), 422);
    assert_eq!(back.to_body(), rejected.to_body(), "the same wire body");

    // Every kind keeps its kind, status and retry class.
    for kind in ErrorKind::ALL {
        let original = ActionError::new(kind, "m").with_details(json!({"k": 1}));
        let back = function_error("f", &diagnostic(&original));
        assert_eq!(back.kind(), kind);
        assert_eq!(back.http_status(), kind.http_status());
        assert_eq!(back.to_body(), original.to_body());
    }

    // In progress: the retry hint of its details comes back as Retry-After.
    let busy = ActionError::in_progress("busy")
        .with_retry_after_ms(4_500)
        .with_details(json!({"retryAfterMs": 4_500, "attempt": 1}));
    let back = function_error("f", &diagnostic(&busy));
    assert_eq!(back.kind(), ErrorKind::InProgress);
    assert_eq!(back.retry_after_ms(), Some(4_500));

    // A wire name with a message that is not our body: the kind, the text as message.
    let plain = br#"{"errorType": "ActionDo.Transient", "errorMessage": "dependency down"}"#;
    let back = function_error("f", plain);
    assert_eq!(back.kind(), ErrorKind::Transient);
    assert_eq!(back.message(), "dependency down");
}

#[test]
fn an_unknown_function_error_is_internal() {
    for (error_type, message) in [
        (
            "Runtime.ExitError",
            "RequestId: 1 Error: Runtime exited with error: signal: killed",
        ),
        ("Sandbox.Timedout", "Task timed out after 3.00 seconds"),
        ("", ""),
    ] {
        let payload = json!({"errorType": error_type, "errorMessage": message}).to_string();
        let back = function_error("send-email-fn", payload.as_bytes());
        assert_eq!(back.kind(), ErrorKind::Internal, "{error_type}");
        assert_eq!(back.http_status(), 500);
        assert!(back.is_retryable());
        assert!(back.message().contains("send-email-fn"), "{back}");
        assert!(back.message().contains(message), "{back}");
        assert_eq!(
            back.details().map(|d| d["errorType"].clone()),
            Some(json!(error_type))
        );
    }
    let back = function_error("f", b"<html>gateway error</html>");
    assert_eq!(back.kind(), ErrorKind::Internal);
    assert!(
        back.message().contains("<html>gateway error</html>"),
        "{back}"
    );
}

#[test]
fn every_action_has_its_function_variable() {
    assert_eq!(
        function_env_var("send-email"),
        "ACTIONDO_FUNCTION_SEND_EMAIL"
    );
    assert_eq!(
        function_env_var("create-or-update-contact"),
        "ACTIONDO_FUNCTION_CREATE_OR_UPDATE_CONTACT"
    );
    assert_eq!(function_env_var("lead.v2"), "ACTIONDO_FUNCTION_LEAD_V2");
    let vars: std::collections::HashSet<String> = actiondo_catalog::catalog()
        .iter()
        .map(|a| function_env_var(a.name()))
        .collect();
    assert_eq!(
        vars.len(),
        actiondo_catalog::catalog().len(),
        "no two actions share one"
    );
}

/// Two actions whose variables no one sets: `ACTIONDO_FUNCTION_GATED`,
/// `ACTIONDO_FUNCTION_FLAKY`.
fn env_catalog() -> Catalog {
    Catalog::new().with(Gated::default()).with(Flaky::default())
}

#[test]
fn functions_come_from_the_settings() {
    let functions = |pairs: &[(&str, &str)]| {
        LambdaDispatcher::functions(
            &env_catalog().descriptors(),
            &Settings::from_pairs(pairs.iter().copied()),
        )
    };
    // Neither is set: both are named.
    let message = functions(&[]).expect_err("none is set").to_string();
    for var in ["ACTIONDO_FUNCTION_GATED", "ACTIONDO_FUNCTION_FLAKY"] {
        assert!(message.contains(var), "{message}");
    }
    // A blank one counts as unset, and only it is named.
    let message = functions(&[
        ("ACTIONDO_FUNCTION_GATED", " gated-fn "),
        ("ACTIONDO_FUNCTION_FLAKY", "   "),
    ])
    .expect_err("flaky is blank")
    .to_string();
    assert!(message.contains("ACTIONDO_FUNCTION_FLAKY"), "{message}");
    assert!(!message.contains("ACTIONDO_FUNCTION_GATED"), "{message}");
    // Both set: trimmed names and ARNs.
    assert_eq!(
        functions(&[
            ("ACTIONDO_FUNCTION_GATED", " gated-fn "),
            (
                "ACTIONDO_FUNCTION_FLAKY",
                "arn:aws:lambda:us-east-1:1:function:flaky"
            ),
        ])
        .expect("both are set"),
        BTreeMap::from([
            (
                "flaky",
                "arn:aws:lambda:us-east-1:1:function:flaky".to_owned()
            ),
            ("gated", "gated-fn".to_owned()),
        ])
    );
}

// ------------------------------------------------------------ a local Invoke endpoint

/// What the endpoint received: function name, invocation type, payload.
type Received = Arc<Mutex<Vec<(String, String, Value)>>>;

/// `POST /2015-03-31/functions/{name}/invocations`, answering per function name as
/// Lambda does: a result, a function error (200 + `X-Amz-Function-Error`), throttling
/// (429 `TooManyRequestsException`), or 202 for an `Event` invocation.
async fn invoke(
    State(received): State<Received>,
    Path(function): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let invocation_type = headers
        .get("x-amz-invocation-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("RequestResponse")
        .to_owned();
    let payload: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    received
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push((function.clone(), invocation_type.clone(), payload.clone()));
    if invocation_type == "Event" {
        return StatusCode::ACCEPTED.into_response();
    }
    // A function ARN (with or without a qualifier) names the function after `:function:`.
    let bare = function
        .split_once(":function:")
        .map_or(function.as_str(), |(_, rest)| {
            rest.split(':').next().unwrap_or(rest)
        });
    match bare {
        "user-fn" => {
            let result = json!({"userId": "u_1", "echo": payload["params"]});
            let reply = json!({
                "result": result,
                "execution": {"key": payload["idempotencyKey"], "attempt": 1, "replayed": true},
            });
            (StatusCode::OK, reply.to_string()).into_response()
        }
        "replaying-fn" => {
            let error = ActionError::rejected("the card was declined")
                .with_details(json!({"reason": "card_declined"}));
            let reply = json!({
                "result": null,
                "error": error.to_body().error,
                "execution": {"key": payload["idempotencyKey"], "attempt": 1, "replayed": true},
            });
            (StatusCode::OK, reply.to_string()).into_response()
        }
        "rejecting-fn" => {
            let error = ActionError::rejected("a user with the email a@example.com already exists")
                .with_details(json!({"reason": "email_taken"}));
            let body = String::from_utf8(diagnostic(&error)).expect("UTF-8");
            (
                StatusCode::OK,
                [("x-amz-function-error", "Unhandled")],
                body,
            )
                .into_response()
        }
        "busy-fn" => {
            let error = ActionError::in_progress("busy")
                .with_details(json!({"retryAfterMs": 2_500, "attempt": 1}));
            let body = String::from_utf8(diagnostic(&error)).expect("UTF-8");
            (
                StatusCode::OK,
                [("x-amz-function-error", "Unhandled")],
                body,
            )
                .into_response()
        }
        "crashing-fn" => (
            StatusCode::OK,
            [("x-amz-function-error", "Unhandled")],
            json!({"errorType": "Runtime.ExitError", "errorMessage": "signal: killed"}).to_string(),
        )
            .into_response(),
        "failing-fn" => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [
                ("x-amzn-errortype", "ServiceException"),
                ("content-type", "application/json"),
            ],
            json!({"Type": "Server", "Message": "Lambda failed for arn:aws:iam::123456789012:role/secret-role"})
                .to_string(),
        )
            .into_response(),
        "throttled-fn" => (
            StatusCode::TOO_MANY_REQUESTS,
            [
                ("x-amzn-errortype", "TooManyRequestsException"),
                ("retry-after", "3"),
                ("content-type", "application/json"),
            ],
            json!({"Type": "User", "message": "Rate Exceeded.", "Reason": "ReservedFunctionConcurrentInvocationLimitExceeded"})
                .to_string(),
        )
            .into_response(),
        _ => (
            StatusCode::NOT_FOUND,
            [
                ("x-amzn-errortype", "ResourceNotFoundException"),
                ("content-type", "application/json"),
            ],
            json!({"Type": "User", "Message": format!("Function not found: {function}")})
                .to_string(),
        )
            .into_response(),
    }
}

/// A Lambda client of the router's settings at `url`, sending each request once (the
/// retries are `actiondo::aws::signed`'s, tested in shared/tests/signed.rs).
fn lambda_client(url: &str) -> SignedClient {
    let settings = ClientSettings {
        max_attempts: 1,
        ..LambdaDispatcher::client_settings()
    };
    SignedClient::with_settings(
        &actiondo::testing::local_aws_config(url),
        AwsService::LAMBDA,
        settings,
    )
    .expect("a Lambda client")
}

/// A router whose actions are reached through the Invoke API at a local endpoint; the
/// endpoint's server task and what it received.
async fn lambda_router(
    functions: &[(&'static str, &str)],
) -> (axum::Router, Received, tokio::task::JoinHandle<()>) {
    let (router, received, server, _) = lambda_router_with(functions, false).await;
    (router, received, server)
}

/// [`lambda_router`], with API keys (in its store) when `keys`.
async fn lambda_router_with(
    functions: &[(&'static str, &str)],
    keys: bool,
) -> (
    axum::Router,
    Received,
    tokio::task::JoinHandle<()>,
    actiondo_api::KeyStore,
) {
    let received: Received = Arc::default();
    let app = axum::Router::new()
        .route("/2015-03-31/functions/{function}/invocations", post(invoke))
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
    let functions: BTreeMap<&'static str, String> = functions
        .iter()
        .map(|(action, function)| (*action, (*function).to_owned()))
        .collect();
    let dispatcher = LambdaDispatcher::new(lambda_client(&format!("http://{address}")), functions);
    let store: Arc<dyn actiondo::Store> = Arc::new(
        actiondo::store::sqlite::SqliteStore::in_memory().expect("an in-memory store opens"),
    );
    let key_store = actiondo_api::KeyStore::new(Arc::clone(&store));
    let auth = if keys {
        Auth::ApiKeys(key_store.clone())
    } else {
        Auth::Disabled
    };
    let router = Api::new(
        actiondo_catalog::catalog(),
        Arc::new(dispatcher),
        store,
        auth,
    )
    .into_router();
    (router, received, server, key_store)
}

async fn send(router: &axum::Router, request: http::Request<axum::body::Body>) -> Reply {
    use http_body_util::BodyExt as _;
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("the router's error type is Infallible");
    let (parts, body) = response.into_parts();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: body
            .collect()
            .await
            .expect("a readable body")
            .to_bytes()
            .to_vec(),
    }
}

#[tokio::test]
async fn the_lambda_dispatcher_maps_invoke_answers_to_http() {
    let (router, received, server) = lambda_router(&[
        ("create-user", "user-fn"),
        ("validate-lead", "rejecting-fn"),
        ("score-lead", "busy-fn"),
        ("send-email", "crashing-fn"),
        ("send-notification", "throttled-fn"),
        ("assign-owner", "missing-fn"),
        ("process-payment", "replaying-fn"),
    ])
    .await;
    let params = r#"{"email": "a@example.com", "name": "Ada"}"#;

    // A result in its envelope: the output, the key and whether it was a replay.
    let ok = send(&router, post_keyed("/actions/create-user", params, "k1")).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    assert_eq!(
        ok.json(),
        json!({"userId": "u_1", "echo": {"email": "a@example.com", "name": "Ada"}})
    );
    assert_eq!(ok.header("idempotent-replayed"), Some("true"));
    assert_eq!(ok.header("idempotency-key"), Some("k1"));
    {
        let received = received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (function, invocation_type, payload) = &received[0];
        assert_eq!(function, "user-fn");
        assert_eq!(invocation_type, "RequestResponse");
        assert_eq!(
            payload,
            &json!({"params": {"email": "a@example.com", "name": "Ada"}, "idempotencyKey": "k1", "respond": "envelope"})
        );
    }

    // Function errors answer the status of their wire name.
    let rejected = send(&router, post_keyed("/actions/validate-lead", params, "k2")).await;
    let error = rejected.error(422, "ActionDo.Rejected");
    assert_eq!(error["details"]["reason"], "email_taken");
    // A terminal failure in the envelope: its status, and whether it was a replay.
    let payment = r#"{"userId": "u1", "amount": 1000, "currency": "USD", "paymentMethod": "pm_1"}"#;
    let replayed = send(
        &router,
        post_keyed("/actions/process-payment", payment, "k8"),
    )
    .await;
    let error = replayed.error(422, "ActionDo.Rejected");
    assert_eq!(error["details"]["reason"], "card_declined");
    assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
    let busy = send(&router, post_keyed("/actions/score-lead", params, "k3")).await;
    busy.error(409, "ActionDo.InProgress");
    assert_eq!(busy.header("retry-after"), Some("3"));
    let crashed = send(&router, post_keyed("/actions/send-email", params, "k4")).await;
    let error = crashed.error(500, "ActionDo.Internal");
    assert_eq!(error["details"]["errorType"], "Runtime.ExitError");

    // Throttling: 503 with Lambda's Retry-After.
    let throttled = send(
        &router,
        post_keyed("/actions/send-notification", params, "k5"),
    )
    .await;
    let error = throttled.error(503, "ActionDo.Transient");
    assert_eq!(error["retryable"], true);
    assert_eq!(throttled.header("retry-after"), Some("3"));

    // A function that does not exist is a deployment problem: 500.
    let missing = send(&router, post_keyed("/actions/assign-owner", params, "k6")).await;
    missing.error(500, "ActionDo.Internal");
    // An action without a function: 500 naming the variable to set.
    let unset = send(&router, post_keyed("/actions/enrich-lead", params, "k7")).await;
    let error = unset.error(500, "ActionDo.Internal");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("ACTIONDO_FUNCTION_ENRICH_LEAD")),
        "{error}"
    );

    // Prefer: respond-async is an Event invocation with the key the Location names.
    let req = http::Request::builder()
        .method("POST")
        .uri("/actions/create-user")
        .header("content-type", "application/json")
        .header("prefer", "respond-async")
        .header("x-correlation-id", "corr-1")
        .body(axum::body::Body::from(params))
        .expect("a request");
    let accepted = send(&router, req).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.text());
    let derived = actiondo::hash::payload_hash(&serde_json::from_str(params).expect("JSON params"));
    assert_eq!(
        accepted.header("location"),
        Some(format!("/executions/create-user/{derived}").as_str())
    );
    {
        let received = received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (function, invocation_type, payload) = received.last().expect("an invocation");
        assert_eq!(function, "user-fn");
        assert_eq!(invocation_type, "Event");
        assert_eq!(payload["idempotencyKey"], derived.as_str());
        assert_eq!(payload["correlationId"], "corr-1");
        assert!(payload.get("respond").is_none(), "{payload}");
    }
    server.abort();
}

/// The router passes the API key's caller in the envelope, and the action's function
/// (its direct trigger, fed the bytes the router sent) records it: `caller:
/// apikey:<id>` on an audit record made through the Lambda path (issue 11).
#[tokio::test]
async fn the_caller_reaches_the_audit_through_the_lambda_path() {
    let (router, received, server, keys) =
        lambda_router_with(&[("validate-lead", "lead-fn")], true).await;
    let key = keys
        .create(vec!["validate-lead".to_owned()], None)
        .await
        .expect("a key");
    let params = r#"{"email": "lee@example.com", "name": "Lee"}"#;
    let request = common::bearer(
        post_keyed("/actions/validate-lead", params, "k-caller"),
        &key.key,
    );
    let _ = send(&router, request).await;
    let payload = {
        let received = received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (function, _, payload) = received.last().expect("an invocation");
        assert_eq!(function, "lead-fn");
        payload.clone()
    };
    let caller = format!("apikey:{}", key.info.id);
    assert_eq!(payload["caller"], caller.as_str(), "{payload}");
    server.abort();

    // What the function does with that payload: its audit record names the caller.
    use actiondo::Store as _;
    let store: Arc<dyn actiondo::Store> = Arc::new(
        actiondo::store::sqlite::SqliteStore::in_memory().expect("an in-memory store opens"),
    );
    let action = actiondo_catalog::catalog()
        .get("validate-lead")
        .cloned()
        .expect("validate-lead is in the catalog");
    let handler =
        actiondo::trigger::Handler::new(actiondo::Executor::from_arc(Arc::clone(&store)), action);
    let mut context = lambda_runtime::Context::default();
    context.request_id = "req-caller".to_owned();
    let answer = handler.handle(payload, &context).await.expect("an answer");
    assert_eq!(answer_error(&answer), Value::Null, "{answer:?}");
    let audit = store
        .query_audit(&actiondo::AuditQuery::new(
            actiondo::AuditFilter::Execution("validate-lead#k-caller".to_owned()),
        ))
        .await
        .expect("the audit reads")
        .records;
    assert!(!audit.is_empty());
    assert!(
        audit
            .iter()
            .all(|r| r.caller.as_deref() == Some(caller.as_str())),
        "{audit:?}"
    );
}

/// The `error` of an envelope answer.
fn answer_error(reply: &actiondo::trigger::Reply) -> Value {
    let value: Value = serde_json::to_value(reply).unwrap_or(Value::Null);
    value["error"].clone()
}

/// A body that is not JSON, with a valid key: the router sends it as `paramsText`, and the
/// function's executor refuses it and leaves its `rejected` audit record (issue 11).
#[tokio::test]
async fn a_malformed_body_reaches_the_function_and_is_audited() {
    use actiondo::Store as _;
    let (router, received, server, keys) =
        lambda_router_with(&[("validate-lead", "lead-fn")], true).await;
    let key = keys
        .create(vec!["validate-lead".to_owned()], None)
        .await
        .expect("a key");
    let body = r#"{"email": "#;
    let request = common::bearer(
        post_keyed("/actions/validate-lead", body, "k-bad"),
        &key.key,
    );
    let _ = send(&router, request).await;
    let payload = {
        let received = received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        received.last().expect("an invocation").2.clone()
    };
    server.abort();
    assert_eq!(payload["paramsText"], body, "{payload}");

    let store: Arc<dyn actiondo::Store> = Arc::new(
        actiondo::store::sqlite::SqliteStore::in_memory().expect("an in-memory store opens"),
    );
    let action = actiondo_catalog::catalog()
        .get("validate-lead")
        .cloned()
        .expect("validate-lead is in the catalog");
    let handler =
        actiondo::trigger::Handler::new(actiondo::Executor::from_arc(Arc::clone(&store)), action);
    let answer = handler
        .handle(payload, &lambda_runtime::Context::default())
        .await
        .expect("an answer");
    assert_eq!(answer_error(&answer)["type"], "ActionDo.Validation");
    let audit = store
        .query_audit(&actiondo::AuditQuery::new(
            actiondo::AuditFilter::Execution("validate-lead#k-bad".to_owned()),
        ))
        .await
        .expect("the audit reads")
        .records;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].status, actiondo::AuditStatus::Rejected);
    assert_eq!(
        audit[0].caller.as_deref(),
        Some(format!("apikey:{}", key.info.id).as_str())
    );
}

#[test]
fn function_names_and_arns_are_one_path_segment() {
    use router::dispatch::invoke_path;
    assert_eq!(
        invoke_path("send-email-fn"),
        "/2015-03-31/functions/send-email-fn/invocations"
    );
    assert_eq!(
        invoke_path("arn:aws:lambda:us-east-1:123456789012:function:send_email:live"),
        "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Asend_email%3Alive/invocations"
    );
    assert_eq!(
        invoke_path("a/b c"),
        "/2015-03-31/functions/a%2Fb%20c/invocations"
    );
}

/// A function named by its ARN (qualifier included) reaches Lambda as one percent-encoded
/// path segment, which the endpoint decodes back to the ARN.
#[tokio::test]
async fn a_function_arn_is_invoked_by_its_encoded_path() {
    let arn = "arn:aws:lambda:us-east-1:123456789012:function:user-fn:live";
    let (router, received, server) = lambda_router(&[("create-user", arn)]).await;
    let params = r#"{"email": "a@example.com", "name": "Ada"}"#;
    let ok = send(&router, post_keyed("/actions/create-user", params, "k-arn")).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    assert_eq!(ok.json()["userId"], "u_1");
    {
        let received = received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        assert_eq!(received.len(), 1);
        assert_eq!(received[0].0, arn);
    }
    server.abort();
}

/// Lambda failing, a Lambda API that cannot be reached, and an unknown function: the
/// answers say what failed in plain words and name Lambda's error code, never Lambda's
/// own text (an account, a role) or the client's debug text; that goes to the log.
#[tokio::test]
async fn lambda_failures_are_said_in_plain_words() {
    let (router, _received, server) =
        lambda_router(&[("mark-user", "failing-fn"), ("assign-owner", "missing-fn")]).await;
    let params = r#"{"email": "a@example.com", "name": "Ada"}"#;
    let plain = |error: &Value| -> String {
        let message = error["message"].as_str().expect("a message").to_owned();
        for leak in [
            "123456789012",
            "secret-role",
            "Function not found",
            "ConnectorError",
            "DispatchFailure",
            "Service {",
            "127.0.0.1",
        ] {
            assert!(!message.contains(leak), "{leak} in {message}");
        }
        message
    };

    let failed = send(&router, post_keyed("/actions/mark-user", params, "k1")).await;
    let error = failed.error(503, "ActionDo.Transient");
    let message = plain(&error);
    assert!(
        message.starts_with(
            "Lambda could not run failing-fn now: it answered ServiceException (HTTP 500); try again (the log of this request has the cause)"
        ),
        "{message}"
    );

    let missing = send(&router, post_keyed("/actions/assign-owner", params, "k2")).await;
    let error = missing.error(500, "ActionDo.Internal");
    let message = plain(&error);
    assert!(
        message.starts_with(
            "invoking missing-fn failed: Lambda answered ResourceNotFoundException (HTTP 404)"
        ),
        "{message}"
    );
    server.abort();

    // Nothing listens at the endpoint any more.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a local port");
    let url = format!("http://{}", listener.local_addr().expect("its address"));
    drop(listener);
    let dispatcher = LambdaDispatcher::new(
        lambda_client(&url),
        BTreeMap::from([("create-user", "user-fn".to_owned())]),
    );
    let store: Arc<dyn actiondo::Store> = Arc::new(
        actiondo::store::sqlite::SqliteStore::in_memory().expect("an in-memory store opens"),
    );
    let router = Api::new(
        actiondo_catalog::catalog(),
        Arc::new(dispatcher),
        store,
        Auth::Disabled,
    )
    .into_router();
    let unreachable = send(&router, post_keyed("/actions/create-user", params, "k3")).await;
    let error = unreachable.error(503, "ActionDo.Transient");
    let message = plain(&error);
    assert!(
        message.starts_with(
            "the Lambda API could not be reached for user-fn; try again (the log of this request has the cause)"
        ),
        "{message}"
    );
}

/// `ACTIONDO_CONSOLE=on` serves the console's pages in a router built with the feature
/// `console`; built without it (the deployed default: template.yaml does not turn the
/// console on), the setting is a start-up error naming the feature, never a console that
/// silently is not there. Without the setting, the routes are the API's either way.
#[tokio::test]
async fn the_console_is_served_only_by_a_router_built_with_it() {
    let (api_router, _received, server) = lambda_router(&[]).await;
    let on = Settings::from_pairs([("ACTIONDO_CONSOLE", "on")]);
    let off = Settings::from_pairs([("ACTIONDO_CONSOLE", "off")]);
    let plain = router::lambda::with_console(api_router.clone(), &off).expect("no console asked");
    let page = send(&plain, common::get("/console/")).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.text());
    let served = router::lambda::with_console(api_router, &on);
    assert_eq!(
        served.is_ok(),
        cfg!(feature = "console"),
        "served only by a router built with the console"
    );
    match served {
        Ok(with) => {
            let page = send(&with, common::get("/console/")).await;
            assert_eq!(page.status, StatusCode::OK, "{}", page.text());
            assert!(page.text().contains("<html"), "{}", page.text());
        }
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.contains("ACTIONDO_CONSOLE=on") && message.contains("--features console"),
                "{message}"
            );
        }
    }
    server.abort();
}
