//! What the stores accept (docs/architecture.md §4.6), to the byte: item sizes as
//! DynamoDB counts them, and each limit at its value and one past it.

use actiondo::audit::{self, AuditRecord};
use actiondo::limits::{self, MAX_ITEM_BYTES, MAX_TRANSACTION_BYTES, MAX_TRANSACTION_ITEMS};
use actiondo::store::sqlite::SqliteStore;
use actiondo::store::{Claim, Commit, RecordStatus, RecordWrite, StagedWrite, StoredResult};
use actiondo::{AuditStatus, EntityKey, Expect, Source, Store, StoreError};
use serde_json::{Value, json};

fn record() -> AuditRecord {
    AuditRecord {
        execution: "e#k".into(),
        seq: "s".into(),
        action: "e".into(),
        status: AuditStatus::Completed,
        details: json!({}),
        timestamp: audit::timestamp(1_698_402_600_000),
        duration_ms: 12_345,
        attempt: 3,
        request_id: "r".into(),
        source: Source::Direct,
        caller: Some("c".into()),
        correlation_id: Some("cc".into()),
        trace_id: Some("ttt".into()),
    }
}

fn put(pk: &str, sk: &str, doc: Value) -> StagedWrite {
    StagedWrite::Put {
        key: EntityKey::new(pk, sk),
        doc,
        expect: Expect::Any,
    }
}

/// A document `{"s": "x…x"}` of `n` characters: 5 + n bytes as a map.
fn doc(n: usize) -> Value {
    json!({"s": "x".repeat(n)})
}

#[test]
fn constants_are_dynamodbs() {
    assert_eq!(MAX_ITEM_BYTES, 409_600);
    assert_eq!(MAX_TRANSACTION_BYTES, 4_194_304);
    assert_eq!(MAX_TRANSACTION_ITEMS, 100);
    assert_eq!(limits::MIN_NUMBER_EXPONENT, -130);
    assert_eq!(limits::MAX_NUMBER_EXPONENT, 125);
}

#[test]
fn sizes_of_values_follow_the_developer_guide() {
    assert_eq!(limits::value_size(&doc(10)), 15);
    assert_eq!(
        limits::value_size(&json!([[1], "ab", null])),
        3 + (1 + 3 + 1 + 2) + (1 + 2) + (1 + 1)
    );
    assert_eq!(
        limits::value_size(&json!({"abc": {"d": 1.5}})),
        3 + 1 + 3 + (3 + 1 + 1 + 2)
    );
    assert_eq!(limits::value_size(&json!(0)), 2);
    assert_eq!(limits::value_size(&json!(-0.000_123)), 3);
}

/// An audit record's size: every attribute's name and value (docs/architecture.md §5.2),
/// numbers as DynamoDB counts them.
#[test]
fn the_size_of_an_audit_record_counts_every_attribute() {
    // Names: execution seq type status details timestamp duration_ms attempt request_id
    // source caller correlation_id trace_id = 100 bytes. Values: 3 + 1 + 1 + 9 ("completed")
    // + 10 (details as given) + 24 + 4 (12345: 5 digits) + 2 (3) + 1 + 6 ("direct") + 1 + 2
    // + 3 = 67 bytes.
    assert_eq!(limits::audit_item_size(&record(), 10), 167);
    let bare = AuditRecord {
        caller: None,
        correlation_id: None,
        trace_id: None,
        ..record()
    };
    assert_eq!(limits::audit_item_size(&bare, 10), 167 - 7 - 16 - 11);
}

/// An audit record of exactly 400 KB is accepted by both the check and the store; one
/// byte more is refused by both, naming the limit.
#[tokio::test]
async fn an_audit_record_of_exactly_400_kb_is_stored() {
    let base = AuditRecord {
        request_id: String::new(),
        ..record()
    };
    let details = audit::stored_details(&base.details).stored_len();
    let fill = MAX_ITEM_BYTES - limits::audit_item_size(&base, details);
    let at = AuditRecord {
        request_id: "r".repeat(fill),
        ..base.clone()
    };
    assert_eq!(limits::audit_item_size(&at, details), MAX_ITEM_BYTES);
    assert_eq!(limits::check_audit(&at), Ok(()));
    let over = AuditRecord {
        request_id: "r".repeat(fill + 1),
        ..base
    };
    let err = limits::check_audit(&over).expect_err("over");
    assert_eq!(err.found, format!("{} bytes", MAX_ITEM_BYTES + 1));
    let store = SqliteStore::in_memory().expect("store");
    store.put_audit(&at).await.expect("stored");
    assert!(matches!(
        store.put_audit(&over).await,
        Err(StoreError::Refused(_))
    ));
}

/// An entity item — `pk`, `sk`, `doc` and a `version` of up to 10 digits — of exactly
/// 400 KB may be staged; one byte more may not.
#[test]
fn an_entity_of_exactly_400_kb_may_be_staged() {
    // pk 2 + 1, sk 2 + 1, doc 3 + (5 + n), version 7 + 6 (u32::MAX: 10 digits) = 27 + n.
    let n = MAX_ITEM_BYTES - 27;
    assert_eq!(limits::check_staged_write(&put("p", "s", doc(n))), Ok(()));
    let err = limits::check_staged_write(&put("p", "s", doc(n + 1))).expect_err("over");
    assert_eq!(err.found, format!("{} bytes", MAX_ITEM_BYTES + 1));
    assert_eq!(err.path, "entity p/s");
}

fn commit(write: RecordWrite, writes: Vec<StagedWrite>) -> Commit {
    Commit {
        record: write,
        audit: record(),
        writes,
    }
}

fn finish(id: &str, result: usize, error: usize) -> RecordWrite {
    RecordWrite::Finish {
        id: id.into(),
        lease_owner: "me".into(),
        status: RecordStatus::Completed,
        result: Some(StoredResult::Json("r".repeat(result))),
        error: Some("e".repeat(error)),
        completed_at_ms: 0,
        expires_at_s: 0,
    }
}

fn insert(id: &str, result: usize, error: usize) -> RecordWrite {
    RecordWrite::Insert {
        record: actiondo::store::IdempotencyRecord {
            id: id.into(),
            status: RecordStatus::Completed,
            payload_hash: "h".into(),
            attempt: 1,
            lease_owner: "me".into(),
            lease_expires_at_ms: 0,
            expires_at_s: 0,
            result: Some(StoredResult::Json("r".repeat(result))),
            error: Some("e".repeat(error)),
            created_at_ms: 0,
            completed_at_ms: Some(0),
        },
        now_ms: 0,
    }
}

/// The idempotency record a commit leaves is counted as 256 bytes of fixed attributes,
/// its id, its stored result and its error: exactly 400 KB is accepted, one byte more is
/// refused.
#[test]
fn an_idempotency_record_of_exactly_400_kb_is_accepted() {
    let id = "a#k";
    let room = MAX_ITEM_BYTES - 256 - id.len();
    for write in [finish, insert] {
        let half = room / 2;
        assert_eq!(
            limits::check_commit(&commit(write(id, half, room - half), vec![])),
            Ok(())
        );
        let err = limits::check_commit(&commit(write(id, half, room - half + 1), vec![]))
            .expect_err("over");
        assert_eq!(err.path, "the idempotency record");
        assert_eq!(err.found, format!("{} bytes", MAX_ITEM_BYTES + 1));
    }
    // A release writes no data: the longest id is far from the limit.
    let release = RecordWrite::Release {
        id: "i".repeat(2048),
        lease_owner: "me".into(),
    };
    assert_eq!(limits::check_commit(&commit(release, vec![])), Ok(()));
}

/// A transaction holds at most 100 items: the record (if written), the audit record and
/// the staged writes.
#[test]
fn a_transaction_of_exactly_100_items_is_accepted() {
    let writes = |n: usize| (0..n).map(|i| put("p", &format!("s{i}"), doc(1))).collect();
    assert_eq!(
        limits::check_commit(&commit(finish("a#k", 1, 1), writes(98))),
        Ok(())
    );
    let err = limits::check_commit(&commit(finish("a#k", 1, 1), writes(99))).expect_err("101");
    assert_eq!(
        (err.path.as_str(), err.found.as_str()),
        ("transaction", "101 items")
    );
    assert_eq!(
        limits::check_commit(&commit(RecordWrite::None, writes(99))),
        Ok(())
    );
    let err = limits::check_commit(&commit(RecordWrite::None, writes(100))).expect_err("101");
    assert_eq!(err.found, "101 items");
}

/// A transaction of exactly 4 MB is accepted; one byte more is refused. Its size is the
/// record's, the audit record's and each staged write's (a delete counts its key and 4).
#[test]
fn a_transaction_of_exactly_4_mb_is_accepted() {
    let id = "i".repeat(100);
    let release = || RecordWrite::Release {
        id: id.clone(),
        lease_owner: "me".into(),
    };
    let audit = record();
    let audit_size =
        limits::audit_item_size(&audit, audit::stored_details(&audit.details).stored_len());
    let delete = StagedWrite::Delete {
        key: EntityKey::new("dd", "xxx"),
        expect: Expect::Any,
    };
    // Ten entities of 400 KB less 1000 bytes each (`pk` "p", `sk` "s0".."s9": 28 + n).
    let big = MAX_ITEM_BYTES - 1_000;
    let mut writes: Vec<StagedWrite> = (0..10)
        .map(|i| put("p", &format!("s{i}"), doc(big - 28)))
        .collect();
    writes.push(delete);
    let used = 256 + id.len() + audit_size + 10 * big + (2 + 3 + 4);
    let last = MAX_TRANSACTION_BYTES - used;
    // The last entity, `pk` "q", `sk` "t": 27 + n.
    let with_last = |n: usize| {
        let mut w = writes.clone();
        w.push(put("q", "t", doc(n)));
        Commit {
            record: release(),
            audit: audit.clone(),
            writes: w,
        }
    };
    assert_eq!(limits::check_commit(&with_last(last - 27)), Ok(()));
    let err = limits::check_commit(&with_last(last - 26)).expect_err("over");
    assert_eq!(err.path, "transaction");
    assert_eq!(err.found, format!("{} bytes", MAX_TRANSACTION_BYTES + 1));
}

/// Lists nest like maps: 31 levels of lists hold a value, 32 do not.
#[test]
fn lists_nest_at_most_31_deep() {
    let nested = |levels: usize| {
        let mut v = json!(1);
        for _ in 0..levels {
            v = json!([v]);
        }
        v
    };
    assert_eq!(limits::check_document(&nested(31), "doc"), Ok(()));
    let err = limits::check_document(&nested(32), "doc").expect_err("too deep");
    assert_eq!(err.found, "32 levels of maps and lists");
    assert_eq!(err.path, format!("doc{}", "[0]".repeat(31)));
}

/// A limit error names the limit, where and what was found; identifiers say they are
/// identifiers.
#[test]
fn limit_errors_name_the_limit_the_place_and_the_value() {
    let err = limits::check_identifier(&"c".repeat(1025), "correlationId").expect_err("long");
    assert_eq!(err.limit, "an identifier is 1 to 1024 bytes");
    assert_eq!(
        err.to_string(),
        "correlationId cannot be stored: an identifier is 1 to 1024 bytes (found 1025 bytes)"
    );
    assert_eq!(
        err.details(),
        json!({"limit": err.limit, "path": "correlationId", "found": "1025 bytes"})
    );
    let err = limits::check_number("1e126", "doc.n").expect_err("range");
    assert_eq!(err.found, "1e126");
}

/// Digits and exponents as DynamoDB reads them.
#[test]
fn numbers_are_counted_by_their_significant_digits() {
    let zeros = |n: usize| "0".repeat(n);
    for (text, ok) in [
        (format!("1{}", zeros(41)), true),
        (format!("0.{}1", zeros(38)), true),
        (format!("1{}1", zeros(36)), true),
        (format!("1{}1", zeros(37)), false),
        (format!("1.{}1", zeros(36)), true),
        (format!("1.{}1", zeros(37)), false),
        (format!("0.0{}10", zeros(5)), true),
        ("9.9999999999999999999999999999999999999E+125".into(), true),
        ("99.999999999999999999999999999999999999E+124".into(), true),
        ("10E+125".into(), false),
        ("0.00099e-126".into(), true),
        ("0.00099e-127".into(), false),
        ("-12.5E-3".into(), true),
        ("1.2.3".into(), false),
        ("-".into(), false),
        (".5".into(), false),
        ("1e".into(), false),
    ] {
        assert_eq!(limits::check_number(&text, "n").is_ok(), ok, "{text}");
    }
}

/// The stores refuse a claim whose id is not a key DynamoDB takes.
#[tokio::test]
async fn a_claim_id_over_2048_bytes_is_refused() {
    let claim = |id: String| Claim {
        id,
        payload_hash: "h".into(),
        lease_owner: "me".into(),
        lease_expires_at_ms: 2_000,
        expires_at_s: 10,
        now_ms: 1_000,
    };
    let store = SqliteStore::in_memory().expect("store");
    assert!(store.claim(&claim("i".repeat(2048))).await.is_ok());
    assert!(matches!(
        store.claim(&claim("i".repeat(2049))).await,
        Err(StoreError::Refused(_))
    ));
    assert!(limits::check_claim(&claim(String::new())).is_err());
}
