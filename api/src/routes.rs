//! The HTTP API of docs/architecture.md §8, one [`axum::Router`] (a tower `Service` over
//! `http::Request`) served by `lambda_http` in Lambda and by `actiondo serve` locally.
//!
//! | route | does |
//! |---|---|
//! | `POST /actions/{name}` | run one action; body = params; `Idempotency-Key`; `Prefer: respond-async` → 202; `Prefer: wait=N` |
//! | `POST /execute` | `{name, params, idempotencyKey?, correlationId?}` → `{result, error}` |
//! | `GET /actions`, `GET /actions/{name}` | the catalog: name, description, input and output JSON Schemas |
//! | `GET /executions/{name}/{key}` | the idempotency record and its audit trail |
//! | `GET /audit?type=&key=&correlationId=&status=&since=&limit=&cursor=` | audit records, newest first |
//! | `GET /workflows`, `GET /workflows/{name}` | the workflow definitions (`workflows/*.asl.json`) in the key's scope |
//! | `POST /workflows/{name}`, `GET /workflows/{name}/executions/{id}` | start / inspect an execution, on the local engine (`actiondo serve`) or Step Functions (execution name = key; [`crate::workflows`]) |
//! | `GET /workflows/{name}/executions?status=&limit=&cursor=` | its executions, newest first, `{executions, cursor?}` |
//! | `GET /workflows/{name}/executions/{id}/history`, `POST .../redrive` | its events; redrive it |
//!
//! Every error has the body of docs/architecture.md §6, `{"error": {"type", "message", "retryable",
//! "details"}}`: malformed JSON → 400 with its line and column; unknown action → 404
//! naming the closest names in the key's scope; unknown route → 404; wrong method → 405
//! with `Allow`; body over 1 MiB → 413; a content type other than JSON → 415; no or bad
//! API key → 401 (with `WWW-Authenticate: Bearer`); a name outside the key's scope → 403,
//! whether it exists or not (scopes: [`crate::keys::Scope`]).
//!
//! `Prefer: wait=N` (RFC 7240) on `POST /actions/{name}` and `POST /execute`: a request
//! that meets an in-flight execution of its key (`409 ActionDo.InProgress`) waits up to N
//! seconds, capped at [`MAX_WAIT_SECS`], for that execution's outcome and answers it as a
//! replay, with `Preference-Applied: wait=N` (docs/architecture.md §8.4).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actiondo::store::RecordStatus;
use actiondo::trigger::http::{
    CORRELATION_ID_HEADER, IDEMPOTENCY_KEY_HEADER, MAX_BODY_BYTES, check_request, error_response,
    execution_response, json_response,
};
use actiondo::{
    ActionError, AuditFilter, AuditQuery, Describe, Descriptors, ErrorKind, Execution, Invocation,
    Params, Source, Store,
};
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::dispatch::Dispatcher;
use crate::keys::{KeyStore, Scope, VerifiedKey};
use crate::workflows::{Started, WorkflowService, Workflows};

/// The request header asking for an asynchronous execution (`Prefer: respond-async`) or
/// for a wait on an in-flight duplicate (`Prefer: wait=N`).
pub const PREFER_HEADER: &str = "prefer";

/// The response header saying which preference was honoured (`Preference-Applied: wait=N`).
pub const PREFERENCE_APPLIED_HEADER: &str = "preference-applied";

/// The longest wait `Prefer: wait=N` is granted, in seconds (a larger N is cut to this).
/// The deployed router answers through an API Gateway HTTP API, which cuts every request
/// at 30 s (the router's Lambda timeout too): 20 s of waiting leave 10 s for the call
/// that answers the outcome.
pub const MAX_WAIT_SECS: u64 = 20;

/// The first pause between two reads of an in-flight record; each pause doubles, up to
/// [`WAIT_MAX_POLL`].
const WAIT_FIRST_POLL: Duration = Duration::from_millis(20);

/// The longest pause between two reads of an in-flight record.
const WAIT_MAX_POLL: Duration = Duration::from_secs(1);

/// Who may call what.
#[derive(Debug, Clone)]
pub enum Auth {
    /// Every route needs `Authorization: Bearer <key>` with a key of this store.
    ApiKeys(KeyStore),
    /// No keys: every caller may call every action (`actiondo serve --no-auth`, for local
    /// play only).
    Disabled,
}

/// What the router serves and how it reaches the actions.
#[derive(Debug, Clone)]
pub struct Api {
    catalog: Arc<Descriptors>,
    dispatcher: Arc<dyn Dispatcher>,
    store: Arc<dyn Store>,
    auth: Auth,
    workflows: Option<Arc<dyn WorkflowService>>,
    definitions: Arc<BTreeMap<String, Value>>,
}

impl Api {
    /// The routes over the actions of `catalog` (a [`Catalog`](actiondo::Catalog) or its
    /// [`Descriptors`]), running them with `dispatcher` and reading executions and audit
    /// records from `store`.
    pub fn new(
        catalog: impl Into<Descriptors>,
        dispatcher: Arc<dyn Dispatcher>,
        store: Arc<dyn Store>,
        auth: Auth,
    ) -> Self {
        Self {
            catalog: Arc::new(catalog.into()),
            dispatcher,
            store,
            auth,
            workflows: None,
            definitions: Arc::new(BTreeMap::new()),
        }
    }

    /// Serve `GET /workflows` and `GET /workflows/{name}` from `definitions` (workflow
    /// name → its Amazon States Language definition; [`crate::workflows::definitions_from_dir`]).
    pub fn with_workflow_definitions(mut self, definitions: BTreeMap<String, Value>) -> Self {
        self.definitions = Arc::new(definitions);
        self
    }

    /// Serve `POST /workflows/{name}` and `GET /workflows/{name}/executions/{id}` with
    /// `workflows` (without, those routes answer 404).
    pub fn with_workflows(mut self, workflows: Workflows) -> Self {
        self.workflows = Some(Arc::new(workflows));
        self
    }

    /// Serve the workflow routes with any [`WorkflowService`] (`actiondo serve`: the
    /// local engine, or Step Functions for the workflows `ACTIONDO_WORKFLOW_<NAME>`
    /// names).
    pub fn with_workflow_service(mut self, workflows: Arc<dyn WorkflowService>) -> Self {
        self.workflows = Some(workflows);
        self
    }

    /// The actions served, as descriptions.
    pub fn catalog(&self) -> &Descriptors {
        &self.catalog
    }

    /// The dispatcher.
    pub fn dispatcher(&self) -> &Arc<dyn Dispatcher> {
        &self.dispatcher
    }

    /// The routes, as a tower `Service<http::Request<B>>`.
    pub fn into_router(self) -> axum::Router {
        let method_not_allowed = |allow: &'static str| {
            move || async move {
                let err = ActionError::validation(format!(
                    "method not allowed on this route; use {allow}"
                ))
                .with_http_status(405);
                let mut response = error_response(&err, false);
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allow));
                into_axum(response)
            }
        };
        axum::Router::new()
            .route(
                "/actions",
                get(list_actions).fallback(method_not_allowed("GET")),
            )
            .route(
                "/actions/{name}",
                post(run_action)
                    .get(describe_action)
                    .fallback(method_not_allowed("GET, POST")),
            )
            .route(
                "/execute",
                post(execute).fallback(method_not_allowed("POST")),
            )
            .route(
                "/executions/{name}/{key}",
                get(describe_execution).fallback(method_not_allowed("GET")),
            )
            .route("/audit", get(audit).fallback(method_not_allowed("GET")))
            .route(
                "/workflows",
                get(list_workflows).fallback(method_not_allowed("GET")),
            )
            .route(
                "/workflows/{name}",
                post(start_workflow)
                    .get(describe_workflow)
                    .fallback(method_not_allowed("GET, POST")),
            )
            .route(
                "/workflows/{name}/executions",
                get(list_workflow_executions).fallback(method_not_allowed("GET")),
            )
            .route(
                "/workflows/{name}/executions/{id}",
                get(describe_workflow_execution).fallback(method_not_allowed("GET")),
            )
            .route(
                "/workflows/{name}/executions/{id}/history",
                get(workflow_history).fallback(method_not_allowed("GET")),
            )
            .route(
                "/workflows/{name}/executions/{id}/redrive",
                post(redrive_workflow_execution).fallback(method_not_allowed("POST")),
            )
            .fallback(unknown_route)
            .with_state(Arc::new(self))
            .layer(axum::middleware::from_fn(with_request_id))
    }

    /// Who is calling: the scope of the request's API key (401 without a valid one).
    async fn authorize(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let keys = match &self.auth {
            Auth::Disabled => return Ok(Caller { key: None }),
            Auth::ApiKeys(keys) => keys,
        };
        let token = crate::keys::bearer_token(headers)?;
        Ok(Caller {
            key: Some(keys.authenticate(token).await?),
        })
    }

    /// The action `name` if the caller's scope matches it (403 otherwise, whether the
    /// catalog has it or not, so that a key learns nothing of names outside its scope)
    /// and the catalog has it (404 otherwise, with suggestions from the scope only).
    fn action(&self, caller: &Caller, name: &str) -> Result<Arc<dyn Describe>, ApiError> {
        caller.check(name)?;
        if let Some(action) = self.catalog.get(name) {
            return Ok(Arc::clone(action));
        }
        let mut in_scope = Descriptors::new();
        for action in self
            .catalog
            .iter()
            .filter(|a| caller.scope().allows(a.name()))
        {
            in_scope.insert(Arc::clone(action));
        }
        Err(in_scope
            .resolve(name)
            .err()
            .unwrap_or_else(|| ActionError::not_found(format!("no action named {name:?}")))
            .into())
    }

    /// The invocation of an HTTP call by `caller`.
    fn invocation(
        caller: &Caller,
        params: Params,
        key: Option<String>,
        correlation_id: Option<String>,
    ) -> Invocation {
        Invocation {
            params,
            key,
            source: Source::Http,
            request_id: None,
            correlation_id,
            caller: caller.key.as_ref().map(|k| k.caller.clone()),
            trace_id: None,
            deadline_ms: None,
        }
    }

    /// Run `invocation`; when it meets an in-flight execution of the same key
    /// (`ActionDo.InProgress`) and the caller asked for `Prefer: wait=N` (`wait`), wait
    /// for that execution's outcome: re-read its record with growing pauses (never past
    /// `wait`) and, once it is no longer in flight (or its lease has ended, or it was
    /// released for a retry), dispatch the invocation again, which answers the stored
    /// outcome as a replay (or runs it, as any retry would). At the end of the wait, one
    /// last dispatch answers the freshest state: the usual 409 with `Retry-After` if it is
    /// still in flight. Also answers whether the wait was applied.
    async fn call(
        &self,
        action: &Arc<dyn Describe>,
        invocation: Invocation,
        wait: Option<Duration>,
    ) -> (Execution, bool) {
        let execution = self.dispatcher.call(action, invocation.clone()).await;
        let (Some(wait), Some(key)) = (wait, execution.key.as_deref()) else {
            return (execution, false);
        };
        if !in_progress(&execution) {
            return (execution, false);
        }
        let id = format!("{}#{key}", action.name());
        let deadline = Instant::now() + wait;
        let mut pause = WAIT_FIRST_POLL;
        let mut last = execution;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return (last, true);
            }
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(WAIT_MAX_POLL);
            let settled = match self.store.get_record(&id).await {
                Ok(Some(record)) => {
                    record.status != RecordStatus::InProgress
                        || record.lease_expires_at_ms <= now_ms()
                }
                // Released (a retryable failure): the next dispatch runs it again.
                Ok(None) => true,
                Err(e) => {
                    tracing::warn!(id, error = %e, "cannot read an in-flight record; waiting ends");
                    return (last, true);
                }
            };
            if settled || Instant::now() >= deadline {
                last = self.dispatcher.call(action, invocation.clone()).await;
                if !in_progress(&last) || Instant::now() >= deadline {
                    return (last, true);
                }
            }
        }
    }

    /// Start `action` without waiting; answers where its outcome will be.
    async fn start(
        &self,
        action: &Arc<dyn Describe>,
        invocation: Invocation,
    ) -> Result<Ran, ApiError> {
        // Params the action's schema refuses (or a body that is not JSON) would be
        // accepted (202) and never found at the Location: refuse them now, run like a
        // synchronous call so that the rejection is answered and audited under its key.
        // How far params are checked here is the dispatcher's (`Dispatcher::check`): the
        // router checks the schema, and the action's function, which runs its business
        // validation, records a rejection there at the Location.
        let params = match &invocation.params {
            Params::Json(params) => Ok(params.clone()),
            Params::Text(text) => actiondo::invocation::parse_params(text),
        };
        let params = match params {
            Ok(params) if self.dispatcher.check(action.as_ref(), &params).is_ok() => params,
            _ => return Ok(Ran::Done(self.dispatcher.call(action, invocation).await)),
        };
        // The record's address must be known now: the given key, else the one the
        // executor derives from the params.
        let key = actiondo::invocation::idempotency_key(
            action.name(),
            action.options().key_policy,
            invocation.key.as_deref(),
            &params,
        )?;
        let invocation = Invocation {
            key: Some(key.clone()),
            ..invocation
        };
        self.dispatcher.start(action, invocation).await?;
        Ok(Ran::Started {
            name: action.name(),
            key,
        })
    }
}

/// Whether an execution is the answer to a request that met an in-flight execution of
/// its key.
fn in_progress(execution: &Execution) -> bool {
    matches!(&execution.outcome, Err(e) if e.kind() == ErrorKind::InProgress)
}

/// The time now, Unix milliseconds (the clock the leases are written with).
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// What became of an action call.
#[derive(Debug)]
enum Ran {
    /// It ran; here is the outcome.
    Done(actiondo::Execution),
    /// It was started (`Prefer: respond-async`).
    Started { name: &'static str, key: String },
}

impl Ran {
    /// The response: the execution's, or 202 with `Location: /executions/{name}/{key}`.
    fn into_response(self) -> Response {
        match self {
            Ran::Done(execution) => into_axum(execution_response(execution)),
            Ran::Started { name, key } => {
                let location = format!("/executions/{name}/{}", percent_encode_segment(&key));
                let body =
                    json!({"status": "accepted", "name": name, "key": key, "location": location});
                located(StatusCode::ACCEPTED, &body, &location, &key, false)
            }
        }
    }
}

/// The caller of a request.
#[derive(Debug)]
struct Caller {
    /// The verified API key (`None` without auth).
    key: Option<Arc<VerifiedKey>>,
}

/// The scope of every caller when auth is disabled.
static ALL: std::sync::LazyLock<Scope> = std::sync::LazyLock::new(Scope::all);

impl Caller {
    /// What the caller may call.
    fn scope(&self) -> &Scope {
        self.key.as_ref().map_or(&ALL, |k| &k.scope)
    }

    /// 403 unless the scope matches the action `action`; the answer is the same for a
    /// known and an unknown name, and names nothing else.
    fn check(&self, action: &str) -> Result<(), ActionError> {
        if self.scope().allows(action) {
            Ok(())
        } else {
            Err(ActionError::forbidden(format!(
                "this API key may not call the action {action:?}"
            )))
        }
    }

    /// 403 unless the scope has a `workflow:` pattern matching `workflow`.
    fn check_workflow(&self, workflow: &str) -> Result<(), ActionError> {
        if self.scope().allows_workflow(workflow) {
            Ok(())
        } else {
            Err(ActionError::forbidden(format!(
                "this API key may not use the workflow {workflow:?} (a key needs a pattern workflow:NAME for it)"
            )))
        }
    }
}

/// An error answered in the shape of docs/architecture.md §6.
#[derive(Debug)]
struct ApiError(ActionError);

impl From<ActionError> for ApiError {
    fn from(e: ActionError) -> Self {
        ApiError(e)
    }
}

impl From<actiondo::StoreError> for ApiError {
    fn from(e: actiondo::StoreError) -> Self {
        ApiError(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = error_response(&self.0, false);
        if self.0.http_status() == 401 {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        into_axum(response)
    }
}

type Shared = State<Arc<Api>>;

fn into_axum(response: http::Response<String>) -> Response {
    response.map(Body::from)
}

/// Everything but the unreserved characters of RFC 3986 (letters, digits, `-_.~`).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A path segment with everything but unreserved characters percent-encoded.
pub(crate) fn percent_encode_segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

/// A JSON response that says where its resource lives: `Location`, the key it is filed
/// under (`Idempotency-Key`) and, for a replay, `Idempotent-Replayed: true`.
fn located(
    status: StatusCode,
    body: &Value,
    location: &str,
    key: &str,
    replayed: bool,
) -> Response {
    let mut response = json_response(status, body.to_string());
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, value);
    }
    if let Ok(value) = HeaderValue::from_str(key) {
        headers.insert(IDEMPOTENCY_KEY_HEADER, value);
    }
    if replayed {
        headers.insert(
            actiondo::trigger::http::REPLAYED_HEADER,
            HeaderValue::from_static("true"),
        );
    }
    into_axum(response)
}

fn header_string(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Read the body of a JSON request: method, content type and size checked first.
async fn read_body(method: &Method, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    check_request(method, headers, declared)?;
    match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => Ok(bytes),
        // Over the limit without a Content-Length (chunked): same 413.
        Err(_) => Err(check_request(method, headers, MAX_BODY_BYTES + 1)
            .err()
            .unwrap_or_else(|| ActionError::validation("the body could not be read"))
            .into()),
    }
}

fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| ActionError::validation(format!("the body is not UTF-8: {e}")))?;
    Ok(actiondo::invocation::parse_params(text)?)
}

fn wants_async(headers: &HeaderMap) -> bool {
    headers
        .get_all(PREFER_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
}

/// The `Prefer: wait=N` of a request (RFC 7240: comma-separated preferences, each
/// `token[=value]` with `;`-parameters), N whole seconds cut to [`MAX_WAIT_SECS`]; `None`
/// without one, for `wait=0` and for a value that is not a number (a preference the
/// server does not understand is ignored, RFC 7240 §2).
fn wait_preference(headers: &HeaderMap) -> Option<u64> {
    headers
        .get_all(PREFER_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|p| {
            let preference = p.split(';').next().unwrap_or_default();
            let (name, value) = preference.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("wait")
                .then(|| value.trim().trim_matches('"').parse::<u64>().ok())
                .flatten()
        })
        .next()
        .map(|secs| secs.min(MAX_WAIT_SECS))
        .filter(|secs| *secs > 0)
}

/// Add `Preference-Applied: wait=N` when the request waited.
fn applied(mut response: Response, wait: Option<u64>, waited: bool) -> Response {
    if let (Some(secs), true) = (wait, waited)
        && let Ok(value) = HeaderValue::from_str(&format!("wait={secs}"))
    {
        response
            .headers_mut()
            .insert(PREFERENCE_APPLIED_HEADER, value);
    }
    response
}

/// `POST /actions/{name}`.
async fn run_action(
    State(api): Shared,
    Path(name): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let caller = api.authorize(&parts.headers).await?;
    let action = api.action(&caller, &name)?;
    let bytes = read_body(&parts.method, &parts.headers, body).await?;
    // The executor parses the body: a malformed one with a valid key is refused there and
    // leaves its `rejected` audit record (length and SHA-256 of the text), as on an
    // action's own HTTP trigger (docs/architecture.md §4, §7.5).
    let text = String::from_utf8(bytes.to_vec())
        .map_err(|e| ActionError::validation(format!("the body is not UTF-8: {e}")))?;
    let invocation = Api::invocation(
        &caller,
        Params::Text(text),
        actiondo::trigger::http::idempotency_key(&parts.headers)?,
        header_string(&parts.headers, CORRELATION_ID_HEADER),
    );
    // `Prefer: respond-async` wins over `wait`: the caller wants no wait at all.
    if wants_async(&parts.headers) {
        return Ok(api.start(&action, invocation).await?.into_response());
    }
    let wait = wait_preference(&parts.headers);
    let (execution, waited) = api
        .call(&action, invocation, wait.map(Duration::from_secs))
        .await;
    Ok(applied(Ran::Done(execution).into_response(), wait, waited))
}

/// The body of `POST /execute`: the SDK's call.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExecuteRequest {
    name: String,
    #[serde(default)]
    params: Value,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    correlation_id: Option<String>,
}

/// `POST /execute`: `{name, params, idempotencyKey?}` → `{result, error}`, with the
/// status of the error (200 on success). The router's own refusals (no key, unknown
/// action, malformed body) have that shape too: `{"result": null, "error": {...}}`.
async fn execute(state: Shared, request: Request) -> Response {
    match run_execute(state, request).await {
        Ok(response) => response,
        Err(e) => {
            let body = json!({"result": Value::Null, "error": e.0.to_body().error}).to_string();
            let mut response = e.into_response();
            *response.body_mut() = Body::from(body);
            response
        }
    }
}

/// [`execute`] up to its refusals.
async fn run_execute(State(api): Shared, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let caller = api.authorize(&parts.headers).await?;
    let bytes = read_body(&parts.method, &parts.headers, body).await?;
    let value = parse_json(&bytes)?;
    let call: ExecuteRequest = serde_json::from_value(value).map_err(|e| {
        ActionError::validation(format!(
            "the body must be {{\"name\", \"params\", \"idempotencyKey\"?, \"correlationId\"?}}: {e}"
        ))
    })?;
    let action = api.action(&caller, &call.name)?;
    let key = match call.idempotency_key {
        Some(key) => Some(key),
        None => actiondo::trigger::http::idempotency_key(&parts.headers)?,
    };
    let correlation = call
        .correlation_id
        .or_else(|| header_string(&parts.headers, CORRELATION_ID_HEADER));
    let params = if call.params.is_null() {
        json!({})
    } else {
        call.params
    };
    let invocation = Api::invocation(&caller, Params::Json(params), key, correlation);
    let wait = wait_preference(&parts.headers);
    let (execution, waited) = api
        .call(&action, invocation, wait.map(Duration::from_secs))
        .await;
    let body = serde_json::to_string(&execution.to_response())
        .map_err(|e| ActionError::internal(format!("the response does not serialize: {e}")))?;
    let mut response = execution_response(execution);
    *response.body_mut() = body;
    Ok(applied(into_axum(response), wait, waited))
}

/// One entry of the catalog as JSON.
fn describe(action: &dyn Describe) -> Value {
    serde_json::to_value(crate::view::describe(action)).unwrap_or_default()
}

/// `GET /actions`: the actions the caller may run.
async fn list_actions(State(api): Shared, headers: HeaderMap) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers).await?;
    let actions: Vec<Value> = api
        .catalog
        .iter()
        .filter(|a| caller.scope().allows(a.name()))
        .map(|a| describe(a.as_ref()))
        .collect();
    Ok(into_axum(json_response(
        StatusCode::OK,
        json!({"actions": actions}).to_string(),
    )))
}

/// `GET /actions/{name}`.
async fn describe_action(
    State(api): Shared,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers).await?;
    let action = api.action(&caller, &name)?;
    Ok(into_axum(json_response(
        StatusCode::OK,
        describe(action.as_ref()).to_string(),
    )))
}

/// `GET /executions/{name}/{key}`: the record and its audit trail (newest first).
async fn describe_execution(
    State(api): Shared,
    Path((name, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers).await?;
    let action = api.action(&caller, &name)?;
    actiondo::hash::validate_key(&key)?;
    let id = format!("{}#{key}", action.name());
    let Some(record) = api.store.get_record(&id).await? else {
        return Err(ActionError::not_found(format!(
            "there is no execution of {name} with key {key:?}"
        ))
        .with_details(json!({"action": name, "key": key}))
        .into());
    };
    let page = api
        .store
        .query_audit(&AuditQuery {
            limit: actiondo::audit::MAX_PAGE_LIMIT,
            ..AuditQuery::new(AuditFilter::Execution(id))
        })
        .await?;
    let body = json!({
        "execution": crate::view::record(action.name(), &key, &record)?,
        "audit": page.records,
        "nextCursor": page.next_cursor,
    });
    Ok(into_axum(json_response(StatusCode::OK, body.to_string())))
}

/// `GET /audit`.
async fn audit(
    State(api): Shared,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers).await?;
    let (query, status) = crate::view::audit_request(query.as_deref().unwrap_or_default())?;
    match &query.filter {
        AuditFilter::Execution(id) => {
            let name = id.split_once('#').map_or(id.as_str(), |(name, _)| name);
            caller.check(name)?;
        }
        AuditFilter::Type(name) => caller.check(name)?,
        // Across actions: the page keeps only the records of actions in scope (a page may
        // then hold fewer than `limit` records; `nextCursor` still goes on).
        AuditFilter::Correlation(_) | AuditFilter::All => {}
    }
    let mut page = api.store.query_audit(&query).await?;
    page.records.retain(|r| {
        caller.scope().allows(&r.action) && status.as_deref().is_none_or(|s| r.status.as_str() == s)
    });
    Ok(into_axum(json_response(
        StatusCode::OK,
        serde_json::to_string(&page)
            .map_err(|e| ActionError::internal(format!("the page does not serialize: {e}")))?,
    )))
}

impl Api {
    /// The workflow service for a request on workflow `name`: 401 without a valid key,
    /// 403 unless the key's scope has a `workflow:` pattern matching `name`, 404 when
    /// the router has no workflows or does not run `name`. Every execution route starts
    /// here. The 404 names no other workflow: the services' own not-found errors list
    /// every workflow they run, which a scoped key must not learn (`GET /workflows`
    /// lists the ones in its scope).
    async fn workflow_service(
        &self,
        headers: &HeaderMap,
        name: &str,
    ) -> Result<&dyn WorkflowService, ApiError> {
        self.authorize(headers).await?.check_workflow(name)?;
        self.running(name)
    }

    /// The service that runs workflow `name`, or 404 naming no other workflow.
    fn running(&self, name: &str) -> Result<&dyn WorkflowService, ApiError> {
        let service = self.workflows(name)?;
        if !service.runs(name) {
            return Err(ActionError::not_found(format!(
                "there is no workflow {name:?} here (GET /workflows lists the ones your key may run)"
            ))
            .with_details(json!({"workflow": name}))
            .into());
        }
        Ok(service)
    }

    /// The workflows, or 404 when the router has none.
    fn workflows(&self, name: &str) -> Result<&dyn WorkflowService, ApiError> {
        self.workflows.as_deref().ok_or_else(|| {
            ActionError::not_found(format!(
                "there is no workflow {name:?}: this router has no state machines (set ACTIONDO_WORKFLOW_<NAME>)"
            ))
            .into()
        })
    }
}

/// `GET /workflows`: the workflow definitions in the caller's scope, `{workflows: [{name,
/// comment, startAt, states, deployed}]}` (`deployed`: a state machine runs it here).
async fn list_workflows(State(api): Shared, headers: HeaderMap) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers).await?;
    let deployed = |name: &str| api.workflows.as_deref().is_some_and(|w| w.runs(name));
    let workflows: Vec<Value> = api
        .definitions
        .iter()
        .filter(|(name, _)| caller.scope().allows_workflow(name))
        .map(|(name, definition)| {
            json!({
                "name": name,
                "comment": definition.get("Comment"),
                "startAt": definition.get("StartAt"),
                "states": definition.get("States").and_then(Value::as_object).map_or(0, serde_json::Map::len),
                "deployed": deployed(name),
            })
        })
        .collect();
    Ok(into_axum(json_response(
        StatusCode::OK,
        json!({"workflows": workflows}).to_string(),
    )))
}

/// `GET /workflows/{name}`: `{name, deployed, definition}`.
async fn describe_workflow(
    State(api): Shared,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers).await?;
    caller.check_workflow(&name)?;
    let definition = api.definitions.get(&name).ok_or_else(|| {
        ActionError::not_found(format!("there is no workflow definition named {name:?}"))
            .with_details(json!({"workflow": name}))
    })?;
    let deployed = api.workflows.as_deref().is_some_and(|w| w.runs(&name));
    Ok(into_axum(json_response(
        StatusCode::OK,
        json!({"name": name, "deployed": deployed, "definition": definition}).to_string(),
    )))
}

/// `POST /workflows/{name}`: start an execution named by the idempotency key.
async fn start_workflow(
    State(api): Shared,
    Path(name): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let workflows = api.workflow_service(&parts.headers, &name).await?;
    let bytes = read_body(&parts.method, &parts.headers, body).await?;
    let input = parse_json(&bytes)?;
    let execution = actiondo::trigger::http::idempotency_key(&parts.headers)?
        .unwrap_or_else(|| actiondo::hash::payload_hash(&input));
    let (status, body, replayed) = match workflows.start(&name, &execution, &input).await? {
        Started::Started(body) => (StatusCode::ACCEPTED, body, false),
        Started::Existing(body) => (StatusCode::OK, body, true),
    };
    let location = format!(
        "/workflows/{name}/executions/{}",
        percent_encode_segment(&execution)
    );
    Ok(located(status, &body, &location, &execution, replayed))
}

/// `GET /workflows/{name}/executions?status=&limit=&cursor=`: `{workflow, executions:
/// [{executionName, status, startDate, stopDate?, redriveCount?}], cursor?}`, newest
/// first. The key's scope is checked first, then the query (400 for a bad `status`,
/// `limit` or `cursor`), then the workflow (404 when unknown).
async fn list_workflow_executions(
    State(api): Shared,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    api.authorize(&headers).await?.check_workflow(&name)?;
    let query = crate::workflows::list_request(&name, query.as_deref().unwrap_or_default())?;
    let page = api.running(&name)?.list(&name, &query).await?;
    let body = crate::workflows::list_body(&name, &query, &page);
    Ok(into_axum(json_response(StatusCode::OK, body.to_string())))
}

/// `GET /workflows/{name}/executions/{id}`.
async fn describe_workflow_execution(
    State(api): Shared,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let body = api
        .workflow_service(&headers, &name)
        .await?
        .describe(&name, &id)
        .await?;
    Ok(into_axum(json_response(StatusCode::OK, body.to_string())))
}

/// `GET /workflows/{name}/executions/{id}/history`: the execution's events, oldest first.
async fn workflow_history(
    State(api): Shared,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let body = api
        .workflow_service(&headers, &name)
        .await?
        .history(&name, &id)
        .await?;
    Ok(into_axum(json_response(StatusCode::OK, body.to_string())))
}

/// `POST /workflows/{name}/executions/{id}/redrive`: 202 with the redriven execution.
async fn redrive_workflow_execution(
    State(api): Shared,
    Path((name, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let body = api
        .workflow_service(&headers, &name)
        .await?
        .redrive(&name, &id)
        .await?;
    Ok(into_axum(json_response(
        StatusCode::ACCEPTED,
        body.to_string(),
    )))
}

/// The response header naming the request's id (the field `request_id` of its log lines).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Give the request an id: its log lines are in a span `request{request_id}`, the response
/// has it in `X-Request-Id`, and a 5xx error names it (in its message and as
/// `details.requestId`), so that the cause left in the log can be found while the answer
/// carries none of the store's or AWS's text.
async fn with_request_id(request: Request, next: axum::middleware::Next) -> Response {
    use tracing::Instrument as _;
    let id = random_request_id();
    let span = tracing::info_span!("request", request_id = %id, method = %request.method(), path = %request.uri().path());
    let response = next.run(request).instrument(span).await;
    let (mut parts, body) = response.into_parts();
    if let Ok(value) = HeaderValue::from_str(&id) {
        parts.headers.insert(REQUEST_ID_HEADER, value);
    }
    if !parts.status.is_server_error() {
        return Response::from_parts(parts, body);
    }
    // Error bodies are small: read, name the id, write back.
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let body = match serde_json::from_slice::<Value>(&bytes) {
        Ok(mut value) if value["error"].is_object() => {
            let error = &mut value["error"];
            if let Some(message) = error["message"].as_str() {
                error["message"] = Value::String(format!("{message} (request id {id})"));
            }
            if !error["details"].is_object() {
                error["details"] = json!({});
            }
            error["details"]["requestId"] = Value::String(id);
            parts.headers.remove(header::CONTENT_LENGTH);
            Body::from(value.to_string())
        }
        _ => Body::from(bytes),
    };
    Response::from_parts(parts, body)
}

/// A random prefix per process and a counter: `3f9c01a2b4d5e6f7-1a`. Unique without a
/// system call per request.
fn random_request_id() -> String {
    static PREFIX: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let mut bytes = [0u8; 8];
        match getrandom::fill(&mut bytes) {
            Ok(()) => hex::encode(bytes),
            // No randomness: the start time still tells processes apart.
            Err(_) => format!(
                "{:016x}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or_default()
            ),
        }
    });
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{n:x}", *PREFIX)
}

/// Any other route.
async fn unknown_route(method: Method, uri: http::Uri) -> Response {
    let err = ActionError::not_found(format!(
        "there is no route {method} {}; see GET /actions, POST /actions/{{name}}, POST /execute, GET /executions/{{name}}/{{key}}, GET /audit",
        uri.path()
    ));
    into_axum(error_response(&err, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn async_is_asked_with_prefer() {
        let mut headers = HeaderMap::new();
        assert!(!wants_async(&headers));
        headers.insert(
            PREFER_HEADER,
            HeaderValue::from_static("wait=5, respond-async"),
        );
        assert!(wants_async(&headers));
    }

    #[test]
    fn wait_is_read_from_prefer_and_capped() {
        let wait = |values: &[&'static str]| {
            let mut headers = HeaderMap::new();
            for v in values {
                headers.append(PREFER_HEADER, HeaderValue::from_static(v));
            }
            wait_preference(&headers)
        };
        assert_eq!(wait(&[]), None);
        assert_eq!(wait(&["respond-async"]), None);
        assert_eq!(wait(&["wait=5"]), Some(5));
        assert_eq!(wait(&["handling=lenient, Wait = 7 ; x=y"]), Some(7));
        assert_eq!(wait(&["respond-async", "wait=\"3\""]), Some(3));
        assert_eq!(wait(&["wait=3600"]), Some(MAX_WAIT_SECS));
        assert_eq!(wait(&["wait=0"]), None);
        assert_eq!(wait(&["wait=-1"]), None);
        assert_eq!(wait(&["wait=soon"]), None);
        assert_eq!(wait(&["wait"]), None);
        assert_eq!(wait(&["waiter=5"]), None);
    }

    #[test]
    fn locations_encode_keys() {
        assert_eq!(percent_encode_segment("a b/c#1"), "a%20b%2Fc%231");
        assert_eq!(percent_encode_segment("order-42_x.y~"), "order-42_x.y~");
    }
}
