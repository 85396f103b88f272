//! A fault-injecting proxy for the DynamoDB JSON protocol, to test the execution protocol
//! of docs/architecture.md §4 against the failures DynamoDB really has: an answer lost after the write
//! applied, a slow answer, throttling, a server error, a transaction conflict.
//!
//! [`FaultProxy`] listens on `127.0.0.1` on a free port and forwards every request to an
//! upstream endpoint (DynamoDB Local). The operation of a request is the suffix of its
//! `X-Amz-Target` header (`DynamoDB_20120810.UpdateItem` → `UpdateItem`); each operation's
//! requests are numbered from 1 in the order they arrive. A [`Fault`] is chosen for a
//! request by
//!
//! - the rules added with [`FaultProxy::fail`] (an operation and a range of its call
//!   numbers; the first matching rule wins), else
//! - [`FaultProxy::fail_randomly`]: at a rate, from a list of faults, with a seeded
//!   generator (the same seed gives the same sequence of draws; which request gets which
//!   draw depends on the order in which requests arrive).
//!
//! Every request is recorded ([`FaultProxy::requests`]): its operation, its call number,
//! the fault applied and when it arrived, so that tests can assert how many round trips an
//! execution took and which of them failed.
//!
//! Bodies are buffered whole (DynamoDB requests are at most a few MB). Dropping the proxy
//! stops the listener and every open connection.
//!
//! # Example
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use actiondo_e2e::faults::{Fault, FaultProxy};
//!
//! let proxy = FaultProxy::start("http://127.0.0.1:8000").await?;
//! // The first claim applies, but its answer never reaches the client.
//! proxy.fail("UpdateItem", 1..=1, Fault::LoseResponse);
//! // ... point a DynamoDB client at proxy.url(), run an execution ...
//! assert_eq!(proxy.faults("UpdateItem"), 1);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::convert::Infallible;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http::header::CONTENT_TYPE;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// The operation names of the DynamoDB requests the store sends.
pub mod op {
    /// The claim (docs/architecture.md §4, step 1).
    pub const UPDATE_ITEM: &str = "UpdateItem";
    /// The commit, the release (step 3) and the optimistic write.
    pub const TRANSACT_WRITE_ITEMS: &str = "TransactWriteItems";
    /// An audit record written on its own (a replay, a takeover, a rejection).
    pub const PUT_ITEM: &str = "PutItem";
    /// A record or entity read.
    pub const GET_ITEM: &str = "GetItem";
    /// An audit query.
    pub const QUERY: &str = "Query";
}

/// The content type of the DynamoDB JSON protocol.
pub const CONTENT_TYPE_JSON_1_0: &str = "application/x-amz-json-1.0";

/// The body of a throttled request (HTTP 400), as DynamoDB sends it.
pub const THROTTLING_BODY: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate of requests exceeds the allowed throughput."}"#;

/// The body of an internal server error (HTTP 500), as DynamoDB sends it.
pub const INTERNAL_SERVER_ERROR_BODY: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"Internal server error"}"#;

/// One failure the proxy can inject into a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Forward the request (so it **is** applied), then close the connection without an
    /// answer: the client sees an IO error and, not knowing, resends.
    LoseResponse,
    /// Wait this long, then forward the request and answer. Longer than the client's
    /// attempt timeout, the client gives up and resends while the first request is still
    /// on its way: it is applied late (the forwarding goes on without the client).
    Delay(Duration),
    /// Answer HTTP 400 `ThrottlingException` ([`THROTTLING_BODY`]) without forwarding.
    Throttle,
    /// Answer HTTP 500 `InternalServerError` ([`INTERNAL_SERVER_ERROR_BODY`]) without
    /// forwarding.
    InternalServerError,
    /// `TransactWriteItems` only: answer HTTP 400 `TransactionCanceledException` with one
    /// cancellation reason per `TransactItems` entry, the first `TransactionConflict` and
    /// the others `None`, without forwarding. Other operations are forwarded untouched.
    TransactionConflict,
}

impl Fault {
    /// Whether the fault can happen to a request of `operation`.
    pub fn applies_to(self, operation: &str) -> bool {
        self != Fault::TransactionConflict || operation == op::TRANSACT_WRITE_ITEMS
    }

    /// Whether the request reaches the upstream (and may be applied there).
    pub fn forwards(self) -> bool {
        matches!(self, Fault::LoseResponse | Fault::Delay(_))
    }

    /// The answer given in place of the upstream's, for a fault that does not forward;
    /// `request_body` is the request's JSON (to count the transaction's items).
    pub fn answer(self, request_body: &[u8]) -> Option<Response<Full<Bytes>>> {
        let (status, body) = match self {
            Fault::LoseResponse | Fault::Delay(_) => return None,
            Fault::Throttle => (StatusCode::BAD_REQUEST, THROTTLING_BODY.to_owned()),
            Fault::InternalServerError => (
                StatusCode::INTERNAL_SERVER_ERROR,
                INTERNAL_SERVER_ERROR_BODY.to_owned(),
            ),
            Fault::TransactionConflict => (
                StatusCode::BAD_REQUEST,
                transaction_conflict_body(request_body),
            ),
        };
        Some(json_response(status, body))
    }
}

/// A `TransactionCanceledException` whose first item met a transaction conflict.
fn transaction_conflict_body(request_body: &[u8]) -> String {
    let items = serde_json::from_slice::<serde_json::Value>(request_body)
        .ok()
        .and_then(|v| v["TransactItems"].as_array().map(Vec::len))
        .unwrap_or(1)
        .max(1);
    let reasons: Vec<serde_json::Value> = (0..items)
        .map(|i| {
            if i == 0 {
                serde_json::json!({"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"})
            } else {
                serde_json::json!({"Code": "None"})
            }
        })
        .collect();
    let codes: Vec<&str> = (0..items)
        .map(|i| {
            if i == 0 {
                "TransactionConflict"
            } else {
                "None"
            }
        })
        .collect();
    serde_json::json!({
        "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
        "Message": format!(
            "Transaction cancelled, please refer cancellation reasons for specific reasons [{}]",
            codes.join(", ")
        ),
        "CancellationReasons": reasons,
    })
    .to_string()
}

fn json_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(CONTENT_TYPE_JSON_1_0),
    );
    response
}

/// One request the proxy received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxiedRequest {
    /// The operation (`UpdateItem`, `TransactWriteItems`, …; `unknown` without an
    /// `X-Amz-Target` header).
    pub operation: String,
    /// Its number among the requests of its operation, from 1.
    pub call: u64,
    /// The fault injected, if any.
    pub fault: Option<Fault>,
    /// When it arrived.
    pub at: Instant,
}

/// A fault for the calls `calls` (numbered from 1) of `operation`.
#[derive(Debug, Clone)]
struct Rule {
    operation: String,
    calls: RangeInclusive<u64>,
    fault: Fault,
}

/// Faults drawn at random.
#[derive(Debug, Clone)]
struct Random {
    rng: SplitMix64,
    rate: f64,
    faults: Vec<Fault>,
}

/// What the proxy does and what it saw.
#[derive(Debug, Default)]
struct State {
    rules: Vec<Rule>,
    random: Option<Random>,
    calls: HashMap<String, u64>,
    log: Vec<ProxiedRequest>,
}

impl State {
    /// Number the request and choose its fault (rules first, then the random draw).
    fn admit(&mut self, operation: &str) -> Option<Fault> {
        let call = {
            let n = self.calls.entry(operation.to_owned()).or_insert(0);
            *n += 1;
            *n
        };
        let ruled = self
            .rules
            .iter()
            .find(|r| r.operation == operation && r.calls.contains(&call))
            .map(|r| r.fault)
            .filter(|f| f.applies_to(operation));
        let fault = ruled.or_else(|| {
            let random = self.random.as_mut()?;
            let candidates: Vec<Fault> = random
                .faults
                .iter()
                .copied()
                .filter(|f| f.applies_to(operation))
                .collect();
            // Both draws are made for every request, so the sequence does not depend on
            // which faults apply.
            let hit = random.rng.next_f64() < random.rate;
            let pick = random.rng.next_u64();
            let len = u64::try_from(candidates.len()).ok().filter(|l| *l > 0)?;
            let index = usize::try_from(pick % len).ok()?;
            hit.then(|| candidates.get(index).copied()).flatten()
        });
        self.log.push(ProxiedRequest {
            operation: operation.to_owned(),
            call,
            fault,
            at: Instant::now(),
        });
        fault
    }
}

/// The SplitMix64 generator: small, seeded, good enough to spread faults.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        // The top 53 bits, exactly representable.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

type Upstream = Client<HttpConnector, Full<Bytes>>;

/// A running fault-injecting proxy; see the module documentation. Dropping it stops the
/// listener and every open connection.
#[derive(Debug)]
pub struct FaultProxy {
    addr: std::net::SocketAddr,
    state: Arc<Mutex<State>>,
    server: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listen on a free port of `127.0.0.1` and forward to `upstream`, an `http://` URL
    /// (DynamoDB Local's). Runs on the current tokio runtime.
    pub async fn start(upstream: &str) -> std::io::Result<Self> {
        let upstream = upstream.trim_end_matches('/').to_owned();
        if !upstream.starts_with("http://") {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("the fault proxy forwards to http:// endpoints only, not {upstream}"),
            ));
        }
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::default()));
        let client: Upstream = Client::builder(TokioExecutor::new()).build_http();
        let shared = Arc::new(Shared {
            state: state.clone(),
            client,
            upstream,
        });
        let server = tokio::spawn(async move {
            // Owned by this task: aborting it drops the set, which aborts the connections.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = shared.clone();
                connections.spawn(async move {
                    // Notified when an answer must be lost: the connection is dropped, so
                    // the socket closes with nothing written.
                    let lose = Arc::new(Notify::new());
                    let service = {
                        let lose = lose.clone();
                        hyper::service::service_fn(move |request| {
                            handle(shared.clone(), lose.clone(), request)
                        })
                    };
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        _ = connection => {}
                        () = lose.notified() => {}
                    }
                });
                // Reap finished connections so the set does not grow.
                while connections.try_join_next().is_some() {}
            }
        });
        Ok(Self {
            addr,
            state,
            server,
        })
    }

    /// `http://127.0.0.1:PORT`, the endpoint URL for a DynamoDB client.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Inject `fault` into the calls `calls` (numbered from 1, counted since the proxy
    /// started) of `operation`. Rules added first win; a rule whose fault does not apply to
    /// the operation ([`Fault::applies_to`]) is ignored.
    pub fn fail(&self, operation: &str, calls: RangeInclusive<u64>, fault: Fault) {
        self.state().rules.push(Rule {
            operation: operation.to_owned(),
            calls,
            fault,
        });
    }

    /// Also inject, into each request no rule matches, with probability `rate`, one of
    /// `faults` (those that apply to its operation, equally likely), drawn from a
    /// generator seeded with `seed`.
    pub fn fail_randomly(&self, seed: u64, rate: f64, faults: &[Fault]) {
        self.state().random = Some(Random {
            rng: SplitMix64(seed),
            rate,
            faults: faults.to_vec(),
        });
    }

    /// Inject nothing from now on (the rules and the random faults go; the record of the
    /// requests stays).
    pub fn stop_faults(&self) {
        let mut state = self.state();
        state.rules.clear();
        state.random = None;
    }

    /// Every request received so far, in order of arrival.
    pub fn requests(&self) -> Vec<ProxiedRequest> {
        self.state().log.clone()
    }

    /// How many requests of `operation` arrived.
    pub fn count(&self, operation: &str) -> usize {
        self.state()
            .log
            .iter()
            .filter(|r| r.operation == operation)
            .count()
    }

    /// How many requests of `operation` were given a fault.
    pub fn faults(&self, operation: &str) -> usize {
        self.state()
            .log
            .iter()
            .filter(|r| r.operation == operation && r.fault.is_some())
            .count()
    }

    /// How many requests of every operation, and how many of each fault, as a line for
    /// test output.
    pub fn summary(&self) -> String {
        let state = self.state();
        let mut operations: Vec<(String, usize, usize)> = Vec::new();
        for r in &state.log {
            match operations.iter_mut().find(|(o, _, _)| *o == r.operation) {
                Some((_, n, f)) => {
                    *n += 1;
                    *f += usize::from(r.fault.is_some());
                }
                None => operations.push((r.operation.clone(), 1, usize::from(r.fault.is_some()))),
            }
        }
        operations.sort();
        let mut faults: Vec<(String, usize)> = Vec::new();
        for fault in state.log.iter().filter_map(|r| r.fault) {
            let name = match fault {
                Fault::Delay(_) => "Delay".to_owned(),
                other => format!("{other:?}"),
            };
            match faults.iter_mut().find(|(n, _)| *n == name) {
                Some((_, c)) => *c += 1,
                None => faults.push((name, 1)),
            }
        }
        faults.sort();
        let operations: Vec<String> = operations
            .iter()
            .map(|(o, n, f)| format!("{o} {n} ({f} faulted)"))
            .collect();
        let faults: Vec<String> = faults.iter().map(|(n, c)| format!("{n} {c}")).collect();
        format!(
            "requests: {}; faults: {}",
            operations.join(", "),
            if faults.is_empty() {
                "none".to_owned()
            } else {
                faults.join(", ")
            }
        )
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// What every connection's service needs.
#[derive(Debug)]
struct Shared {
    state: Arc<Mutex<State>>,
    client: Upstream,
    upstream: String,
}

/// The operation of a DynamoDB request: the suffix of its `X-Amz-Target` header.
pub fn operation_of(headers: &http::HeaderMap) -> String {
    headers
        .get("x-amz-target")
        .and_then(|t| t.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or("unknown")
        .to_owned()
}

async fn handle(
    shared: Arc<Shared>,
    lose: Arc<Notify>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return Ok(bad_gateway(format!(
                "fault proxy: reading the request body: {e}"
            )));
        }
    };
    let operation = operation_of(&parts.headers);
    let fault = shared
        .state
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .admit(&operation);
    if let Some(answer) = fault.and_then(|f| f.answer(&body)) {
        return Ok(answer);
    }
    let delay = match fault {
        Some(Fault::Delay(d)) => d,
        _ => Duration::ZERO,
    };
    // The forwarding is a task of its own, so that a request is applied even when the
    // client has given up waiting (a delayed request lands late, as in DynamoDB).
    let forwarding = {
        let shared = shared.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            relay(&shared, parts, body).await
        })
    };
    let response = match forwarding.await {
        Ok(Ok(response)) => response,
        Ok(Err(message)) => bad_gateway(message),
        Err(e) => bad_gateway(format!("fault proxy: the forwarding task failed: {e}")),
    };
    if fault == Some(Fault::LoseResponse) {
        // Applied upstream; now the answer goes nowhere: the connection is dropped.
        lose.notify_one();
        std::future::pending::<()>().await;
    }
    Ok(response)
}

fn bad_gateway(message: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(message)));
    *response.status_mut() = StatusCode::BAD_GATEWAY;
    response
}

async fn relay(
    shared: &Shared,
    mut parts: http::request::Parts,
    body: Bytes,
) -> Result<Response<Full<Bytes>>, String> {
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    parts.uri = format!("{}{path_and_query}", shared.upstream)
        .parse()
        .map_err(|e| format!("fault proxy: bad upstream URI: {e}"))?;
    // The Host header stays the client's: it is part of what the client signed.
    let answer = shared
        .client
        .request(Request::from_parts(parts, Full::new(body)))
        .await
        .map_err(|e| {
            format!(
                "fault proxy: the upstream {} did not answer: {e}",
                shared.upstream
            )
        })?;
    let (parts, body) = answer.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("fault proxy: reading the upstream body: {e}"))?
        .to_bytes();
    Ok(Response::from_parts(parts, Full::new(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transaction_conflict_names_every_item() {
        let request = br#"{"TransactItems": [{"Update": {}}, {"Put": {}}, {"Put": {}}]}"#;
        let answer = Fault::TransactionConflict
            .answer(request)
            .expect("answered without forwarding");
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
        let body: serde_json::Value =
            serde_json::from_str(&transaction_conflict_body(request)).expect("JSON");
        assert_eq!(
            body["__type"],
            "com.amazonaws.dynamodb.v20120810#TransactionCanceledException"
        );
        assert_eq!(
            body["CancellationReasons"],
            serde_json::json!([
                {"Code": "TransactionConflict", "Message": "Transaction is ongoing for the item"},
                {"Code": "None"},
                {"Code": "None"}
            ])
        );
    }

    #[test]
    fn forwarding_faults_have_no_answer_of_their_own() {
        assert!(Fault::LoseResponse.answer(b"{}").is_none());
        assert!(
            Fault::Delay(Duration::from_millis(1))
                .answer(b"{}")
                .is_none()
        );
        let throttled = Fault::Throttle.answer(b"{}").expect("answered");
        assert_eq!(throttled.status(), StatusCode::BAD_REQUEST);
        let failed = Fault::InternalServerError.answer(b"{}").expect("answered");
        assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn rules_pick_calls_of_one_operation() {
        let mut state = State::default();
        state.rules.push(Rule {
            operation: op::TRANSACT_WRITE_ITEMS.into(),
            calls: 2..=3,
            fault: Fault::Throttle,
        });
        // A transaction conflict never hits another operation.
        state.rules.push(Rule {
            operation: op::UPDATE_ITEM.into(),
            calls: 1..=1,
            fault: Fault::TransactionConflict,
        });
        let faults: Vec<Option<Fault>> = [
            op::UPDATE_ITEM,
            op::TRANSACT_WRITE_ITEMS,
            op::TRANSACT_WRITE_ITEMS,
            op::TRANSACT_WRITE_ITEMS,
            op::TRANSACT_WRITE_ITEMS,
        ]
        .iter()
        .map(|o| state.admit(o))
        .collect();
        assert_eq!(
            faults,
            [
                None,
                None,
                Some(Fault::Throttle),
                Some(Fault::Throttle),
                None
            ]
        );
        assert_eq!(
            state.log.iter().map(|r| r.call).collect::<Vec<_>>(),
            [1, 1, 2, 3, 4]
        );
    }

    #[test]
    fn random_faults_follow_the_seed_and_the_rate() {
        let draw = |seed| {
            let mut state = State {
                random: Some(Random {
                    rng: SplitMix64(seed),
                    rate: 0.1,
                    faults: vec![Fault::Throttle, Fault::TransactionConflict],
                }),
                ..State::default()
            };
            (0..10_000)
                .map(|i| {
                    state.admit(if i % 2 == 0 {
                        "GetItem"
                    } else {
                        "TransactWriteItems"
                    })
                })
                .collect::<Vec<_>>()
        };
        let first = draw(7);
        assert_eq!(first, draw(7));
        assert_ne!(first, draw(8));
        let hits = first.iter().filter(|f| f.is_some()).count();
        assert!(
            (800..1200).contains(&hits),
            "{hits} faults in 10000 at 10 %"
        );
        // A GetItem (even index) never gets a transaction conflict.
        assert!(
            first
                .iter()
                .step_by(2)
                .all(|f| *f != Some(Fault::TransactionConflict))
        );
    }

    #[test]
    fn the_operation_is_the_target_suffix() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(operation_of(&headers), "unknown");
        headers.insert(
            "x-amz-target",
            HeaderValue::from_static("DynamoDB_20120810.TransactWriteItems"),
        );
        assert_eq!(operation_of(&headers), op::TRANSACT_WRITE_ITEMS);
    }
}
