//! The streamable HTTP transport: `/mcp`, behind the API keys and scopes of the rest of
//! the API (docs/architecture.md §8.2).
//!
//! Every request needs `Authorization: Bearer <key>` (unless the API's auth is
//! [`Auth::Disabled`]); a missing or bad key answers 401 with the API's error body,
//! before the MCP layer sees the request. The key's id and scope become the request's
//! [`Principal`]: `tools/list` lists the actions in scope, a call outside it is an
//! `ActionDo.Forbidden` tool result, the resources show what is in scope, and the audit
//! caller is `apikey:<id> mcp:<client name>`.

use std::sync::Arc;

use actiondo::{ActionError, Store};
use actiondo_api::keys::Scope;
use actiondo_api::{Api, Auth};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderMap, HeaderValue, header};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};

use crate::{McpServer, Principal};

/// Where the MCP endpoint is mounted.
pub const PATH: &str = "/mcp";

/// How the endpoint is served.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// The `Host` values accepted (DNS-rebinding protection): `host` or `host:port`.
    pub allowed_hosts: Vec<String>,
    /// Keep sessions in memory for clients of the protocol versions before 2026-07-28
    /// (which negotiate once, with `initialize`): right for one long-lived process
    /// (`actiondo serve`); without, every request stands alone (a Lambda function).
    pub sessions: bool,
}

impl Default for HttpOptions {
    /// Loopback hosts only, with sessions.
    fn default() -> Self {
        Self {
            allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            sessions: true,
        }
    }
}

/// The `/mcp` route serving `server` (which must have no local principal: each request
/// brings its own) behind `auth`, to merge into the API's router.
pub fn router(server: McpServer, auth: Auth, options: HttpOptions) -> axum::Router {
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(options.sessions)
        .with_json_response(true)
        .with_allowed_hosts(options.allowed_hosts);
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    axum::Router::new()
        .route_service(PATH, service)
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(auth),
            authenticate,
        ))
}

/// Attach the request's [`Principal`], or answer 401 (with `WWW-Authenticate: Bearer`).
async fn authenticate(State(auth): State<Arc<Auth>>, mut request: Request, next: Next) -> Response {
    match principal(&auth, request.headers()).await {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(error) => {
            let mut response =
                actiondo::trigger::http::error_response(&error, false).map(Body::from);
            if error.http_status() == 401 {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            response
        }
    }
}

/// The principal of a request's `Authorization: Bearer <key>`, checked as every route of
/// the API checks it (`actiondo_api::KeyStore::authenticate`).
pub async fn principal(auth: &Auth, headers: &HeaderMap) -> Result<Principal, ActionError> {
    let keys = match auth {
        Auth::Disabled => return Ok(Principal::local(Scope::all())),
        Auth::ApiKeys(keys) => keys,
    };
    let token = actiondo_api::keys::bearer_token(headers)?;
    let record = keys.authenticate(token).await?;
    Ok(Principal {
        key_id: Some(record.record.id.clone()),
        scope: record.scope.clone(),
    })
}

// ---------------------------------------------------------------- the router's /mcp
//
// Two settings mount `/mcp` in the router Lambda (docs/architecture.md §7.6): its cargo
// feature `mcp` links this crate (`cargo lambda build --features mcp`; without it the MCP
// SDK stays out of the deployed binary), and `ACTIONDO_MCP=on` mounts the route.
// `ACTIONDO_MCP_HOSTS` (comma-separated `host` or `host:port`) restricts the `Host`
// header; unset, any host is accepted (API Gateway chooses the host; the check guards
// servers on a loopback address against DNS rebinding). Every request stands alone: no
// in-memory sessions, which a Lambda function could not keep.

/// The setting that mounts `/mcp`: `on` or `off` (the default).
pub const MCP_ENV: &str = "ACTIONDO_MCP";
/// The `Host` values `/mcp` accepts, comma-separated; unset: any.
pub const MCP_HOSTS_ENV: &str = "ACTIONDO_MCP_HOSTS";

/// Whether the settings `enabled` (of [`MCP_ENV`]) mount `/mcp`; a value other than
/// `on`/`off` is a configuration error, not a silent `off`.
pub fn enabled(setting: Option<&str>) -> Result<bool, ActionError> {
    match setting.map(str::trim) {
        None | Some("" | "off") => Ok(false),
        Some("on") => Ok(true),
        Some(other) => Err(ActionError::validation(format!(
            "{MCP_ENV} must be on or off, got {other:?}"
        ))),
    }
}

/// `router` with `/mcp` over `api`'s catalog and dispatcher, reading executions and audit
/// records from `store`, behind `auth`, when [`MCP_ENV`] in `settings` says `on`.
pub fn mount(
    router: axum::Router,
    api: &Api,
    store: Arc<dyn Store>,
    auth: Auth,
    settings: &actiondo::config::Settings,
) -> Result<axum::Router, ActionError> {
    if !enabled(settings.get_str(MCP_ENV))? {
        return Ok(router);
    }
    let allowed_hosts = settings
        .get_str(MCP_HOSTS_ENV)
        .map(|hosts| {
            hosts
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(router.merge(route(api, store, auth, allowed_hosts)))
}

/// The `/mcp` route itself (`allowed_hosts` empty: any host).
pub fn route(
    api: &Api,
    store: Arc<dyn Store>,
    auth: Auth,
    allowed_hosts: Vec<String>,
) -> axum::Router {
    let server = McpServer::new(
        api.catalog().clone(),
        Arc::clone(api.dispatcher()),
        store,
        None,
    );
    router(
        server,
        auth,
        HttpOptions {
            allowed_hosts,
            sessions: false,
        },
    )
}
