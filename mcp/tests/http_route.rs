//! The `/mcp` route as the router mounts it (`actiondo_mcp::http::route`: stateless,
//! behind API keys), answering a client of the initialize handshake over raw JSON-RPC.

use std::sync::Arc;

use actiondo::store::sqlite::SqliteStore;
use actiondo::{AuditFilter, AuditQuery, Executor, Store};
use actiondo_api::{Api, Auth, InProcess, KeyStore};
use http::Request;
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

type TestResult = Result<(), Box<dyn std::error::Error>>;

async fn post(
    router: &axum::Router,
    key: Option<&str>,
    body: Value,
) -> Result<(u16, Value), Box<dyn std::error::Error>> {
    let mut request = Request::post("/mcp")
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-06-18");
    if let Some(key) = key {
        request = request.header("authorization", format!("Bearer {key}"));
    }
    let response = router
        .clone()
        .oneshot(request.body(axum::body::Body::from(body.to_string()))?)
        .await?;
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

#[tokio::test]
async fn the_router_serves_mcp_behind_its_keys() -> TestResult {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory()?);
    let keys = KeyStore::new(Arc::clone(&store));
    let key = keys.create(vec!["create-user".into()], None).await?;
    let auth = Auth::ApiKeys(keys);
    let dispatcher = InProcess::new(
        actiondo_catalog::catalog(),
        Executor::from_arc(Arc::clone(&store)),
    );
    let api = Api::new(
        actiondo_catalog::catalog(),
        Arc::new(dispatcher),
        Arc::clone(&store),
        auth.clone(),
    );
    let route = actiondo_mcp::http::route(&api, Arc::clone(&store), auth, vec!["127.0.0.1".into()]);

    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "router-test", "version": "1"}}});
    let (status, _) = post(&route, None, initialize.clone()).await?;
    assert_eq!(status, 401);
    let (status, answer) = post(&route, Some(&key.key), initialize).await?;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"]["serverInfo"]["name"], "actiondo");

    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let (status, answer) = post(&route, Some(&key.key), list).await?;
    assert_eq!(status, 200, "{answer}");
    let names: Vec<&str> = answer["result"]["tools"]
        .as_array()
        .map(|t| t.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["create-user"]);

    let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": "create-user", "arguments": {"email": "r@example.com", "name": "R"},
        "_meta": {"do.action/idempotencyKey": "router-1"}}});
    let (status, answer) = post(&route, Some(&key.key), call).await?;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    let page = store
        .query_audit(&AuditQuery::new(AuditFilter::Execution(
            "create-user#router-1".into(),
        )))
        .await?;
    let caller = page
        .records
        .first()
        .and_then(|r| r.caller.clone())
        .unwrap_or_default();
    assert!(
        caller.starts_with(&format!("apikey:{} mcp:", key.info.id)),
        "{caller}"
    );
    Ok(())
}

#[test]
fn the_setting_is_on_or_off() {
    use actiondo_mcp::http::enabled;
    assert_eq!(enabled(None).ok(), Some(false));
    assert_eq!(enabled(Some("off")).ok(), Some(false));
    assert_eq!(enabled(Some("on")).ok(), Some(true));
    assert!(enabled(Some("yes")).is_err());
}
