//! The embedded store's file (docs/architecture.md §5.4): created with its folders, shared
//! by every store that opens it, and refused when it is not a database.

use actiondo::store::sqlite::SqliteStore;
use actiondo::store::{
    Claim, ClaimOutcome, Commit, CommitOutcome, IdempotencyRecord, RecordStatus, RecordWrite,
    StoredResult,
};
use actiondo::{AuditRecord, AuditStatus, Store};

#[tokio::test]
async fn stores_on_one_file_share_its_records() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("a/b/actiondo.db");
    let one = SqliteStore::open(&path).expect("opens");
    assert_eq!(one.path(), Some(path.as_path()));
    let claim = Claim {
        id: "x#k".into(),
        payload_hash: "h".into(),
        lease_owner: "one".into(),
        lease_expires_at_ms: 2_000,
        expires_at_s: 3_600,
        now_ms: 1_000,
    };
    assert!(matches!(
        one.claim(&claim).await.expect("claims"),
        ClaimOutcome::Claimed { attempt: 1, .. }
    ));
    let two = SqliteStore::open(&path).expect("opens again");
    let record = two.get_record("x#k").await.expect("reads").expect("shared");
    assert_eq!(record.lease_owner, "one");
    assert_eq!(SqliteStore::in_memory().expect("memory").path(), None);
}

#[test]
fn a_file_that_is_not_a_database_is_refused_as_such() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("not.db");
    std::fs::write(&path, vec![b'x'; 4096]).expect("write");
    let err = SqliteStore::open(&path).expect_err("not a database");
    let text = err.to_string();
    assert!(
        text.contains("SQLite") && !text.contains("locked"),
        "{text}"
    );
}

fn claim(owner: &str, now_ms: i64) -> Claim {
    Claim {
        id: "x#k".into(),
        payload_hash: "h".into(),
        lease_owner: owner.into(),
        lease_expires_at_ms: now_ms + 1_000,
        expires_at_s: 3_600,
        now_ms,
    }
}

/// A claim that meets a record no claim may take (a replay) is answered from a read: it
/// needs no write lock, and answers while another process holds the file's (a write would
/// wait for it, then fail as locked); so is an optimistic commit that meets a live record.
/// A claim that may take the record still takes it.
#[tokio::test]
async fn a_replay_is_answered_while_another_process_writes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("actiondo.db");
    let store = SqliteStore::open(&path).expect("opens");
    assert!(matches!(
        store.claim(&claim("one", 1_000)).await.expect("claims"),
        ClaimOutcome::Claimed { attempt: 1, .. }
    ));
    let audit: AuditRecord = serde_json::from_value(serde_json::json!({
        "execution": "x#k", "seq": "0001#completed", "type": "x",
        "attempt": 1, "status": "completed", "timestamp": "2026-11-30T00:00:00.000Z",
        "source": "direct", "requestId": "r", "durationMs": 1, "details": {}
    }))
    .expect("an audit record");
    assert_eq!(audit.status, AuditStatus::Completed);
    let finished = store
        .commit(&Commit {
            record: RecordWrite::Finish {
                id: "x#k".into(),
                lease_owner: "one".into(),
                status: RecordStatus::Completed,
                result: Some(StoredResult::Json("42".into())),
                error: None,
                completed_at_ms: 1_100,
                expires_at_s: 3_600,
            },
            audit: audit.clone(),
            writes: Vec::new(),
        })
        .await
        .expect("commits");
    assert_eq!(finished, CommitOutcome::Committed);
    let stored = store
        .get_record("x#k")
        .await
        .expect("reads")
        .expect("stored");

    let other = rusqlite::Connection::open(&path).expect("another connection");
    other
        .execute_batch("BEGIN IMMEDIATE")
        .expect("the other process takes the write lock");
    match store.claim(&claim("two", 2_000)).await.expect("answered") {
        ClaimOutcome::Existing(record) => assert_eq!(record, stored),
        other => panic!("{other:?}"),
    }
    // An optimistic commit that meets the live record is answered the same way.
    let optimistic = Commit {
        record: RecordWrite::Insert {
            record: IdempotencyRecord {
                lease_owner: "two".into(),
                ..stored.clone()
            },
            now_ms: 2_000,
        },
        audit: audit.clone(),
        writes: Vec::new(),
    };
    assert_eq!(
        store.commit(&optimistic).await.expect("answered"),
        CommitOutcome::Exists(stored.clone())
    );
    other.execute_batch("ROLLBACK").expect("released");

    // Past its retention the record may be claimed again: that claim writes.
    let expired = claim("three", 3_601_000);
    assert!(matches!(
        store.claim(&expired).await.expect("claims"),
        ClaimOutcome::Claimed { attempt: 2, .. }
    ));
    let record = store
        .get_record("x#k")
        .await
        .expect("reads")
        .expect("stored");
    assert_eq!(
        (record.status, record.lease_owner.as_str(), record.attempt),
        (RecordStatus::InProgress, "three", 2)
    );
}

/// `":memory:"` opens the store in memory; a name SQLite would open as a database that
/// is not a file of its own is refused, naming it: the store's writing and reading
/// connections would each open a database of their own.
#[tokio::test]
async fn names_that_are_not_a_file_are_refused_or_in_memory() {
    let store = SqliteStore::open(":memory:").expect("in memory");
    assert_eq!(store.path(), None);
    assert!(matches!(
        store.claim(&claim("one", 1_000)).await.expect("claims"),
        ClaimOutcome::Claimed { attempt: 1, .. }
    ));
    assert!(store.get_record("x#k").await.expect("reads").is_some());
    for name in ["file:store?mode=memory&cache=shared", ""] {
        match SqliteStore::open(name) {
            Err(actiondo::StoreError::InvalidRequest(text)) => {
                assert!(text.contains("sqlite::memory:"), "{name:?}: {text}");
            }
            other => panic!("{name:?}: expected a refusal, got {other:?}"),
        }
    }
}
