//! # actiondo-mcp — the catalog's actions as tools for agents
//!
//! An MCP (Model Context Protocol) server over a set of actions ([`Descriptors`]): every action in the
//! caller's scope is a tool, and a tool call is one more trigger of the executor
//! (docs/architecture.md §7.6), with the idempotency, audit and atomic completion of any
//! other. Built on `rmcp`, the official Rust SDK of the protocol.
//!
//! - **Tools** ([`tool`]): name, description, `inputSchema` and `outputSchema` from the
//!   action's JSON Schemas (as `GET /actions` shows them); annotations `idempotentHint:
//!   true`, `openWorldHint` and `destructiveHint` from the action's
//!   [`Effects`](actiondo::Effects).
//! - **Calls**: the idempotency key is `_meta["do.action/idempotencyKey"]` of the call
//!   ([`META_IDEMPOTENCY_KEY`]), else derived from the arguments per the action's key
//!   policy; `_meta["do.action/correlationId"]` is the correlation id. The result
//!   ([`tool_result`]) carries the output as `structuredContent` and as text; an action
//!   error is a result with `isError: true` and `{type, message, retryable, details}`,
//!   never a protocol error; `_meta["do.action/execution"]` says `{action, key,
//!   attempt, replayed}`, and a replay adds a text block saying so.
//! - **Audit**: source `mcp`; caller `mcp:<client name>`, or over HTTP
//!   `apikey:<id> mcp:<client name>` ([`caller`]).
//! - **Resources** (read-only): `actiondo://executions/{name}/{key}` (the record and its
//!   audit trail, as `GET /executions/{name}/{key}`) and
//!   `actiondo://audit{?type,key,correlationId,since,limit,cursor}` (as `GET /audit`), both
//!   limited to the scope.
//!
//! Transports: stdio ([`serve_stdio`], `actiondo mcp`) and streamable HTTP ([`http`],
//! `/mcp` of `actiondo serve`, behind the API keys and scopes of the rest of the API).
//! The server reaches actions through a [`Dispatcher`], so the programs that run
//! actions — and only those — link this crate; no action function does
//! (`tests/check_deps.py`).

use std::sync::Arc;

use actiondo::{
    ActionError, AuditFilter, AuditQuery, Describe, Descriptors, Execution, Invocation, KeyPolicy,
    Params, Source, Store,
};
use actiondo_api::Dispatcher;
use actiondo_api::keys::Scope;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    Implementation, JsonObject, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
    MetaObject, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse,
    ReadResourceResult, RequestMetaObject, Resource, ResourceContents, ResourceTemplate,
    ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler};
use serde_json::{Value, json};

pub mod http;

/// The `_meta` field of a `tools/call` that gives the idempotency key (1–255 printable
/// ASCII characters): the same key replays the first outcome.
pub const META_IDEMPOTENCY_KEY: &str = "do.action/idempotencyKey";
/// The `_meta` field of a `tools/call` that gives the correlation id.
pub const META_CORRELATION_ID: &str = "do.action/correlationId";
/// The `_meta` field of a tool result: `{action, key, attempt, replayed}`.
pub const META_EXECUTION: &str = "do.action/execution";
/// The URI scheme of the resources.
pub const URI_SCHEME: &str = "actiondo://";
/// The resource of the most recent audit records in scope.
pub const AUDIT_URI: &str = "actiondo://audit";
/// The template of an execution's resource.
pub const EXECUTION_TEMPLATE: &str = "actiondo://executions/{name}/{key}";
/// The template of an audit query's resource (RFC 6570 form-style query).
pub const AUDIT_TEMPLATE: &str = "actiondo://audit{?type,key,correlationId,since,limit,cursor}";
/// The longest client name kept in a caller (characters).
const MAX_CLIENT_NAME: usize = 100;

/// Who is calling and what it may call: the API key's id (`None` on stdio, where the
/// local user runs the server) and its scope. The HTTP transport puts one in each
/// request's extensions ([`http`]).
#[derive(Debug, Clone)]
pub struct Principal {
    /// The API key's id, when the call came with one.
    pub key_id: Option<String>,
    /// What it may call.
    pub scope: Scope,
}

impl Principal {
    /// The local user of a stdio server: every action of `scope`, no key.
    pub fn local(scope: Scope) -> Self {
        Self {
            key_id: None,
            scope,
        }
    }
}

/// The audit caller of a tool call: `mcp:<client name>` (the name the client gives in
/// its implementation info, `unknown` when it gives none), preceded by `apikey:<id> `
/// when the call came with an API key. Control characters of the name are dropped and
/// it is cut to 100 characters, so that the caller is always a valid identifier
/// (docs/architecture.md §4.1).
pub fn caller(key_id: Option<&str>, client_name: Option<&str>) -> String {
    let name: String = client_name
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_CLIENT_NAME)
        .collect();
    let name = name.trim();
    let name = if name.is_empty() { "unknown" } else { name };
    match key_id {
        Some(id) => format!("apikey:{id} mcp:{name}"),
        None => format!("mcp:{name}"),
    }
}

/// The tool of an action: its name, its description (plus how keys work for it), its
/// input and output JSON Schemas as `GET /actions` shows them, and the annotations
/// `idempotentHint: true`, `readOnlyHint: false`, and `openWorldHint` /
/// `destructiveHint` from [`Effects`](actiondo::Effects).
pub fn tool(action: &dyn Describe) -> Tool {
    let options = action.options();
    let keys = match options.key_policy {
        KeyPolicy::Required => format!(
            " Requires an idempotency key: give it as _meta[\"{META_IDEMPOTENCY_KEY}\"]; a call with the same key replays the first outcome."
        ),
        KeyPolicy::Derived => format!(
            " Idempotent: a call with the same arguments (or the same _meta[\"{META_IDEMPOTENCY_KEY}\"]) replays the first outcome."
        ),
    };
    let input = match action.input_schema() {
        Value::Object(schema) => schema,
        _ => JsonObject::from_iter([("type".to_owned(), json!("object"))]),
    };
    let mut tool = Tool::new(
        action.name(),
        format!("{}{keys}", action.description()),
        input,
    )
    .with_annotations(
        ToolAnnotations::new()
            .read_only(false)
            .idempotent(true)
            .destructive(options.effects.destructive)
            .open_world(options.effects.external),
    );
    // MCP's structured results are objects: an output schema that is not one is not
    // declared (the text content still carries the output).
    if let Value::Object(schema) = action.output_schema()
        && schema.get("type").and_then(Value::as_str) == Some("object")
    {
        tool = tool.with_raw_output_schema(Arc::new(schema));
    }
    tool
}

/// The tool result of an execution. A result: `structuredContent` = the output (when
/// it is an object) and its JSON text as the first text block. An error: `isError:
/// true`, `structuredContent` = `{type, message, retryable, details}` and its JSON
/// text. Both carry `_meta["do.action/execution"]` = `{action, key, attempt,
/// replayed}`; a replay adds a text block that says so.
pub fn tool_result(execution: &Execution) -> CallToolResult {
    let mut result = match &execution.outcome {
        Ok(raw) => {
            let text = raw.get().to_owned();
            match serde_json::from_str::<Value>(&text) {
                Ok(value @ Value::Object(_)) => {
                    let mut result = CallToolResult::structured(value);
                    result.content = vec![ContentBlock::text(text)];
                    result
                }
                _ => CallToolResult::success(vec![ContentBlock::text(text)]),
            }
        }
        Err(error) => error_result(error),
    };
    if execution.replayed {
        let key = execution.key.as_deref().unwrap_or_default();
        result.content.push(ContentBlock::text(format!(
            "Replayed: the stored outcome of {} with idempotency key {key:?}, attempt {}; nothing ran again.",
            execution.action, execution.attempt
        )));
    }
    let mut meta = MetaObject::new();
    meta.0.insert(
        META_EXECUTION.to_owned(),
        json!({
            "action": execution.action,
            "key": execution.key,
            "attempt": execution.attempt,
            "replayed": execution.replayed,
        }),
    );
    result.meta = Some(meta);
    result
}

/// An error as a tool result: `isError: true`, `{type, message, retryable, details}`.
fn error_result(error: &ActionError) -> CallToolResult {
    let body = serde_json::to_value(error.to_body().error).unwrap_or_else(|_| {
        json!({
            "type": error.kind().wire_name(),
            "message": error.message(),
            "retryable": error.is_retryable(),
        })
    });
    CallToolResult::structured_error(body)
}

/// The MCP server: the catalog's actions as tools, executions and audit records as
/// resources. Cheap to clone (one per HTTP request or session).
#[derive(Debug, Clone)]
pub struct McpServer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    catalog: Arc<Descriptors>,
    dispatcher: Arc<dyn Dispatcher>,
    store: Arc<dyn Store>,
    /// The principal of every request without its own (stdio); `None` over HTTP, where a
    /// request without a principal is refused.
    local: Option<Principal>,
}

impl McpServer {
    /// A server over `catalog`, running actions with `dispatcher` and reading
    /// executions and audit records from `store`. Over stdio, give the local
    /// [`Principal`]; over HTTP, `None`: each request brings its own ([`http`]).
    pub fn new(
        catalog: impl Into<Descriptors>,
        dispatcher: Arc<dyn Dispatcher>,
        store: Arc<dyn Store>,
        local: Option<Principal>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                catalog: Arc::new(catalog.into()),
                dispatcher,
                store,
                local,
            }),
        }
    }

    /// The tools `principal` may call, ordered by name.
    pub fn tools(&self, principal: &Principal) -> Vec<Tool> {
        self.inner
            .catalog
            .iter()
            .filter(|a| principal.scope.allows(a.name()))
            .map(|a| tool(a.as_ref()))
            .collect()
    }

    /// Run the tool `params.name` for `principal` and client `client`: the executor's
    /// outcome as a tool result. Every refusal (out of scope, unknown tool, bad `_meta`,
    /// missing key) is a tool result with `isError: true` too.
    pub async fn call(
        &self,
        principal: &Principal,
        client: Option<&str>,
        params: CallToolRequestParams,
        request_meta: Option<&RequestMetaObject>,
    ) -> CallToolResult {
        let name = params.name.as_ref();
        let action = match self.action(principal, name) {
            Ok(action) => action,
            Err(e) => return error_result(&e),
        };
        let meta = |field: &str| -> Result<Option<String>, ActionError> {
            let value = params
                .meta
                .as_ref()
                .and_then(|m| m.0.0.get(field))
                .or_else(|| request_meta.and_then(|m| m.0.0.get(field)));
            match value {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(ActionError::validation(format!(
                    "_meta[\"{field}\"] must be a string, got {other}"
                ))
                .with_details(json!({"errors": [{"path": format!("/_meta/{field}"), "message": "must be a string"}]}))),
            }
        };
        let (key, correlation_id) = match (meta(META_IDEMPOTENCY_KEY), meta(META_CORRELATION_ID)) {
            (Ok(key), Ok(correlation)) => (key, correlation),
            (Err(e), _) | (_, Err(e)) => return error_result(&e),
        };
        if key.is_none() && action.options().key_policy == KeyPolicy::Required {
            // The executor would refuse too (writing nothing, docs/architecture.md §4.1),
            // naming the HTTP header; an agent needs the MCP way.
            let e = ActionError::validation(format!(
                "{name} requires an idempotency key: give it as _meta[\"{META_IDEMPOTENCY_KEY}\"] (a fresh one per intended {name}; the same one to retry)"
            ))
            .with_details(json!({"reason": "key_required", "meta": META_IDEMPOTENCY_KEY}));
            return error_result(&e);
        }
        let arguments = params.arguments.clone().map_or(json!({}), Value::Object);
        let invocation = Invocation {
            params: Params::Json(arguments),
            key,
            source: Source::Mcp,
            request_id: None,
            correlation_id,
            caller: Some(caller(principal.key_id.as_deref(), client)),
            trace_id: None,
            deadline_ms: None,
        };
        let execution = self.inner.dispatcher.call(&action, invocation).await;
        tool_result(&execution)
    }

    /// The action `name` if `principal` may call it: `ActionDo.Forbidden` outside the
    /// scope (whether it exists or not, naming nothing else), `ActionDo.NotFound` with
    /// close names from the scope only, as the HTTP API answers (docs/architecture.md
    /// §8.2).
    fn action(&self, principal: &Principal, name: &str) -> Result<Arc<dyn Describe>, ActionError> {
        if !principal.scope.allows(name) {
            return Err(ActionError::forbidden(format!(
                "this caller may not call the tool {name:?}"
            )));
        }
        if let Some(action) = self.inner.catalog.get(name) {
            return Ok(Arc::clone(action));
        }
        let mut in_scope = Descriptors::new();
        for action in self.inner.catalog.iter() {
            if principal.scope.allows(action.name()) {
                in_scope.insert(Arc::clone(action));
            }
        }
        Err(in_scope
            .resolve(name)
            .err()
            .unwrap_or_else(|| ActionError::not_found(format!("no tool named {name:?}"))))
    }

    /// Read the resource `uri` for `principal`: JSON text.
    pub async fn read(&self, principal: &Principal, uri: &str) -> Result<Value, ActionError> {
        let Some(path) = uri.strip_prefix(URI_SCHEME) else {
            return Err(unknown_resource(uri));
        };
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        match path.split('/').collect::<Vec<_>>().as_slice() {
            ["executions", name, key] => {
                let name = decode(name)?;
                let key = decode(key)?;
                self.execution(principal, &name, &key).await
            }
            ["audit"] => self.audit(principal, query).await,
            _ => Err(unknown_resource(uri)),
        }
    }

    /// An execution and its audit trail, as `GET /executions/{name}/{key}` shows them.
    async fn execution(
        &self,
        principal: &Principal,
        name: &str,
        key: &str,
    ) -> Result<Value, ActionError> {
        let action = self.action(principal, name)?;
        actiondo::hash::validate_key(key)?;
        let id = format!("{}#{key}", action.name());
        let Some(record) = self.inner.store.get_record(&id).await? else {
            return Err(ActionError::not_found(format!(
                "there is no execution of {name} with key {key:?}"
            ))
            .with_details(json!({"action": name, "key": key})));
        };
        let page = self
            .inner
            .store
            .query_audit(&AuditQuery {
                limit: actiondo::audit::MAX_PAGE_LIMIT,
                ..AuditQuery::new(AuditFilter::Execution(id))
            })
            .await?;
        Ok(json!({
            "execution": actiondo_api::view::record(action.name(), key, &record)?,
            "audit": page.records,
            "nextCursor": page.next_cursor,
        }))
    }

    /// Audit records in scope, newest first, as `GET /audit?…` answers them.
    async fn audit(&self, principal: &Principal, query: &str) -> Result<Value, ActionError> {
        let query = actiondo_api::view::audit_query(query)?;
        let check = |name: &str| {
            if principal.scope.allows(name) {
                Ok(())
            } else {
                Err(ActionError::forbidden(format!(
                    "this caller may not read the audit records of {name:?}"
                )))
            }
        };
        match &query.filter {
            AuditFilter::Execution(id) => {
                check(id.split_once('#').map_or(id.as_str(), |(n, _)| n))?
            }
            AuditFilter::Type(name) => check(name)?,
            // Across actions: only the records of actions in scope (as GET /audit).
            AuditFilter::Correlation(_) | AuditFilter::All => {}
        }
        let mut page = self.inner.store.query_audit(&query).await?;
        page.records.retain(|r| principal.scope.allows(&r.action));
        serde_json::to_value(&page)
            .map_err(|e| ActionError::internal(format!("the page does not serialize: {e}")))
    }

    /// The principal of a request: the one the HTTP transport attached, else the local
    /// one (stdio); neither is a protocol error (no principal, no access).
    fn principal(&self, context: &RequestContext<RoleServer>) -> Result<Principal, ErrorData> {
        context
            .extensions
            .get::<::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Principal>().cloned())
            .or_else(|| self.inner.local.clone())
            .ok_or_else(|| {
                ErrorData::invalid_request(
                    "this request has no API key (Authorization: Bearer <key>)",
                    None,
                )
            })
    }
}

fn unknown_resource(uri: &str) -> ActionError {
    ActionError::not_found(format!(
        "there is no resource {uri:?}; read {EXECUTION_TEMPLATE} or {AUDIT_TEMPLATE}"
    ))
}

/// A percent-decoded URI segment.
fn decode(segment: &str) -> Result<String, ActionError> {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|e| ActionError::validation(format!("the resource URI is not UTF-8: {e}")))
}

/// A resource read's refusal as a protocol error: `-32002` (resource not found) for
/// `NotFound`, invalid params for the caller's mistakes, internal error otherwise; the
/// error body (docs/architecture.md §6) is the error's `data`.
fn resource_error(error: &ActionError) -> ErrorData {
    let data = serde_json::to_value(error.to_body().error).ok();
    match error.kind() {
        actiondo::ErrorKind::NotFound => {
            ErrorData::resource_not_found(error.message().to_owned(), data)
        }
        actiondo::ErrorKind::Validation | actiondo::ErrorKind::Forbidden => {
            ErrorData::invalid_params(error.message().to_owned(), data)
        }
        _ => ErrorData::internal_error(error.message().to_owned(), data),
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(Implementation::new("actiondo", env!("CARGO_PKG_VERSION")))
        .with_instructions(format!(
            "Each tool is an atomic, idempotent, audited action. Give every intended operation its own idempotency key in _meta[\"{META_IDEMPOTENCY_KEY}\"] and reuse it to retry: a repeat replays the first outcome instead of acting twice. Before acting again, read {EXECUTION_TEMPLATE} or {AUDIT_URI} to see what was already done."
        ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let principal = self.principal(&context)?;
        Ok(ListToolsResult::with_all_items(self.tools(&principal)))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let principal = self.principal(&context)?;
        let client = context.client_info().map(|c| c.name);
        let result = self
            .call(&principal, client.as_deref(), request, Some(&context.meta))
            .await;
        Ok(result.into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        self.principal(&context)?;
        let recent = Resource::new(AUDIT_URI, "recent audit records")
            .with_description(
                "The 20 most recent audit records of the actions in scope, newest first: what was already done, by whom, with which key.",
            )
            .with_mime_type("application/json");
        Ok(ListResourcesResult::with_all_items(vec![recent]))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        self.principal(&context)?;
        let execution = ResourceTemplate::new(EXECUTION_TEMPLATE, "execution")
            .with_description(
                "One execution by action name and idempotency key (percent-encoded): status, attempt, times, the stored result or error, and its audit trail.",
            )
            .with_mime_type("application/json");
        let audit = ResourceTemplate::new(AUDIT_TEMPLATE, "audit records")
            .with_description(
                "Audit records newest first: type (an action) with optional key, or correlationId; since (RFC 3339); limit 1-100; cursor from nextCursor.",
            )
            .with_mime_type("application/json");
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            execution, audit,
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let principal = self.principal(&context)?;
        let value = self
            .read(&principal, &request.uri)
            .await
            .map_err(|e| resource_error(&e))?;
        let contents = ResourceContents::TextResourceContents {
            uri: request.uri,
            mime_type: Some("application/json".to_owned()),
            text: value.to_string(),
            meta: None,
        };
        Ok(ReadResourceResult::new(vec![contents]).into())
    }
}

/// Serve `server` on this process's stdin and stdout until the client closes them.
pub async fn serve_stdio(server: McpServer) -> std::io::Result<()> {
    use rmcp::ServiceExt as _;
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(std::io::Error::other)?;
    running.waiting().await.map_err(std::io::Error::other)?;
    Ok(())
}

#[cfg(test)]
mod tests;
