//! The API's own store failures (issue 11): a store that fails while a key is being
//! verified, or under a read route, answers 5xx with a generic message that names the
//! request's id, never the store's or AWS's text; that text is in the log, in the span of
//! the same request id.

#[allow(dead_code)]
mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use actiondo::store::faulty::{AWS_FAILURE_TEXT, Fault, FaultyStore};
use actiondo::store::sqlite::SqliteStore;
use actiondo::{Catalog, Store};
use common::{Setup, bearer, get, post_keyed};

/// What the API logged, shared with the subscriber.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Log {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Words of the injected failure that no client may read.
const INTERNALS: [&str; 6] = [
    "arn:aws",
    "123456789012",
    "actiondo-entities",
    "dispatch failure",
    "DynamoDB",
    "RequestId",
];

#[tokio::test(flavor = "current_thread")]
async fn store_failures_answer_a_request_id_and_log_the_cause() {
    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let faulty = Arc::new(FaultyStore::new(
        SqliteStore::in_memory().expect("an in-memory SQLite store opens"),
    ));
    let store: Arc<dyn Store> = faulty.clone();
    // No cache: every request reads its key, as the first request of a process does.
    let s = Setup::over(store, Catalog::new(), true, |keys| {
        keys.with_cache_ttl(std::time::Duration::ZERO)
    });
    let key = s
        .keys
        .create(vec!["*".to_owned()], None)
        .await
        .expect("a key is created")
        .key;
    let ada = r#"{"email": "ada@example.com", "name": "Ada"}"#;
    let ran = s
        .send(bearer(post_keyed("/actions/create-user", ada, "k"), &key))
        .await;
    assert_eq!(ran.status.as_u16(), 200, "{}", ran.text());

    let cases = [
        // The key's lookup fails: before the key is verified.
        (Fault::GetEntity, get("/actions")),
        (
            Fault::GetEntity,
            post_keyed("/actions/create-user", ada, "k2"),
        ),
        // The read routes.
        (Fault::GetRecord, get("/executions/create-user/k")),
        (Fault::QueryAudit, get("/audit?type=create-user")),
        (Fault::QueryAudit, get("/executions/create-user/k")),
    ];
    for (fault, request) in cases {
        let what = format!("{fault:?} on {} {}", request.method(), request.uri());
        faulty.arm(fault);
        let reply = s.send(bearer(request, &key)).await;
        let error = reply.error(503, "ActionDo.Transient");
        let id = reply
            .header("x-request-id")
            .expect("the request id header")
            .to_owned();
        assert_eq!(error["details"]["requestId"], id.as_str(), "{what}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(&id), "{what}: {message}");
        assert!(message.contains("the store is unavailable"), "{what}");
        let body = reply.text();
        for word in INTERNALS {
            assert!(!body.contains(word), "{what} shows {word:?}: {body}");
        }
        // The cause is in the log, in the span of that request.
        let logged = log.text();
        let line = logged
            .lines()
            .find(|l| l.contains(&format!("request_id={id}")) && l.contains("store failure"))
            .unwrap_or_else(|| panic!("{what}: no log line of request {id}: {logged}"));
        assert!(line.contains(AWS_FAILURE_TEXT), "{what}: {line}");
    }
    // Nothing ran for the refused POST.
    assert!(s.record("create-user", "k2").await.is_none());

    // A failure that is not the store's: a 4xx names no request id in its body.
    let unauthorized = s.send(get("/actions")).await;
    let error = unauthorized.error(401, "ActionDo.Unauthorized");
    assert!(error["details"]["requestId"].is_null(), "{error}");
    assert!(unauthorized.header("x-request-id").is_some());
}
