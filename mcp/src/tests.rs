//! The tool mapping, calls and resources, on the real catalog and the embedded store.

use std::sync::Arc;

use actiondo::store::RecordStatus;
use actiondo::{ActionError, AuditFilter, AuditQuery, ErrorKind, Execution, Source};
use actiondo_api::InProcess;
use actiondo_api::keys::Scope;
use rmcp::model::{CallToolRequestParams, CallToolResult, MetaObject, RequestMetaObject};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn scope(patterns: &[&str]) -> Scope {
    let patterns: Vec<String> = patterns.iter().map(|p| (*p).to_owned()).collect();
    Scope::parse(&patterns).unwrap_or_else(|_| Scope::none())
}

fn server() -> Result<(McpServer, Arc<dyn Store>), actiondo::StoreError> {
    let executor = actiondo::testing::executor()?;
    let store = Arc::clone(executor.store());
    let server = McpServer::new(
        actiondo_catalog::catalog(),
        Arc::new(InProcess::new(actiondo_catalog::catalog(), executor)),
        Arc::clone(&store),
        None,
    );
    Ok((server, store))
}

fn call_params(name: &str, arguments: Value, key: Option<&str>) -> CallToolRequestParams {
    let mut params = CallToolRequestParams::new(name.to_owned());
    if let Value::Object(arguments) = arguments {
        params = params.with_arguments(arguments);
    }
    if let Some(key) = key {
        let mut meta = MetaObject::new();
        meta.0.insert(META_IDEMPOTENCY_KEY.to_owned(), json!(key));
        params.meta = Some(RequestMetaObject(meta));
    }
    params
}

fn structured(result: &CallToolResult) -> Value {
    result.structured_content.clone().unwrap_or(Value::Null)
}

fn execution_meta(result: &CallToolResult) -> Value {
    result
        .meta
        .as_ref()
        .and_then(|m| m.0.get(META_EXECUTION).cloned())
        .unwrap_or(Value::Null)
}

#[test]
fn every_tool_carries_its_actions_schemas_and_effects() {
    let catalog = actiondo_catalog::catalog();
    assert!(catalog.len() >= 15);
    for action in catalog.iter() {
        let tool = tool(action.as_ref());
        let shown = actiondo_api::view::describe(action.as_ref());
        assert_eq!(tool.name, action.name());
        assert_eq!(
            Value::Object((*tool.input_schema).clone()),
            shown.input_schema
        );
        assert_eq!(
            tool.output_schema.map(|s| Value::Object((*s).clone())),
            Some(shown.output_schema),
            "{}",
            action.name()
        );
        let description = tool.description.unwrap_or_default();
        assert!(
            description.starts_with(action.description()),
            "{description}"
        );
        let annotations = tool.annotations.unwrap_or_default();
        let effects = action.options().effects;
        assert_eq!(annotations.idempotent_hint, Some(true));
        assert_eq!(annotations.read_only_hint, Some(false));
        assert_eq!(annotations.open_world_hint, Some(effects.external));
        assert_eq!(annotations.destructive_hint, Some(effects.destructive));
    }
    let effects = |name: &str| catalog.get(name).map(|a| a.options().effects);
    assert_eq!(effects("send-email").map(|e| e.external), Some(true));
    assert_eq!(effects("process-payment").map(|e| e.external), Some(true));
    assert_eq!(effects("create-user").map(|e| e.external), Some(false));
    assert_eq!(
        effects("release-resources").map(|e| e.destructive),
        Some(true)
    );
}

#[test]
fn the_wire_form_of_a_tool_has_the_protocols_names() -> TestResult {
    let catalog = actiondo_catalog::catalog();
    let payment = catalog.resolve("process-payment")?;
    let wire = serde_json::to_value(tool(payment.as_ref()))?;
    assert_eq!(wire["name"], "process-payment");
    assert_eq!(wire["inputSchema"]["type"], "object");
    assert_eq!(wire["outputSchema"]["type"], "object");
    assert_eq!(wire["annotations"]["idempotentHint"], true);
    assert_eq!(wire["annotations"]["openWorldHint"], true);
    assert_eq!(wire["annotations"]["destructiveHint"], false);
    let description = wire["description"].as_str().unwrap_or_default();
    assert!(
        description.contains("Requires an idempotency key"),
        "{description}"
    );
    assert!(description.contains(META_IDEMPOTENCY_KEY), "{description}");
    let user = serde_json::to_value(tool(catalog.resolve("create-user")?.as_ref()))?;
    assert!(
        !user["description"]
            .as_str()
            .unwrap_or_default()
            .contains("Requires")
    );
    Ok(())
}

#[test]
fn a_result_is_structured_content_and_text_and_says_when_it_is_a_replay() -> TestResult {
    let raw = RawValue::from_string(r#"{"userId":"u-1"}"#.to_owned())?;
    let mut execution = Execution {
        action: "create-user",
        key: Some("k-1".to_owned()),
        attempt: 1,
        replayed: false,
        outcome: Ok(raw),
    };
    let first = tool_result(&execution);
    assert_eq!(first.is_error, Some(false));
    assert_eq!(structured(&first), json!({"userId": "u-1"}));
    assert_eq!(first.content.len(), 1);
    assert_eq!(
        first.content[0].as_text().map(|t| t.text.as_str()),
        Some(r#"{"userId":"u-1"}"#)
    );
    assert_eq!(
        execution_meta(&first),
        json!({"action": "create-user", "key": "k-1", "attempt": 1, "replayed": false})
    );
    execution.replayed = true;
    let replay = tool_result(&execution);
    assert_eq!(structured(&replay), structured(&first));
    assert_eq!(replay.content[0], first.content[0]);
    assert_eq!(replay.content.len(), 2);
    let said = replay.content[1]
        .as_text()
        .map(|t| t.text.clone())
        .unwrap_or_default();
    assert!(said.starts_with("Replayed"), "{said}");
    assert_eq!(execution_meta(&replay)["replayed"], true);
    Ok(())
}

#[test]
fn an_action_error_is_an_error_result_with_its_body() -> TestResult {
    let error =
        ActionError::rejected("the email is taken").with_details(json!({"reason": "email_taken"}));
    let execution = Execution {
        action: "create-user",
        key: Some("k".to_owned()),
        attempt: 1,
        replayed: true,
        outcome: Err(error),
    };
    let result = tool_result(&execution);
    assert_eq!(result.is_error, Some(true));
    let body = structured(&result);
    assert_eq!(
        body,
        json!({
            "type": "ActionDo.Rejected",
            "message": "the email is taken",
            "retryable": false,
            "details": {"reason": "email_taken"},
        })
    );
    let text = result.content[0]
        .as_text()
        .map(|t| t.text.clone())
        .unwrap_or_default();
    assert_eq!(serde_json::from_str::<Value>(&text)?, body);
    // A stored failure replayed says so too.
    assert_eq!(execution_meta(&result)["replayed"], true);
    Ok(())
}

#[test]
fn callers_name_the_key_then_the_client_and_are_valid_identifiers() {
    assert_eq!(caller(None, Some("claude-code")), "mcp:claude-code");
    assert_eq!(
        caller(Some("0123456789abcdef"), Some("Claude Desktop")),
        "apikey:0123456789abcdef mcp:Claude Desktop"
    );
    assert_eq!(caller(None, None), "mcp:unknown");
    assert_eq!(caller(None, Some(" \n\t ")), "mcp:unknown");
    assert_eq!(caller(None, Some("a\u{0}b\u{1b}c\nd")), "mcp:abcd");
    let long = caller(None, Some(&"é".repeat(5000)));
    assert_eq!(long.chars().count(), "mcp:".len() + MAX_CLIENT_NAME);
}

#[tokio::test]
async fn a_call_runs_through_the_executor_with_source_and_caller_mcp() -> TestResult {
    let (server, store) = server()?;
    let principal = Principal {
        key_id: Some("00000000000000aa".to_owned()),
        scope: scope(&["create-user"]),
    };
    let args = json!({"email": "ada@example.com", "name": "Ada"});
    let first = server
        .call(
            &principal,
            Some("tester"),
            call_params("create-user", args.clone(), Some("k-1")),
            None,
        )
        .await;
    assert_eq!(first.is_error, Some(false), "{first:?}");
    let again = server
        .call(
            &principal,
            Some("tester"),
            call_params("create-user", args, Some("k-1")),
            None,
        )
        .await;
    assert_eq!(structured(&again), structured(&first));
    assert_eq!(execution_meta(&again)["replayed"], true);

    let page = store
        .query_audit(&AuditQuery::new(AuditFilter::Execution(
            "create-user#k-1".to_owned(),
        )))
        .await?;
    assert_eq!(page.records.len(), 2);
    for record in &page.records {
        assert_eq!(record.source, Source::Mcp);
        assert_eq!(
            record.caller.as_deref(),
            Some("apikey:00000000000000aa mcp:tester")
        );
    }
    let record = store.get_record("create-user#k-1").await?;
    assert_eq!(record.map(|r| r.status), Some(RecordStatus::Completed));
    Ok(())
}

#[tokio::test]
async fn refusals_are_error_results() -> TestResult {
    let (server, store) = server()?;
    let narrow = Principal::local(scope(&["create-*"]));
    let kind = |result: &CallToolResult| {
        assert_eq!(result.is_error, Some(true), "{result:?}");
        structured(result)["type"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    // Outside the scope, known or not: the same answer, naming nothing else.
    for name in ["send-email", "no-such-action"] {
        let result = server
            .call(&narrow, None, call_params(name, json!({}), Some("k")), None)
            .await;
        assert_eq!(kind(&result), ErrorKind::Forbidden.wire_name());
        assert!(
            !structured(&result)["message"]
                .as_str()
                .unwrap_or_default()
                .contains("create")
        );
    }
    // Inside it, an unknown name is NotFound with close names from the scope.
    let result = server
        .call(
            &narrow,
            None,
            call_params("create-usr", json!({}), None),
            None,
        )
        .await;
    assert_eq!(kind(&result), ErrorKind::NotFound.wire_name());
    assert_eq!(
        structured(&result)["details"]["suggestions"][0],
        "create-user"
    );
    // A key that is not a string.
    let mut params = call_params(
        "create-user",
        json!({"email": "b@example.com", "name": "B"}),
        None,
    );
    let mut meta = MetaObject::new();
    meta.0.insert(META_IDEMPOTENCY_KEY.to_owned(), json!(42));
    params.meta = Some(RequestMetaObject(meta));
    let result = server.call(&narrow, None, params, None).await;
    assert_eq!(kind(&result), ErrorKind::Validation.wire_name());
    // A key the executor refuses (not printable ASCII).
    let result = server
        .call(
            &narrow,
            None,
            call_params(
                "create-user",
                json!({"email": "c@example.com", "name": "C"}),
                Some("k\u{7}"),
            ),
            None,
        )
        .await;
    assert_eq!(kind(&result), ErrorKind::Validation.wire_name());
    // A required key, said the MCP way.
    let all = Principal::local(Scope::all());
    let payment = json!({"userId": "u-1", "amount": 100, "currency": "EUR"});
    let result = server
        .call(
            &all,
            None,
            call_params("process-payment", payment, None),
            None,
        )
        .await;
    assert_eq!(kind(&result), ErrorKind::Validation.wire_name());
    assert_eq!(structured(&result)["details"]["reason"], "key_required");
    assert!(
        structured(&result)["message"]
            .as_str()
            .unwrap_or_default()
            .contains(META_IDEMPOTENCY_KEY)
    );
    // None of these ran or claimed anything.
    let page = store
        .query_audit(&AuditQuery::new(AuditFilter::All))
        .await?;
    assert!(
        page.records.iter().all(|r| r.status.as_str() == "rejected"),
        "{:?}",
        page.records
    );
    Ok(())
}

#[tokio::test]
async fn resources_show_executions_and_audit_records_in_scope() -> TestResult {
    let (server, _store) = server()?;
    let all = Principal::local(Scope::all());
    let narrow = Principal::local(scope(&["score-lead"]));
    let lead = json!({"email": "ann@acme.com", "name": "Ann Lee", "freeMail": false});
    let done = server
        .call(
            &all,
            Some("t"),
            call_params("score-lead", lead, Some("a b/c")),
            None,
        )
        .await;
    assert_eq!(done.is_error, Some(false), "{done:?}");
    let user = json!({"email": "d@example.com", "name": "D"});
    let done = server
        .call(
            &all,
            Some("t"),
            call_params("create-user", user, Some("u")),
            None,
        )
        .await;
    assert_eq!(done.is_error, Some(false), "{done:?}");

    let execution = server
        .read(&narrow, "actiondo://executions/score-lead/a%20b%2Fc")
        .await?;
    assert_eq!(execution["execution"]["status"], "COMPLETED");
    assert_eq!(execution["execution"]["key"], "a b/c");
    assert_eq!(
        execution["execution"]["result"],
        structured(
            &server
                .call(
                    &all,
                    None,
                    call_params(
                        "score-lead",
                        json!({"email": "ann@acme.com", "name": "Ann Lee", "freeMail": false}),
                        Some("a b/c")
                    ),
                    None
                )
                .await
        )
    );
    assert_eq!(execution["audit"][0]["source"], "mcp");

    let recent = server.read(&narrow, AUDIT_URI).await?;
    let types: Vec<&str> = recent["records"]
        .as_array()
        .map(|r| r.iter().filter_map(|r| r["type"].as_str()).collect())
        .unwrap_or_default();
    assert!(!types.is_empty());
    assert!(types.iter().all(|t| *t == "score-lead"), "{types:?}");

    let refused = |r: Result<Value, ActionError>| r.err().map(|e| e.kind());
    assert_eq!(
        refused(
            server
                .read(&narrow, "actiondo://executions/create-user/u")
                .await
        ),
        Some(ErrorKind::Forbidden)
    );
    assert_eq!(
        refused(
            server
                .read(&narrow, "actiondo://audit?type=create-user")
                .await
        ),
        Some(ErrorKind::Forbidden)
    );
    assert_eq!(
        refused(
            server
                .read(&narrow, "actiondo://executions/score-lead/missing")
                .await
        ),
        Some(ErrorKind::NotFound)
    );
    assert_eq!(
        refused(server.read(&narrow, "actiondo://elsewhere").await),
        Some(ErrorKind::NotFound)
    );
    assert_eq!(
        refused(server.read(&narrow, "actiondo://audit?tpye=x").await),
        Some(ErrorKind::Validation)
    );
    assert_eq!(
        refused(
            server
                .read(&narrow, "actiondo://executions/score-lead/%FF")
                .await
        ),
        Some(ErrorKind::Validation)
    );
    Ok(())
}
