//! The embedded store's file (docs/architecture.md §5.4): created with its folders, shared
//! by every store that opens it, and refused when it is not a database.

use actiondo::Store;
use actiondo::store::sqlite::SqliteStore;
use actiondo::store::{Claim, ClaimOutcome};

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
