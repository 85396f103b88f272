//! Calling an HTTP provider from an action: one mapping of HTTP answers and transport
//! failures to [`ActionError`]s, so that every action classifies them alike.
//!
//! Feature `http-client` (crate `reqwest`). Build clients with [`client_builder`]:
//! reqwest's TLS is rustls on the *ring* provider, which [`client_builder`] installs for
//! the process (the workspace builds reqwest without a provider of its own, to keep aws-lc
//! out of the function binaries).
//!
//! | what happened | error |
//! |---|---|
//! | 2xx | none |
//! | timeout, connection failure, a cut-off answer | `ActionDo.Transient` ([`transport_error`]) |
//! | 5xx, 408 Request Timeout, 429 Too Many Requests | `ActionDo.Transient` ([`status_error`]) |
//! | any other status (4xx; 3xx when redirects are not followed) | `ActionDo.Rejected` ([`status_error`]) |
//!
//! A provider with a richer error format (Stripe's `{"error": {"type", "code", …}}`)
//! refines the non-retryable statuses itself and uses [`is_retryable_status`] for the
//! rest.
//!
//! Messages never contain the request URL, which often carries a secret (a webhook
//! token, an API key in the query).
//!
//! # Example
//!
//! ```
//! use actiondo::ErrorKind;
//! use actiondo::http_client::{StatusCode, status_error};
//!
//! assert!(status_error("webhook", "the notification", StatusCode::OK, b"").is_none());
//! let e = status_error("webhook", "the notification", StatusCode::BAD_GATEWAY, b"down");
//! assert_eq!(e.as_ref().map(|e| e.kind()), Some(ErrorKind::Transient));
//! assert_eq!(e.as_ref().map(|e| e.message()), Some("the webhook answered 502 Bad Gateway"));
//! let e = status_error("webhook", "the notification", StatusCode::NOT_FOUND, b"no such hook");
//! assert_eq!(e.as_ref().map(|e| e.kind()), Some(ErrorKind::Rejected));
//! assert_eq!(
//!     e.and_then(|e| e.details().cloned()),
//!     Some(serde_json::json!({"status": 404, "body": "no such hook"}))
//! );
//! ```

use std::fmt;
use std::time::Duration;

pub use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde_json::json;

use crate::error::ActionError;

/// How much of an answer's body error details keep, in characters.
pub const BODY_SNIPPET_CHARS: usize = 512;

/// Whether a status asks for a retry: a server error (5xx), 408 Request Timeout or 429
/// Too Many Requests.
pub fn is_retryable_status(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
}

/// The first [`BODY_SNIPPET_CHARS`] characters of a body, as text (invalid UTF-8
/// replaced), for error details.
pub fn body_snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .chars()
        .take(BODY_SNIPPET_CHARS)
        .collect()
}

/// The error of an answer with `status` from `service` (`"enrichment provider"`), or
/// `None` for a success (2xx).
///
/// - retryable ([`is_retryable_status`]): `ActionDo.Transient`
///   `"the <service> answered <status>"`;
/// - any other: `ActionDo.Rejected` `"the <service> refused <refused>: <status>"`
///   (`refused` says what, e.g. `"the lookup of acme.com"`).
///
/// Both carry `details = {"status": <code>, "body": <the body's start>}`.
pub fn status_error(
    service: &str,
    refused: impl fmt::Display,
    status: StatusCode,
    body: &[u8],
) -> Option<ActionError> {
    if status.is_success() {
        return None;
    }
    let details = json!({"status": status.as_u16(), "body": body_snippet(body)});
    let error = if is_retryable_status(status) {
        ActionError::transient(format!("the {service} answered {status}"))
    } else {
        ActionError::rejected(format!("the {service} refused {refused}: {status}"))
    };
    Some(error.with_details(details))
}

/// The error of a request to `service` that got no complete answer: always
/// `ActionDo.Transient` (the request may or may not have reached the service, so a retry
/// must be safe — send an idempotency key), with the message
/// `"the <service> did not answer within <timeout> ms: …"`, `"… could not be reached: …"`
/// or `"… failed: …"`. The URL is removed from the error before it is kept as the
/// source.
pub fn transport_error(service: &str, timeout: Duration, error: reqwest::Error) -> ActionError {
    let what = if error.is_timeout() {
        format!("did not answer within {} ms", timeout.as_millis())
    } else if error.is_connect() {
        "could not be reached".to_owned()
    } else {
        "failed".to_owned()
    };
    let error = error.without_url();
    ActionError::transient(format!("the {service} {what}: {error}")).with_source(error)
}

/// The `Retry-After` of an answer in milliseconds, when it is given in seconds.
pub fn retry_after_ms(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|s| s.saturating_mul(1000))
}

/// Parse a service URL from a setting: it must be an `http` or `https` URL. The error
/// names what is wrong without repeating the URL (which may hold a secret).
pub fn http_url(url: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("not an http(s) URL (scheme {:?})", url.scheme()));
    }
    Ok(url)
}

/// A client builder with an explicit time budget: `timeout` for a whole request and for
/// connecting, and `user_agent`. Add to it, then [`build`].
///
/// Its TLS is rustls on the *ring* crypto provider, installed as the process's default
/// provider the first time (a provider installed before is kept).
pub fn client_builder(user_agent: &str, timeout: Duration) -> reqwest::ClientBuilder {
    static PROVIDER: std::sync::Once = std::sync::Once::new();
    PROVIDER.call_once(|| {
        // An error means that a provider is installed already; it serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(user_agent)
}

/// Build a client; the error says that the HTTP client could not be built, and why.
pub fn build(builder: reqwest::ClientBuilder) -> Result<reqwest::Client, String> {
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// A client built on its first use ([`LazyClient::get`]) and shared by the clones of the
/// value that holds it (one connection pool).
///
/// An action builds its provider's client in `from_env`; a program that builds the action
/// only to describe it (the router's catalog of descriptions, docs/architecture.md §8.3)
/// then never builds a client, and its binary links none of reqwest's connection code. A
/// client that cannot be built fails the executions that need it, as a provider that
/// is not configured does ([`crate::config::not_configured`]).
#[derive(Clone)]
pub struct LazyClient {
    make: std::sync::Arc<dyn Fn() -> reqwest::ClientBuilder + Send + Sync>,
    client: std::sync::Arc<std::sync::OnceLock<Result<reqwest::Client, String>>>,
}

impl fmt::Debug for LazyClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyClient")
            .field("built", &self.client.get().is_some())
            .finish_non_exhaustive()
    }
}

impl LazyClient {
    /// A client that `make` describes (usually [`client_builder`] and some settings).
    pub fn new(make: impl Fn() -> reqwest::ClientBuilder + Send + Sync + 'static) -> Self {
        Self {
            make: std::sync::Arc::new(make),
            client: std::sync::Arc::default(),
        }
    }

    /// The client, built on the first call; `ActionDo.Internal` naming `action` as not
    /// configured (reason `not_configured`) when it cannot be built, on this call and
    /// every later one.
    pub fn get(&self, action: &str) -> Result<&reqwest::Client, ActionError> {
        self.client
            .get_or_init(|| build((self.make)()))
            .as_ref()
            .map_err(|problem| crate::config::not_configured(action, problem))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn a_lazy_client_is_built_once_on_first_use_and_shared_by_clones() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let built = std::sync::Arc::new(AtomicUsize::new(0));
        let counter = std::sync::Arc::clone(&built);
        let lazy = LazyClient::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            client_builder("test", Duration::from_secs(1))
        });
        let clone = lazy.clone();
        assert_eq!(built.load(Ordering::SeqCst), 0, "nothing built before use");
        assert!(format!("{lazy:?}").contains("built: false"));
        assert!(clone.get("a").is_ok());
        assert!(lazy.get("a").is_ok());
        assert_eq!(built.load(Ordering::SeqCst), 1, "one client for both");

        // A client that cannot be built: every use fails as an unconfigured action.
        let broken = LazyClient::new(|| reqwest::Client::builder().use_preconfigured_tls(42_u8));
        for _ in 0..2 {
            let e = broken
                .get("send-notification")
                .expect_err("cannot be built");
            assert_eq!(e.kind(), ErrorKind::Internal);
            assert!(
                e.message().starts_with(
                    "send-notification is not configured: cannot build the HTTP client: "
                ),
                "{e}"
            );
            assert_eq!(
                e.details().map(|d| d["reason"].clone()),
                Some(json!("not_configured"))
            );
        }
    }

    #[test]
    fn statuses_are_classified() {
        let kind = |code: u16| {
            StatusCode::from_u16(code)
                .ok()
                .and_then(|s| status_error("svc", "it", s, b""))
                .map(|e| e.kind())
        };
        assert_eq!(kind(200), None);
        assert_eq!(kind(204), None);
        for code in [500, 502, 503, 504, 408, 429] {
            assert_eq!(kind(code), Some(ErrorKind::Transient), "{code}");
        }
        for code in [301, 400, 401, 403, 404, 409, 422] {
            assert_eq!(kind(code), Some(ErrorKind::Rejected), "{code}");
        }
    }

    #[test]
    fn messages_and_details() {
        let e = status_error(
            "webhook",
            "the notification",
            StatusCode::BAD_REQUEST,
            b"nope",
        );
        assert_eq!(
            e.as_ref().map(|e| e.message()),
            Some("the webhook refused the notification: 400 Bad Request")
        );
        assert_eq!(
            e.and_then(|e| e.details().cloned()),
            Some(json!({"status": 400, "body": "nope"}))
        );
        let long = "é".repeat(BODY_SNIPPET_CHARS + 10);
        assert_eq!(
            body_snippet(long.as_bytes()).chars().count(),
            BODY_SNIPPET_CHARS
        );
        assert_eq!(body_snippet(b"\xffok"), "\u{fffd}ok");
    }

    #[test]
    fn retry_after_in_seconds() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after_ms(&headers), None);
        headers.insert(
            RETRY_AFTER,
            reqwest::header::HeaderValue::from_static(" 2 "),
        );
        assert_eq!(retry_after_ms(&headers), Some(2000));
        headers.insert(
            RETRY_AFTER,
            reqwest::header::HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after_ms(&headers), None);
    }

    #[test]
    fn urls_must_be_http_and_are_not_echoed() {
        assert!(http_url("https://api.example/x?key=1").is_ok());
        let err = http_url("ftp://user:pw@host/x").err().unwrap_or_default();
        assert!(err.contains("scheme") && !err.contains("pw"), "{err}");
        let err = http_url("not a url with secret").err().unwrap_or_default();
        assert!(
            err.starts_with("not a URL") && !err.contains("secret"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_service_is_transient_and_its_url_is_not_shown() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(9);
        let client = build(client_builder("test", Duration::from_millis(500)));
        let Ok(client) = client else {
            panic!("client: {client:?}");
        };
        let sent = client
            .get(format!("http://127.0.0.1:{port}/hook/SECRET"))
            .send()
            .await;
        let Err(error) = sent else {
            panic!("nothing listens on {port}");
        };
        let e = transport_error("webhook", Duration::from_millis(500), error);
        assert_eq!(e.kind(), ErrorKind::Transient);
        assert!(
            e.message()
                .starts_with("the webhook could not be reached: "),
            "{e}"
        );
        let mut chain = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            chain.push_str(&s.to_string());
            source = s.source();
        }
        assert!(!chain.contains("SECRET"), "{chain}");
    }
}
