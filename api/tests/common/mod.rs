//! What the API's tests share (and the router's, which include this file by its path):
//! the router core over the embedded store, requests sent with
//! `tower::ServiceExt::oneshot`, and small test actions for the behaviours the catalog's
//! actions do not have on demand (a handler that waits, a retryable failure).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use actiondo::store::IdempotencyRecord;
use actiondo::store::sqlite::SqliteStore;
use actiondo::{
    Action, ActionContext, ActionError, AuditFilter, AuditQuery, AuditRecord, Catalog, Executor,
    Store,
};
use actiondo_api::{Api, Auth, InProcess, KeyStore};
use axum::body::Body;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt as _;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{Notify, Semaphore};
use tower::ServiceExt as _;

/// The router core over one in-memory SQLite store.
pub(crate) struct Setup {
    /// The core (for the SQS intake).
    pub(crate) api: Api,
    /// The routes.
    pub(crate) router: axum::Router,
    /// The store the actions run on and the read routes read.
    pub(crate) store: Arc<dyn Store>,
    /// The API keys (in the same store).
    pub(crate) keys: KeyStore,
}

impl Setup {
    /// The full catalog plus the test actions of `extra`, without auth.
    pub(crate) fn open(extra: Catalog) -> Self {
        Self::build(extra, false)
    }

    /// The same with `Auth::ApiKeys` over the store.
    pub(crate) fn with_keys(extra: Catalog) -> Self {
        Self::build(extra, true)
    }

    fn build(extra: Catalog, auth: bool) -> Self {
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::in_memory().expect("an in-memory SQLite store opens"));
        Self::over(store, extra, auth, |keys| keys)
    }

    /// The full catalog plus `extra` over `store`, with API keys (`keys` makes the key
    /// store, e.g. with a test clock) when `auth`.
    pub(crate) fn over(
        store: Arc<dyn Store>,
        extra: Catalog,
        auth: bool,
        keys: impl FnOnce(KeyStore) -> KeyStore,
    ) -> Self {
        let mut catalog = actiondo_catalog::catalog();
        for action in extra.iter() {
            catalog.insert(Arc::clone(action));
        }
        let keys = keys(KeyStore::new(Arc::clone(&store)));
        let auth = if auth {
            Auth::ApiKeys(keys.clone())
        } else {
            Auth::Disabled
        };
        let executor = Executor::from_arc(Arc::clone(&store));
        let api = Api::new(
            catalog.clone(),
            Arc::new(InProcess::new(catalog.clone(), executor)),
            Arc::clone(&store),
            auth,
        );
        let router = api.clone().into_router();
        Self {
            api,
            router,
            store,
            keys,
        }
    }

    /// Send one request through the routes.
    pub(crate) async fn send(&self, request: Request<Body>) -> Reply {
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router's error type is Infallible");
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .expect("a response body is readable")
            .to_bytes()
            .to_vec();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// The idempotency record `{name}#{key}`.
    pub(crate) async fn record(&self, name: &str, key: &str) -> Option<IdempotencyRecord> {
        self.store
            .get_record(&format!("{name}#{key}"))
            .await
            .expect("the store reads")
    }

    /// The audit records of `{name}#{key}`, newest first.
    pub(crate) async fn audit_of(&self, name: &str, key: &str) -> Vec<AuditRecord> {
        self.store
            .query_audit(&AuditQuery::new(AuditFilter::Execution(format!(
                "{name}#{key}"
            ))))
            .await
            .expect("the store reads")
            .records
    }

    /// Every audit record (the first 100), newest first.
    pub(crate) async fn all_audit(&self) -> Vec<AuditRecord> {
        self.store
            .query_audit(&AuditQuery {
                limit: 100,
                ..AuditQuery::new(AuditFilter::All)
            })
            .await
            .expect("the store reads")
            .records
    }

    /// GET `location` until the execution there is no longer IN_PROGRESS (at most 2,000
    /// polls); its last view.
    pub(crate) async fn poll_until_done(&self, location: &str) -> Value {
        for _ in 0..2_000 {
            let reply = self.send(get(location)).await;
            if reply.status == StatusCode::OK {
                let view = reply.json();
                if view["execution"]["status"] != "IN_PROGRESS" {
                    return view;
                }
            } else {
                assert_eq!(
                    reply.status,
                    StatusCode::NOT_FOUND,
                    "only 404 (not yet claimed) is expected while polling: {}",
                    reply.text()
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        panic!("{location} never finished");
    }
}

/// A response, its body read.
#[derive(Debug)]
pub(crate) struct Reply {
    /// The status.
    pub(crate) status: StatusCode,
    /// The headers.
    pub(crate) headers: HeaderMap,
    /// The body's bytes.
    pub(crate) body: Vec<u8>,
}

impl Reply {
    /// The body as JSON.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {}", self.text()))
    }

    /// The body as text.
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header as text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `error` object of an error body, after checking the shape of docs/architecture.md §6 and
    /// that `status` is the answer.
    pub(crate) fn error(&self, status: u16, error_type: &str) -> Value {
        assert_eq!(self.status.as_u16(), status, "{}", self.text());
        assert_eq!(self.header("content-type"), Some("application/json"));
        let body = self.json();
        let error = &body["error"];
        assert_eq!(error["type"], error_type, "{body}");
        assert!(error["message"].is_string(), "{body}");
        assert!(error["retryable"].is_boolean(), "{body}");
        error.clone()
    }
}

/// `POST uri` with a JSON body.
pub(crate) fn post(uri: &str, body: &str) -> Request<Body> {
    request("POST", uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .expect("a valid request")
}

/// `POST uri` with a JSON body and an `Idempotency-Key`.
pub(crate) fn post_keyed(uri: &str, body: &str, key: &str) -> Request<Body> {
    request("POST", uri)
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(Body::from(body.to_owned()))
        .expect("a valid request")
}

/// `GET uri`.
pub(crate) fn get(uri: &str) -> Request<Body> {
    request("GET", uri)
        .body(Body::empty())
        .expect("a valid request")
}

/// A request builder with its method and URI.
pub(crate) fn request(method: &str, uri: &str) -> http::request::Builder {
    Request::builder().method(method).uri(uri)
}

/// `request` with `Authorization: Bearer <key>`.
pub(crate) fn bearer(mut request: Request<Body>, key: &str) -> Request<Body> {
    request.headers_mut().insert(
        http::header::AUTHORIZATION,
        format!("Bearer {key}")
            .parse()
            .expect("a key is a valid header value"),
    );
    request
}

/// The input of the test actions.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LabelInput {
    /// Anything.
    pub(crate) label: String,
}

/// The output of the test actions.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct LabelOutput {
    /// The input's label.
    pub(crate) label: String,
    /// The handler call that produced it (1 for the first).
    pub(crate) call: u32,
}

/// `gated`: says it started, then waits until the test lets one execution through.
#[derive(Debug, Clone)]
pub(crate) struct Gated {
    /// Notified when a handler starts.
    pub(crate) started: Arc<Notify>,
    /// One permit lets one handler finish.
    pub(crate) gate: Arc<Semaphore>,
    /// Handler calls so far.
    pub(crate) calls: Arc<AtomicU32>,
}

impl Default for Gated {
    fn default() -> Self {
        Self {
            started: Arc::default(),
            gate: Arc::new(Semaphore::new(0)),
            calls: Arc::default(),
        }
    }
}

impl Action for Gated {
    type Input = LabelInput;
    type Output = LabelOutput;
    const NAME: &'static str = "gated";
    const DESCRIPTION: &'static str = "Test action: waits until the test opens its gate.";

    async fn execute(
        &self,
        input: LabelInput,
        _cx: &mut ActionContext,
    ) -> Result<LabelOutput, ActionError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        self.started.notify_one();
        self.gate
            .acquire()
            .await
            .map_err(|e| ActionError::internal(format!("the gate closed: {e}")))?
            .forget();
        Ok(LabelOutput {
            label: input.label,
            call,
        })
    }
}

/// `flaky`: fails with `ActionDo.Transient` while `failures_left` is above zero, then
/// succeeds.
#[derive(Debug, Clone, Default)]
pub(crate) struct Flaky {
    /// Failures still to answer.
    pub(crate) failures_left: Arc<AtomicU32>,
    /// Handler calls so far.
    pub(crate) calls: Arc<AtomicU32>,
}

impl Flaky {
    /// Failing `n` times first.
    pub(crate) fn failing(n: u32) -> Self {
        let flaky = Self::default();
        flaky.failures_left.store(n, Ordering::SeqCst);
        flaky
    }
}

impl Action for Flaky {
    type Input = LabelInput;
    type Output = LabelOutput;
    const NAME: &'static str = "flaky";
    const DESCRIPTION: &'static str = "Test action: fails with a retryable error a few times.";

    async fn execute(
        &self,
        input: LabelInput,
        _cx: &mut ActionContext,
    ) -> Result<LabelOutput, ActionError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let failing = self
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(ActionError::transient(format!(
                "the dependency of {} is down",
                input.label
            ))
            .with_retry_after_ms(2_000));
        }
        Ok(LabelOutput {
            label: input.label,
            call,
        })
    }
}
