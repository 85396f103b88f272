//! The stored forms of docs/architecture.md §5, to the byte: digests, compressed text,
//! bounded audit details, results at the size limit, and the store configuration.

use actiondo::audit::{self, MAX_DETAILS_BYTES};
use actiondo::hash;
use actiondo::store::{COMPRESS_ABOVE_BYTES, MAX_RESULT_BYTES, StoreConfig, StoredResult};
use actiondo::{ErrorKind, Store};
use serde_json::{Value, json};

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

/// Pseudo-random text that gzip cannot shrink much (a fixed sequence: the test is
/// repeatable).
fn noise(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(ALPHABET[usize::try_from(state % 64).expect("small")])
        })
        .collect()
}

/// The lengths of texts whose compressed size is the limit and one byte past it.
fn search_limit(size: &dyn Fn(usize) -> usize) -> (usize, usize) {
    // The compressed size grows with the text.
    let (mut low, mut high) = (300_000, 420_000);
    assert!(size(low) < MAX_RESULT_BYTES && size(high) > MAX_RESULT_BYTES);
    while high - low > 1 {
        let mid = usize::midpoint(low, high);
        if size(mid) <= MAX_RESULT_BYTES {
            low = mid;
        } else {
            high = mid;
        }
    }
    // `low` is the longest text that fits, `high` the shortest that does not: they
    // compress to the limit and one byte past it, unless a step skipped a size; then look
    // a little further.
    let at = (low.saturating_sub(16)..=low)
        .rev()
        .find(|&n| size(n) == MAX_RESULT_BYTES);
    let over = (high..high + 16).find(|&n| size(n) == MAX_RESULT_BYTES + 1);
    match (at, over) {
        (Some(at), Some(over)) => (at, over),
        _ => panic!("no text compresses to exactly the limit near {low} characters"),
    }
}

/// A result whose compressed form is exactly 300 KiB is stored; one byte more is
/// `ActionDo.Validation` naming the sizes.
#[test]
fn a_result_of_exactly_300_kib_compressed_is_stored() {
    assert_eq!(MAX_RESULT_BYTES, 307_200);
    let json = |len: usize| Value::String(noise(len)).to_string();
    let size = |len: usize| StoredResult::compress(json(len)).stored_len();
    // Texts of these lengths compress to the limit and one byte past it (with the gzip
    // of Cargo.lock); if another version compresses differently, search for them.
    let (at, over) = if size(404_208) == MAX_RESULT_BYTES && size(404_209) == MAX_RESULT_BYTES + 1 {
        (404_208, 404_209)
    } else {
        search_limit(&size)
    };
    let stored = StoredResult::encode(&json(at)).expect("fits");
    assert_eq!(stored.stored_len(), MAX_RESULT_BYTES);
    assert_eq!(stored.decode().expect("decodes"), json(at));
    let err = StoredResult::encode(&json(over)).expect_err("too large");
    assert_eq!(err.kind(), ErrorKind::Validation);
    assert_eq!(
        err.details().expect("details"),
        &json!({
            "resultBytes": over + 2,
            "compressedBytes": MAX_RESULT_BYTES + 1,
            "limitBytes": MAX_RESULT_BYTES,
        })
    );
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
