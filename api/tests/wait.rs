//! `Prefer: wait=N` (docs/architecture.md §8.4): a request that meets an in-flight
//! execution of its key waits for that execution's outcome and answers it as a replay,
//! instead of `409 ActionDo.InProgress`; at the end of the wait, the usual 409. In-process,
//! on the embedded store, with the `gated` test action, whose handler finishes only when
//! the test lets it: the handler runs once whatever the number of waiting requests.

#[allow(dead_code)]
mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use actiondo::store::sqlite::SqliteStore;
use actiondo::store::{
    Claim, ClaimOutcome, Commit, CommitOutcome, Expect, IdempotencyRecord, RecordStatus,
};
use actiondo::{
    AuditPage, AuditQuery, AuditRecord, Catalog, Entity, EntityKey, Executor, Store, StoreError,
};
use actiondo_api::routes::{MAX_WAIT_SECS, PREFERENCE_APPLIED_HEADER};
use actiondo_api::{Api, Auth, InProcess};
use async_trait::async_trait;
use axum::body::Body;
use common::{Gated, Reply, post, post_keyed};
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::json;
use tokio::sync::Notify;
use tower::ServiceExt as _;

/// A store that says when an idempotency record is read: the routes read records only to
/// wait (`GET /executions` aside, which these tests do not call), so a read means that a
/// request is waiting.
#[derive(Debug)]
struct Watched {
    inner: Arc<dyn Store>,
    record_reads: Arc<Notify>,
}

#[async_trait]
impl Store for Watched {
    async fn claim(&self, claim: &Claim) -> Result<ClaimOutcome, StoreError> {
        self.inner.claim(claim).await
    }

    async fn commit(&self, commit: &Commit) -> Result<CommitOutcome, StoreError> {
        self.inner.commit(commit).await
    }

    async fn put_audit(&self, record: &AuditRecord) -> Result<(), StoreError> {
        self.inner.put_audit(record).await
    }

    async fn get_record(&self, id: &str) -> Result<Option<IdempotencyRecord>, StoreError> {
        let record = self.inner.get_record(id).await;
        self.record_reads.notify_one();
        record
    }

    async fn get_entity(&self, key: &EntityKey) -> Result<Option<Entity>, StoreError> {
        self.inner.get_entity(key).await
    }

    async fn query_audit(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        self.inner.query_audit(query).await
    }

    async fn put_entity(
        &self,
        key: &EntityKey,
        doc: &serde_json::Value,
        expect: Expect,
    ) -> Result<bool, StoreError> {
        self.inner.put_entity(key, doc, expect).await
    }
}

/// The routes over the catalog plus `gated`, without auth; the executor runs on the
/// embedded store and the routes read it through [`Watched`].
struct Waiting {
    router: axum::Router,
    store: Arc<dyn Store>,
    gated: Gated,
    record_reads: Arc<Notify>,
}

impl Waiting {
    fn new() -> Self {
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::in_memory().expect("an in-memory SQLite store opens"));
        let gated = Gated::default();
        let mut catalog = actiondo_catalog::catalog();
        for action in Catalog::new().with(gated.clone()).iter() {
            catalog.insert(Arc::clone(action));
        }
        let record_reads = Arc::new(Notify::new());
        let watched: Arc<dyn Store> = Arc::new(Watched {
            inner: Arc::clone(&store),
            record_reads: Arc::clone(&record_reads),
        });
        let executor = Executor::from_arc(Arc::clone(&store));
        let router = Api::new(
            catalog.clone(),
            Arc::new(InProcess::new(catalog, executor)),
            watched,
            Auth::Disabled,
        )
        .into_router();
        Self {
            router,
            store,
            gated,
            record_reads,
        }
    }

    /// Send a request on a task of its own (it may wait).
    fn spawn(&self, request: Request<Body>) -> tokio::task::JoinHandle<Reply> {
        let router = self.router.clone();
        tokio::spawn(async move {
            let response = router
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
        })
    }

    /// Send `request` and wait for its answer.
    async fn send(&self, request: Request<Body>) -> Reply {
        self.spawn(request).await.expect("the request task ends")
    }

    /// Start `POST /actions/gated` with `key` and return once its handler runs.
    async fn start_gated(&self, label: &str, key: &str) -> tokio::task::JoinHandle<Reply> {
        let started = self.gated.started.notified();
        let first = self.spawn(post_keyed(
            "/actions/gated",
            &json!({"label": label}).to_string(),
            key,
        ));
        started.await;
        first
    }

    /// Return once a request re-reads an in-flight record, i.e. waits (a guard of 60 s
    /// turns a request that never waits into a failure instead of a hang).
    async fn waiting(&self) {
        tokio::time::timeout(
            std::time::Duration::from_secs(60),
            self.record_reads.notified(),
        )
        .await
        .expect("a request waits for the execution in flight");
    }

    fn calls(&self) -> u32 {
        self.gated.calls.load(Ordering::SeqCst)
    }
}

fn prefer(mut request: Request<Body>, value: &'static str) -> Request<Body> {
    request
        .headers_mut()
        .insert("prefer", http::HeaderValue::from_static(value));
    request
}

fn join(handle: Result<Reply, tokio::task::JoinError>) -> Reply {
    handle.expect("the request task ends")
}

#[tokio::test]
async fn a_waiting_request_answers_the_in_flight_outcome_as_a_replay() {
    let w = Waiting::new();
    let first = w.start_gated("w", "w1").await;

    // Asks for an hour: granted the cap, and said so.
    let waiting = w.spawn(prefer(
        post_keyed("/actions/gated", r#"{"label": "w"}"#, "w1"),
        "wait=3600",
    ));
    // It met the execution in flight and is re-reading its record.
    w.waiting().await;
    w.gated.gate.add_permits(1);

    let first = join(first.await);
    let waited = join(waiting.await);
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert_eq!(first.json(), json!({"label": "w", "call": 1}));
    assert_eq!(first.header(PREFERENCE_APPLIED_HEADER), None);

    assert_eq!(waited.status, StatusCode::OK, "{}", waited.text());
    assert_eq!(waited.body, first.body, "the stored outcome, byte for byte");
    assert_eq!(waited.header("idempotent-replayed"), Some("true"));
    assert_eq!(waited.header("idempotency-key"), Some("w1"));
    let applied = format!("wait={MAX_WAIT_SECS}");
    assert_eq!(
        waited.header(PREFERENCE_APPLIED_HEADER),
        Some(applied.as_str())
    );
    assert_eq!(w.calls(), 1, "the handler ran once");
}

#[tokio::test]
async fn execute_waits_too_and_answers_result_and_error() {
    let w = Waiting::new();
    let call = json!({"name": "gated", "params": {"label": "x"}, "idempotencyKey": "x1"});
    let first = w.spawn(post("/execute", &call.to_string()));
    w.gated.started.notified().await;

    let waiting = w.spawn(prefer(post("/execute", &call.to_string()), "wait=10"));
    w.waiting().await;
    w.gated.gate.add_permits(1);

    let first = join(first.await);
    let waited = join(waiting.await);
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert_eq!(
        first.json(),
        json!({"result": {"label": "x", "call": 1}, "error": null})
    );
    assert_eq!(waited.status, StatusCode::OK, "{}", waited.text());
    assert_eq!(waited.json(), first.json());
    assert_eq!(waited.header("idempotent-replayed"), Some("true"));
    assert_eq!(waited.header(PREFERENCE_APPLIED_HEADER), Some("wait=10"));
    assert_eq!(w.calls(), 1, "the handler ran once");
}

#[tokio::test]
async fn a_wait_that_ends_first_answers_409_with_retry_after() {
    let w = Waiting::new();
    let _first = w.start_gated("s", "s1").await;

    // The gate never opens: the wait runs out.
    let busy = w
        .send(prefer(
            post_keyed("/actions/gated", r#"{"label": "s"}"#, "s1"),
            "wait=1",
        ))
        .await;
    let error = busy.error(409, "ActionDo.InProgress");
    assert_eq!(error["retryable"], true);
    assert!(
        busy.header("retry-after")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|s| s >= 1),
        "a Retry-After in seconds: {:?}",
        busy.headers
    );
    assert_eq!(busy.header(PREFERENCE_APPLIED_HEADER), Some("wait=1"));
    let record = w
        .store
        .get_record("gated#s1")
        .await
        .expect("the store reads")
        .expect("a record");
    assert_eq!(record.status, RecordStatus::InProgress);
    assert_eq!(w.calls(), 1, "waiting never runs the handler again");

    // Without the preference: 409 at once, and nothing said about waiting.
    let busy = w
        .send(post_keyed("/actions/gated", r#"{"label": "s"}"#, "s1"))
        .await;
    busy.error(409, "ActionDo.InProgress");
    assert_eq!(busy.header(PREFERENCE_APPLIED_HEADER), None);
    assert_eq!(w.calls(), 1);
}

#[tokio::test]
async fn another_payload_under_an_in_flight_key_is_refused_without_waiting() {
    let w = Waiting::new();
    let _first = w.start_gated("p", "p1").await;
    let mismatch = w
        .send(prefer(
            post_keyed("/actions/gated", r#"{"label": "other"}"#, "p1"),
            "wait=20",
        ))
        .await;
    mismatch.error(422, "ActionDo.PayloadMismatch");
    assert_eq!(mismatch.header(PREFERENCE_APPLIED_HEADER), None);
    assert_eq!(w.calls(), 1);
}

#[tokio::test]
async fn thirty_two_waiting_duplicates_get_one_execution_and_one_outcome() {
    let w = Waiting::new();
    let first = w.start_gated("many", "m1").await;
    let waiting: Vec<_> = (0..32)
        .map(|_| {
            w.spawn(prefer(
                post_keyed("/actions/gated", r#"{"label": "many"}"#, "m1"),
                "wait=20",
            ))
        })
        .collect();
    // At least one of them is waiting; the others are waiting or still on their way in
    // (those find the outcome stored, or wait for it, either way a replay).
    w.waiting().await;
    w.gated.gate.add_permits(1);

    let first = join(first.await);
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    for reply in waiting {
        let reply = join(reply.await);
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(reply.body, first.body);
        assert_eq!(reply.header("idempotent-replayed"), Some("true"));
    }
    assert_eq!(w.calls(), 1, "one execution for 33 requests");
}

#[tokio::test]
async fn a_waiting_request_takes_over_an_abandoned_execution_when_its_lease_ends() {
    let w = Waiting::new();
    // A worker claimed `gated#t1` and died: the record stays IN_PROGRESS until its lease
    // (here 300 ms) ends.
    let now = chrono::Utc::now().timestamp_millis();
    let claimed = w
        .store
        .claim(&Claim {
            id: "gated#t1".to_owned(),
            payload_hash: actiondo::hash::payload_hash(&json!({"label": "t"})),
            lease_owner: "a-worker-that-died".to_owned(),
            lease_expires_at_ms: now + 300,
            expires_at_s: now / 1000 + 3_600,
            now_ms: now,
        })
        .await
        .expect("the store claims");
    assert!(matches!(claimed, ClaimOutcome::Claimed { attempt: 1, .. }));
    w.gated.gate.add_permits(1);

    let reply = w
        .send(prefer(
            post_keyed("/actions/gated", r#"{"label": "t"}"#, "t1"),
            "wait=20",
        ))
        .await;
    // The wait saw the lease end and ran the execution, as a retry after Retry-After would.
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json(), json!({"label": "t", "call": 1}));
    assert_eq!(reply.header("idempotent-replayed"), None);
    assert_eq!(reply.header(PREFERENCE_APPLIED_HEADER), Some("wait=20"));
    assert_eq!(w.calls(), 1, "the handler ran once");
    let record = w
        .store
        .get_record("gated#t1")
        .await
        .expect("the store reads")
        .expect("a record");
    assert_eq!(record.status, RecordStatus::Completed);
    assert_eq!(record.attempt, 2, "the second attempt, which took over");
}
