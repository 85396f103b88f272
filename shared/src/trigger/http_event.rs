//! API Gateway (REST v1, HTTP v2), function URL and ALB events to `http::Request` and
//! `http::Response` back to the event source's response shape — without panicking.
//!
//! `lambda_http` does this conversion in `From<LambdaRequest> for http::Request`, which
//! panics on input a caller controls (docs/architecture.md §7, "No panic reaches Lambda"):
//!
//! - a body marked `isBase64Encoded` that is not base64
//!   (`aws_lambda_events::encodings::Body::from_maybe_encoded` calls `expect`);
//! - a `Host` header that is not a host (`url::Url::parse(..).unwrap()` in its
//!   `build_request_uri`);
//! - a path or raw query string with a character a URI cannot hold (`expect("failed to
//!   build request")`).
//!
//! Here the event is read with the `aws_lambda_events` types, and each of these is an
//! `ActionDo.Validation` answered as HTTP 400 in the event source's own response shape. The
//! request is otherwise the one `lambda_http` builds: the same method, URI (the stage in
//! the path of API Gateway requests unless `AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH` is set),
//! headers, body and `lambda_http::RequestExt` extensions, so that services written for
//! `lambda_http` (an action's [`execute`](super::http::execute), the router's routes) see
//! no difference.

use std::collections::HashMap;
use std::str::FromStr as _;

use aws_lambda_events::alb::{AlbTargetGroupRequest, AlbTargetGroupResponse};
use aws_lambda_events::apigw::{
    ApiGatewayProxyRequest, ApiGatewayProxyResponse, ApiGatewayV2httpRequest,
    ApiGatewayV2httpResponse,
};
use aws_lambda_events::query_map::QueryMap;
use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Method, Response, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, RequestExt as _};
use serde_json::Value;

use crate::error::ActionError;

/// Which front end sent an HTTP event; it decides the response's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// API Gateway REST API (payload format 1.0).
    RestV1,
    /// API Gateway HTTP API (payload format 2.0) or a function URL.
    HttpV2,
    /// An Application Load Balancer target group.
    Alb,
}

impl Origin {
    /// The origin of an event of [`EventShape::Http`](super::EventShape::Http): `elb` in the
    /// request context is an ALB; `http` in it, or `"version": "2.0"`, is payload format
    /// 2.0; anything else is a REST API event.
    pub(crate) fn of(event: &Value) -> Self {
        let context = event.get("requestContext");
        if context.and_then(|c| c.get("elb")).is_some() {
            Origin::Alb
        } else if context.and_then(|c| c.get("http")).is_some()
            || event.get("version").and_then(Value::as_str) == Some("2.0")
        {
            Origin::HttpV2
        } else {
            Origin::RestV1
        }
    }

    fn name(self) -> &'static str {
        match self {
            Origin::RestV1 => "API Gateway REST API",
            Origin::HttpV2 => "API Gateway HTTP API or function URL",
            Origin::Alb => "ALB",
        }
    }

    /// The event source's response for `response`, as `lambda_http` shapes it: REST APIs
    /// take `multiValueHeaders`; HTTP APIs and function URLs take `headers` and `cookies`;
    /// ALB takes both header forms (either may be configured) and a status description.
    pub(crate) fn response(self, response: Response<Body>) -> Result<Value, ActionError> {
        let (parts, body) = response.into_parts();
        let (is_base64_encoded, body) = match body {
            Body::Text(text) => (false, Some(Body::Text(text))),
            Body::Binary(bytes) => (true, Some(Body::Binary(bytes))),
            _ => (false, None),
        };
        let status_code = i64::from(parts.status.as_u16());
        let mut headers = parts.headers;
        let value = match self {
            Origin::RestV1 => {
                let mut r = ApiGatewayProxyResponse::default();
                r.status_code = status_code;
                r.multi_value_headers = headers;
                r.body = body;
                r.is_base64_encoded = is_base64_encoded;
                serde_json::to_value(r)
            }
            Origin::HttpV2 => {
                let mut r = ApiGatewayV2httpResponse::default();
                r.status_code = status_code;
                r.cookies = headers
                    .get_all(header::SET_COOKIE)
                    .iter()
                    .filter_map(|v| v.to_str().ok().map(str::to_owned))
                    .collect();
                headers.remove(header::SET_COOKIE);
                r.headers = headers;
                r.body = body;
                r.is_base64_encoded = is_base64_encoded;
                serde_json::to_value(r)
            }
            Origin::Alb => {
                let mut r = AlbTargetGroupResponse::default();
                r.status_code = status_code;
                r.status_description = Some(format!(
                    "{} {}",
                    parts.status.as_u16(),
                    parts.status.canonical_reason().unwrap_or_default()
                ));
                r.headers = headers.clone();
                r.multi_value_headers = headers;
                r.body = body;
                r.is_base64_encoded = is_base64_encoded;
                serde_json::to_value(r)
            }
        };
        value.map_err(|e| {
            ActionError::internal(format!("the HTTP response does not serialize: {e}"))
        })
    }
}

/// An HTTP event, read with the `aws_lambda_events` type of its origin.
#[derive(Debug)]
pub(crate) enum HttpEvent {
    /// API Gateway REST API.
    RestV1(Box<ApiGatewayProxyRequest>),
    /// API Gateway HTTP API, function URL.
    HttpV2(Box<ApiGatewayV2httpRequest>),
    /// ALB.
    Alb(Box<AlbTargetGroupRequest>),
}

impl HttpEvent {
    /// Read an event of `origin`; one that does not have its fields is `ActionDo.Validation`.
    pub(crate) fn parse(origin: Origin, event: Value) -> Result<Self, ActionError> {
        let parsed = match origin {
            Origin::RestV1 => serde_json::from_value(event).map(|e| HttpEvent::RestV1(Box::new(e))),
            Origin::HttpV2 => serde_json::from_value(event).map(|e| HttpEvent::HttpV2(Box::new(e))),
            Origin::Alb => serde_json::from_value(event).map(|e| HttpEvent::Alb(Box::new(e))),
        };
        parsed.map_err(|e| {
            ActionError::validation(format!("malformed HTTP event ({}): {e}", origin.name()))
        })
    }

    /// The request this event carries, built as `lambda_http` builds it, with every step
    /// that can fail answered as `ActionDo.Validation` (HTTP 400). `ignore_stage` keeps
    /// API Gateway's stage out of the path ([`IGNORE_STAGE_ENV`]).
    pub(crate) fn into_request(
        self,
        ignore_stage: bool,
    ) -> Result<lambda_http::Request, ActionError> {
        match self {
            HttpEvent::RestV1(ag) => rest_v1_request(*ag, ignore_stage),
            HttpEvent::HttpV2(ag) => http_v2_request(*ag, ignore_stage),
            HttpEvent::Alb(alb) => alb_request(*alb),
        }
    }
}

fn http_v2_request(
    ag: ApiGatewayV2httpRequest,
    ignore_stage: bool,
) -> Result<lambda_http::Request, ActionError> {
    let body = body(ag.body.as_deref(), ag.is_base64_encoded)?;
    let method = ag.request_context.http.method.clone();
    let raw_path = ag.raw_path.unwrap_or_default();
    let path = path_with_stage(ag.request_context.stage.as_deref(), &raw_path, ignore_stage);
    let host = host(&ag.headers, ag.request_context.domain_name.as_deref());
    // As lambda_http: the parameters of the raw query string (API Gateway joins repeated
    // ones with commas in `queryStringParameters`).
    let query_parameters = match &ag.raw_query_string {
        Some(query) => QueryMap::from_str(query).unwrap_or_default(),
        None => ag.query_string_parameters,
    };
    let query = ag
        .raw_query_string
        .as_deref()
        .filter(|q| !q.is_empty())
        .map(|q| encode(q, QUERY_KEEP));
    let uri = uri(&path, &ag.headers, host.as_deref(), query)?;
    let mut headers = ag.headers;
    if let Some(cookies) = ag.cookies
        && let Ok(value) = HeaderValue::from_str(&cookies.join("; "))
    {
        headers.insert(header::COOKIE, value);
    }
    let request = build(method, uri, headers, body)
        .with_raw_http_path(raw_path)
        .with_query_string_parameters(query_parameters)
        .with_path_parameters(QueryMap::from(ag.path_parameters))
        .with_stage_variables(QueryMap::from(ag.stage_variables))
        .with_request_context(RequestContext::ApiGatewayV2(ag.request_context));
    Ok(request)
}

fn rest_v1_request(
    ag: ApiGatewayProxyRequest,
    ignore_stage: bool,
) -> Result<lambda_http::Request, ActionError> {
    let body = body(ag.body.as_deref(), ag.is_base64_encoded)?;
    let raw_path = ag.path.unwrap_or_default();
    let path = path_with_stage(ag.request_context.stage.as_deref(), &raw_path, ignore_stage);
    let host = host(&ag.headers, ag.request_context.domain_name.as_deref());
    // Multi-valued parameters are a superset of the single-valued ones: preferred when
    // present.
    let query_parameters = if ag.multi_value_query_string_parameters.is_empty() {
        ag.query_string_parameters
    } else {
        ag.multi_value_query_string_parameters
    };
    let uri = uri(
        &path,
        &ag.headers,
        host.as_deref(),
        query_string(&query_parameters),
    )?;
    // `multiValueHeaders` is the canonical source, `headers` added on top.
    let mut headers = ag.multi_value_headers;
    headers.extend(ag.headers);
    let request = build(ag.http_method, uri, headers, body)
        .with_raw_http_path(raw_path)
        .with_query_string_parameters(query_parameters)
        .with_path_parameters(QueryMap::from(ag.path_parameters))
        .with_stage_variables(QueryMap::from(ag.stage_variables))
        .with_request_context(RequestContext::ApiGatewayV1(ag.request_context));
    Ok(request)
}

fn alb_request(alb: AlbTargetGroupRequest) -> Result<lambda_http::Request, ActionError> {
    let body = body(alb.body.as_deref(), alb.is_base64_encoded)?;
    let raw_path = alb.path.unwrap_or_default();
    let host = host(&alb.headers, None);
    // ALB passes query parameters as the client encoded them; decode them once.
    let query_parameters = if alb.multi_value_query_string_parameters.is_empty() {
        decode_query_map(&alb.query_string_parameters)
    } else {
        decode_query_map(&alb.multi_value_query_string_parameters)
    };
    let uri = uri(
        &raw_path,
        &alb.headers,
        host.as_deref(),
        query_string(&query_parameters),
    )?;
    let mut headers = alb.multi_value_headers;
    headers.extend(alb.headers);
    let request = build(alb.http_method, uri, headers, body)
        .with_raw_http_path(raw_path)
        .with_query_string_parameters(query_parameters)
        .with_request_context(RequestContext::Alb(alb.request_context));
    Ok(request)
}

/// The request body: empty when absent, the text as is, or the bytes of a body marked
/// `isBase64Encoded`; a marked body that is not base64 is `ActionDo.Validation`.
fn body(body: Option<&str>, is_base64_encoded: bool) -> Result<Body, ActionError> {
    match body {
        None => Ok(Body::Empty),
        Some(text) if !is_base64_encoded => Ok(Body::from(text)),
        Some(text) => base64::engine::general_purpose::STANDARD
            .decode(text)
            .map(Body::from)
            .map_err(|e| {
                ActionError::validation(format!(
                    "the request body is marked isBase64Encoded but is not base64: {e}"
                ))
                .with_details(serde_json::json!({"field": "body", "reason": "invalid_base64"}))
            }),
    }
}

fn build(method: Method, uri: http::Uri, headers: HeaderMap, body: Body) -> lambda_http::Request {
    let mut request = http::Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    request
}

/// The `Host` header, else the request context's domain name.
fn host(headers: &HeaderMap, domain_name: Option<&str>) -> Option<String> {
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or(domain_name)
        .map(str::to_owned)
}

/// The variable that keeps API Gateway's stage out of request paths (as `lambda_http`).
pub(super) const IGNORE_STAGE_ENV: &str = "AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH";

/// As lambda_http: API Gateway puts the stage in the path unless it is `$default`, already
/// there, or [`IGNORE_STAGE_ENV`] is set (`ignore_stage`).
fn path_with_stage(stage: Option<&str>, path: &str, ignore_stage: bool) -> String {
    if ignore_stage {
        return path.to_owned();
    }
    match stage {
        None | Some("$default") => path.to_owned(),
        Some(stage) if path.starts_with(&format!("/{stage}/")) => path.to_owned(),
        Some(stage) => format!("/{stage}{path}"),
    }
}

/// The request URI: `{scheme}://{host}{path}?{query}` with the scheme of
/// `X-Forwarded-Proto` (else `https`), or `{path}?{query}` without a host. The path is
/// normalised as a URL parser does (dot segments resolved, characters a URI cannot hold
/// percent-encoded); a host that cannot be one is `ActionDo.Validation`.
fn uri(
    path: &str,
    headers: &HeaderMap,
    host: Option<&str>,
    query: Option<String>,
) -> Result<http::Uri, ActionError> {
    let mut path_and_query = normalise_path(path);
    if let Some(query) = query {
        path_and_query.push('?');
        path_and_query.push_str(&query);
    }
    let invalid = |what: &str, e: &dyn std::fmt::Display| {
        ActionError::validation(format!("the request's {what} cannot be part of a URI: {e}"))
    };
    let mut builder = http::Uri::builder();
    if let Some(host) = host {
        let scheme = headers
            .get("x-forwarded-proto")
            .and_then(|s| s.to_str().ok())
            .unwrap_or("https");
        let authority = http::uri::Authority::try_from(host.to_ascii_lowercase())
            .map_err(|e| invalid(&format!("host {host:?}"), &e))?;
        let scheme = http::uri::Scheme::try_from(scheme)
            .map_err(|e| invalid(&format!("scheme {scheme:?} (X-Forwarded-Proto)"), &e))?;
        builder = builder.scheme(scheme).authority(authority);
    }
    builder
        .path_and_query(path_and_query)
        .build()
        .map_err(|e| invalid("path or query", &e))
}

/// Characters kept as they are in a path: RFC 3986 `pchar` and `/`.
const PATH_KEEP: &[u8] = b"-._~!$&'()*+,;=:@/%";
/// Characters kept as they are in a query: RFC 3986 `query`.
const QUERY_KEEP: &[u8] = b"-._~!$&'()*+,;=:@/?%";

/// Percent-encode every byte of `text` that is neither alphanumeric ASCII nor in `keep`.
fn encode(text: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || keep.contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An absolute path with its dot segments resolved (RFC 3986 §5.2.4) and its other
/// characters percent-encoded as a URL path.
fn normalise_path(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let trimmed = path.strip_prefix('/').unwrap_or(path);
    let parts: Vec<&str> = trimmed.split('/').collect();
    let last = parts.len().saturating_sub(1);
    for (i, segment) in parts.iter().enumerate() {
        match *segment {
            "." | ".." if i == last => {
                if *segment == ".." {
                    segments.pop();
                }
                // A trailing dot segment leaves the path ending in a slash.
                segments.push("");
            }
            "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    format!("/{}", encode(&segments.join("/"), PATH_KEEP))
}

/// The query string of `parameters`, form-encoded; `None` when there are none.
fn query_string(parameters: &QueryMap) -> Option<String> {
    let pairs = query_pairs(parameters);
    if pairs.is_empty() {
        return None;
    }
    let encoded: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect();
    Some(encoded.join("&"))
}

/// The (name, value) pairs of a query map, read through its serialized form: its own
/// iterator indexes each name's first value and panics on a name without values, which a
/// `multiValueQueryStringParameters` of `{"a": []}` gives.
fn query_pairs(parameters: &QueryMap) -> Vec<(String, String)> {
    let Ok(Value::Object(map)) = serde_json::to_value(parameters) else {
        return Vec::new();
    };
    let mut pairs: Vec<(String, String)> = map
        .into_iter()
        .flat_map(|(name, values)| {
            let values: Vec<String> = match values {
                Value::Array(values) => values
                    .into_iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                Value::String(value) => vec![value],
                _ => Vec::new(),
            };
            values.into_iter().map(move |v| (name.clone(), v))
        })
        .collect();
    // The map's order is a hash order; a URI should not change between two runs.
    pairs.sort();
    pairs
}

/// Each name and value of an ALB query map decoded once (`+` and `%XX`).
fn decode_query_map(parameters: &QueryMap) -> QueryMap {
    let mut decoded: HashMap<String, Vec<String>> = HashMap::new();
    for (name, value) in query_pairs(parameters) {
        decoded
            .entry(form_decode(&name))
            .or_default()
            .push(form_decode(&value));
    }
    QueryMap::from(decoded)
}

/// `application/x-www-form-urlencoded` encoding of one name or value.
fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        match b {
            b' ' => out.push('+'),
            b if b.is_ascii_alphanumeric() || b"*-._".contains(&b) => out.push(char::from(b)),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `application/x-www-form-urlencoded` decoding of one name or value (invalid UTF-8
/// replaced, a `%` not followed by two hex digits kept as is).
fn form_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (Some(high), Some(low)) => {
                    out.push(high * 16 + low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const APIGW_V1: &str = include_str!("../../tests/fixtures/apigateway-aws-proxy.json");
    const APIGW_V2: &str = include_str!("../../tests/fixtures/apigateway-http-api-proxy.json");
    const ALB: &str = include_str!("../../tests/fixtures/alb-request.json");

    fn request(event: &Value) -> Result<lambda_http::Request, ActionError> {
        HttpEvent::parse(Origin::of(event), event.clone())?.into_request(false)
    }

    fn body_bytes(body: &Body) -> &[u8] {
        match body {
            Body::Text(t) => t.as_bytes(),
            Body::Binary(b) => b,
            _ => &[],
        }
    }

    /// On the events lambda_http converts without panicking, the request is the one it
    /// builds: method, URI, headers and body (what the router's routes read).
    #[test]
    fn requests_are_the_ones_lambda_http_builds() {
        let mut variants = Vec::new();
        for fixture in [APIGW_V1, APIGW_V2, ALB] {
            let event: Value = serde_json::from_str(fixture).expect("fixture");
            variants.push(event.clone());
            let mut encoded = event.clone();
            encoded["body"] = json!("eyJ2YWx1ZSI6ICJoaSJ9"); // {"value": "hi"}
            encoded["isBase64Encoded"] = json!(true);
            variants.push(encoded);
            let mut dotted = event.clone();
            for field in ["path", "rawPath"] {
                if dotted.get(field).is_some() {
                    dotted[field] = json!("/a/./b/../c");
                }
            }
            variants.push(dotted);
        }
        for event in variants {
            let ours = request(&event).expect("converts");
            let theirs = lambda_http::request::from_str(&event.to_string()).expect("lambda_http");
            assert_eq!(ours.method(), theirs.method(), "{event}");
            assert_eq!(ours.uri(), theirs.uri(), "{event}");
            assert_eq!(ours.headers(), theirs.headers(), "{event}");
            assert_eq!(
                body_bytes(ours.body()),
                body_bytes(theirs.body()),
                "{event}"
            );
        }
    }

    #[test]
    fn origins_are_told_by_their_request_context() {
        let of = |text: &str| Origin::of(&serde_json::from_str(text).expect("fixture"));
        assert_eq!(of(APIGW_V1), Origin::RestV1);
        assert_eq!(of(APIGW_V2), Origin::HttpV2);
        assert_eq!(of(ALB), Origin::Alb);
    }

    /// Each input that makes lambda_http panic is an `ActionDo.Validation` here.
    #[test]
    fn what_lambda_http_panics_on_is_a_validation_error() {
        let mut event: Value = serde_json::from_str(APIGW_V2).expect("fixture");
        event["body"] = json!("not base64!");
        event["isBase64Encoded"] = json!(true);
        let err = request(&event).expect_err("not base64");
        assert_eq!(err.kind(), crate::ErrorKind::Validation);
        assert!(
            err.message().contains("isBase64Encoded"),
            "{}",
            err.message()
        );

        let mut event: Value = serde_json::from_str(APIGW_V1).expect("fixture");
        event["headers"]["Host"] = json!("a b");
        let err = request(&event).expect_err("not a host");
        assert_eq!(err.kind(), crate::ErrorKind::Validation);
        assert!(err.message().contains("host"), "{}", err.message());
    }

    /// The stage joins the path unless it is `$default`, already there, or the setting
    /// says to leave it out.
    #[test]
    fn the_stage_joins_the_path_unless_the_setting_says_not() {
        assert_eq!(
            path_with_stage(Some("prod"), "/execute", false),
            "/prod/execute"
        );
        assert_eq!(
            path_with_stage(Some("prod"), "/prod/execute", false),
            "/prod/execute"
        );
        assert_eq!(
            path_with_stage(Some("$default"), "/execute", false),
            "/execute"
        );
        assert_eq!(path_with_stage(None, "/execute", false), "/execute");
        assert_eq!(path_with_stage(Some("prod"), "/execute", true), "/execute");
    }

    /// Characters a URI cannot hold are percent-encoded, as a URL parser does.
    #[test]
    fn paths_and_queries_are_encoded_not_refused() {
        let mut event: Value = serde_json::from_str(APIGW_V2).expect("fixture");
        event["rawPath"] = json!("/a b/ü\"<>");
        event["rawQueryString"] = json!("q=a b&r=é#");
        let request = request(&event).expect("served");
        assert_eq!(request.uri().path(), "/a%20b/%C3%BC%22%3C%3E");
        assert_eq!(request.uri().query(), Some("q=a%20b&r=%C3%A9%23"));

        let mut alb: Value = serde_json::from_str(ALB).expect("fixture");
        alb["queryStringParameters"] = json!({"q": "a%20b+c", "k%26": "%zz"});
        let request = super::tests::request(&alb).expect("served");
        assert_eq!(request.uri().query(), Some("k%26=%25zz&q=a+b+c"));
    }

    #[test]
    fn dot_segments_are_resolved() {
        assert_eq!(normalise_path(""), "/");
        assert_eq!(normalise_path("/a/../../b"), "/b");
        assert_eq!(normalise_path("/a/b/.."), "/a/");
        assert_eq!(normalise_path("/a/./b/"), "/a/b/");
        assert_eq!(normalise_path("x"), "/x");
    }

    #[test]
    fn form_decoding_keeps_what_is_not_an_escape() {
        assert_eq!(form_decode("a+b%41%4"), "a bA%4");
        assert_eq!(form_decode("%FF"), "\u{FFFD}");
        assert_eq!(form_encode("a b&é"), "a+b%26%C3%A9");
    }

    /// Each origin gets its own response shape, as lambda_http gives it.
    #[test]
    fn responses_take_the_shape_of_their_origin() {
        let response = || {
            let mut r = Response::new(Body::from("{}"));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r.headers_mut()
                .insert(header::SET_COOKIE, HeaderValue::from_static("a=1"));
            r
        };
        let v1 = Origin::RestV1.response(response()).expect("v1");
        assert_eq!(
            v1["multiValueHeaders"]["content-type"],
            json!(["application/json"])
        );
        assert_eq!(v1["headers"], json!({}));
        let v2 = Origin::HttpV2.response(response()).expect("v2");
        assert_eq!(v2["headers"]["content-type"], "application/json");
        assert_eq!(v2["cookies"], json!(["a=1"]));
        assert_eq!(v2["headers"].get("set-cookie"), None);
        let alb = Origin::Alb.response(response()).expect("alb");
        assert_eq!(alb["statusDescription"], "200 OK");
        assert_eq!(alb["headers"]["content-type"], "application/json");
        assert_eq!(
            alb["multiValueHeaders"]["content-type"],
            json!(["application/json"])
        );
        assert_eq!(alb["body"], "{}");
        assert_eq!(alb["isBase64Encoded"], false);
    }
}
