//! `KeyStore`: create, list, revoke and authenticate API keys on the embedded store.

use std::collections::HashSet;
use std::sync::Arc;

use actiondo::store::sqlite::SqliteStore;
use actiondo::testing::SlowReads;
use actiondo::{AuditFilter, AuditQuery, AuditStatus, ErrorKind, Store};
use actiondo_api::KeyStore;
use actiondo_api::keys::{index_entity, key_entity};

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

    let record = keys.authenticate(&mailer.key).await.expect("a valid key");
    assert_eq!(record.id, mailer.info.id);
    assert!(record.scope().allows("send-email") && !record.scope().allows("create-user"));

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
