//! `KeyStore`: create, list, revoke and authenticate API keys on the embedded store (and
//! on DynamoDB Local): expiry, the last use, the cache of verified keys.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use actiondo::store::dynamodb::{DynamoStore, Tables};
use actiondo::store::sqlite::SqliteStore;
use actiondo::testing::{ManualClock, SlowReads};
use actiondo::{AuditFilter, AuditQuery, AuditStatus, Clock as _, ErrorKind, Store};
use actiondo_api::KeyStore;
use actiondo_api::keys::{index_entity, key_entity, used_entity};

fn keys() -> (KeyStore, Arc<dyn Store>) {
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::in_memory().expect("an in-memory SQLite store opens"));
    (KeyStore::new(Arc::clone(&store)), store)
}

fn scope(patterns: &[&str]) -> Vec<String> {
    patterns.iter().map(|p| (*p).to_owned()).collect()
}

#[tokio::test]
async fn keys_are_created_listed_and_revoked() {
    let (keys, store) = keys();
    assert!(keys.list().await.expect("lists").is_empty());

    let mailer = keys
        .create(scope(&["send-*"]), Some("mailer".into()))
        .await
        .expect("created");
    let admin = keys.create(scope(&["*"]), None).await.expect("created");
    assert_ne!(mailer.key, admin.key);
    assert_ne!(mailer.info.id, admin.info.id);
    assert_eq!(mailer.info.scope, ["send-*"]);
    assert_eq!(mailer.info.description.as_deref(), Some("mailer"));
    assert!(mailer.info.revoked_at.is_none());

    let listed = keys.list().await.expect("lists");
    assert_eq!(
        listed,
        [mailer.info.clone(), admin.info.clone()],
        "oldest first"
    );

    let verified = keys.authenticate(&mailer.key).await.expect("a valid key");
    assert_eq!(verified.record.id, mailer.info.id);
    assert_eq!(verified.caller, format!("apikey:{}", mailer.info.id));
    assert!(verified.scope.allows("send-email") && !verified.scope.allows("create-user"));

    let revoked = keys.revoke(&mailer.info.id).await.expect("revoked");
    let revoked_at = revoked.revoked_at.clone().expect("a revocation time");
    let err = keys
        .authenticate(&mailer.key)
        .await
        .expect_err("a revoked key is refused");
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    keys.authenticate(&admin.key)
        .await
        .expect("the other key still works");

    let listed = keys.list().await.expect("lists");
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].revoked_at.as_deref(), Some(revoked_at.as_str()));
    assert!(listed[1].revoked_at.is_none());

    // Revoking again changes nothing.
    let entity = store
        .get_entity(&key_entity(&mailer.info.id))
        .await
        .expect("reads")
        .expect("the key's entity");
    let again = keys.revoke(&mailer.info.id).await.expect("a no-op");
    assert_eq!(again.revoked_at.as_deref(), Some(revoked_at.as_str()));
    let after = store
        .get_entity(&key_entity(&mailer.info.id))
        .await
        .expect("reads")
        .expect("the key's entity");
    assert_eq!(after, entity);
    assert_eq!(after.version, 2, "created, then revoked once");
}

#[tokio::test]
async fn revoking_an_unknown_key_is_rejected() {
    let (keys, store) = keys();
    let err = keys
        .revoke("0123456789abcdef")
        .await
        .expect_err("no such key");
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert_eq!(err.details().expect("details")["reason"], "unknown_key");
    assert!(
        store
            .get_entity(&key_entity("0123456789abcdef"))
            .await
            .expect("reads")
            .is_none()
    );
}

#[tokio::test]
async fn an_invalid_scope_is_refused_naming_each_bad_pattern() {
    let (keys, store) = keys();
    let err = keys
        .create(scope(&["Send_*", "create-user", "", "[a-z]*"]), None)
        .await
        .expect_err("invalid patterns");
    assert_eq!(err.kind(), ErrorKind::Validation);
    let paths = actiondo::testing::paths(&err);
    assert_eq!(paths, ["/scope/0", "/scope/2", "/scope/3"], "{err}");
    for pattern in ["Send_*", "[a-z]*"] {
        assert!(err.message().contains(pattern), "{err}");
    }

    let err = keys.create(Vec::new(), None).await.expect_err("no pattern");
    assert_eq!(actiondo::testing::paths(&err), ["/scope"]);
    let too_long = "x".repeat(201);
    let err = keys
        .create(scope(&["*"]), Some(too_long))
        .await
        .expect_err("a description over 200 characters");
    assert_eq!(actiondo::testing::paths(&err), ["/description"]);

    assert!(keys.list().await.expect("lists").is_empty());
    assert!(
        store
            .get_entity(&index_entity())
            .await
            .expect("reads")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creations_all_reach_the_index() {
    // Slow entity reads make the creations interleave between reading the index and
    // committing it.
    let store: Arc<dyn Store> = Arc::new(SlowReads::new(
        SqliteStore::in_memory().expect("an in-memory SQLite store opens"),
    ));
    let keys = KeyStore::new(Arc::clone(&store));
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let keys = keys.clone();
            tokio::spawn(async move { keys.create(scope(&["*"]), Some(format!("key {i}"))).await })
        })
        .collect();
    let mut created = Vec::new();
    for task in tasks {
        let new = task
            .await
            .expect("the task ran")
            .expect("every creation succeeds");
        created.push(new);
    }
    let listed: HashSet<String> = keys
        .list()
        .await
        .expect("lists")
        .into_iter()
        .map(|k| k.id)
        .collect();
    let ids: HashSet<String> = created.iter().map(|k| k.info.id.clone()).collect();
    assert_eq!(ids.len(), 10);
    assert_eq!(listed, ids);
    for new in &created {
        keys.authenticate(&new.key).await.expect("every key works");
    }
    let index = store
        .get_entity(&index_entity())
        .await
        .expect("reads")
        .expect("the index");
    assert_eq!(index.doc["ids"].as_array().map(Vec::len), Some(10));

    let audit = store
        .query_audit(&AuditQuery {
            limit: 100,
            ..AuditQuery::new(AuditFilter::Type("create-api-key".into()))
        })
        .await
        .expect("the audit reads")
        .records;
    let completed = audit
        .iter()
        .filter(|r| r.status == AuditStatus::Completed)
        .count();
    assert_eq!(completed, 10);
}

/// A key store over `store` telling time by `clock`, with the default cache.
fn keys_at(store: &Arc<dyn Store>, clock: &ManualClock) -> KeyStore {
    KeyStore::new(Arc::clone(store)).with_clock(clock.clone())
}

/// The lifecycle of an expiring key on `store`: valid until its expiry (cached or not),
/// then 401 saying it expired, listed as expired.
async fn expiry_on(store: Arc<dyn Store>) {
    let clock = ManualClock::new();
    let keys = keys_at(&store, &clock);
    let new = keys
        .create_expiring(scope(&["*"]), None, Some(Duration::from_secs(30 * 86_400)))
        .await
        .expect("created");
    let expires_at = new.info.expires_at.clone().expect("an expiry");
    let forever = keys.create(scope(&["*"]), None).await.expect("created");
    assert!(forever.info.expires_at.is_none());

    keys.authenticate(&new.key)
        .await
        .expect("valid for 30 days");
    clock.advance(Duration::from_secs(30 * 86_400 - 1));
    keys.authenticate(&new.key)
        .await
        .expect("valid one second before");
    clock.advance(Duration::from_secs(1));
    // Cached (verified a second ago) or read again (a fresh store), the same answer.
    for keys in [keys.clone(), keys_at(&store, &clock)] {
        let err = keys.authenticate(&new.key).await.expect_err("expired");
        assert_eq!(err.kind(), ErrorKind::Unauthorized);
        assert!(err.message().contains("expired"), "{err}");
        let details = err.details().expect("details");
        assert_eq!(details["reason"], "expired");
        assert_eq!(details["expiredAt"], expires_at.as_str());
    }
    keys.authenticate(&forever.key)
        .await
        .expect("a key without expiry lives on");
    // A wrong secret for the expired key's id is refused as any wrong key: the expiry is
    // told only to the key's holder.
    let wrong = format!("ado_{}_{}", new.info.id, "0".repeat(64));
    let err = keys.authenticate(&wrong).await.expect_err("wrong secret");
    assert!(!err.message().contains("expired"), "{err}");

    let listed = keys.list().await.expect("lists");
    assert_eq!(listed[0].expires_at.as_deref(), Some(expires_at.as_str()));
    assert!(listed[0].expired);
    assert!(!listed[1].expired && listed[1].expires_at.is_none());
}

/// The last use of a key on `store`: written once however many requests and processes
/// use it within a minute, again after a minute, and listed; with no audit record (checked
/// when the store `lists_all_audit`: DynamoDB needs a filter).
async fn last_use_on(store: Arc<dyn Store>, lists_all_audit: bool) {
    let clock = ManualClock::new();
    let server = keys_at(&store, &clock);
    let other = keys_at(&store, &clock);
    let new = server.create(scope(&["*"]), None).await.expect("created");
    let id = new.info.id.clone();
    // The store may hold other keys (DynamoDB Local runs both scenarios on one).
    let listed = || async {
        server
            .list()
            .await
            .expect("lists")
            .into_iter()
            .find(|k| k.id == id)
            .expect("listed")
    };
    assert!(listed().await.last_used_at.is_none());
    let used = || {
        let store = Arc::clone(&store);
        let id = id.clone();
        async move { store.get_entity(&used_entity(&id)).await.expect("reads") }
    };
    assert!(used().await.is_none());

    for _ in 0..5 {
        server.authenticate(&new.key).await.expect("valid");
    }
    let first = used().await.expect("recorded");
    assert_eq!(first.version, 1);
    // Another process, 30 s later: it reads the recent use and writes nothing.
    clock.advance(Duration::from_secs(30));
    other.authenticate(&new.key).await.expect("valid");
    server.authenticate(&new.key).await.expect("valid");
    assert_eq!(used().await.expect("recorded"), first);
    assert_eq!(
        listed().await.last_used_at.as_deref(),
        first.doc["lastUsedAt"].as_str()
    );

    // A minute after the first write: once more, by whichever process comes first.
    clock.advance(Duration::from_secs(31));
    other.authenticate(&new.key).await.expect("valid");
    server.authenticate(&new.key).await.expect("valid");
    let second = used().await.expect("recorded");
    assert_eq!(second.version, 2);
    assert_eq!(
        second.doc["lastUsedAt"],
        actiondo::audit::timestamp(clock.now_ms())
    );
    // Bookkeeping: no audit record of any use.
    if !lists_all_audit {
        return;
    }
    let audit = store
        .query_audit(&AuditQuery {
            limit: 100,
            ..AuditQuery::new(AuditFilter::All)
        })
        .await
        .expect("reads")
        .records;
    assert!(
        audit.iter().all(|r| r.action == "create-api-key"),
        "{audit:?}"
    );
}

#[tokio::test]
async fn an_expired_key_is_refused_saying_so() {
    expiry_on(keys().1).await;
}

#[tokio::test]
async fn the_last_use_is_written_at_most_once_a_minute() {
    last_use_on(keys().1, true).await;
}

/// The same two scenarios on DynamoDB Local, where the deployed router keeps its keys
/// (`./tests/run.sh --servers-only -- cargo test -p actiondo-api --test keys`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_and_last_use_on_dynamodb_local() {
    let Some(url) = actiondo::testing::server_url(
        "ACTIONDO_TEST_DYNAMODB_LOCAL_URL",
        "the API keys on DynamoDB Local",
    ) else {
        return;
    };
    let config = actiondo::testing::local_aws_config(&url);
    let prefix = format!("k{}", uuid::Uuid::new_v4().simple());
    let store = DynamoStore::with_tables(&config, Tables::with_prefix(&prefix));
    store.create_tables().await.expect("tables created");
    let store: Arc<dyn Store> = Arc::new(store);
    expiry_on(Arc::clone(&store)).await;
    last_use_on(store, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn processes_racing_write_the_last_use_once() {
    // Slow reads: every process reads "never used" before any writes.
    let store: Arc<dyn Store> = Arc::new(SlowReads::new(
        SqliteStore::in_memory().expect("an in-memory SQLite store opens"),
    ));
    let clock = ManualClock::new();
    let new = keys_at(&store, &clock)
        .create(scope(&["*"]), None)
        .await
        .expect("created");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let process = keys_at(&store, &clock);
            let key = new.key.clone();
            tokio::spawn(async move { process.authenticate(&key).await.map(|_| ()) })
        })
        .collect();
    for task in tasks {
        task.await.expect("ran").expect("valid");
    }
    let used = store
        .get_entity(&used_entity(&new.info.id))
        .await
        .expect("reads")
        .expect("recorded");
    assert_eq!(used.version, 1, "one write: the others' conditions failed");
}

#[tokio::test]
async fn a_cached_key_revoked_elsewhere_works_until_the_ttl_and_here_not_at_all() {
    let (_, store) = keys();
    let clock = ManualClock::new();
    let server = keys_at(&store, &clock).with_cache_ttl(Duration::from_secs(30));
    let cli = keys_at(&store, &clock);
    let a = server.create(scope(&["*"]), None).await.expect("created");
    let b = server.create(scope(&["*"]), None).await.expect("created");
    server
        .authenticate(&a.key)
        .await
        .expect("valid, now cached");
    server
        .authenticate(&b.key)
        .await
        .expect("valid, now cached");

    // Revoked by another process: the server trusts its cache until the TTL ends.
    cli.revoke(&a.info.id).await.expect("revoked");
    clock.advance(Duration::from_millis(29_999));
    server
        .authenticate(&a.key)
        .await
        .expect("still cached: the TTL bounds how long");
    clock.advance(Duration::from_millis(1));
    let err = server.authenticate(&a.key).await.expect_err("read again");
    assert_eq!(err.kind(), ErrorKind::Unauthorized);

    // Revoked through the server's own store (or a clone): refused at once.
    server.authenticate(&b.key).await.expect("valid");
    server.clone().revoke(&b.info.id).await.expect("revoked");
    let err = server.authenticate(&b.key).await.expect_err("at once");
    assert_eq!(err.kind(), ErrorKind::Unauthorized);

    // A TTL of zero reads the key on every request.
    let c = server.create(scope(&["*"]), None).await.expect("created");
    let uncached = keys_at(&store, &clock).with_cache_ttl(Duration::ZERO);
    uncached.authenticate(&c.key).await.expect("valid");
    cli.revoke(&c.info.id).await.expect("revoked");
    uncached
        .authenticate(&c.key)
        .await
        .expect_err("refused at once");
}

#[tokio::test]
async fn a_cached_key_still_needs_its_secret() {
    let (_, store) = keys();
    let clock = ManualClock::new();
    let keys = keys_at(&store, &clock);
    let new = keys.create(scope(&["*"]), None).await.expect("created");
    keys.authenticate(&new.key)
        .await
        .expect("valid, now cached");
    let wrong = format!("ado_{}_{}", new.info.id, "0".repeat(64));
    let err = keys.authenticate(&wrong).await.expect_err("wrong secret");
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    keys.authenticate(&new.key).await.expect("still valid");
}

#[tokio::test]
async fn an_expiry_out_of_range_is_refused() {
    let (keys, _) = keys();
    for bad in [Duration::ZERO, Duration::from_secs(3651 * 86_400)] {
        let err = keys
            .create_expiring(scope(&["*"]), None, Some(bad))
            .await
            .expect_err("out of range");
        assert_eq!(actiondo::testing::paths(&err), ["/expiresIn"]);
    }
    assert!(keys.list().await.expect("lists").is_empty());
}
