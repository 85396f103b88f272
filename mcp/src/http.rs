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

use actiondo::ActionError;
use actiondo_api::Auth;
use actiondo_api::keys::Scope;
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
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .ok_or_else(|| ActionError::unauthorized("send an API key: Authorization: Bearer <key>"))?;
    let record = keys.authenticate(token).await?;
    Ok(Principal {
        key_id: Some(record.id.clone()),
        scope: record.scope(),
    })
}
