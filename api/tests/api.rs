//! The router's HTTP core (docs/architecture.md §8) driven with `tower::ServiceExt::oneshot`, dispatching
//! in-process on the embedded store: every route, every status, replays, async calls.

#[allow(dead_code)]
mod common;

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use actiondo::store::RecordStatus;
use actiondo::{AuditStatus, Catalog, Source};
use axum::body::Body;
use common::{Flaky, Gated, Setup, get, post, post_keyed, request};
use http::StatusCode;
use serde_json::{Value, json};

const ADA: &str = r#"{"email": "Ada@Example.com", "name": "Ada Lovelace", "plan": "pro"}"#;

fn lead(i: usize) -> String {
    json!({"email": format!("lead{i}@example.com"), "name": format!("Lead {i}")}).to_string()
}

// ---------------------------------------------------------------- POST /actions/{name}

#[tokio::test]
async fn an_action_answers_its_output_and_a_replay_is_byte_identical() {
    let s = Setup::open(Catalog::new());
    let first = s
        .send(post_keyed("/actions/create-user", ADA, "signup-1"))
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert_eq!(first.header("content-type"), Some("application/json"));
    assert_eq!(first.header("idempotency-key"), Some("signup-1"));
    assert_eq!(first.header("idempotent-replayed"), None);
    let out = first.json();
    assert_eq!(out["email"], "ada@example.com");
    assert_eq!(out["plan"], "pro");
    assert!(
        out["userId"]
            .as_str()
            .is_some_and(|id| id.starts_with("u_"))
    );

    let again = s
        .send(post_keyed("/actions/create-user", ADA, "signup-1"))
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.header("idempotency-key"), Some("signup-1"));
    assert_eq!(again.body, first.body, "a replay is byte-identical");

    let record = s.record("create-user", "signup-1").await.expect("a record");
    assert_eq!(record.status, RecordStatus::Completed);
    let audit = s.audit_of("create-user", "signup-1").await;
    let statuses: Vec<_> = audit.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [AuditStatus::Replayed, AuditStatus::Completed]);
    assert!(
        audit
            .iter()
            .all(|r| r.source == Source::Http && r.caller.is_none())
    );
}

#[tokio::test]
async fn a_stored_failure_is_replayed_with_its_status() {
    let s = Setup::open(Catalog::new());
    let created = s.send(post_keyed("/actions/create-user", ADA, "a")).await;
    assert_eq!(created.status, StatusCode::OK);
    let user_id = created.json()["userId"].clone();

    let taken = s.send(post_keyed("/actions/create-user", ADA, "b")).await;
    let error = taken.error(422, "ActionDo.Rejected");
    assert_eq!(error["retryable"], false);
    assert_eq!(error["details"]["reason"], "email_taken");
    assert_eq!(error["details"]["userId"], user_id);
    assert_eq!(taken.header("idempotent-replayed"), None);

    let replayed = s.send(post_keyed("/actions/create-user", ADA, "b")).await;
    replayed.error(422, "ActionDo.Rejected");
    assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
    assert_eq!(replayed.body, taken.body, "the stored error, byte for byte");
    let record = s.record("create-user", "b").await.expect("a record");
    assert_eq!(record.status, RecordStatus::Failed);
    let statuses: Vec<_> = s
        .audit_of("create-user", "b")
        .await
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [AuditStatus::Replayed, AuditStatus::Failed]);
}

#[tokio::test]
async fn a_key_reused_with_another_payload_is_a_mismatch_and_changes_nothing() {
    let s = Setup::open(Catalog::new());
    let first = s.send(post_keyed("/actions/create-user", ADA, "k")).await;
    assert_eq!(first.status, StatusCode::OK);
    let before = s.record("create-user", "k").await.expect("a record");

    let other = r#"{"email": "grace@example.com", "name": "Grace Hopper"}"#;
    let mismatch = s.send(post_keyed("/actions/create-user", other, "k")).await;
    let error = mismatch.error(422, "ActionDo.PayloadMismatch");
    assert_eq!(error["details"]["key"], "k");
    assert_eq!(mismatch.header("idempotent-replayed"), None);

    assert_eq!(s.record("create-user", "k").await, Some(before));
    let statuses: Vec<_> = s
        .audit_of("create-user", "k")
        .await
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [AuditStatus::Rejected, AuditStatus::Completed]);
    // Grace was not created: her email is still free.
    let grace = s
        .send(post_keyed("/actions/create-user", other, "k2"))
        .await;
    assert_eq!(grace.status, StatusCode::OK, "{}", grace.text());
}

#[tokio::test]
async fn without_a_key_the_key_is_derived_from_the_params() {
    let s = Setup::open(Catalog::new());
    let params = json!({"email": "lin@example.com", "name": "Lin"});
    let first = s
        .send(post("/actions/validate-lead", &params.to_string()))
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let derived = actiondo::hash::payload_hash(&params);
    assert_eq!(first.header("idempotency-key"), Some(derived.as_str()));
    assert!(s.record("validate-lead", &derived).await.is_some());

    // The same params in another order and spacing are the same execution.
    let again = s
        .send(post(
            "/actions/validate-lead",
            r#"{ "name": "Lin",   "email": "lin@example.com" }"#,
        ))
        .await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body, first.body);
}

#[tokio::test]
async fn a_retryable_failure_answers_its_status_and_runs_again_next_time() {
    let flaky = Flaky::failing(1);
    let s = Setup::open(Catalog::new().with(flaky.clone()));
    let body = r#"{"label": "x"}"#;
    let failed = s.send(post_keyed("/actions/flaky", body, "f")).await;
    let error = failed.error(503, "ActionDo.Transient");
    assert_eq!(error["retryable"], true);
    assert_eq!(failed.header("retry-after"), Some("2"));
    assert!(
        s.record("flaky", "f").await.is_none_or(|r| r.is_released()),
        "the key was released"
    );

    let retried = s.send(post_keyed("/actions/flaky", body, "f")).await;
    assert_eq!(retried.status, StatusCode::OK);
    assert_eq!(retried.header("idempotent-replayed"), None);
    assert_eq!(retried.json(), json!({"label": "x", "call": 2}));
    assert_eq!(flaky.calls.load(Ordering::SeqCst), 2);
    // Both may fall in one millisecond, where the order of the trail is not time order:
    // compare as a set.
    let statuses: HashSet<_> = s
        .audit_of("flaky", "f")
        .await
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(
        statuses,
        HashSet::from([AuditStatus::Completed, AuditStatus::Retrying])
    );
}

#[tokio::test]
async fn a_correlation_id_header_reaches_the_audit() {
    let s = Setup::open(Catalog::new());
    let mut req = post_keyed("/actions/validate-lead", &lead(1), "c1");
    req.headers_mut().insert(
        "x-correlation-id",
        "order-7".parse().expect("a header value"),
    );
    assert_eq!(s.send(req).await.status, StatusCode::OK);
    let audit = s.audit_of("validate-lead", "c1").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].correlation_id.as_deref(), Some("order-7"));
}

// ---------------------------------------------------------------- POST /execute

#[tokio::test]
async fn execute_answers_result_and_error_with_the_status_of_the_error() {
    let flaky = Flaky::failing(1);
    let s = Setup::open(Catalog::new().with(flaky));
    let call = json!({"name": "create-user", "params": {"email": "ada@example.com", "name": "Ada"}, "idempotencyKey": "e1"});
    let first = s.send(post("/execute", &call.to_string())).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let body = first.json();
    assert_eq!(body.get("error"), Some(&Value::Null), "{body}");
    assert_eq!(body["result"]["email"], "ada@example.com");
    assert_eq!(body.as_object().map(|o| o.len()), Some(2));
    assert_eq!(first.header("idempotency-key"), Some("e1"));
    assert!(s.record("create-user", "e1").await.is_some());

    let replay = s.send(post("/execute", &call.to_string())).await;
    assert_eq!(replay.status, StatusCode::OK);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(replay.body, first.body);

    // A business rule: 422 with {result: null, error}.
    let dup = json!({"name": "create-user", "params": {"email": "ADA@example.com", "name": "Ada 2"}, "idempotencyKey": "e2"});
    let rejected = s.send(post("/execute", &dup.to_string())).await;
    assert_eq!(rejected.status, StatusCode::UNPROCESSABLE_ENTITY);
    let body = rejected.json();
    assert_eq!(body.get("result"), Some(&Value::Null), "{body}");
    assert_eq!(body["error"]["type"], "ActionDo.Rejected");
    assert_eq!(body["error"]["retryable"], false);
    assert_eq!(body["error"]["details"]["reason"], "email_taken");

    // A retryable failure: 503 with Retry-After.
    let flaky = json!({"name": "flaky", "params": {"label": "y"}});
    let transient = s.send(post("/execute", &flaky.to_string())).await;
    assert_eq!(transient.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(transient.header("retry-after"), Some("2"));
    let body = transient.json();
    assert_eq!(body.get("result"), Some(&Value::Null), "{body}");
    assert_eq!(body["error"]["type"], "ActionDo.Transient");
    assert_eq!(body["error"]["retryable"], true);

    // The key may come from the header too; params default to {}.
    let mut req = post("/execute", r#"{"name": "validate-lead"}"#);
    req.headers_mut()
        .insert("idempotency-key", "h1".parse().expect("a header value"));
    let invalid = s.send(req).await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
    assert_eq!(invalid.json()["error"]["type"], "ActionDo.Validation");
    assert_eq!(invalid.header("idempotency-key"), Some("h1"));
    let audit = s.audit_of("validate-lead", "h1").await;
    assert_eq!(
        audit.iter().map(|r| r.status).collect::<Vec<_>>(),
        [AuditStatus::Rejected]
    );
}

#[tokio::test]
async fn execute_refuses_what_is_not_a_call() {
    let s = Setup::open(Catalog::new());
    let unknown = s
        .send(post("/execute", r#"{"name": "creat-user", "params": {}}"#))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let body = unknown.json();
    assert_eq!(body["error"]["type"], "ActionDo.NotFound");
    assert_eq!(
        body.get("result"),
        Some(&Value::Null),
        "the SDK shape: {body}"
    );
    assert!(
        body["error"]["details"]["suggestions"]
            .as_array()
            .is_some_and(|s| s.contains(&json!("create-user"))),
        "{body}"
    );

    let extra = s
        .send(post("/execute", r#"{"name": "create-user", "parms": {}}"#))
        .await;
    assert_eq!(extra.status, StatusCode::BAD_REQUEST);
    let body = extra.json();
    assert_eq!(body["error"]["type"], "ActionDo.Validation");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("parms")),
        "{body}"
    );

    let malformed = s.send(post("/execute", "{\"name\": ")).await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    let body = malformed.json();
    assert_eq!(body["error"]["details"]["line"], 1, "{body}");
    assert!(body["error"]["details"]["column"].is_u64(), "{body}");
    assert!(s.all_audit().await.is_empty(), "nothing ran");
}

// ---------------------------------------------------------------- the catalog

#[tokio::test]
async fn the_catalog_lists_every_action_with_its_schemas() {
    let s = Setup::open(Catalog::new());
    let reply = s.send(get("/actions")).await;
    assert_eq!(reply.status, StatusCode::OK);
    let body = reply.json();
    let actions = body["actions"].as_array().expect("an array of actions");
    let names: Vec<&str> = actions.iter().filter_map(|a| a["name"].as_str()).collect();
    let expected: Vec<&str> = actiondo_catalog::catalog()
        .iter()
        .map(|a| a.name())
        .collect();
    assert_eq!(names, expected);
    assert!(names.contains(&"create-user") && names.contains(&"send-welcome-email"));
    for action in actions {
        assert!(
            action["description"]
                .as_str()
                .is_some_and(|d| !d.is_empty())
        );
        assert!(action["inputSchema"].is_object(), "{action}");
        assert!(action["outputSchema"].is_object(), "{action}");
        assert!(matches!(
            action["keyPolicy"].as_str(),
            Some("derived" | "required")
        ));
    }

    let one = s.send(get("/actions/create-user")).await;
    assert_eq!(one.status, StatusCode::OK);
    let body = one.json();
    assert_eq!(body["name"], "create-user");
    assert!(
        body["inputSchema"]["properties"]["email"].is_object(),
        "{body}"
    );
    assert!(
        body["outputSchema"]["properties"]["userId"].is_object(),
        "{body}"
    );
    let listed = actions
        .iter()
        .find(|a| a["name"] == "create-user")
        .expect("listed");
    assert_eq!(&body, listed);

    let missing = s.send(get("/actions/creat-user")).await;
    let error = missing.error(404, "ActionDo.NotFound");
    assert_eq!(error["details"]["suggestions"][0], "create-user");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("create-user"))
    );
}

// ---------------------------------------------------------------- GET /executions

#[tokio::test]
async fn an_execution_shows_its_record_and_audit_trail() {
    let s = Setup::open(Catalog::new());
    // A key with characters that must be encoded in a path.
    let key = "order/42 #a?b";
    let ran = s.send(post_keyed("/actions/create-user", ADA, key)).await;
    assert_eq!(ran.status, StatusCode::OK);
    s.send(post_keyed("/actions/create-user", ADA, key)).await;

    let reply = s
        .send(get("/executions/create-user/order%2F42%20%23a%3Fb"))
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let body = reply.json();
    let execution = &body["execution"];
    assert_eq!(execution["name"], "create-user");
    assert_eq!(execution["key"], key);
    assert_eq!(execution["status"], "COMPLETED");
    assert_eq!(execution["attempt"], 1);
    assert_eq!(execution["result"], ran.json());
    assert!(execution["createdAt"].is_string() && execution["completedAt"].is_string());
    let record = s.record("create-user", key).await.expect("a record");
    assert_eq!(execution["payloadHash"], record.payload_hash);
    let audit = body["audit"].as_array().expect("an audit trail");
    let statuses: Vec<&str> = audit.iter().filter_map(|r| r["status"].as_str()).collect();
    assert_eq!(statuses, ["replayed", "completed"]);
    assert_eq!(audit[1]["execution"], format!("create-user#{key}"));
    assert_eq!(audit[1]["details"]["output"], ran.json());
    assert_eq!(body["nextCursor"], Value::Null);

    // A failed execution shows its error.
    s.send(post_keyed("/actions/create-user", ADA, "dup")).await;
    let failed = s.send(get("/executions/create-user/dup")).await.json();
    assert_eq!(failed["execution"]["status"], "FAILED");
    assert_eq!(failed["execution"]["error"]["type"], "ActionDo.Rejected");

    let none = s.send(get("/executions/create-user/never")).await;
    let error = none.error(404, "ActionDo.NotFound");
    assert_eq!(error["details"]["key"], "never");
    let unknown = s.send(get("/executions/creat-user/k")).await;
    unknown.error(404, "ActionDo.NotFound");
}

// ---------------------------------------------------------------- GET /audit

/// The audit page at `uri`, checked to be 200.
async fn page(s: &Setup, uri: &str) -> Value {
    let reply = s.send(get(uri)).await;
    assert_eq!(reply.status, StatusCode::OK, "{uri}: {}", reply.text());
    reply.json()
}

fn records(page: &Value) -> &Vec<Value> {
    page["records"].as_array().expect("records")
}

#[tokio::test]
async fn the_audit_is_filtered_by_type_key_correlation_and_time() {
    let s = Setup::open(Catalog::new());
    for i in 0..3 {
        let mut req = post_keyed("/actions/validate-lead", &lead(i), &format!("v{i}"));
        req.headers_mut().insert(
            "x-correlation-id",
            "batch-1".parse().expect("a header value"),
        );
        assert_eq!(s.send(req).await.status, StatusCode::OK);
    }
    s.send(post_keyed("/actions/create-user", ADA, "u1")).await;
    s.send(post_keyed("/actions/create-user", ADA, "u1")).await;

    let all = page(&s, "/audit?limit=100").await;
    assert_eq!(records(&all).len(), 5);

    let by_type = page(&s, "/audit?type=create-user").await;
    assert_eq!(records(&by_type).len(), 2);
    assert!(records(&by_type).iter().all(|r| r["type"] == "create-user"));

    let by_key = page(&s, "/audit?type=validate-lead&key=v1").await;
    assert_eq!(records(&by_key).len(), 1);
    assert_eq!(records(&by_key)[0]["execution"], "validate-lead#v1");

    let by_correlation = page(&s, "/audit?correlationId=batch-1").await;
    assert_eq!(records(&by_correlation).len(), 3);
    assert!(
        records(&by_correlation)
            .iter()
            .all(|r| r["correlationId"] == "batch-1" && r["type"] == "validate-lead")
    );
    assert!(
        records(&page(&s, "/audit?correlationId=nothing").await).is_empty(),
        "an unknown correlation id has no records"
    );

    // since: records at or after a time; the stored timestamps say which.
    let timestamps: Vec<String> = records(&all)
        .iter()
        .filter_map(|r| r["timestamp"].as_str().map(str::to_owned))
        .collect();
    let cut = &timestamps[2];
    let expected = timestamps.iter().filter(|t| *t >= cut).count();
    let since = page(&s, &format!("/audit?since={cut}")).await;
    assert_eq!(records(&since).len(), expected);
    assert!(
        records(&since)
            .iter()
            .all(|r| r["timestamp"].as_str() >= Some(cut.as_str()))
    );
    assert_eq!(
        records(&page(&s, "/audit?since=2000-01-01T00:00:00Z").await).len(),
        5
    );
    assert!(records(&page(&s, "/audit?since=2999-01-01T00:00:00%2B02:00").await).is_empty());
    let typed_since = page(&s, "/audit?type=create-user&since=2000-01-01T00:00:00Z").await;
    assert_eq!(records(&typed_since).len(), 2);
}

#[tokio::test]
async fn bad_audit_queries_are_refused_naming_each_problem() {
    let s = Setup::open(Catalog::new());
    let reply = s.send(get("/audit?limit=101")).await;
    let error = reply.error(400, "ActionDo.Validation");
    assert_eq!(error["details"]["errors"][0]["path"], "limit");
    s.send(get("/audit?limit=0"))
        .await
        .error(400, "ActionDo.Validation");
    s.send(get("/audit?limit=100"))
        .await
        .status
        .is_success()
        .then_some(())
        .expect("100 is the largest page");

    let reply = s
        .send(get("/audit?since=yesterday&key=k&tpye=x&cursor=%21%21"))
        .await;
    let error = reply.error(400, "ActionDo.Validation");
    let paths: HashSet<&str> = error["details"]["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["path"].as_str())
        .collect();
    assert_eq!(paths, HashSet::from(["since", "key", "tpye"]));

    let bad_cursor = s.send(get("/audit?cursor=not-a-cursor")).await;
    bad_cursor.error(400, "ActionDo.Validation");
    s.send(get("/audit?type=a&correlationId=b"))
        .await
        .error(400, "ActionDo.Validation");
}

#[tokio::test]
async fn audit_pages_follow_the_cursor_newest_first_without_duplicates() {
    let s = Setup::open(Catalog::new());
    // 105 completed executions and 5 replays: 110 records, more than one full page.
    for i in 0..105 {
        let reply = s
            .send(post_keyed(
                "/actions/validate-lead",
                &lead(i),
                &format!("p{i}"),
            ))
            .await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    for i in 0..5 {
        let reply = s
            .send(post_keyed(
                "/actions/validate-lead",
                &lead(i),
                &format!("p{i}"),
            ))
            .await;
        assert_eq!(reply.header("idempotent-replayed"), Some("true"));
    }

    for (limit, pages) in [(100, 2), (7, 16)] {
        let mut seen = Vec::new();
        let mut uri = format!("/audit?type=validate-lead&limit={limit}");
        let mut count = 0;
        loop {
            let body = page(&s, &uri).await;
            count += 1;
            assert!(count <= pages, "more pages than expected");
            let page_records = records(&body);
            assert!(page_records.len() <= limit);
            seen.extend(page_records.iter().cloned());
            match body["nextCursor"].as_str() {
                Some(cursor) => {
                    assert_eq!(page_records.len(), limit, "only the last page is short");
                    uri = format!("/audit?type=validate-lead&limit={limit}&cursor={cursor}");
                }
                None => break,
            }
        }
        assert_eq!(count, pages, "limit {limit}");
        assert_eq!(seen.len(), 110, "limit {limit}");
        let ids: HashSet<(String, String)> = seen
            .iter()
            .map(|r| (r["execution"].to_string(), r["seq"].to_string()))
            .collect();
        assert_eq!(ids.len(), 110, "no record twice");
        let order: Vec<(String, String, String)> = seen
            .iter()
            .map(|r| {
                (
                    r["timestamp"].to_string(),
                    r["execution"].to_string(),
                    r["seq"].to_string(),
                )
            })
            .collect();
        assert!(
            order.windows(2).all(|w| w[0] > w[1]),
            "newest first: {order:?}"
        );
        let replays = seen.iter().filter(|r| r["status"] == "replayed").count();
        assert_eq!(replays, 5);
    }
}

// ---------------------------------------------------------------- async

#[tokio::test]
async fn respond_async_answers_202_with_the_location_of_the_execution() {
    let s = Setup::open(Catalog::new());
    let mut req = post_keyed("/actions/create-user", ADA, "later/1");
    req.headers_mut()
        .insert("prefer", "respond-async".parse().expect("a header value"));
    let accepted = s.send(req).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.text());
    let location = accepted
        .header("location")
        .expect("a Location header")
        .to_owned();
    assert_eq!(location, "/executions/create-user/later%2F1");
    assert_eq!(accepted.header("idempotency-key"), Some("later/1"));
    let body = accepted.json();
    assert_eq!(body["status"], "accepted");
    assert_eq!(body["location"], location.as_str());
    assert_eq!(body["key"], "later/1");

    let view = s.poll_until_done(&location).await;
    assert_eq!(view["execution"]["status"], "COMPLETED");
    assert_eq!(view["execution"]["result"]["email"], "ada@example.com");
    let sync = s
        .send(post_keyed("/actions/create-user", ADA, "later/1"))
        .await;
    assert_eq!(sync.header("idempotent-replayed"), Some("true"));
    assert_eq!(sync.json(), view["execution"]["result"]);
}

#[tokio::test]
async fn respond_async_without_a_key_points_at_the_derived_key() {
    let s = Setup::open(Catalog::new());
    let params = json!({"email": "kay@example.com", "name": "Kay"});
    let req = request("POST", "/actions/validate-lead")
        .header("content-type", "application/json")
        .header("prefer", "wait=10, respond-async")
        .body(Body::from(params.to_string()))
        .expect("a request");
    let accepted = s.send(req).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED);
    let derived = actiondo::hash::payload_hash(&params);
    let location = format!("/executions/validate-lead/{derived}");
    assert_eq!(accepted.header("location"), Some(location.as_str()));

    let view = s.poll_until_done(&location).await;
    assert_eq!(view["execution"]["status"], "COMPLETED");
    assert_eq!(view["execution"]["key"], derived.as_str());
    // The executor used the same key: a synchronous call replays it.
    let sync = s
        .send(post("/actions/validate-lead", &params.to_string()))
        .await;
    assert_eq!(sync.header("idempotent-replayed"), Some("true"));
    assert_eq!(sync.header("idempotency-key"), Some(derived.as_str()));
}

#[tokio::test]
async fn an_execution_in_progress_answers_409_until_it_completes() {
    let gated = Gated::default();
    let s = Setup::open(Catalog::new().with(gated.clone()));
    let started = gated.started.notified();
    let mut req = post_keyed("/actions/gated", r#"{"label": "g"}"#, "g1");
    req.headers_mut()
        .insert("prefer", "respond-async".parse().expect("a header value"));
    let accepted = s.send(req).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED);
    started.await;

    let location = accepted.header("location").expect("Location").to_owned();
    let view = s.send(get(&location)).await.json();
    assert_eq!(view["execution"]["status"], "IN_PROGRESS");
    assert!(view["execution"]["leaseExpiresAt"].is_string());

    let busy = s
        .send(post_keyed("/actions/gated", r#"{"label": "g"}"#, "g1"))
        .await;
    let error = busy.error(409, "ActionDo.InProgress");
    assert_eq!(error["retryable"], true);
    let retry_after: u64 = busy
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds");
    assert!(retry_after >= 1);

    gated.gate.add_permits(1);
    let view = s.poll_until_done(&location).await;
    assert_eq!(view["execution"]["status"], "COMPLETED");
    assert_eq!(
        view["execution"]["result"],
        json!({"label": "g", "call": 1})
    );
    assert_eq!(
        gated.calls.load(Ordering::SeqCst),
        1,
        "the handler ran once"
    );
}

#[tokio::test]
async fn respond_async_refuses_invalid_params_at_once() {
    let s = Setup::open(Catalog::new());
    let req = request("POST", "/actions/create-user")
        .header("content-type", "application/json")
        .header("idempotency-key", "bad-async")
        .header("prefer", "respond-async")
        .body(Body::from(r#"{"email": "nope", "name": " "}"#))
        .expect("a request");
    let reply = s.send(req).await;
    let error = reply.error(400, "ActionDo.Validation");
    assert_eq!(error["details"]["errors"][0]["path"], "/email", "{error}");
    assert_eq!(error["details"]["errors"][1]["path"], "/name", "{error}");
    assert!(s.record("create-user", "bad-async").await.is_none());
    let statuses: Vec<_> = s
        .audit_of("create-user", "bad-async")
        .await
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [AuditStatus::Rejected]);

    // An action that requires a key cannot be started without one.
    let bad_key = request("POST", "/actions/create-user")
        .header("content-type", "application/json")
        .header("idempotency-key", "tab\tkey")
        .header("prefer", "respond-async")
        .body(Body::from(ADA))
        .expect("a request");
    s.send(bad_key).await.error(400, "ActionDo.Validation");
}

// ---------------------------------------------------------------- bad requests

#[tokio::test]
async fn malformed_json_is_400_with_its_line_and_column() {
    let s = Setup::open(Catalog::new());
    let body = "{\n  \"email\": \"a@example.com\",\n  name: 1\n}";
    let reply = s.send(post_keyed("/actions/create-user", body, "m1")).await;
    let error = reply.error(400, "ActionDo.Validation");
    assert_eq!(error["details"]["line"], 3, "{error}");
    assert_eq!(error["details"]["column"], 3, "{error}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("line 3")),
        "{error}"
    );
    assert!(s.record("create-user", "m1").await.is_none());
}

#[tokio::test]
async fn an_unknown_action_is_404_naming_the_closest_names() {
    let s = Setup::open(Catalog::new());
    let reply = s.send(post("/actions/creat-user", ADA)).await;
    let error = reply.error(404, "ActionDo.NotFound");
    let suggestions = error["details"]["suggestions"]
        .as_array()
        .expect("suggestions");
    assert_eq!(suggestions[0], "create-user");
    assert!(suggestions.len() <= 3);
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("creat-user"))
    );

    let emial = s.send(post("/actions/send-emial", "{}")).await;
    let error = emial.error(404, "ActionDo.NotFound");
    assert_eq!(error["details"]["suggestions"][0], "send-email");
    assert!(s.all_audit().await.is_empty());
}

#[tokio::test]
async fn a_body_over_one_mib_is_413() {
    let s = Setup::open(Catalog::new());
    let big = format!(
        r#"{{"label": "{}"}}"#,
        "x".repeat(actiondo::trigger::http::MAX_BODY_BYTES)
    );
    // With a Content-Length: refused before reading.
    let declared = request("POST", "/actions/validate-lead")
        .header("content-type", "application/json")
        .header("content-length", big.len())
        .body(Body::from(big.clone()))
        .expect("a request");
    let error = s.send(declared).await.error(413, "ActionDo.Validation");
    assert_eq!(
        error["details"]["limitBytes"],
        actiondo::trigger::http::MAX_BODY_BYTES
    );
    // Streamed without one: refused at the limit.
    let chunked = request("POST", "/actions/validate-lead")
        .header("content-type", "application/json")
        .body(unsized_body(big.clone()))
        .expect("a request");
    s.send(chunked).await.error(413, "ActionDo.Validation");
    // Without a Content-Length but with a known size.
    let chunked = request("POST", "/actions/validate-lead")
        .header("content-type", "application/json")
        .body(Body::from(big.clone()))
        .expect("a request");
    s.send(chunked).await.error(413, "ActionDo.Validation");
    let execute = s.send(post("/execute", &big)).await;
    assert_eq!(execute.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(s.all_audit().await.is_empty());

    // Exactly at the limit is read (and then judged as params).
    let (head, tail) = (r#"{"email": "a@example.com", "name": ""#, r#""}"#);
    let name = "n".repeat(actiondo::trigger::http::MAX_BODY_BYTES - head.len() - tail.len());
    let fits = format!("{head}{name}{tail}");
    assert_eq!(fits.len(), actiondo::trigger::http::MAX_BODY_BYTES);
    let reply = s.send(post("/actions/validate-lead", &fits)).await;
    reply.error(400, "ActionDo.Validation");
}

/// A body of unknown length (no size hint, as a chunked upload has).
fn unsized_body(text: String) -> Body {
    use http_body_util::BodyExt as _;
    Body::new(Body::from(text).map_frame(|frame| frame))
}

#[tokio::test]
async fn a_content_type_other_than_json_is_415() {
    let s = Setup::open(Catalog::new());
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let req = request("POST", "/actions/create-user")
            .header("content-type", content_type)
            .body(Body::from(ADA))
            .expect("a request");
        let error = s.send(req).await.error(415, "ActionDo.Validation");
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains(content_type))
        );
    }
    for content_type in [
        "application/json; charset=utf-8",
        "application/problem+json",
    ] {
        let req = request("POST", "/actions/validate-lead")
            .header("content-type", content_type)
            .body(Body::from(lead(1)))
            .expect("a request");
        assert_eq!(s.send(req).await.status, StatusCode::OK, "{content_type}");
    }
    let no_type = request("POST", "/actions/validate-lead")
        .body(Body::from(lead(2)))
        .expect("a request");
    assert_eq!(s.send(no_type).await.status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_with_allow() {
    let s = Setup::open(Catalog::new());
    for uri in [
        "/",
        "/nope",
        "/actions/create-user/extra",
        "/executions/create-user",
    ] {
        let error = s.send(get(uri)).await.error(404, "ActionDo.NotFound");
        assert_eq!(error["retryable"], false);
        assert!(error["message"].as_str().is_some_and(|m| m.contains(uri)));
    }
    for (method, uri, allow) in [
        ("DELETE", "/actions/create-user", "GET, POST"),
        ("PUT", "/actions/create-user", "GET, POST"),
        ("POST", "/actions", "GET"),
        ("GET", "/execute", "POST"),
        ("DELETE", "/executions/create-user/k", "GET"),
        ("POST", "/audit", "GET"),
    ] {
        let req = request(method, uri).body(Body::empty()).expect("a request");
        let reply = s.send(req).await;
        reply.error(405, "ActionDo.Validation");
        assert_eq!(reply.header("allow"), Some(allow), "{method} {uri}");
    }
}

#[tokio::test]
async fn a_validation_error_lists_every_bad_field_and_writes_only_its_audit() {
    let s = Setup::open(Catalog::new());
    let body = r#"{"email": "not an email", "name": "  ", "phone": "12"}"#;
    let reply = s
        .send(post_keyed("/actions/validate-lead", body, "bad-lead"))
        .await;
    let error = reply.error(400, "ActionDo.Validation");
    let paths: Vec<&str> = error["details"]["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["path"].as_str())
        .collect();
    assert_eq!(paths, ["/email", "/name", "/phone"]);
    assert!(s.record("validate-lead", "bad-lead").await.is_none());
    let audit = s.audit_of("validate-lead", "bad-lead").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].status, AuditStatus::Rejected);

    // Schema violations are listed too: both missing fields and the unknown one.
    let reply = s
        .send(post_keyed(
            "/actions/create-user",
            r#"{"plan": "gold"}"#,
            "s1",
        ))
        .await;
    let error = reply.error(400, "ActionDo.Validation");
    let message = error["message"].as_str().expect("a message");
    for problem in ["email", "name", "gold"] {
        assert!(message.contains(problem), "{problem} in {message}");
    }
    assert!(
        error["details"]["errors"]
            .as_array()
            .is_some_and(|e| e.len() >= 3)
    );
}

#[tokio::test]
async fn a_bad_idempotency_key_is_refused_never_ignored() {
    let s = Setup::open(Catalog::new());
    let non_ascii = http::HeaderValue::from_bytes("café".as_bytes()).expect("obs-text is allowed");
    for route in ["/actions/validate-lead", "/execute"] {
        let body = if route == "/execute" {
            json!({"name": "validate-lead", "params": {"email": "a@example.com", "name": "A"}})
                .to_string()
        } else {
            lead(1)
        };
        for value in [
            non_ascii.clone(),
            http::HeaderValue::from_static("tab\there"),
            http::HeaderValue::from_str(&"k".repeat(256)).expect("a header value"),
        ] {
            let mut req = post(route, &body);
            req.headers_mut().insert("idempotency-key", value.clone());
            let reply = s.send(req).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{route} {value:?}");
            assert_eq!(reply.json()["error"]["type"], "ActionDo.Validation");
            assert_eq!(reply.header("idempotency-key"), None);
        }
    }
    assert!(
        s.all_audit().await.is_empty(),
        "nothing ran, nothing audited"
    );
    let derived = actiondo::hash::payload_hash(&serde_json::from_str(&lead(1)).expect("JSON"));
    assert!(s.record("validate-lead", &derived).await.is_none());
}
