//! API keys on the router's routes (`Auth::ApiKeys`): 401 without a valid key, 403 outside
//! its scope, the caller in the audit, and only the key's hash in the store.

#[allow(dead_code)]
mod common;

use actiondo::{AuditFilter, AuditQuery, Catalog, Store as _};
use actiondo_api::keys::{hash_key, key_entity};
use axum::body::Body;
use common::{Setup, bearer, get, post, post_keyed, request};
use http::StatusCode;
use serde_json::{Value, json};

const ADA: &str = r#"{"email": "ada@example.com", "name": "Ada"}"#;

/// One request of every route (a fresh one each call: requests are consumed).
fn every_route() -> Vec<http::Request<Body>> {
    vec![
        post_keyed("/actions/create-user", ADA, "k"),
        post("/execute", r#"{"name": "create-user", "params": {}}"#),
        get("/actions"),
        get("/actions/create-user"),
        get("/executions/create-user/k"),
        get("/audit?type=create-user"),
    ]
}

/// A key of `scope`.
async fn key(s: &Setup, scope: &[&str]) -> (String, String) {
    let new = s
        .keys
        .create(scope.iter().map(|p| (*p).to_owned()).collect(), None)
        .await
        .expect("a key is created");
    (new.key, new.info.id)
}

fn assert_unauthorized(reply: &common::Reply) {
    reply.error(401, "ActionDo.Unauthorized");
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
}

#[tokio::test]
async fn every_route_needs_a_valid_key() {
    let s = Setup::with_keys(Catalog::new());
    let (good, id) = key(&s, &["*"]).await;
    let secret = good.rsplit('_').next().expect("a secret").to_owned();
    let wrong_secret = format!("ado_{id}_{}", "0".repeat(secret.len()));
    assert_ne!(wrong_secret, good);
    let unknown_id = format!("ado_{}_{secret}", "f".repeat(id.len()));
    assert_ne!(unknown_id, good);

    for req in every_route() {
        let what = format!("{} {}", req.method(), req.uri());
        let reply = s.send(req).await;
        assert_unauthorized(&reply);
        assert!(
            reply.json()["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("Bearer")),
            "{what}"
        );
    }
    let bad_credentials = [
        format!("Bearer {wrong_secret}"),
        format!("Bearer {unknown_id}"),
        "Bearer ado_123_456".to_owned(),
        "Bearer not-a-key".to_owned(),
        format!("Bearer {good}x"),
        format!("Basic {good}"),
        good.clone(),
        "Bearer".to_owned(),
    ];
    for credentials in &bad_credentials {
        for mut req in every_route() {
            req.headers_mut().insert(
                http::header::AUTHORIZATION,
                credentials.parse().expect("a header value"),
            );
            let reply = s.send(req).await;
            assert_unauthorized(&reply);
            // Every refusal reads the same: nothing says how close a guess was.
            assert_eq!(
                reply.json()["error"]["message"],
                if credentials.starts_with("Bearer ") {
                    json!("the API key is not valid")
                } else {
                    json!("send an API key: Authorization: Bearer <key>")
                },
                "{credentials}"
            );
        }
    }
    assert!(s.record("create-user", "k").await.is_none());
    let audit = s
        .store
        .query_audit(&AuditQuery::new(AuditFilter::Type("create-user".into())))
        .await
        .expect("the audit reads");
    assert!(audit.records.is_empty(), "nothing ran without a key");

    // The good key passes on every route (the scheme's case does not matter).
    for mut req in every_route() {
        req.headers_mut().insert(
            http::header::AUTHORIZATION,
            format!("bearer  {good} ").parse().expect("a header value"),
        );
        let what = format!("{} {}", req.method(), req.uri());
        let reply = s.send(req).await;
        assert_ne!(reply.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_ne!(reply.status, StatusCode::FORBIDDEN, "{what}");
    }
}

#[tokio::test]
async fn a_revoked_key_is_refused() {
    let s = Setup::with_keys(Catalog::new());
    let (key, id) = key(&s, &["create-user"]).await;
    let before = s.send(bearer(get("/actions/create-user"), &key)).await;
    assert_eq!(before.status, StatusCode::OK);

    let revoked = s.keys.revoke(&id).await.expect("revoked");
    assert!(revoked.revoked_at.is_some());
    for req in every_route() {
        assert_unauthorized(&s.send(bearer(req, &key)).await);
    }
}

#[tokio::test]
async fn a_key_calls_only_the_actions_of_its_scope() {
    let s = Setup::with_keys(Catalog::new());
    let (send_key, _) = key(&s, &["send-*"]).await;
    let (user_key, user_id) = key(&s, &["create-user", "*-lead"]).await;

    // Outside the scope: 403, and nothing ran, nothing was audited.
    let refused = s
        .send(bearer(
            post_keyed("/actions/create-user", ADA, "scoped"),
            &send_key,
        ))
        .await;
    let error = refused.error(403, "ActionDo.Forbidden");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("create-user"))
    );
    let execute = s
        .send(bearer(
            post(
                "/execute",
                &json!({"name": "create-user", "params": {"email": "x@example.com", "name": "X"}, "idempotencyKey": "scoped"})
                    .to_string(),
            ),
            &send_key,
        ))
        .await;
    assert_eq!(execute.status, StatusCode::FORBIDDEN);
    assert_eq!(execute.json()["error"]["type"], "ActionDo.Forbidden");
    let mut async_req = post_keyed("/actions/create-user", ADA, "scoped");
    async_req
        .headers_mut()
        .insert("prefer", "respond-async".parse().expect("a header value"));
    s.send(bearer(async_req, &send_key))
        .await
        .error(403, "ActionDo.Forbidden");
    assert!(s.record("create-user", "scoped").await.is_none());
    assert!(s.audit_of("create-user", "scoped").await.is_empty());
    s.send(bearer(get("/actions/create-user"), &send_key))
        .await
        .error(403, "ActionDo.Forbidden");

    // Inside: 200, and the audit names the key.
    let ok = s
        .send(bearer(
            post_keyed("/actions/create-user", ADA, "scoped"),
            &user_key,
        ))
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    let lead = json!({"email": "lee@example.com", "name": "Lee"}).to_string();
    let lead_reply = s
        .send(bearer(
            post_keyed("/actions/validate-lead", &lead, "l1"),
            &user_key,
        ))
        .await;
    assert_eq!(lead_reply.status, StatusCode::OK);
    let replay = s
        .send(bearer(
            post_keyed("/actions/create-user", ADA, "scoped"),
            &user_key,
        ))
        .await;
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    let audit = s.audit_of("create-user", "scoped").await;
    assert_eq!(audit.len(), 2);
    let caller = format!("apikey:{user_id}");
    assert!(
        audit.iter().all(|r| r.caller.as_deref() == Some(&caller)),
        "{audit:?}"
    );

    // Its executions are readable by it, not by the other key.
    let view = s
        .send(bearer(get("/executions/create-user/scoped"), &user_key))
        .await;
    assert_eq!(view.status, StatusCode::OK);
    assert_eq!(view.json()["audit"][0]["caller"], caller.as_str());
    s.send(bearer(get("/executions/create-user/scoped"), &send_key))
        .await
        .error(403, "ActionDo.Forbidden");
}

#[tokio::test]
async fn the_catalog_shows_only_the_actions_in_scope() {
    let s = Setup::with_keys(Catalog::new());
    let (send_key, _) = key(&s, &["send-*"]).await;
    let body = s.send(bearer(get("/actions"), &send_key)).await.json();
    let names: Vec<&str> = body["actions"]
        .as_array()
        .expect("actions")
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["send-email", "send-notification", "send-welcome-email"]
    );

    let (all_key, _) = key(&s, &["*"]).await;
    let body = s.send(bearer(get("/actions"), &all_key)).await.json();
    assert_eq!(
        body["actions"].as_array().map(Vec::len),
        Some(actiondo_catalog::catalog().len())
    );
}

#[tokio::test]
async fn the_audit_across_actions_shows_only_the_actions_in_scope() {
    let s = Setup::with_keys(Catalog::new());
    let (lead_key, _) = key(&s, &["validate-lead"]).await;
    let (all_key, _) = key(&s, &["*"]).await;
    let lead = json!({"email": "lee@example.com", "name": "Lee"}).to_string();
    let ada = s
        .send(bearer(
            post_keyed("/actions/create-user", ADA, "u1"),
            &all_key,
        ))
        .await;
    assert_eq!(ada.status, StatusCode::OK);
    let mut req = post_keyed("/actions/validate-lead", &lead, "l1");
    req.headers_mut()
        .insert("x-correlation-id", "c-1".parse().expect("a header value"));
    assert_eq!(s.send(bearer(req, &lead_key)).await.status, StatusCode::OK);

    for uri in [
        "/audit?type=create-user",
        "/audit?type=create-user&key=k",
        "/audit?type=create-api-key",
    ] {
        s.send(bearer(get(uri), &lead_key))
            .await
            .error(403, "ActionDo.Forbidden");
    }
    for uri in [
        "/audit",
        "/audit?correlationId=c-1",
        "/audit?type=validate-lead",
        "/audit?type=validate-lead&key=l1",
    ] {
        let reply = s.send(bearer(get(uri), &lead_key)).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}");
        let records = reply.json()["records"].clone();
        assert_eq!(
            records.as_array().map(Vec::len),
            Some(1),
            "{uri}: {records}"
        );
        assert_eq!(records[0]["type"], "validate-lead");
    }
    let reply = s.send(bearer(get("/audit"), &all_key)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let types: Vec<Value> = reply.json()["records"]
        .as_array()
        .expect("records")
        .iter()
        .map(|r| r["type"].clone())
        .collect();
    assert!(types.contains(&json!("validate-lead")) && types.contains(&json!("create-user")));
    // The key creations are in the store, never in an answer (scope * included).
    assert!(!types.contains(&json!("create-api-key")), "{types:?}");
}

#[tokio::test]
async fn the_store_holds_only_the_hash_of_a_key() {
    let s = Setup::with_keys(Catalog::new());
    let new = s
        .keys
        .create(vec!["send-*".into()], Some("the mailer".into()))
        .await
        .expect("a key");
    let secret = new.key.rsplit('_').next().expect("a secret").to_owned();
    assert!(new.key.starts_with(&format!("ado_{}_", new.info.id)));
    assert_eq!(secret.len(), 64);

    let entity = s
        .store
        .get_entity(&key_entity(&new.info.id))
        .await
        .expect("the store reads")
        .expect("the key's entity");
    let stored = entity.doc.to_string();
    assert_eq!(entity.doc["hash"], hash_key(&new.key));
    assert_eq!(entity.doc["scope"], json!(["send-*"]));
    assert_eq!(entity.doc["description"], "the mailer");
    assert!(!stored.contains(&secret), "{stored}");

    // Nor in the audit and the idempotency record of its creation (the hash is redacted).
    let audit = s
        .store
        .query_audit(&AuditQuery::new(AuditFilter::Type("create-api-key".into())))
        .await
        .expect("the audit reads")
        .records;
    assert_eq!(audit.len(), 1);
    let text = serde_json::to_string(&audit).expect("serializes");
    assert!(!text.contains(&secret), "{text}");
    assert!(!text.contains(&hash_key(&new.key)), "{text}");
    assert_eq!(audit[0].details["input"]["hash"], "[REDACTED]");
    let record = s
        .store
        .get_record(&audit[0].execution)
        .await
        .expect("the store reads")
        .expect("the creation's record");
    let result = record
        .result
        .as_ref()
        .expect("a result")
        .decode()
        .expect("decodes");
    assert!(!result.contains(&secret) && !result.contains(&hash_key(&new.key)));
    let output: Value = serde_json::from_str(&result).expect("JSON");
    assert_eq!(output["id"], new.info.id.as_str());

    // The key works, by its hash.
    let reply = s.send(bearer(get("/actions/send-email"), &new.key)).await;
    assert_eq!(reply.status, StatusCode::OK);
}

#[tokio::test]
async fn routes_without_auth_stay_open_when_auth_is_disabled() {
    let s = Setup::open(Catalog::new());
    let req = request("GET", "/actions")
        .header("authorization", "Bearer nonsense")
        .body(Body::empty())
        .expect("a request");
    assert_eq!(s.send(req).await.status, StatusCode::OK);
    assert_eq!(
        s.send(get("/audit")).await.status,
        StatusCode::OK,
        "without keys every caller has scope *"
    );
}
