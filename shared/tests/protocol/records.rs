//! The stored forms of docs/architecture.md §5, to the byte: digests, compressed text,
//! bounded audit details, results at the size limit, and the store configuration.

use actiondo::Store;
use actiondo::audit::{self, MAX_DETAILS_BYTES};
use actiondo::hash;
use actiondo::limits::{MAX_ITEM_BYTES, RECORD_FIXED_BYTES, result_fits_in_record};
use actiondo::store::objects::result_key;
use actiondo::store::{
    COMPRESS_ABOVE_BYTES, MAX_RESULT_BYTES, ObjectRef, StoreConfig, StoredResult,
};
use serde_json::json;

#[test]
fn sha256_hex_is_the_lower_case_hex_digest() {
    assert_eq!(
        hash::sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        hash::sha256_hex(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn the_payload_hash_is_the_sha256_of_the_canonical_json() {
    let v = json!({"z": [1, {"b": true, "a": null}], "a": "x"});
    let canonical = hash::canonical_json(&v);
    assert_eq!(canonical, r#"{"a":"x","z":[1,{"a":null,"b":true}]}"#);
    assert_eq!(
        hash::payload_hash(&v),
        hash::sha256_hex(canonical.as_bytes())
    );
    assert_eq!(
        hash::payload_hash(&json!({"value": "x"})),
        "da1fa454c2b3e417928b12414a470b10a5c5151532a990a6c4b19d801d42c259"
    );
}

/// Text up to 512 bytes is kept as it is; from the byte after, it is gzip-compressed.
#[test]
fn text_is_compressed_from_the_byte_after_512_bytes() {
    let at = "x".repeat(COMPRESS_ABOVE_BYTES);
    assert_eq!(COMPRESS_ABOVE_BYTES, 512);
    assert_eq!(StoredResult::compress(at.clone()), StoredResult::Json(at));
    let over = "x".repeat(COMPRESS_ABOVE_BYTES + 1);
    let stored = StoredResult::compress(over.clone());
    assert!(matches!(stored, StoredResult::Gzip(_)), "{stored:?}");
    assert!(stored.stored_len() < 100);
    assert_eq!(stored.decode().expect("decodes"), over);
}

/// Audit details up to 64 KiB of JSON text are kept; from the byte after, they are
/// replaced by their size and SHA-256.
#[test]
fn audit_details_are_summarised_from_the_byte_after_64_kib() {
    assert_eq!(MAX_DETAILS_BYTES, 65_536);
    // `{"s":"…"}` is the text and 8 bytes.
    let at = json!({"s": "x".repeat(MAX_DETAILS_BYTES - 8)});
    assert_eq!(at.to_string().len(), MAX_DETAILS_BYTES);
    assert_eq!(audit::bound_details(at.clone()), at);
    let over = json!({"s": "x".repeat(MAX_DETAILS_BYTES - 7)});
    let text = over.to_string();
    assert_eq!(
        audit::bound_details(over),
        json!({
            "truncated": true,
            "bytes": MAX_DETAILS_BYTES + 1,
            "sha256": hash::sha256_hex(text.as_bytes()),
        })
    );
    let small = json!({"input": {"a": 1}, "output": "y".repeat(2_000)});
    assert_eq!(audit::bound_details(small.clone()), small);
}

/// Details are stored as JSON text (gzip when large) and read back as they were.
#[test]
fn audit_details_read_back_from_their_stored_form() {
    for details in [
        json!({"input": {"n": 1e200}, "output": [1, 2]}),
        json!({"big": "z".repeat(50_000)}),
    ] {
        let stored = audit::stored_details(&details);
        assert_eq!(audit::details_from_stored(&stored).expect("reads"), details);
    }
    assert!(audit::details_from_stored(&StoredResult::Json("{".into())).is_err());
}

/// A result stays in its record while the record is at most an item (by the stores'
/// measure: the fixed attributes, the id and the stored result); one byte more and it
/// goes to the object store. A reference always fits; results are bounded by Lambda's
/// 6 MiB response.
#[test]
fn a_result_fits_in_its_record_up_to_the_item_limit() {
    assert_eq!(MAX_RESULT_BYTES, 6_291_456);
    assert_eq!((MAX_ITEM_BYTES, RECORD_FIXED_BYTES), (409_600, 256));
    let id = "probe#k";
    let room = MAX_ITEM_BYTES - RECORD_FIXED_BYTES - id.len();
    let at = StoredResult::Gzip(vec![0; room]);
    assert!(result_fits_in_record(id, &at));
    assert!(!result_fits_in_record("probe#kk", &at));
    assert!(!result_fits_in_record(
        id,
        &StoredResult::Json("x".repeat(room + 1))
    ));
    let reference = StoredResult::Object(Box::new(ObjectRef {
        bucket: "b".repeat(63),
        key: result_key("probe", id, &"0".repeat(64)),
        bytes: MAX_RESULT_BYTES as u64,
        sha256: "0".repeat(64),
        gzip: true,
    }));
    assert!(reference.stored_len() < 512, "{}", reference.stored_len());
    assert!(
        reference.decode().is_err(),
        "an object is read from its store"
    );
}

/// A file written before results could be objects (no `result_ref` column) opens, reads
/// its records as they were, and takes records that refer to objects.
#[tokio::test]
async fn an_embedded_store_of_the_former_schema_gains_result_references() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("old.db");
    {
        let conn = rusqlite::Connection::open(&path).expect("opens");
        conn.execute_batch(
            "CREATE TABLE idempotency (id TEXT PRIMARY KEY, status TEXT NOT NULL, \
             payload_hash TEXT NOT NULL, attempt INTEGER NOT NULL, lease_owner TEXT NOT NULL, \
             lease_expires_at_ms INTEGER NOT NULL, expires_at_s INTEGER NOT NULL, \
             result_json TEXT, result_gz BLOB, error TEXT, created_at_ms INTEGER NOT NULL, \
             completed_at_ms INTEGER); \
             INSERT INTO idempotency VALUES ('a#k', 'COMPLETED', 'h', 1, 'o', 1, 9999999999, \
             '{\"x\":1}', NULL, NULL, 1, 2);",
        )
        .expect("the former schema");
    }
    let store = actiondo::store::sqlite::SqliteStore::open(&path).expect("opens");
    let old = store
        .get_record("a#k")
        .await
        .expect("reads")
        .expect("there");
    assert_eq!(old.result, Some(StoredResult::Json(r#"{"x":1}"#.into())));
    let objects = store.objects().expect("the objects table");
    objects
        .put("results/a/k", b"{}".to_vec(), false)
        .await
        .expect("put");
    assert_eq!(
        objects
            .get(objects.bucket(), "results/a/k")
            .await
            .expect("get"),
        Some(b"{}".to_vec())
    );
    assert_eq!(
        objects.get("other", "results/a/k").await.expect("get"),
        None
    );
    assert_eq!(store.object_keys().expect("keys"), ["results/a/k"]);
}

#[test]
fn store_configurations_parse_as_documented() {
    let default = StoreConfig::Sqlite(".actiondo/actiondo.db".into());
    assert_eq!("sqlite".parse::<StoreConfig>().ok(), Some(default.clone()));
    assert_eq!(StoreConfig::sqlite_default(), default);
    assert_eq!(
        "dynamodb".parse::<StoreConfig>().ok(),
        Some(StoreConfig::DynamoDb)
    );
    assert_eq!(
        "sqlite::memory:".parse::<StoreConfig>().ok(),
        Some(StoreConfig::SqliteMemory)
    );
    assert_eq!(
        "sqlite:a/b.db".parse::<StoreConfig>().ok(),
        Some(StoreConfig::Sqlite("a/b.db".into()))
    );
    for bad in ["sqlite:", "", "dynamo", "postgres://x"] {
        let err = bad.parse::<StoreConfig>().expect_err(bad);
        assert!(err.to_string().contains("is not a store"), "{bad}: {err}");
    }
    assert_eq!(default.kind(), "SQLite");
    assert_eq!(StoreConfig::SqliteMemory.kind(), "SQLite");
    assert_eq!(StoreConfig::DynamoDb.kind(), "DynamoDB");
}

#[tokio::test]
async fn an_embedded_store_opens_from_its_configuration() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("nested/folders/actiondo.db");
    let store = StoreConfig::Sqlite(path.clone())
        .open()
        .await
        .expect("opens");
    assert!(store.get_record("x#y").await.expect("reads").is_none());
    assert!(path.exists(), "the file and its folders are created");
    let memory = StoreConfig::SqliteMemory.open().await.expect("opens");
    assert!(memory.get_record("x#y").await.expect("reads").is_none());
}

/// `ACTIONDO_STORE` chooses the store; unset or empty, the default. Each case runs this
/// test binary again with the variable set (a test may not change its own environment).
#[test]
fn the_store_comes_from_actiondo_store_or_the_default() {
    const CHILD: &str = "ACTIONDO_TEST_STORE_ENV_EXPECT";
    if let Ok(expected) = std::env::var(CHILD) {
        let got = StoreConfig::from_env_or(StoreConfig::DynamoDb);
        assert_eq!(format!("{got:?}"), expected);
        return;
    }
    for (value, expected) in [
        (None, "Ok(DynamoDb)"),
        (Some(""), "Ok(DynamoDb)"),
        (Some("sqlite::memory:"), "Ok(SqliteMemory)"),
    ] {
        let mut child = std::process::Command::new(std::env::current_exe().expect("exe"));
        child
            .args([
                "--exact",
                "records::the_store_comes_from_actiondo_store_or_the_default",
            ])
            .env(CHILD, expected)
            .env_remove("ACTIONDO_STORE");
        if let Some(v) = value {
            child.env("ACTIONDO_STORE", v);
        }
        let out = child.output().expect("runs");
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "ACTIONDO_STORE={value:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
