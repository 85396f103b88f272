//! Results beyond the DynamoDB item limit (docs/architecture.md §4.6): one object store
//! abstraction, [`ObjectStore`], implemented by S3 ([`super::s3::S3Objects`], signed requests)
//! and by the embedded store's `objects` table ([`super::sqlite::SqliteStore`]).
//!
//! A result whose stored form (compressed when large) fits in the idempotency record stays
//! there. A bigger one, up to [`MAX_RESULT_BYTES`] of JSON text (Lambda's response limit),
//! is written as an object **before** the completion transaction, under a key derived from
//! the record id and the result's SHA-256 ([`result_key`]): a retry that produces the same
//! result writes the same object again, and the completion can only commit a reference to
//! an object that exists. The record then holds an [`ObjectRef`] (bucket, key, size,
//! SHA-256); a replay fetches the object and checks size and hash before returning the
//! text, byte-identical.

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;

/// The largest result, as JSON text: 6 MiB, the response payload limit of a synchronous
/// Lambda invocation. A bigger result could not be returned anyway; it is
/// `ActionDo.Validation` (`reason: result_too_large`), and nothing of it is stored.
pub const MAX_RESULT_BYTES: usize = 6 * 1024 * 1024;

/// The environment variable naming the bucket of results too large for a record. Unset:
/// such results are `ActionDo.Validation` (`reason: result_too_large`).
pub const RESULTS_BUCKET_ENV: &str = "ACTIONDO_RESULTS_BUCKET";

/// The prefix of every result object's key (the functions may put and get objects under it
/// only, `template.yaml`).
pub const RESULTS_PREFIX: &str = "results/";

/// Where a result too large for its record is, and what it must be when read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// The bucket (S3) or the local store's name.
    pub bucket: String,
    /// The object's key ([`result_key`]).
    pub key: String,
    /// The length of the result's JSON text.
    pub bytes: u64,
    /// SHA-256 (hex) of the result's JSON text.
    pub sha256: String,
    /// Whether the object holds the text gzip-compressed (else the text itself).
    pub gzip: bool,
}

impl ObjectRef {
    /// The bytes this reference takes in a record (an upper bound: its values and the
    /// names of its map).
    pub fn stored_len(&self) -> usize {
        // bucket, key, bytes, sha256, gzip: names and the map's overhead.
        48 + self.bucket.len() + self.key.len() + self.sha256.len() + 21
    }

    /// The result's JSON text from the object's `body`, after checking its size and
    /// SHA-256 against this reference: a replay is byte-identical or an error.
    pub fn decode(&self, body: Vec<u8>) -> Result<String, StoreError> {
        let text = if self.gzip {
            super::gzip::decompress(&body).map_err(|e| {
                StoreError::Corrupt(format!("result object {} does not decompress: {e}", self))
            })?
        } else {
            String::from_utf8(body).map_err(|e| {
                StoreError::Corrupt(format!("result object {} is not UTF-8: {e}", self))
            })?
        };
        let sha256 = crate::hash::sha256_hex(text.as_bytes());
        if u64::try_from(text.len()).ok() != Some(self.bytes) || sha256 != self.sha256 {
            return Err(StoreError::Corrupt(format!(
                "result object {self} is not the result the record refers to: {} bytes, SHA-256 {sha256}; expected {} bytes, SHA-256 {}",
                text.len(),
                self.bytes,
                self.sha256
            )));
        }
        Ok(text)
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.bucket, self.key)
    }
}

/// The key of a result object: `results/{action}/{SHA-256 of the record id}/{SHA-256 of
/// the result}` — the same for the same execution and the same result, so a retry writes
/// the same object and never a second one. The id (`{action}#{key}`) is hashed: an
/// idempotency key may hold any printable character.
pub fn result_key(action: &str, id: &str, result_sha256: &str) -> String {
    let action: String = action
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "{RESULTS_PREFIX}{action}/{}/{result_sha256}",
        crate::hash::sha256_hex(id.as_bytes())
    )
}

/// An object store for results beyond the item limit: S3 in AWS, a table of the embedded
/// store locally. Puts overwrite (the same key always holds the same bytes); gets of a
/// missing object answer `None`.
#[async_trait]
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// The bucket this store writes to, recorded in each [`ObjectRef`].
    fn bucket(&self) -> &str;

    /// Write `body` under `key` in [`bucket`](Self::bucket). `gzip` says whether `body` is
    /// gzip-compressed (S3: its content type).
    async fn put(&self, key: &str, body: Vec<u8>, gzip: bool) -> Result<(), StoreError>;

    /// The object under `key` in `bucket`, `None` when there is none (it expired).
    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_derived_from_the_execution_and_the_content() {
        let a = result_key("send-email", "send-email#k 1/x", &"a".repeat(64));
        assert_eq!(
            a,
            result_key("send-email", "send-email#k 1/x", &"a".repeat(64))
        );
        assert!(a.starts_with("results/send-email/"), "{a}");
        assert!(!a.contains(' ') && !a.contains('#'), "{a}");
        assert_ne!(
            a,
            result_key("send-email", "send-email#k 2", &"a".repeat(64))
        );
        assert_ne!(
            a,
            result_key("send-email", "send-email#k 1/x", &"b".repeat(64))
        );
        assert!(result_key("a b/c", "id", "h").starts_with("results/a_b_c/"));
    }

    #[test]
    fn a_body_that_is_not_the_referenced_result_is_refused() {
        let text = r#"{"a":1}"#;
        let reference = ObjectRef {
            bucket: "b".into(),
            key: "k".into(),
            bytes: 7,
            sha256: crate::hash::sha256_hex(text.as_bytes()),
            gzip: false,
        };
        assert_eq!(
            reference.decode(text.as_bytes().to_vec()).expect("same"),
            text
        );
        assert!(reference.decode(br#"{"a":2}"#.to_vec()).is_err());
        assert!(reference.decode(br#"{"a":1} "#.to_vec()).is_err());
        assert!(
            ObjectRef {
                gzip: true,
                ..reference
            }
            .decode(text.as_bytes().to_vec())
            .is_err()
        );
    }
}
