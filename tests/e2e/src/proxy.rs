//! A translating proxy in front of `cargo lambda watch`, so that `aws-sdk-lambda` sees the
//! Invoke semantics of real Lambda.
//!
//! # What `cargo lambda watch` answers (cargo-lambda 1.9.2, checked with curl)
//!
//! `POST /2015-03-31/functions/{name}/invocations` runs the function `name` (a bare name:
//! the binary `cargo run --bin {name}` starts on the first invoke) and answers:
//!
//! - success: `200 OK`, the function's response as the body, no `Content-Type`;
//! - function error (the runtime posted to `/runtime/invocation/{id}/error`):
//!   `500 Internal Server Error`, the body the runtime posted, i.e. lambda_runtime's
//!   `{"errorType": "...", "errorMessage": "..."}`, no `Content-Type`, and no
//!   `X-Amz-Function-Error`. Every answer also carries CORS headers (`vary`,
//!   `access-control-allow-credentials`);
//! - an unknown function: `404` with `{"title": "Missing function", "detail": ...}`.
//!
//! Real Lambda answers a function error with `200 OK`, `X-Amz-Function-Error: Unhandled`
//! and the `{"errorType", "errorMessage"}` payload; the SDK then sets
//! `InvokeOutput::function_error` and returns the payload. A `500` is to the SDK a
//! service error (`ServiceException`) instead.
//!
//! # What the proxy does
//!
//! It forwards every request as is to the upstream (`cargo lambda watch`) and rewrites one
//! kind of answer: a `500` from an Invoke path whose body is a JSON object with a string
//! `errorType` becomes `200` + `X-Amz-Function-Error: Unhandled` +
//! `Content-Type: application/json`, body unchanged. Successful invokes get
//! `X-Amz-Executed-Version: $LATEST`, as from Lambda. Anything else (cargo-lambda's own
//! errors, other paths) passes through untouched, so a broken harness still shows as an
//! error, never as a function result.
//!
//! Bodies are buffered whole (Invoke payloads are at most 6 MB). The proxy listens on
//! `127.0.0.1` on a free port and stops when dropped.

use std::convert::Infallible;
use std::net::SocketAddr;

use http::header::{CONTENT_TYPE, HOST};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// The header by which Lambda marks a function error.
pub const FUNCTION_ERROR_HEADER: &str = "x-amz-function-error";
/// The header naming the version that ran.
pub const EXECUTED_VERSION_HEADER: &str = "x-amz-executed-version";

type Upstream = Client<HttpConnector, Full<Bytes>>;

/// A running proxy; dropping it stops the listener and every open connection.
#[derive(Debug)]
pub struct LambdaProxy {
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl LambdaProxy {
    /// Listen on a free port of `127.0.0.1` and forward to `upstream`
    /// (`cargo lambda watch`'s address). Runs on the current tokio runtime.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        Self::serve(TcpListener::bind(("127.0.0.1", 0)).await?, upstream)
    }

    /// Serve on `listener` (bound beforehand, so that its address can be handed to the
    /// functions before the watch starts) and forward to `upstream`.
    pub fn serve(listener: TcpListener, upstream: SocketAddr) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let client: Upstream = Client::builder(TokioExecutor::new()).build_http();
        let server = tokio::spawn(async move {
            // Owned by this task: aborting it drops the set, which aborts the connections.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let client = client.clone();
                let service = hyper::service::service_fn(move |request| {
                    forward(client.clone(), upstream, request)
                });
                connections.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                // Reap finished connections so the set does not grow.
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(Self { addr, server })
    }

    /// The address the proxy listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, the endpoint URL for `aws-sdk-lambda`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for LambdaProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Whether `path` is the Invoke API's (`/2015-03-31/functions/{name}/invocations`).
pub fn is_invoke_path(path: &str) -> bool {
    path.strip_prefix("/2015-03-31/functions/")
        .is_some_and(|rest| rest.ends_with("/invocations"))
}

/// Whether `body` is a function error payload: a JSON object with a string `errorType`.
pub fn is_function_error_payload(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .is_some_and(|v| v.get("errorType").is_some_and(serde_json::Value::is_string))
}

/// Rewrite one upstream answer to an Invoke request (see the module documentation).
pub fn translate(path: &str, response: &mut Response<Full<Bytes>>, body: &[u8]) {
    if !is_invoke_path(path) {
        return;
    }
    let function_error =
        response.status() == StatusCode::INTERNAL_SERVER_ERROR && is_function_error_payload(body);
    if function_error {
        *response.status_mut() = StatusCode::OK;
        let headers = response.headers_mut();
        headers.insert(FUNCTION_ERROR_HEADER, HeaderValue::from_static("Unhandled"));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    if response.status() == StatusCode::OK {
        response
            .headers_mut()
            .insert(EXECUTED_VERSION_HEADER, HeaderValue::from_static("$LATEST"));
    }
}

async fn forward(
    client: Upstream,
    upstream: SocketAddr,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_owned();
    Ok(match relay(&client, upstream, request).await {
        Ok((mut response, body)) => {
            translate(&path, &mut response, &body);
            response
        }
        Err(message) => {
            let mut response = Response::new(Full::new(Bytes::from(message)));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response
        }
    })
}

async fn relay(
    client: &Upstream,
    upstream: SocketAddr,
    request: Request<Incoming>,
) -> Result<(Response<Full<Bytes>>, Bytes), String> {
    let (mut parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("proxy: reading the request body: {e}"))?
        .to_bytes();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    parts.uri = format!("http://{upstream}{path_and_query}")
        .parse()
        .map_err(|e| format!("proxy: bad upstream URI: {e}"))?;
    // The client sets the upstream's own Host.
    parts.headers.remove(HOST);
    let answer = client
        .request(Request::from_parts(parts, Full::new(body)))
        .await
        .map_err(|e| format!("proxy: cargo lambda watch at {upstream} did not answer: {e}"))?;
    let (parts, body) = answer.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("proxy: reading the upstream body: {e}"))?
        .to_bytes();
    Ok((Response::from_parts(parts, Full::new(body.clone())), body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: StatusCode, body: &str) -> (Response<Full<Bytes>>, Vec<u8>) {
        let mut r = Response::new(Full::new(Bytes::from(body.to_owned())));
        *r.status_mut() = status;
        (r, body.as_bytes().to_vec())
    }

    #[test]
    fn a_function_error_becomes_200_with_the_header() {
        let (mut r, body) = response(
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"errorType":"ActionDo.Rejected","errorMessage":"no"}"#,
        );
        translate(
            "/2015-03-31/functions/create-user/invocations",
            &mut r,
            &body,
        );
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[FUNCTION_ERROR_HEADER], "Unhandled");
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
    }

    #[test]
    fn other_answers_pass_through() {
        // cargo-lambda's own failure: not a function error payload.
        let (mut r, body) = response(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        translate("/2015-03-31/functions/f/invocations", &mut r, &body);
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(r.headers().get(FUNCTION_ERROR_HEADER).is_none());
        // Not the Invoke API.
        let (mut r, body) = response(StatusCode::INTERNAL_SERVER_ERROR, r#"{"errorType":"x"}"#);
        translate("/2018-06-01/runtime/invocation/next", &mut r, &body);
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        // A missing function stays a 404.
        let (mut r, body) = response(StatusCode::NOT_FOUND, r#"{"title":"Missing function"}"#);
        translate("/2015-03-31/functions/nope/invocations", &mut r, &body);
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn invoke_paths_are_recognised() {
        assert!(is_invoke_path(
            "/2015-03-31/functions/create-user/invocations"
        ));
        assert!(!is_invoke_path("/2015-03-31/functions/create-user"));
        assert!(!is_invoke_path("/lambda-url/create-user/"));
    }
}
