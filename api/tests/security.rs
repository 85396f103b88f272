//! The security suite of issue 11 over the HTTP API in process: for each (key scope,
//! route, name) the status, and for every refusal that nothing ran and nothing was
//! written (no idempotency record, no audit record) except the `rejected` audit record
//! docs/architecture.md §4 asks for, and that no answer names an action outside the key's
//! scope.

mod cases;
#[allow(dead_code)]
mod common;

use actiondo::{Catalog, Store as _};
use actiondo_api::keys::{INTERNAL_ACTIONS, Scope};
use axum::body::Body;
use cases::{ADA, CASES, FORBIDDEN, NOT_FOUND, SCOPES};
use common::{Setup, bearer, get, post, post_keyed};
use http::StatusCode;
use serde_json::{Value, json};

fn build(method: &str, uri: &str, body: Option<&str>) -> http::Request<Body> {
    match body {
        Some(body) => common::request(method, uri)
            .header("content-type", "application/json")
            .header("idempotency-key", "sec")
            .body(Body::from(body.to_owned()))
            .expect("a valid request"),
        None => common::request(method, uri)
            .body(Body::empty())
            .expect("a valid request"),
    }
}

/// Every name the catalog or the key store knows.
fn all_names() -> Vec<String> {
    let mut names: Vec<String> = actiondo_catalog::catalog()
        .iter()
        .map(|a| a.name().to_owned())
        .collect();
    names.extend(INTERNAL_ACTIONS.iter().map(|n| (*n).to_owned()));
    names
}

/// The setup and its keys by label.
async fn setup() -> (Setup, Vec<(&'static str, String, Scope)>) {
    let s = Setup::with_keys(Catalog::new());
    let mut keys = Vec::new();
    for (label, scope) in SCOPES {
        let scope: Vec<String> = scope.iter().map(|p| (*p).to_owned()).collect();
        let new = s
            .keys
            .create(scope.clone(), Some(label.to_owned()))
            .await
            .expect("a key is created");
        keys.push((label, new.key, Scope::parse(&scope).expect("a valid scope")));
    }
    (s, keys)
}

#[tokio::test]
async fn every_refusal_is_the_right_status_and_leaves_nothing() {
    let (s, keys) = setup().await;
    let before = s.all_audit().await.len();
    for case in CASES {
        let (_, key, scope) = keys
            .iter()
            .find(|(label, _, _)| *label == case.key)
            .expect("a key of the table");
        let what = format!("{} {} with {}", case.method, case.uri, case.key);
        let reply = s
            .send(bearer(build(case.method, case.uri, case.body), key))
            .await;
        assert_eq!(
            reply.status.as_u16(),
            case.status,
            "{what}: {}",
            reply.text()
        );
        // POST /execute answers {result, error}; the other routes {error}.
        let error = reply.json()["error"].clone();
        assert_eq!(error["type"], case.error_type, "{what}: {error}");
        // No name outside the scope, unless the request itself spelled it.
        let text = reply.text();
        let uri = percent_encoding::percent_decode_str(case.uri).decode_utf8_lossy();
        let asked = format!("{uri} {}", case.body.unwrap_or_default());
        for name in all_names() {
            if !scope.allows(&name) && !asked.contains(&name) {
                assert!(!text.contains(&name), "{what} names {name}: {text}");
            }
        }
        if let Some(suggestions) = error["details"]["suggestions"].as_array() {
            assert!(
                suggestions
                    .iter()
                    .all(|n| n.as_str().is_some_and(|n| scope.allows(n))),
                "{what}: {error}"
            );
        }
        // Nothing ran, nothing was written.
        assert_eq!(
            s.all_audit().await.len(),
            before,
            "{what} wrote an audit record"
        );
        for name in all_names() {
            assert!(s.record(&name, "sec").await.is_none(), "{what} ran {name}");
        }
    }
}

#[tokio::test]
async fn a_known_and_an_unknown_name_out_of_scope_read_the_same() {
    let (s, keys) = setup().await;
    let send = &keys[1].1;
    let reply = |name: &'static str| {
        let request = bearer(post_keyed(&format!("/actions/{name}"), ADA, "k"), send);
        let s = &s;
        async move {
            let reply = s.send(request).await;
            (reply.status, reply.json()["error"].clone())
        }
    };
    let (known_status, known) = reply("create-user").await;
    let (unknown_status, unknown) = reply("create-usr").await;
    assert_eq!(known_status, StatusCode::FORBIDDEN);
    assert_eq!(known_status, unknown_status);
    assert_eq!(
        known["message"]
            .as_str()
            .map(|m| m.replace("create-user", "NAME")),
        unknown["message"]
            .as_str()
            .map(|m| m.replace("create-usr", "NAME")),
    );
    assert_eq!(known["details"], unknown["details"]);
    assert!(!unknown.to_string().contains("create-user"), "{unknown}");

    // Inside the scope, suggestions come from the scope only.
    let near = s
        .send(bearer(post_keyed("/actions/send-emial", ADA, "k"), send))
        .await;
    let error = near.error(404, NOT_FOUND);
    assert_eq!(error["details"]["suggestions"][0], "send-email", "{error}");
}

#[tokio::test]
async fn no_scope_lists_or_reads_internal_actions() {
    let (s, keys) = setup().await;
    for (label, key, _) in &keys {
        let listed = s.send(bearer(get("/actions"), key)).await;
        assert_eq!(listed.status, StatusCode::OK, "{label}");
        let text = listed.text();
        for internal in INTERNAL_ACTIONS {
            assert!(!text.contains(internal), "{label}: {text}");
        }
        for uri in ["/audit", "/audit?limit=100"] {
            let audit = s.send(bearer(get(uri), key)).await;
            assert_eq!(audit.status, StatusCode::OK, "{label} {uri}");
            let records: Vec<Value> = audit.json()["records"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            assert!(
                records.iter().all(|r| r["type"]
                    .as_str()
                    .is_some_and(|t| !INTERNAL_ACTIONS.contains(&t))),
                "{label}: {records:?}"
            );
        }
    }
    // The key creations are audited all the same.
    assert_eq!(
        s.all_audit()
            .await
            .iter()
            .filter(|r| r.action == "create-api-key")
            .count(),
        SCOPES.len()
    );
}

#[tokio::test]
async fn a_malformed_body_with_a_valid_key_leaves_its_rejected_record() {
    let (s, keys) = setup().await;
    let (_, star, _) = &keys[0];
    let body = r#"{"email": "ada@example.com", "name":"#;
    let reply = s
        .send(bearer(
            post_keyed("/actions/create-user", body, "bad"),
            star,
        ))
        .await;
    reply.error(400, "ActionDo.Validation");
    let audit = s.audit_of("create-user", "bad").await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].status, actiondo::AuditStatus::Rejected);
    assert!(
        audit[0]
            .caller
            .as_deref()
            .is_some_and(|c| c.starts_with("apikey:")),
        "{audit:?}"
    );
    // Its length and SHA-256, never the text.
    assert!(!audit[0].details.to_string().contains("ada@example.com"));

    // The same with Prefer: respond-async: refused at once, audited.
    let mut request = post_keyed("/actions/create-user", body, "bad-async");
    request
        .headers_mut()
        .insert("prefer", "respond-async".parse().expect("a header value"));
    s.send(bearer(request, star))
        .await
        .error(400, "ActionDo.Validation");
    assert_eq!(s.audit_of("create-user", "bad-async").await.len(), 1);

    // Out of scope, the body is never read: 403 and no record.
    let (_, send, _) = &keys[1];
    s.send(bearer(
        post_keyed("/actions/create-user", body, "bad-out"),
        send,
    ))
    .await
    .error(403, FORBIDDEN);
    assert!(s.audit_of("create-user", "bad-out").await.is_empty());
    assert!(
        s.store
            .get_record("create-user#bad-out")
            .await
            .expect("reads")
            .is_none()
    );
}

#[tokio::test]
async fn in_scope_the_same_routes_answer() {
    let (s, keys) = setup().await;
    let (_, lead, _) = &keys[2];
    let body = json!({"email": "lee@example.com", "name": "Lee"}).to_string();
    // A percent-encoded name is the same name.
    let ran = s
        .send(bearer(
            post_keyed("/actions/validate%2Dlead", &body, "ok"),
            lead,
        ))
        .await;
    assert_eq!(ran.status, StatusCode::OK, "{}", ran.text());
    let view = s
        .send(bearer(get("/executions/validate-lead/ok"), lead))
        .await;
    assert_eq!(view.status, StatusCode::OK, "{}", view.text());
    let execute =
        json!({"name": "validate-lead", "params": {"email": "lee@example.com", "name": "Lee"}});
    let executed = s
        .send(bearer(post("/execute", &execute.to_string()), lead))
        .await;
    assert_eq!(executed.status, StatusCode::OK, "{}", executed.text());
    let audit = s.send(bearer(get("/audit?type=validate-lead"), lead)).await;
    assert_eq!(audit.status, StatusCode::OK);
    assert_eq!(audit.json()["records"].as_array().map(Vec::len), Some(2));
}

/// A key scoped to `workflow:user-*` asking for workflows the router does not run, on a
/// router that runs the project's workflows on Step Functions: 404, and the answer names
/// no workflow outside the scope (the service's own not-found error lists every one).
/// No request reaches Step Functions: its client points at an unroutable endpoint.
#[tokio::test]
async fn an_unknown_workflow_names_no_workflow_outside_the_scope() {
    let mut s = Setup::with_keys(Catalog::new());
    let names = [
        "crm-new-lead".to_owned(),
        "lead-qualification".to_owned(),
        "user-onboarding".to_owned(),
    ];
    let machines = names
        .iter()
        .map(|name| {
            let arn = format!("arn:aws:states:us-east-1:123456789012:stateMachine:{name}");
            (name.clone(), arn)
        })
        .collect();
    let client = actiondo::aws::signed::SignedClient::new(
        &actiondo::testing::local_aws_config("http://127.0.0.1:9"),
        actiondo::aws::signed::AwsService::STEP_FUNCTIONS,
    )
    .expect("a Step Functions client");
    s.router = s
        .api
        .clone()
        .with_workflows(actiondo_api::Workflows::new(client, machines))
        .into_router();
    let key = s
        .keys
        .create(vec!["workflow:user-*".to_owned()], None)
        .await
        .expect("a key is created")
        .key;
    for (method, uri, body) in [
        ("POST", "/workflows/user-nope", Some("{}")),
        ("GET", "/workflows/user-nope/executions/x", None),
        ("GET", "/workflows/user-nope/executions/x/history", None),
        (
            "POST",
            "/workflows/user-nope/executions/x/redrive",
            Some("{}"),
        ),
        ("GET", "/workflows/user-nope/executions", None),
    ] {
        let reply = s.send(bearer(build(method, uri, body), &key)).await;
        let text = reply.text();
        assert_eq!(reply.status.as_u16(), 404, "{method} {uri}: {text}");
        assert_eq!(reply.json()["error"]["type"], "ActionDo.NotFound", "{text}");
        for name in ["crm-new-lead", "lead-qualification"] {
            assert!(!text.contains(name), "{method} {uri} names {name}: {text}");
        }
    }
}
