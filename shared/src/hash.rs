//! Payload hashing and idempotency-key rules (docs/architecture.md §4).

use std::io::Write;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::ActionError;

/// The longest idempotency key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The canonical JSON text of `value`: object keys sorted, no insignificant white space.
/// Two inputs that differ only in key order or spacing have the same canonical form.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::with_capacity(256);
    // Writing to a Vec cannot fail, and serde_json writes valid UTF-8.
    let _ = write_canonical(value, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Stream the canonical form of `value` into `out`, without building it in memory.
fn write_canonical<W: Write>(value: &Value, out: &mut W) -> std::io::Result<()> {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.write_all(b"{")?;
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                serde_json::to_writer(&mut *out, k)?;
                out.write_all(b":")?;
                write_canonical(v, out)?;
            }
            out.write_all(b"}")
        }
        Value::Array(items) => {
            out.write_all(b"[")?;
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                write_canonical(v, out)?;
            }
            out.write_all(b"]")
        }
        scalar => Ok(serde_json::to_writer(&mut *out, scalar)?),
    }
}

/// A SHA-256 hasher that canonical JSON is written into.
struct HashWriter(Sha256);

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `payload_hash`: SHA-256 of the canonical JSON of the input.
pub fn payload_hash(params: &Value) -> String {
    let mut hasher = HashWriter(Sha256::new());
    // Hashing cannot fail.
    let _ = write_canonical(params, &mut hasher);
    hex::encode(hasher.0.finalize())
}

/// Check an idempotency key: 1 to 255 printable ASCII characters.
pub fn validate_key(key: &str) -> Result<(), ActionError> {
    if key.is_empty() {
        return Err(ActionError::validation("the idempotency key is empty"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(ActionError::validation(format!(
            "the idempotency key is {} characters long; the limit is {MAX_KEY_LEN}",
            key.len()
        )));
    }
    if let Some((pos, c)) = key.char_indices().find(|(_, c)| !(' '..='~').contains(c)) {
        return Err(ActionError::validation(format!(
            "the idempotency key has a character that is not printable ASCII ({c:?} at byte {pos})"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let a: Value =
            serde_json::from_str(r#"{"b": 1, "a": {"y": [1, {"d": 2, "c": 3}], "x": "s"}}"#)
                .expect("json");
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"x":"s","y":[1,{"c":3,"d":2}]},"b":1}"#
        );
        let b = json!({"a": {"x": "s", "y": [1, {"c": 3, "d": 2}]}, "b": 1});
        assert_eq!(payload_hash(&a), payload_hash(&b));
        assert_ne!(payload_hash(&a), payload_hash(&json!({"b": 2})));
    }

    #[test]
    fn keys_must_be_1_to_255_printable_ascii() {
        assert!(validate_key("order-42#step 1").is_ok());
        assert!(validate_key(&"k".repeat(255)).is_ok());
        assert!(validate_key("").is_err());
        assert!(validate_key(&"k".repeat(256)).is_err());
        assert!(validate_key("tab\there").is_err());
        assert!(validate_key("é").is_err());
    }
}
