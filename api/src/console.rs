//! The console (docs/architecture.md §11): server-rendered HTML pages over the API's own
//! routes, served by `actiondo serve` at `/` and by the router when
//! `ACTIONDO_CONSOLE=on`.
//!
//! Every page is a JSON response of the API, rendered: a console handler sends the API
//! request it names (with the caller's `Authorization` header) through the very
//! [`axum::Router`] of [`crate::Api`], in process, and renders its body with a template
//! compiled into the binary (`api/templates/console/`). The console has no data path of
//! its own; each page links the API route it shows.
//!
//! | page | API route |
//! |---|---|
//! | `GET /console/`, `/console/actions` | `GET /actions` |
//! | `GET /console/actions/{name}` | `GET /actions/{name}` |
//! | `POST /console/actions/{name}` (the try-it form) | `GET /actions/{name}`, then `POST /execute` |
//! | `GET /console/executions?type=&key=&correlationId=&status=&since=&cursor=` | `GET /audit` |
//! | `GET /console/executions/{name}/{key}` | `GET /executions/{name}/{key}` |
//! | `GET /console/workflows` | `GET /workflows`, and `GET /workflows/{name}/executions?limit=5` of each workflow run here |
//! | `GET /console/workflows/{name}?status=&cursor=` | `GET /workflows/{name}`, `GET /workflows/{name}/executions?status=&limit=&cursor=` |
//! | `GET /console/workflows/{name}?execution=` | `GET /workflows/{name}`, `GET /workflows/{name}/executions/{id}` and its `/history` |
//! | `POST /console/workflows/{name}/redrive` | `POST /workflows/{name}/executions/{id}/redrive` |
//!
//! API keys: plain navigation cannot send `Authorization`, so a page asked without a key
//! answers 401 with a form; the key typed there stays in the tab's `sessionStorage`, and a
//! small inline script then fetches each page with `Authorization: Bearer <key>` and
//! swaps it in. Without keys (`actiondo serve --no-auth`) the pages are plain links and
//! forms. Templates escape everything they show (minijinja's HTML auto-escaping).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde::Serialize;
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// The variable that serves the console from the router Lambda (`on`).
pub const CONSOLE_ENV: &str = "ACTIONDO_CONSOLE";

/// The largest API body the console reads (the API's pages are far smaller).
const MAX_API_BODY: usize = 16 * 1024 * 1024;

/// The API's routes plus the console's.
pub fn with_console(api: axum::Router) -> axum::Router {
    api.clone().merge(router(api))
}

/// Whether `settings` say `ACTIONDO_CONSOLE=on`.
pub fn enabled(settings: &actiondo::config::Settings) -> bool {
    settings
        .get_str(CONSOLE_ENV)
        .is_some_and(|v| v.trim() == "on")
}

/// The console's routes, reading through `api` (the router of [`crate::Api`]).
pub fn router(api: axum::Router) -> axum::Router {
    let console = Arc::new(Console {
        api,
        templates: templates(),
    });
    axum::Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(actions))
        .route("/console/actions", get(actions))
        .route("/console/actions/{name}", get(action).post(try_action))
        .route("/console/executions", get(executions))
        .route("/console/executions/{name}/{key}", get(execution))
        .route("/console/workflows", get(workflows))
        .route("/console/workflows/{name}", get(workflow))
        .route(
            "/console/workflows/{name}/redrive",
            axum::routing::post(redrive),
        )
        .with_state(console)
}

/// The templates, compiled into the binary.
fn templates() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    for (name, source) in [
        (
            "layout.html",
            include_str!("../templates/console/layout.html"),
        ),
        ("key.html", include_str!("../templates/console/key.html")),
        (
            "error.html",
            include_str!("../templates/console/error.html"),
        ),
        (
            "actions.html",
            include_str!("../templates/console/actions.html"),
        ),
        (
            "action.html",
            include_str!("../templates/console/action.html"),
        ),
        (
            "executions.html",
            include_str!("../templates/console/executions.html"),
        ),
        (
            "execution.html",
            include_str!("../templates/console/execution.html"),
        ),
        (
            "workflows.html",
            include_str!("../templates/console/workflows.html"),
        ),
        (
            "workflow.html",
            include_str!("../templates/console/workflow.html"),
        ),
    ] {
        if let Err(e) = env.add_template(name, source) {
            // A template that does not compile is a build defect the tests catch; the
            // page that needs it then answers 500 naming it.
            tracing::error!(template = name, error = %e, "a console template does not compile");
        }
    }
    env
}

/// The console's state: the API to read through, and the templates.
struct Console {
    api: axum::Router,
    templates: minijinja::Environment<'static>,
}

type Shared = State<Arc<Console>>;

/// What the API answered.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    /// The `error` of an error body, its `details` as indented JSON text.
    fn error(&self) -> Value {
        let mut error = self
            .body
            .get("error")
            .filter(|e| e.is_object())
            .cloned()
            .unwrap_or_else(|| json!({}));
        if let Some(details) = error.get("details").filter(|d| !d.is_null()).cloned() {
            error["details"] = json!(pretty(&details));
        }
        error
    }
}

impl Console {
    /// Send one API request in process, with the caller's `Authorization`.
    async fn call(
        &self,
        method: Method,
        uri: &str,
        auth: Option<&HeaderValue>,
        body: Option<&Value>,
    ) -> Answer {
        let mut request = http::Request::builder().method(method).uri(uri);
        if let Some(auth) = auth {
            request = request.header(header::AUTHORIZATION, auth);
        }
        let body = match body {
            Some(body) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        let request = match request.body(body) {
            Ok(request) => request,
            Err(e) => return internal(format!("the API request {uri} is invalid: {e}")),
        };
        let response = match self.api.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let (parts, body) = response.into_parts();
        let body = match axum::body::to_bytes(body, MAX_API_BODY).await {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            Err(e) => return internal(format!("the API's answer to {uri} could not be read: {e}")),
        };
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// Render `template` with `context` and the page's common fields.
    fn render(
        &self,
        status: StatusCode,
        template: &str,
        context: Value,
        headers: &HeaderMap,
    ) -> Response {
        let mut context = context;
        if let Value::Object(map) = &mut context {
            map.insert(
                "keySent".into(),
                json!(headers.contains_key(header::AUTHORIZATION)),
            );
        }
        let html = self
            .templates
            .get_template(template)
            .and_then(|t| t.render(minijinja::Value::from(minijinja::value::Serde(&context))));
        match html {
            Ok(html) => html_response(status, html),
            Err(e) => {
                tracing::error!(template, error = %e, "a console page could not be rendered");
                html_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!(
                        "<!doctype html><title>action.do console</title><p>The page could not be rendered: {}</p>",
                        escape_html(&e.to_string())
                    ),
                )
            }
        }
    }

    /// The page of an API error: the key form on 401, else the error.
    fn failure(&self, answer: &Answer, api: &str, headers: &HeaderMap) -> Response {
        // The key form shows nothing of the request (its path may name a key).
        let (template, api) = if answer.status == StatusCode::UNAUTHORIZED {
            ("key.html", None)
        } else {
            ("error.html", Some(api))
        };
        self.render(
            answer.status,
            template,
            json!({"status": answer.status.as_u16(), "error": answer.error(), "api": api}),
            headers,
        )
    }
}

fn internal(message: String) -> Answer {
    Answer {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        headers: HeaderMap::new(),
        body: json!({"error": {"type": "ActionDo.Internal", "message": message}}),
    }
}

fn html_response(status: StatusCode, html: String) -> Response {
    let mut response = (status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // Pages hold data read with a key: never cached.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Escape text for HTML (outside templates).
fn escape_html(text: &str) -> String {
    minijinja::HtmlEscape(text).to_string()
}

/// A path segment, percent-encoded.
fn segment(s: &str) -> String {
    crate::routes::percent_encode_segment(s)
}

/// JSON, indented, for a `<pre>`.
fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

// ------------------------------------------------------------------ actions

/// `GET /console/actions`.
async fn actions(State(console): Shared, headers: HeaderMap) -> Response {
    let auth = headers.get(header::AUTHORIZATION);
    let answer = console.call(Method::GET, "/actions", auth, None).await;
    if !answer.status.is_success() {
        return console.failure(&answer, "/actions", &headers);
    }
    let actions: Vec<Value> = answer.body["actions"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|a| {
                    let name = a["name"].as_str().unwrap_or_default();
                    json!({
                        "name": name,
                        "description": a["description"],
                        "keyPolicy": a["keyPolicy"],
                        "href": format!("/console/actions/{}", segment(name)),
                        "executions": format!("/console/executions?type={}", form_value(name)),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    console.render(
        StatusCode::OK,
        "actions.html",
        json!({"nav": "actions", "api": "/actions", "actions": actions}),
        &headers,
    )
}

/// A value for a query string.
fn form_value(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// One input of the try-it form, derived from a property of the input schema.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Field {
    /// The property's name.
    pub name: String,
    /// `text`, `integer`, `number`, `boolean`, `enum` or `json`.
    pub kind: &'static str,
    /// Whether the schema requires it.
    pub required: bool,
    /// The choices of an `enum`.
    pub options: Vec<String>,
    /// The schema's description of it.
    pub description: Option<String>,
}

/// The try-it form's fields: one per property of the (object) input schema, typed by the
/// property's schema (`$ref`s into `$defs`/`definitions` and `T | null` followed); nested
/// objects, arrays and unions are `json` fields (typed as JSON text).
pub fn form_fields(schema: &Value) -> Vec<Field> {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(properties) = resolve(schema, schema)["properties"].as_object() else {
        return Vec::new();
    };
    properties
        .iter()
        .map(|(name, property)| {
            let property = resolve(schema, property);
            let (kind, options) = field_kind(schema, property);
            Field {
                name: name.clone(),
                kind,
                required: required.contains(&name.as_str()),
                options,
                description: property["description"].as_str().map(str::to_owned),
            }
        })
        .collect()
}

/// Follow a local `$ref` (a few levels at most).
fn resolve<'a>(root: &'a Value, mut schema: &'a Value) -> &'a Value {
    for _ in 0..8 {
        let Some(reference) = schema["$ref"].as_str() else {
            break;
        };
        let Some(pointer) = reference.strip_prefix('#') else {
            break;
        };
        match root.pointer(pointer) {
            Some(target) => schema = target,
            None => break,
        }
    }
    schema
}

fn field_kind(root: &Value, property: &Value) -> (&'static str, Vec<String>) {
    // `T | null` (an Option) is written anyOf [T, null] or type [T, "null"].
    if let Some(variants) = property["anyOf"]
        .as_array()
        .or(property["oneOf"].as_array())
    {
        let non_null: Vec<&Value> = variants
            .iter()
            .map(|v| resolve(root, v))
            .filter(|v| v["type"] != "null")
            .collect();
        return match non_null.as_slice() {
            [one] => field_kind(root, one),
            _ => ("json", Vec::new()),
        };
    }
    if let Some(choices) = property["enum"].as_array() {
        let options: Vec<String> = choices
            .iter()
            .filter_map(|c| c.as_str().map(str::to_owned))
            .collect();
        if options.len() == choices.len() {
            return ("enum", options);
        }
        return ("json", Vec::new());
    }
    let types: Vec<&str> = match &property["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect(),
        _ => Vec::new(),
    };
    let kind = match types.as_slice() {
        ["string"] => "text",
        ["integer"] => "integer",
        ["number"] => "number",
        ["boolean"] => "boolean",
        _ => "json",
    };
    (kind, Vec::new())
}

/// The params a submitted try-it form describes: `paramsJson` when given (the params as
/// JSON), else one member per non-empty field, typed by its kind. A value that does not
/// read as its kind is sent as text, so that the action's own validation answers (and
/// audits) it, as it would any caller's.
pub fn params_from_form(
    fields: &[Field],
    form: &BTreeMap<String, String>,
) -> Result<Value, String> {
    if let Some(text) = form.get("paramsJson").filter(|t| !t.trim().is_empty()) {
        return serde_json::from_str(text).map_err(|e| format!("params (JSON) is not JSON: {e}"));
    }
    let mut params = serde_json::Map::new();
    for field in fields {
        let Some(raw) = form.get(&format!("p.{}", field.name)) else {
            continue;
        };
        let text = raw.trim();
        if text.is_empty() {
            continue;
        }
        let value = match field.kind {
            "integer" => text
                .parse::<i64>()
                .map_or_else(|_| json!(text), |n| json!(n)),
            "number" => text
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map_or_else(|| json!(text), Value::Number),
            "boolean" => match text {
                "true" => json!(true),
                "false" => json!(false),
                other => json!(other),
            },
            "json" => serde_json::from_str(text).unwrap_or_else(|_| json!(text)),
            _ => json!(raw),
        };
        params.insert(field.name.clone(), value);
    }
    Ok(Value::Object(params))
}

/// A fresh idempotency key for the try-it form.
fn fresh_key() -> String {
    let mut bytes = [0u8; 6];
    if getrandom::fill(&mut bytes).is_err() {
        return format!("console-{}", chrono::Utc::now().timestamp_millis());
    }
    format!("console-{}", hex::encode(bytes))
}

/// The context of an action's page.
fn action_context(name: &str, info: &Value, form: &BTreeMap<String, String>) -> Value {
    let fields = form_fields(&info["inputSchema"]);
    let values: BTreeMap<String, String> = fields
        .iter()
        .filter_map(|f| {
            form.get(&format!("p.{}", f.name))
                .map(|v| (f.name.clone(), v.clone()))
        })
        .collect();
    json!({
        "nav": "actions",
        "api": format!("/actions/{}", segment(name)),
        "name": name,
        "action": info,
        "inputSchema": pretty(&info["inputSchema"]),
        "outputSchema": pretty(&info["outputSchema"]),
        "fields": fields,
        "values": values,
        "paramsJson": form.get("paramsJson").cloned().unwrap_or_default(),
        "idempotencyKey": form.get("idempotencyKey").cloned().unwrap_or_else(fresh_key),
        "correlationId": form.get("correlationId").cloned().unwrap_or_default(),
        "post": format!("/console/actions/{}", segment(name)),
        "executions": format!("/console/executions?type={}", form_value(name)),
    })
}

/// `GET /console/actions/{name}`.
async fn action(State(console): Shared, Path(name): Path<String>, headers: HeaderMap) -> Response {
    let api = format!("/actions/{}", segment(&name));
    let auth = headers.get(header::AUTHORIZATION);
    let answer = console.call(Method::GET, &api, auth, None).await;
    if !answer.status.is_success() {
        return console.failure(&answer, &api, &headers);
    }
    let context = action_context(&name, &answer.body, &BTreeMap::new());
    console.render(StatusCode::OK, "action.html", context, &headers)
}

/// Whether a form post comes from a page of this server: browsers send `Origin` (and
/// `Sec-Fetch-Site`) with posts; another site's form is refused, so that a page elsewhere
/// cannot run actions through a console open without keys (`--no-auth`).
fn same_origin(headers: &HeaderMap) -> bool {
    if headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site" || v == "same-site")
    {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/'));
    host.is_some() && origin_host == host
}

/// The answer to a form posted from another site.
fn cross_site(console: &Console, headers: &HeaderMap) -> Response {
    let answer = Answer {
        status: StatusCode::FORBIDDEN,
        headers: HeaderMap::new(),
        body: json!({"error": {"type": "ActionDo.Forbidden", "message": "this form was posted from another site"}}),
    };
    console.failure(&answer, "", headers)
}

/// `POST /console/actions/{name}`: run the action from the try-it form through
/// `POST /execute` and show its `{result, error}`.
async fn try_action(
    State(console): Shared,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    if !same_origin(&headers) {
        return cross_site(&console, &headers);
    }
    let auth = headers.get(header::AUTHORIZATION);
    let api = format!("/actions/{}", segment(&name));
    let info = console.call(Method::GET, &api, auth, None).await;
    if !info.status.is_success() {
        return console.failure(&info, &api, &headers);
    }
    let form: BTreeMap<String, String> = match axum::body::to_bytes(body, MAX_API_BODY).await {
        Ok(bytes) => form_urlencoded::parse(&bytes).into_owned().collect(),
        Err(_) => BTreeMap::new(),
    };
    let mut context = action_context(&name, &info.body, &form);
    let fields = form_fields(&info.body["inputSchema"]);
    let params = match params_from_form(&fields, &form) {
        Ok(params) => params,
        Err(problem) => {
            context["formError"] = json!(problem);
            return console.render(StatusCode::BAD_REQUEST, "action.html", context, &headers);
        }
    };
    let key = form
        .get("idempotencyKey")
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty());
    let correlation = form
        .get("correlationId")
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty());
    let mut call = json!({"name": name, "params": params});
    if let Some(key) = &key {
        call["idempotencyKey"] = json!(key);
    }
    if let Some(correlation) = &correlation {
        call["correlationId"] = json!(correlation);
    }
    let answer = console
        .call(Method::POST, "/execute", auth, Some(&call))
        .await;
    if answer.status == StatusCode::UNAUTHORIZED {
        return console.failure(&answer, "/execute", &headers);
    }
    let replayed = answer
        .headers
        .get(actiondo::trigger::http::REPLAYED_HEADER)
        .is_some();
    let key = answer
        .headers
        .get(actiondo::trigger::http::IDEMPOTENCY_KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(key);
    context["outcome"] = json!({
        "status": answer.status.as_u16(),
        "ok": answer.status.is_success(),
        "replayed": replayed,
        "body": pretty(&answer.body),
        "call": pretty(&call),
        "execution": key.map(|k| format!("/console/executions/{}/{}", segment(&name), segment(&k))),
    });
    // A fresh key for the next run; the one just used stays shown in the outcome.
    context["idempotencyKey"] = json!(fresh_key());
    console.render(StatusCode::OK, "action.html", context, &headers)
}

// ------------------------------------------------------------------ executions

/// The filters of the executions page, as the API's `GET /audit` takes them.
const FILTERS: [&str; 6] = ["type", "key", "correlationId", "status", "since", "cursor"];

/// Rows on a page of the executions list.
const PAGE_ROWS: usize = 25;

/// The most `GET /audit` calls one page of the merged list makes (a status filter may
/// leave pages empty); past it the page shows what it has and links to the rest.
const MAX_MERGE_CALLS: usize = 200;

/// A `datetime-local` value (`2024-05-01T10:00`, no zone) read as UTC RFC 3339.
fn since_rfc3339(value: &str) -> String {
    let v = value.trim();
    let has_zone = v.ends_with('Z') || v.get(19..).is_some_and(|rest| rest.contains(['+', '-']));
    match v.len() {
        16 if !has_zone => format!("{v}:00Z"),
        // Seconds, and maybe their fraction (`step` below a second).
        n if n >= 19 && !has_zone => format!("{v}Z"),
        _ => v.to_owned(),
    }
}

/// `GET /console/executions`: audit records, newest first, filtered, paged.
///
/// With an action (`type`, and `key`) or a correlation id the page is one `GET /audit`
/// page of the API, paged with its cursor. Without either, the page merges the `GET
/// /audit?type=` pages of every action in the key's scope, newest first: the API's
/// unfiltered `GET /audit` is a scan of the whole audit table that DynamoDB has no
/// index for (the store refuses it there), while each action's records are one query of
/// the `by-type` index on both stores. Its cursor then holds each action's API cursor.
async fn executions(
    State(console): Shared,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let given: BTreeMap<String, String> =
        form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .filter(|(name, value)| FILTERS.contains(&name.as_str()) && !value.trim().is_empty())
            .map(|(name, value)| {
                let value = if name == "since" {
                    since_rfc3339(&value)
                } else {
                    value.trim().to_owned()
                };
                (name, value)
            })
            .collect();
    let across = !["type", "key", "correlationId"]
        .iter()
        .any(|f| given.contains_key(*f));
    let auth = headers.get(header::AUTHORIZATION);
    let actions = console.call(Method::GET, "/actions", auth, None).await;
    if !actions.status.is_success() {
        return console.failure(&actions, "/actions", &headers);
    }
    let names: Vec<String> = actions.body["actions"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|a| a["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    // The filters as the form shows them (`since` as `datetime-local` takes it).
    let mut shown = given.clone();
    if let Some(since) = shown.get_mut("since") {
        *since = since.trim_end_matches('Z').to_owned();
    }
    let mut context = json!({
        "nav": "executions",
        "filters": shown,
        "statuses": crate::view::AUDIT_STATUSES,
        "actions": names,
        "across": across,
    });
    let page = if across {
        merged_audit(&console, &given, &names, auth).await
    } else {
        single_audit(&console, &given, auth).await
    };
    let page = match page {
        Ok(page) => page,
        Err((answer, api)) if answer.status == StatusCode::UNAUTHORIZED => {
            return console.failure(&answer, &api, &headers);
        }
        Err((answer, api)) => {
            // A bad filter: the page stays, with the API's answer.
            context["api"] = json!(api);
            context["error"] = answer.error();
            return console.render(answer.status, "executions.html", context, &headers);
        }
    };
    context["api"] = json!(page.api);
    if across {
        context["apiNote"] = json!("for each action in the key's scope, merged newest first");
    }
    let workflows = workflow_names(&console, auth).await;
    let rows: Vec<Value> = page.records.iter().map(|r| row(r, &workflows)).collect();
    context["rows"] = json!(rows);
    if let Some(cursor) = page.next {
        let next = {
            let mut next = form_urlencoded::Serializer::new(String::new());
            for (name, value) in given.iter().filter(|(n, _)| n.as_str() != "cursor") {
                next.append_pair(name, value);
            }
            next.append_pair("cursor", &cursor);
            next.finish()
        };
        context["next"] = json!(format!("/console/executions?{next}"));
    }
    console.render(StatusCode::OK, "executions.html", context, &headers)
}

/// One page of the executions list: its records, newest first, the API route(s) it
/// read, and the cursor of the next page.
struct AuditRows {
    records: Vec<Value>,
    api: String,
    next: Option<String>,
}

/// A failed API call and the route it called.
type Failed = (Answer, String);

/// The `GET /audit` query of `filters` (every filter but `cursor`, which the caller
/// adds), with `extra` pairs first.
fn audit_uri(filters: &BTreeMap<String, String>, extra: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in extra {
        query.append_pair(name, value);
    }
    for (name, value) in filters.iter().filter(|(n, _)| n.as_str() != "cursor") {
        query.append_pair(name, value);
    }
    format!("/audit?{}", query.finish())
}

/// One page of `GET /audit` with the page's filters and cursor.
async fn single_audit(
    console: &Console,
    given: &BTreeMap<String, String>,
    auth: Option<&HeaderValue>,
) -> Result<AuditRows, Failed> {
    let limit = PAGE_ROWS.to_string();
    let mut api = audit_uri(given, &[("limit", &limit)]);
    if let Some(cursor) = given.get("cursor") {
        api.push_str("&cursor=");
        api.push_str(&form_value(cursor));
    }
    let answer = console.call(Method::GET, &api, auth, None).await;
    if !answer.status.is_success() {
        return Err((answer, api));
    }
    Ok(AuditRows {
        records: answer.body["records"]
            .as_array()
            .cloned()
            .unwrap_or_default(),
        next: answer.body["nextCursor"].as_str().map(str::to_owned),
        api,
    })
}

/// Where the merged list stands in one action's records: the API cursor of the page
/// being read (`None`: the first page), how many of that page's records were shown, and
/// the newest timestamp that page held when first read (records written since are left
/// out, so that they do not shift the count).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Position(Option<String>, usize, Option<String>);

/// The merged list's cursor: a [`Position`] per action that has records left, as hex of
/// its JSON (opaque, URL-safe).
fn encode_positions(positions: &BTreeMap<String, Position>) -> String {
    hex::encode(serde_json::to_vec(positions).unwrap_or_default())
}

fn decode_positions(cursor: &str) -> Option<BTreeMap<String, Position>> {
    serde_json::from_slice(&hex::decode(cursor).ok()?).ok()
}

/// One action's records in the merged list.
struct Source {
    action: String,
    /// The API cursor of the page in `records` (`None`: the first page).
    page: Option<String>,
    /// The records of that page not shown yet, newest first.
    records: std::collections::VecDeque<Value>,
    /// How many of that page's records were shown.
    shown: usize,
    /// The newest timestamp of that page when first read.
    top: Option<String>,
    /// The API's cursor after that page.
    next: Option<String>,
}

/// The order of the merged list: newest first, as the stores order `GET /audit`
/// (timestamp, then execution and seq).
fn audit_order(record: &Value) -> (&str, &str, &str) {
    (
        record["timestamp"].as_str().unwrap_or_default(),
        record["execution"].as_str().unwrap_or_default(),
        record["seq"].as_str().unwrap_or_default(),
    )
}

/// The audit records of every action in `actions`, newest first, one page of
/// [`PAGE_ROWS`]: the `GET /audit?type=` pages of each, merged.
async fn merged_audit(
    console: &Console,
    given: &BTreeMap<String, String>,
    actions: &[String],
    auth: Option<&HeaderValue>,
) -> Result<AuditRows, Failed> {
    let described = audit_uri(
        given,
        &[("type", "ACTION"), ("limit", &PAGE_ROWS.to_string())],
    );
    let positions: BTreeMap<String, Position> = match given.get("cursor") {
        None => actions
            .iter()
            .map(|a| (a.clone(), Position(None, 0, None)))
            .collect(),
        Some(cursor) => match decode_positions(cursor) {
            Some(positions) => positions,
            None => {
                let answer = Answer {
                    status: StatusCode::BAD_REQUEST,
                    headers: HeaderMap::new(),
                    body: json!({"error": {"type": "ActionDo.Validation",
                        "message": "the cursor is not one this page wrote; start again from the newest"}}),
                };
                return Err((answer, described));
            }
        },
    };
    let limit = PAGE_ROWS.to_string();
    let mut calls = 0usize;
    // Read one page of `action`'s records at `cursor`.
    let read = |action: String, cursor: Option<String>| {
        let mut api = audit_uri(given, &[("type", &action), ("limit", &limit)]);
        if let Some(cursor) = &cursor {
            api.push_str("&cursor=");
            api.push_str(&form_value(cursor));
        }
        async move {
            let answer = console.call(Method::GET, &api, auth, None).await;
            if !answer.status.is_success() {
                return Err((answer, api));
            }
            let records: Vec<Value> = answer.body["records"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            Ok((
                records,
                answer.body["nextCursor"].as_str().map(str::to_owned),
            ))
        }
    };
    let mut sources = Vec::new();
    // Only actions in scope: a cursor names nothing else.
    for (action, Position(page, shown, top)) in positions {
        if !actions.contains(&action) {
            continue;
        }
        calls += 1;
        let (records, next) = read(action.clone(), page.clone()).await?;
        let top = top.or_else(|| records.first().map(|r| audit_order(r).0.to_owned()));
        let records: std::collections::VecDeque<Value> = records
            .into_iter()
            .filter(|r| top.as_deref().is_none_or(|t| audit_order(r).0 <= t))
            .skip(shown)
            .collect();
        sources.push(Source {
            action,
            page,
            records,
            shown,
            top,
            next,
        });
    }
    let mut rows = Vec::with_capacity(PAGE_ROWS);
    let mut stopped = false;
    while rows.len() < PAGE_ROWS {
        // A source whose page is used up reads its next one before any is compared.
        for source in sources.iter_mut() {
            while source.records.is_empty() && source.next.is_some() {
                if calls >= MAX_MERGE_CALLS {
                    stopped = true;
                    break;
                }
                calls += 1;
                let cursor = source.next.take();
                let (records, next) = read(source.action.clone(), cursor.clone()).await?;
                source.top = records.first().map(|r| audit_order(r).0.to_owned());
                source.page = cursor;
                source.records = records.into();
                source.shown = 0;
                source.next = next;
            }
        }
        if stopped {
            break;
        }
        let newest = sources
            .iter_mut()
            .filter(|s| !s.records.is_empty())
            .max_by(|a, b| audit_order(&a.records[0]).cmp(&audit_order(&b.records[0])));
        let Some(source) = newest else {
            break;
        };
        if let Some(record) = source.records.pop_front() {
            source.shown += 1;
            rows.push(record);
        }
    }
    let positions: BTreeMap<String, Position> = sources
        .into_iter()
        .filter_map(|s| {
            if !s.records.is_empty() {
                Some((s.action, Position(s.page, s.shown, s.top)))
            } else {
                s.next.map(|next| (s.action, Position(Some(next), 0, None)))
            }
        })
        .collect();
    Ok(AuditRows {
        records: rows,
        api: described,
        next: (!positions.is_empty()).then(|| encode_positions(&positions)),
    })
}

/// The names of the workflows in the key's scope (for links from a correlation id that
/// is one of their executions).
async fn workflow_names(console: &Console, auth: Option<&HeaderValue>) -> Vec<String> {
    let answer = console.call(Method::GET, "/workflows", auth, None).await;
    answer.body["workflows"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|w| w["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The workflow and execution name of a Step Functions execution ARN
/// (`arn:aws:states:REGION:ACCOUNT:execution:MACHINE:NAME`), the correlation id a
/// workflow's Tasks give their actions.
fn workflow_execution(arn: &str) -> Option<(&str, &str)> {
    let rest = arn.strip_prefix("arn:aws:states:")?;
    let (_, rest) = rest.split_once(":execution:")?;
    let (machine, name) = rest.split_once(':')?;
    (!machine.is_empty() && !name.is_empty() && !name.contains(':')).then_some((machine, name))
}

/// One audit record as a row of the executions table.
fn row(record: &Value, workflows: &[String]) -> Value {
    let action = record["type"].as_str().unwrap_or_default();
    let key = record["execution"]
        .as_str()
        .and_then(|e| e.split_once('#'))
        .map_or("", |(_, key)| key);
    let correlation = record["correlationId"].as_str();
    // A workflow Task's key and correlation id start with the execution's ARN: shown as
    // `workflow:execution`, the whole value in the tooltip.
    let short = |text: &str| match text.split_once('#') {
        Some((arn, state)) => {
            workflow_execution(arn).map(|(machine, name)| format!("{machine}:{name}#{state}"))
        }
        None => workflow_execution(text).map(|(machine, name)| format!("{machine}:{name}")),
    };
    json!({
        "keyLabel": short(key).unwrap_or_else(|| key.to_owned()),
        "correlationLabel": correlation.map(|c| short(c).unwrap_or_else(|| c.to_owned())),
        "timestamp": record["timestamp"],
        "action": action,
        "key": key,
        "status": record["status"],
        "attempt": record["attempt"],
        "durationMs": record["durationMs"],
        "source": record["source"],
        "correlationId": correlation,
        "href": format!("/console/executions/{}/{}", segment(action), segment(key)),
        "correlationHref": correlation
            .map(|c| format!("/console/executions?correlationId={}", form_value(c))),
        "workflowHref": correlation.and_then(|c| workflow_href(c, workflows)),
        "error": record["details"]["error"]["type"],
    })
}

/// The console page of the workflow execution a correlation id names (a Step Functions
/// execution ARN of one of `workflows`), if it names one.
fn workflow_href(correlation: &str, workflows: &[String]) -> Option<String> {
    let (machine, name) = workflow_execution(correlation)?;
    workflows.iter().any(|w| w == machine).then(|| {
        format!(
            "/console/workflows/{}?execution={}",
            segment(machine),
            form_value(name)
        )
    })
}

/// `GET /console/executions/{name}/{key}`: the record and its attempts as a timeline.
async fn execution(
    State(console): Shared,
    Path((name, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let api = format!("/executions/{}/{}", segment(&name), segment(&key));
    let auth = headers.get(header::AUTHORIZATION);
    let mut answer = console.call(Method::GET, &api, auth, None).await;
    let mut api = api;
    // No record: a request refused before it was claimed (bad params, a payload that
    // does not match) leaves only audit records. Those, if any, are the page.
    let mut unrecorded = false;
    if answer.status == StatusCode::NOT_FOUND {
        let audit_api = format!(
            "/audit?type={}&key={}&limit=100",
            form_value(&name),
            form_value(&key)
        );
        let audit = console.call(Method::GET, &audit_api, auth, None).await;
        if audit.status.is_success()
            && audit.body["records"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        {
            answer.body = json!({
                "execution": {"status": "NO RECORD"},
                "audit": audit.body["records"],
                "nextCursor": audit.body["nextCursor"],
            });
            answer.status = StatusCode::OK;
            api = audit_api;
            unrecorded = true;
        }
    }
    if !answer.status.is_success() {
        return console.failure(&answer, &api, &headers);
    }
    let record = &answer.body["execution"];
    let mut outcome = serde_json::Map::new();
    for field in ["result", "error"] {
        if let Some(v) = record.get(field) {
            outcome.insert(field.into(), json!(pretty(v)));
        }
    }
    // Oldest first: the order things happened.
    let mut events: Vec<Value> = answer.body["audit"]
        .as_array()
        .map(|a| a.iter().rev().map(timeline_event).collect())
        .unwrap_or_default();
    let first_ms = events
        .first()
        .and_then(|e| e["epochMs"].as_i64())
        .unwrap_or_default();
    for event in &mut events {
        let at = event["epochMs"].as_i64().unwrap_or(first_ms);
        event["offsetMs"] = json!(at - first_ms);
    }
    // A workflow's Task: the workflow execution its correlation id names.
    let workflows = workflow_names(&console, auth).await;
    let workflow = events
        .iter()
        .find_map(|e| e["correlationId"].as_str())
        .and_then(|c| workflow_href(c, &workflows));
    // Why it failed (its record is FAILED, or its last request was refused): the last
    // error, named where the page starts.
    let last = events.iter().rev().find(|e| e["status"] != "replayed");
    let failed = record["status"] == "FAILED"
        || unrecorded
        || last.is_some_and(|e| e["status"] == "failed" || e["status"] == "rejected");
    let failure = failed
        .then(|| events.iter().rev().find(|e| e["errorType"].is_string()))
        .flatten()
        .map(|e| json!({"attempt": e["attempt"], "status": e["status"], "type": e["errorType"], "message": e["errorMessage"]}));
    console.render(
        StatusCode::OK,
        "execution.html",
        json!({
            "workflowHref": workflow,
            "failure": failure,
            "unrecorded": unrecorded,
            "nav": "executions",
            "api": api,
            "name": name,
            "key": key,
            "record": record,
            "outcome": outcome,
            "events": events,
            "more": answer.body["nextCursor"].is_string(),
            "actionHref": format!("/console/actions/{}", segment(&name)),
            "auditHref": format!("/console/executions?type={}&key={}", form_value(&name), form_value(&key)),
        }),
        &headers,
    )
}

/// One audit record as a timeline entry.
fn timeline_event(record: &Value) -> Value {
    let details = &record["details"];
    let status = record["status"].as_str().unwrap_or_default();
    let epoch_ms = record["timestamp"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.timestamp_millis());
    let label = match status {
        "completed" => "completed",
        "failed" => "failed",
        "retrying" => "failed, will be retried",
        "replayed" => "replayed the stored outcome",
        "rejected" => "rejected before running",
        "taken_over" => "claimed (taken over from an ended lease)",
        other => other,
    };
    let mut event = json!({
        "status": status,
        "label": label,
        "timestamp": record["timestamp"],
        "epochMs": epoch_ms,
        "attempt": record["attempt"],
        "durationMs": record["durationMs"],
        "requestId": record["requestId"],
        "source": record["source"],
        "caller": record["caller"],
        "correlationId": record["correlationId"],
    });
    for field in ["input", "output", "error"] {
        if let Some(v) = details.get(field) {
            event[field] = json!(pretty(v));
        }
    }
    if let Some(error) = details.get("error") {
        event["errorType"] = error["type"].clone();
        event["errorMessage"] = error["message"].clone();
    }
    if let Some(of) = details.get("replayOf") {
        event["replayOf"] = of.clone();
    }
    if let Some(previous) = details.get("previousAttempt") {
        event["previousAttempt"] = previous.clone();
    }
    event
}

// ------------------------------------------------------------------ workflows

/// How many of each workflow's latest executions the Workflows page shows.
const LATEST: usize = 5;

/// The page size of a workflow's executions list.
const EXECUTIONS_PAGE: usize = 20;

/// The console page of execution `id` of workflow `name`.
fn execution_href(name: &str, id: &str) -> String {
    format!(
        "/console/workflows/{}?execution={}",
        segment(name),
        form_value(id)
    )
}

/// The executions of one API page, each with its console link.
fn execution_rows(name: &str, body: &Value) -> Vec<Value> {
    body["executions"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|e| {
                    let mut e = e.clone();
                    let id = e["executionName"].as_str().unwrap_or_default().to_owned();
                    e["href"] = json!(execution_href(name, &id));
                    e
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `GET /console/workflows`: the workflows in the key's scope, with the latest
/// executions of each that runs here.
async fn workflows(State(console): Shared, headers: HeaderMap) -> Response {
    let auth = headers.get(header::AUTHORIZATION);
    let answer = console.call(Method::GET, "/workflows", auth, None).await;
    if !answer.status.is_success() {
        return console.failure(&answer, "/workflows", &headers);
    }
    let mut workflows = Vec::new();
    for w in answer.body["workflows"].as_array().into_iter().flatten() {
        let mut w = w.clone();
        let name = w["name"].as_str().unwrap_or_default().to_owned();
        w["href"] = json!(format!("/console/workflows/{}", segment(&name)));
        if w["deployed"] == json!(true) {
            let api = format!("/workflows/{}/executions?limit={LATEST}", segment(&name));
            let latest = console.call(Method::GET, &api, auth, None).await;
            if latest.status.is_success() {
                w["latest"] = json!(execution_rows(&name, &latest.body));
                w["more"] = json!(latest.body.get("cursor").is_some());
            } else {
                w["latestError"] = latest.error();
            }
        }
        workflows.push(w);
    }
    console.render(
        StatusCode::OK,
        "workflows.html",
        json!({"nav": "workflows", "api": "/workflows", "workflows": workflows, "latestLimit": LATEST}),
        &headers,
    )
}

/// The executions list of the page of workflow `name` (no execution asked for): one
/// API page, with its status filter and the link to the next page.
async fn executions_list(
    console: &Console,
    name: &str,
    params: &BTreeMap<String, String>,
    auth: Option<&HeaderValue>,
) -> Value {
    let status = params.get("status").cloned().unwrap_or_default();
    // The serializer is not `Send`: done with before the call.
    let query = {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if !status.is_empty() {
            query.append_pair("status", &status);
        }
        query.append_pair("limit", &EXECUTIONS_PAGE.to_string());
        if let Some(cursor) = params.get("cursor") {
            query.append_pair("cursor", cursor);
        }
        query.finish()
    };
    let api = format!("/workflows/{}/executions?{query}", segment(name));
    let answer = console.call(Method::GET, &api, auth, None).await;
    let mut list = json!({
        "api": api,
        "status": status,
        "statuses": crate::workflows::EXECUTION_STATUSES,
        "paged": params.contains_key("cursor"),
        "first": if status.is_empty() {
            format!("/console/workflows/{}", segment(name))
        } else {
            format!("/console/workflows/{}?status={}", segment(name), form_value(&status))
        },
    });
    if !answer.status.is_success() {
        list["error"] = answer.error();
        list["errorStatus"] = json!(answer.status.as_u16());
        return list;
    }
    list["rows"] = json!(execution_rows(name, &answer.body));
    if let Some(cursor) = answer.body["cursor"].as_str() {
        let mut next = form_urlencoded::Serializer::new(String::new());
        if !status.is_empty() {
            next.append_pair("status", &status);
        }
        next.append_pair("cursor", cursor);
        list["next"] = json!(format!(
            "/console/workflows/{}?{}",
            segment(name),
            next.finish()
        ));
    }
    list
}

/// `GET /console/workflows/{name}?execution=ID`: the state graph, coloured by the
/// execution's history when one is asked for and the API serves it, the states' outcomes
/// with the action execution of each Task, the history events, and a redrive button
/// when the execution failed.
async fn workflow(
    State(console): Shared,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let api = format!("/workflows/{}", segment(&name));
    let auth = headers.get(header::AUTHORIZATION);
    let answer = console.call(Method::GET, &api, auth, None).await;
    if !answer.status.is_success() {
        return console.failure(&answer, &api, &headers);
    }
    let params: BTreeMap<String, String> =
        form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .map(|(k, v)| (k, v.trim().to_owned()))
            .filter(|(_, v)| !v.is_empty())
            .collect();
    let execution = params.get("execution").cloned();
    let mut context = json!({
        "nav": "workflows",
        "api": api,
        "name": name,
        "deployed": answer.body["deployed"],
        "comment": answer.body["definition"]["Comment"],
        "definition": pretty(&answer.body["definition"]),
        "redrive": format!("/console/workflows/{}/redrive", segment(&name)),
        "href": format!("/console/workflows/{}", segment(&name)),
    });
    if execution.is_none() && answer.body["deployed"] == json!(true) {
        context["executions"] = executions_list(&console, &name, &params, auth).await;
    }
    let mut outcomes: BTreeMap<String, StateOutcome> = BTreeMap::new();
    if let Some(id) = &execution {
        let base = format!("/workflows/{}/executions/{}", segment(&name), segment(id));
        let described = console.call(Method::GET, &base, auth, None).await;
        let status = described.body["status"].as_str().unwrap_or_default();
        context["execution"] = json!({
            "id": id,
            "api": base,
            "status": described.status.as_u16(),
            "ok": described.status.is_success(),
            "body": pretty(&described.body),
            "state": status,
            "startDate": described.body["startDate"],
            "stopDate": described.body["stopDate"],
            "redriveCount": described.body["redriveCount"],
            "failure": execution_failure(&described.body),
            "error": (!described.status.is_success()).then(|| described.error()),
            // Step Functions redrives FAILED, TIMED_OUT and ABORTED executions.
            "redrivable": matches!(status, "FAILED" | "TIMED_OUT" | "ABORTED"),
        });
        if described.status.is_success() {
            let history_api = format!("{base}/history");
            let history = console.call(Method::GET, &history_api, auth, None).await;
            if history.status.is_success() {
                outcomes = state_outcomes(&history.body);
                context["execution"]["history"] = json!(history_api);
                context["events"] = json!(history_events(&history.body));
            } else {
                context["execution"]["historyError"] = json!({
                    "api": history_api,
                    "status": history.status.as_u16(),
                    "error": history.error(),
                });
            }
        }
    }
    let colours: BTreeMap<String, &'static str> = outcomes
        .iter()
        .map(|(state, o)| (state.clone(), o.outcome))
        .collect();
    let graph = crate::graph::layout(&answer.body["definition"], &colours);
    // The states' table: in the graph's order, those the execution reached.
    let states: Vec<Value> = graph
        .nodes
        .iter()
        .filter_map(|n| outcomes.get(&n.name).map(|o| (n, o)))
        .map(|(n, o)| {
            let mut row = serde_json::to_value(o).unwrap_or_default();
            row["name"] = json!(n.name);
            row["kind"] = json!(n.kind);
            row
        })
        .collect();
    context["graph"] = serde_json::to_value(graph).unwrap_or_default();
    context["outcomes"] = serde_json::to_value(&outcomes).unwrap_or_default();
    context["states"] = json!(states);
    console.render(StatusCode::OK, "workflow.html", context, &headers)
}

/// Why an execution failed, from its description: `{error, cause}` (Step Functions'
/// `error` and `cause`, or the local engine's `error: {error, cause}`), the cause
/// indented when it is JSON.
fn execution_failure(described: &Value) -> Option<Value> {
    let (error, cause) = match &described["error"] {
        Value::Object(e) => (
            e.get("error").cloned().unwrap_or(Value::Null),
            e.get("cause").cloned().unwrap_or(Value::Null),
        ),
        Value::String(e) => (json!(e), described["cause"].clone()),
        _ => return None,
    };
    Some(json!({"error": error, "cause": cause_text(&cause), "message": cause_message(&cause)}))
}

/// The one-line message of a cause: the action's error `message` (in Lambda's
/// `errorMessage` or as the cause itself), else a text cause that is not JSON.
fn cause_message(cause: &Value) -> Option<String> {
    let mut value = cause.clone();
    for _ in 0..6 {
        match value {
            Value::String(text) => match serde_json::from_str::<Value>(&text) {
                Ok(parsed @ Value::Object(_)) => value = parsed,
                _ => return Some(text),
            },
            Value::Object(ref map) => {
                if let Some(message) = map.get("errorMessage") {
                    value = message.clone();
                } else if let Some(message) = value["error"]["message"].as_str() {
                    return Some(message.to_owned());
                } else {
                    return value["message"].as_str().map(str::to_owned);
                }
            }
            _ => return None,
        }
    }
    None
}

/// A cause as text for a `<pre>`: JSON (or JSON in a string, as Step Functions keeps it,
/// or in an `errorMessage`, as Lambda reports it) indented, else the text itself.
fn cause_text(cause: &Value) -> Option<String> {
    let parsed = match cause {
        Value::Null => return None,
        Value::String(text) => match serde_json::from_str::<Value>(text) {
            Ok(v @ (Value::Object(_) | Value::Array(_))) => v,
            _ => return Some(text.clone()),
        },
        other => other.clone(),
    };
    // Lambda's `{errorMessage, errorType}` whose message is the action's JSON error.
    if let Some(message) = parsed["errorMessage"].as_str()
        && let Ok(inner @ Value::Object(_)) = serde_json::from_str::<Value>(message)
    {
        return Some(pretty(&inner));
    }
    Some(pretty(&parsed))
}

/// What happened in one state of a workflow execution, read from its history.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateOutcome {
    /// `succeeded` (left normally, maybe after retries), `caught` (its work failed and a
    /// `Catch` went on elsewhere), `failed` (the execution stopped in it), or `running`
    /// (entered, not left).
    pub outcome: &'static str,
    /// How many times it was entered (a redrive enters the failed state again).
    pub entered: u32,
    /// How many attempts of its work (Task, Parallel, Map) failed, retried or not.
    pub failures: u32,
    /// The last error in it (`States.TaskFailed`, `ActionDo.Transient`…).
    pub error: Option<String>,
    /// That error's cause, indented when it is JSON.
    pub cause: Option<String>,
    /// The console page of the action execution its Task ran (`lambda:invoke` of an
    /// action with an `idempotencyKey`): `/console/executions/{action}/{key}`.
    pub task_href: Option<String>,
    /// That action's name.
    pub action: Option<String>,
}

impl StateOutcome {
    fn new() -> Self {
        Self {
            outcome: "running",
            entered: 0,
            failures: 0,
            error: None,
            cause: None,
            task_href: None,
            action: None,
        }
    }
}

/// The action execution a `TaskScheduled` event's parameters name: the function's
/// name (the action) and the payload's `idempotencyKey`.
fn task_execution(details: &Value) -> Option<(String, String)> {
    let parameters = &details["parameters"];
    let function = parameters["FunctionName"].as_str()?;
    // `arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`, or the bare name.
    let action = match function.split_once(":function:") {
        Some((_, rest)) => rest.split(':').next().unwrap_or(rest),
        None => function,
    };
    let key = parameters["Payload"]["idempotencyKey"].as_str()?;
    (!action.is_empty() && !key.is_empty()).then(|| (action.to_owned(), key.to_owned()))
}

/// Each top-level state's outcome in an execution history (`{events: [...]}`, the shape
/// of `GetExecutionHistory` that the history route serves from Step Functions and from
/// the local engine). A state is `running` once entered; when left it is `caught` if its
/// last attempt failed (a `Catch` took over) and `succeeded` otherwise; the state the
/// execution failed in is `failed`. Events of Parallel branches and Map iterations (a
/// non-empty `scope`) are not the top level's.
pub fn state_outcomes(history: &Value) -> BTreeMap<String, StateOutcome> {
    let mut outcomes: BTreeMap<String, StateOutcome> = BTreeMap::new();
    // The state being run, and whether its last attempt failed.
    let mut current: Option<String> = None;
    let mut last_failed = false;
    for event in history["events"].as_array().into_iter().flatten() {
        if event["scope"].as_str().is_some_and(|s| !s.is_empty()) {
            continue;
        }
        let kind = event["type"].as_str().unwrap_or_default();
        let details = &event["details"];
        let named = details["name"].as_str();
        if kind.ends_with("StateEntered") {
            if let Some(name) = named {
                let o = outcomes
                    .entry(name.to_owned())
                    .or_insert_with(StateOutcome::new);
                o.outcome = "running";
                o.entered += 1;
                current = Some(name.to_owned());
                last_failed = false;
            }
            continue;
        }
        if kind.ends_with("StateExited") {
            if let Some(name) = named
                && let Some(o) = outcomes.get_mut(name)
            {
                o.outcome = if last_failed { "caught" } else { "succeeded" };
            }
            current = None;
            last_failed = false;
            continue;
        }
        let Some(o) = current.as_ref().and_then(|c| outcomes.get_mut(c)) else {
            continue;
        };
        match kind {
            "TaskScheduled" => {
                if let Some((action, key)) = task_execution(details) {
                    o.task_href = Some(format!(
                        "/console/executions/{}/{}",
                        segment(&action),
                        segment(&key)
                    ));
                    o.action = Some(action);
                }
            }
            "TaskSucceeded" | "ParallelStateSucceeded" | "MapStateSucceeded" => {
                last_failed = false;
            }
            "TaskFailed" | "TaskTimedOut" | "ParallelStateFailed" | "MapStateFailed" => {
                last_failed = true;
                o.failures += 1;
                o.error = details["error"].as_str().map(str::to_owned);
                o.cause = cause_text(&details["cause"]);
            }
            "ExecutionFailed" | "ExecutionTimedOut" | "ExecutionAborted" => {
                o.outcome = "failed";
                if o.error.is_none() || kind != "ExecutionFailed" {
                    o.error = details["error"]
                        .as_str()
                        .map(str::to_owned)
                        .or_else(|| Some(kind.to_owned()));
                    o.cause = cause_text(&details["cause"]);
                }
                current = None;
            }
            _ => {}
        }
    }
    outcomes
}

/// The history events as rows: id, time, offset from the first, type, state, and what
/// each says (error and cause, the action execution a Task ran).
fn history_events(history: &Value) -> Vec<Value> {
    let events = history["events"].as_array().cloned().unwrap_or_default();
    let epoch = |e: &Value| {
        e["timestamp"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis())
    };
    let first = events.first().and_then(epoch).unwrap_or_default();
    // Task events name no state in Step Functions' history: the last state entered.
    let mut state: Option<String> = None;
    events
        .iter()
        .map(|e| {
            let kind = e["type"].as_str().unwrap_or_default();
            let details = &e["details"];
            if let Some(name) = details["name"].as_str() {
                state = Some(name.to_owned());
            }
            let mut row = json!({
                "id": e["id"],
                "type": kind,
                "timestamp": e["timestamp"],
                "offsetMs": epoch(e).map(|t| t - first),
                "state": details["name"].as_str().map(str::to_owned).or_else(|| state.clone()),
                "scope": e["scope"].as_str().filter(|s| !s.is_empty()),
                "error": details["error"],
                "cause": cause_text(&details["cause"]),
                "failed": kind.ends_with("Failed") || kind.ends_with("TimedOut") || kind.ends_with("Aborted"),
            });
            if kind == "TaskScheduled"
                && let Some((action, key)) = task_execution(details)
            {
                row["task"] = json!({
                    "action": action,
                    "key": key,
                    "href": format!("/console/executions/{}/{}", segment(&action), segment(&key)),
                });
            }
            if kind.ends_with("StateExited") || kind.starts_with("Execution") {
                state = None;
            }
            row
        })
        .collect()
}

/// `POST /console/workflows/{name}/redrive` (form `execution`): the API's redrive of
/// that execution, then its page.
async fn redrive(State(console): Shared, Path(name): Path<String>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    if !same_origin(&headers) {
        return cross_site(&console, &headers);
    }
    let form: BTreeMap<String, String> = match axum::body::to_bytes(body, MAX_API_BODY).await {
        Ok(bytes) => form_urlencoded::parse(&bytes).into_owned().collect(),
        Err(_) => BTreeMap::new(),
    };
    let id = form.get("execution").map(|s| s.trim()).unwrap_or_default();
    let api = format!(
        "/workflows/{}/executions/{}/redrive",
        segment(&name),
        segment(id)
    );
    let auth = headers.get(header::AUTHORIZATION);
    let answer = console
        .call(Method::POST, &api, auth, Some(&json!({})))
        .await;
    if !answer.status.is_success() {
        return console.failure(&answer, &api, &headers);
    }
    Redirect::to(&format!(
        "/console/workflows/{}?execution={}",
        segment(&name),
        form_value(id)
    ))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_follow_the_input_schema() {
        let schema = json!({
            "type": "object",
            "required": ["email", "count"],
            "properties": {
                "email": {"type": "string", "description": "where"},
                "count": {"type": "integer"},
                "ratio": {"type": ["number", "null"]},
                "flag": {"type": "boolean"},
                "tier": {"$ref": "#/$defs/Tier"},
                "maybe": {"anyOf": [{"$ref": "#/$defs/Tier"}, {"type": "null"}]},
                "tags": {"type": "array", "items": {"type": "string"}},
            },
            "$defs": {"Tier": {"type": "string", "enum": ["gold", "silver"]}},
        });
        let fields = form_fields(&schema);
        let kinds: BTreeMap<&str, (&str, bool)> = fields
            .iter()
            .map(|f| (f.name.as_str(), (f.kind, f.required)))
            .collect();
        assert_eq!(kinds["email"], ("text", true));
        assert_eq!(kinds["count"], ("integer", true));
        assert_eq!(kinds["ratio"], ("number", false));
        assert_eq!(kinds["flag"], ("boolean", false));
        assert_eq!(kinds["tier"], ("enum", false));
        assert_eq!(kinds["maybe"], ("enum", false));
        assert_eq!(kinds["tags"], ("json", false));
        assert_eq!(fields[0].description, None);
        assert!(form_fields(&json!(true)).is_empty());

        let form: BTreeMap<String, String> = [
            ("p.email", "ada@example.com"),
            ("p.count", "3"),
            ("p.ratio", "0.5"),
            ("p.flag", "true"),
            ("p.tier", "gold"),
            ("p.maybe", ""),
            ("p.tags", "[\"a\"]"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(
            params_from_form(&fields, &form).expect("params"),
            json!({"email": "ada@example.com", "count": 3, "ratio": 0.5, "flag": true, "tier": "gold", "tags": ["a"]})
        );
        // What does not read as its kind goes as text, for the action to refuse.
        let form: BTreeMap<String, String> = [("p.count".to_owned(), "three".to_owned())].into();
        assert_eq!(
            params_from_form(&fields, &form).expect("params"),
            json!({"count": "three"})
        );
        let form: BTreeMap<String, String> =
            [("paramsJson".to_owned(), "{\"x\": 1}".to_owned())].into();
        assert_eq!(
            params_from_form(&fields, &form).expect("params"),
            json!({"x": 1})
        );
        let form: BTreeMap<String, String> = [("paramsJson".to_owned(), "{".to_owned())].into();
        assert!(params_from_form(&fields, &form).is_err());
    }

    #[test]
    fn forms_from_other_sites_are_refused() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        assert!(same_origin(&headers(&[])));
        assert!(same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(!same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "https://evil.example")
        ])));
        assert!(!same_origin(&headers(&[(
            "origin",
            "https://evil.example"
        )])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "cross-site")])));
    }

    #[test]
    fn since_reads_datetime_local_as_utc() {
        assert_eq!(since_rfc3339("2024-05-01T10:00"), "2024-05-01T10:00:00Z");
        assert_eq!(since_rfc3339("2024-05-01T10:00:30"), "2024-05-01T10:00:30Z");
        assert_eq!(
            since_rfc3339("2024-05-01T10:00:30.250"),
            "2024-05-01T10:00:30.250Z"
        );
        assert_eq!(
            since_rfc3339("2024-05-01T10:00:00+02:00"),
            "2024-05-01T10:00:00+02:00"
        );
        assert_eq!(
            since_rfc3339("2024-05-01T10:00:00Z"),
            "2024-05-01T10:00:00Z"
        );
    }

    #[test]
    fn state_outcomes_follow_the_history() {
        let scheduled = |state: &str| {
            json!({"type": "TaskScheduled", "details": {"name": state, "parameters": {
                "FunctionName": "arn:aws:lambda:local:000000000000:function:process-payment",
                "Payload": {"idempotencyKey": format!("arn:x#{state}")}}}})
        };
        let history = json!({"events": [
            {"type": "ExecutionStarted"},
            {"type": "TaskStateEntered", "details": {"name": "CreateUser"}},
            {"type": "TaskFailed", "details": {"error": "ActionDo.Transient"}},
            {"type": "TaskSucceeded"},
            {"type": "TaskStateExited", "details": {"name": "CreateUser"}},
            {"type": "TaskStateEntered", "details": {"name": "ProcessPayment"}},
            scheduled("ProcessPayment"),
            {"type": "TaskFailed", "details": {"error": "ActionDo.Rejected", "cause": "{\"errorMessage\": \"{\\\"error\\\": {\\\"message\\\": \\\"declined\\\"}}\"}"}},
            {"type": "TaskStateExited", "details": {"name": "ProcessPayment"}},
            {"type": "PassStateEntered", "scope": "Branch#0", "details": {"name": "Inner"}},
            {"type": "TaskStateEntered", "details": {"name": "Notify"}},
            {"type": "TaskFailed", "details": {"error": "ActionDo.Transient"}},
            {"type": "ExecutionFailed", "details": {"error": "ActionDo.Transient"}},
        ]});
        let outcomes = state_outcomes(&history);
        let outcome = |s: &str| outcomes.get(s).map(|o| o.outcome);
        // Retried, then succeeded.
        assert_eq!(outcome("CreateUser"), Some("succeeded"));
        assert_eq!(outcomes["CreateUser"].failures, 1);
        // Failed, and its Catch went on.
        assert_eq!(outcome("ProcessPayment"), Some("caught"));
        assert_eq!(
            outcomes["ProcessPayment"].error.as_deref(),
            Some("ActionDo.Rejected")
        );
        assert_eq!(
            outcomes["ProcessPayment"].task_href.as_deref(),
            Some("/console/executions/process-payment/arn%3Ax%23ProcessPayment")
        );
        assert!(
            outcomes["ProcessPayment"]
                .cause
                .as_deref()
                .is_some_and(|c| c.contains("declined")),
            "{:?}",
            outcomes["ProcessPayment"]
        );
        // The execution stopped in it.
        assert_eq!(outcome("Notify"), Some("failed"));
        // A branch's state is not the top level's.
        assert_eq!(outcome("Inner"), None);
        assert_eq!(outcomes.len(), 3);
        // Redriven: entered again, then left.
        let mut events = history["events"].as_array().cloned().unwrap_or_default();
        events.extend([
            json!({"type": "ExecutionRedriven"}),
            json!({"type": "TaskStateEntered", "details": {"name": "Notify"}}),
            json!({"type": "TaskSucceeded"}),
            json!({"type": "TaskStateExited", "details": {"name": "Notify"}}),
        ]);
        let redriven = state_outcomes(&json!({"events": events}));
        assert_eq!(redriven["Notify"].outcome, "succeeded");
        assert_eq!(redriven["Notify"].entered, 2);
        assert!(state_outcomes(&json!({"events": "nope"})).is_empty());
        assert_eq!(
            cause_message(&json!(
                "{\"errorMessage\": \"{\\\"error\\\": {\\\"message\\\": \\\"declined\\\"}}\"}"
            ))
            .as_deref(),
            Some("declined")
        );
        assert_eq!(
            cause_message(&json!("plain words")).as_deref(),
            Some("plain words")
        );
        assert_eq!(
            workflow_execution("arn:aws:states:local:000000000000:execution:user-onboarding:run-1"),
            Some(("user-onboarding", "run-1"))
        );
        assert_eq!(workflow_execution("campaign-7"), None);
    }
}
