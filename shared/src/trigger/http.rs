//! HTTP: API Gateway (REST v1, HTTP v2), function URLs and ALB — events read with the
//! `aws_lambda_events` types and served as `lambda_http` requests by [`serve_event`] — and
//! the protocol mapping every HTTP front end shares (the router and `actiondo serve` too).
//!
//! - body = params (JSON); `Idempotency-Key` header = key; `X-Correlation-Id` = correlation id;
//! - success: `200` with the output as the body; a replay adds `Idempotent-Replayed: true`;
//! - failure: the status of docs/architecture.md §6 with `{"error": {...}}`; `Retry-After` (seconds) when
//!   the error says when to retry (409 in progress); a replayed stored failure also carries
//!   `Idempotent-Replayed: true`;
//! - malformed JSON: `400` with the line and column; a body over [`MAX_BODY_BYTES`]: `413`;
//!   a content type other than JSON: `415`; a method other than `POST`: `405`.

use std::convert::Infallible;

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use lambda_runtime::Context;
use serde_json::Value;

use crate::action::DynAction;
use crate::error::ActionError;
use crate::executor::{Execution, Executor};
use crate::invocation::Source;
use crate::invocation::{Invocation, Params};
use crate::trigger::http_event::{HttpEvent, Origin};
use crate::trigger::{Handler, Meta, Reply, catch_panic};

/// The largest request body accepted (1 MiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The request header carrying the idempotency key (also echoed in responses).
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// The response header marking a replayed outcome.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// The request header carrying a correlation id.
pub const CORRELATION_ID_HEADER: &str = "x-correlation-id";

/// The JSON content type.
const JSON: &str = "application/json";

/// Check the request line and headers of an action call: `POST`, a JSON content type (or
/// none), a body within [`MAX_BODY_BYTES`].
pub fn check_request(
    method: &Method,
    headers: &HeaderMap,
    body_len: usize,
) -> Result<(), ActionError> {
    if method != Method::POST {
        return Err(ActionError::validation(format!(
            "method {method} is not allowed; actions are run with POST"
        ))
        .with_http_status(405));
    }
    if let Some(ct) = headers.get(header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or_default().to_ascii_lowercase();
        let essence = ct.split(';').next().unwrap_or_default().trim();
        if essence != JSON && !essence.ends_with("+json") {
            return Err(ActionError::validation(format!(
                "content type {essence:?} is not supported; send application/json"
            ))
            .with_http_status(415));
        }
    }
    if body_len > MAX_BODY_BYTES {
        return Err(ActionError::validation(format!(
            "the body is {body_len} bytes; the limit is {MAX_BODY_BYTES} bytes"
        ))
        .with_details(serde_json::json!({"bodyBytes": body_len, "limitBytes": MAX_BODY_BYTES}))
        .with_http_status(413));
    }
    Ok(())
}

/// The `Idempotency-Key` header: `None` when absent; `ActionDo.Validation` when it holds
/// anything but visible ASCII (it is never silently dropped, which would run the call
/// under the key derived from its params).
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ActionError> {
    match headers.get(IDEMPOTENCY_KEY_HEADER) {
        None => Ok(None),
        Some(value) => value.to_str().map(|k| Some(k.to_owned())).map_err(|_| {
            ActionError::validation(
                "the Idempotency-Key header has a character that is not printable ASCII",
            )
        }),
    }
}

/// The invocation an HTTP request asks for: the body as params text (parsed, with its
/// error position, by the executor), the key and correlation id from their headers.
pub fn invocation(
    headers: &HeaderMap,
    body: &[u8],
    meta: &Meta,
) -> Result<Invocation, ActionError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ActionError::validation(format!("the body is not UTF-8: {e}")))?;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    Ok(Invocation {
        params: Params::Text(text.to_owned()),
        key: idempotency_key(headers)?,
        source: Source::Http,
        request_id: Some(meta.request_id.clone()),
        correlation_id: header(CORRELATION_ID_HEADER),
        caller: None,
        trace_id: meta.trace_id.clone(),
        deadline_ms: meta.deadline_ms,
    })
}

/// Run `action` for one HTTP request and answer per docs/architecture.md §6.
pub async fn execute(
    executor: &Executor,
    action: &dyn DynAction,
    method: &Method,
    headers: &HeaderMap,
    body: &[u8],
    meta: &Meta,
) -> Response<String> {
    let invocation = match check_request(method, headers, body.len())
        .and_then(|()| invocation(headers, body, meta))
    {
        Ok(invocation) => invocation,
        Err(e) => return error_response(&e, false),
    };
    execution_response(executor.execute(action, invocation).await)
}

/// The HTTP response of an execution.
pub fn execution_response(execution: Execution) -> Response<String> {
    let mut response = match execution.outcome {
        Ok(raw) => json_response(StatusCode::OK, raw.get().to_owned()),
        Err(e) => error_response(&e, execution.replayed),
    };
    let headers = response.headers_mut();
    if let Some(key) = execution
        .key
        .as_deref()
        .and_then(|k| HeaderValue::from_str(k).ok())
    {
        headers.insert(IDEMPOTENCY_KEY_HEADER, key);
    }
    if execution.replayed {
        headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    response
}

/// The HTTP response of an error: its status, `{"error": {...}}`, and `Retry-After` in
/// whole seconds (rounded up) when the error says when to retry.
pub fn error_response(err: &ActionError, replayed: bool) -> Response<String> {
    let status =
        StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_string(&err.to_body()).unwrap_or_default();
    let mut response = json_response(status, body);
    let headers = response.headers_mut();
    if let Some(ms) = err.retry_after_ms() {
        headers.insert(
            header::RETRY_AFTER,
            HeaderValue::from(ms.div_ceil(1000).max(1)),
        );
    }
    if err.http_status() == 405 {
        headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    if replayed {
        headers.insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    response
}

/// A JSON response.
pub fn json_response(status: StatusCode, body: String) -> Response<String> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    response
}

/// Handle an API Gateway / function URL / ALB event for one action binary: the request
/// runs the action through [`execute`], served by [`serve_event`].
pub async fn handle_lambda_request(
    handler: &Handler,
    event: Value,
    context: Context,
) -> Result<Reply, ActionError> {
    let meta = Meta::from(&context);
    let settings = *handler.settings();
    let handler = handler.clone();
    let service = lambda_http::service_fn(move |request: lambda_http::Request| {
        let handler = handler.clone();
        let meta = meta.clone();
        async move {
            let (parts, body) = request.into_parts();
            let response = execute(
                handler.executor(),
                handler.action(),
                &parts.method,
                &parts.headers,
                body.as_ref(),
                &meta,
            )
            .await;
            Ok::<_, Infallible>(response.map(lambda_http::Body::from))
        }
    });
    serve_event(service, event, context, &settings)
        .await
        .map(Reply::Json)
}

/// Serve one API Gateway (REST v1, HTTP v2) / function URL / ALB event with `service`, a
/// tower `Service` over `http::Request` (an action's [`execute`], the router's routes), and
/// answer in the event source's response shape.
///
/// The event is turned into the request here, not by `lambda_http`, whose conversion
/// panics on a body marked `isBase64Encoded` that is not base64, on a `Host` that is not a
/// host and on a path a URI cannot hold (see `http_event`): each of those is answered
/// `400` with an `ActionDo.Validation` body, without calling `service`. A panic in
/// `service` is answered `500` (`ActionDo.Internal`). An event that does not have the
/// fields of its origin is `Err(ActionDo.Validation)`, a function error. `settings` says
/// whether API Gateway's stage stays out of the path.
pub async fn serve_event<S, R>(
    mut service: S,
    event: Value,
    context: Context,
    settings: &crate::trigger::TriggerSettings,
) -> Result<Value, ActionError>
where
    S: lambda_http::Service<lambda_http::Request, Response = R, Error = Infallible>,
    R: lambda_http::IntoResponse,
{
    use lambda_http::RequestExt as _;

    let origin = Origin::of(&event);
    let response =
        match HttpEvent::parse(origin, event)?.into_request(settings.ignore_stage_in_path) {
            Ok(request) => {
                let mut request = request.with_lambda_context(context.clone());
                // As lambda_http's adapter: the trace id of the invocation as a header.
                if let Some(trace) = context
                    .xray_trace_id
                    .as_deref()
                    .and_then(|t| HeaderValue::from_str(t).ok())
                {
                    request.headers_mut().insert("x-amzn-trace-id", trace);
                }
                // A panic in the service is a 500 in the event source's shape, not a function
                // error that API Gateway would turn into a bare 502.
                let served = catch_panic(async {
                    if let Err(never) = std::future::poll_fn(|cx| service.poll_ready(cx)).await {
                        match never {}
                    }
                    match service.call(request).await {
                        Ok(response) => Ok(response.into_response().await),
                        Err(never) => match never {},
                    }
                })
                .await;
                served.unwrap_or_else(|e| error_response(&e, false).map(lambda_http::Body::from))
            }
            Err(e) => error_response(&e, false).map(lambda_http::Body::from),
        };
    origin.response(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked_before_anything_runs() {
        let json = HeaderMap::from_iter([(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        )]);
        assert!(check_request(&Method::POST, &json, 10).is_ok());
        assert_eq!(
            check_request(&Method::GET, &json, 10).map_err(|e| e.http_status()),
            Err(405)
        );
        assert_eq!(
            check_request(&Method::POST, &json, MAX_BODY_BYTES + 1).map_err(|e| e.http_status()),
            Err(413)
        );
        let text =
            HeaderMap::from_iter([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))]);
        assert_eq!(
            check_request(&Method::POST, &text, 10).map_err(|e| e.http_status()),
            Err(415)
        );
        assert!(
            check_request(&Method::POST, &HeaderMap::new(), 10).is_ok(),
            "no content type is fine"
        );
    }

    #[test]
    fn in_progress_answers_409_with_retry_after_in_seconds() {
        let err = ActionError::in_progress("busy").with_retry_after_ms(1_500);
        let response = error_response(&err, false);
        assert_eq!(response.status(), 409);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let body: crate::ErrorBody = serde_json::from_str(response.body()).expect("error body");
        assert_eq!(body.error.error_type, "ActionDo.InProgress");
        assert!(body.error.retryable);
    }
}
