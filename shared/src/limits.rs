//! What DynamoDB can hold, in one place (docs/architecture.md §4, "What the store can
//! hold").
//!
//! DynamoDB refuses with a `ValidationException` what SQLite accepts: numbers out of range,
//! maps nested too deep, empty key attributes, items over 400 KB, transactions over 100
//! items or 4 MB. A refusal after the handler has run would leave an effect without its
//! record, so every limit is checked **before the claim** (identifiers), **when a write is
//! staged** (entity documents and keys) and, as a last guard, **by both stores** before
//! they write: the embedded store refuses exactly what DynamoDB refuses, with the same
//! [`LimitError`], so what works locally works in AWS.
//!
//! Each limit is a named constant with the number from the DynamoDB developer guide
//! ("Service, account, and table quotas" and "Supported data types"); the conformance
//! suite checks each against DynamoDB Local itself.

use std::fmt;

use serde_json::Value;

use crate::audit::AuditRecord;
use crate::store::{Claim, Commit, EntityKey, RecordWrite, StagedWrite};

/// A number holds at most 38 significant digits.
pub const MAX_NUMBER_DIGITS: usize = 38;
/// The decimal exponent of the largest magnitude: numbers are below 1E+126 (the greatest is
/// 9.9999999999999999999999999999999999999E+125).
pub const MAX_NUMBER_EXPONENT: i64 = 125;
/// The decimal exponent of the smallest non-zero magnitude, 1E-130.
pub const MIN_NUMBER_EXPONENT: i64 = -130;
/// Attributes nest at most 32 levels deep. The item's attribute is level 1, so a map or
/// list may sit at levels 1 to 31 (its contents then at most at level 32): a document of
/// 32 nested maps is refused (measured on DynamoDB Local by the conformance suite).
pub const MAX_NESTING_DEPTH: usize = 32;
/// An item, attribute names included, is at most 400 KB.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;
/// A partition key value (of a table or a global secondary index) is 1 to 2048 bytes.
pub const MAX_PARTITION_KEY_BYTES: usize = 2048;
/// A sort key value (of a table or a global secondary index) is 1 to 1024 bytes.
pub const MAX_SORT_KEY_BYTES: usize = 1024;
/// One `TransactWriteItems` holds at most 100 items.
pub const MAX_TRANSACTION_ITEMS: usize = 100;
/// One `TransactWriteItems` is at most 4 MB.
pub const MAX_TRANSACTION_BYTES: usize = 4 * 1024 * 1024;
/// Identifiers stored on audit records (`correlation_id`, a GSI partition key, `caller`,
/// `trace_id`) are 1 to 1024 bytes with no control characters: within the GSI key limit
/// with room to spare, and long enough for any ARN or trace header.
pub const MAX_IDENTIFIER_BYTES: usize = 1024;

/// A value DynamoDB would refuse: which limit, where, and what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitError {
    /// The limit, in words ("a number has at most 38 significant digits").
    pub limit: String,
    /// Where the value is (`doc.a.b[3]`, `correlationId`, `transaction`).
    pub path: String,
    /// What was found ("1e200", "40 levels", "412345 bytes").
    pub found: String,
}

impl LimitError {
    fn new(limit: impl Into<String>, path: impl Into<String>, found: impl Into<String>) -> Self {
        Self {
            limit: limit.into(),
            path: path.into(),
            found: found.into(),
        }
    }

    /// The error as a `details` object: `{"limit", "path", "found"}`.
    pub fn details(&self) -> Value {
        serde_json::json!({"limit": self.limit, "path": self.path, "found": self.found})
    }
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} cannot be stored: {} (found {})",
            self.path, self.limit, self.found
        )
    }
}

impl std::error::Error for LimitError {}

/// Check a JSON number's text (as `serde_json` prints it) against DynamoDB's range and
/// precision.
pub fn check_number(text: &str, path: &str) -> Result<(), LimitError> {
    let Some((digits, exponent)) = significant(text) else {
        return Err(LimitError::new("a number must be decimal", path, text));
    };
    if digits == 0 {
        return Ok(()); // zero
    }
    if digits > MAX_NUMBER_DIGITS {
        return Err(LimitError::new(
            format!("a number has at most {MAX_NUMBER_DIGITS} significant digits"),
            path,
            format!("{text} ({digits} digits)"),
        ));
    }
    if !(MIN_NUMBER_EXPONENT..=MAX_NUMBER_EXPONENT).contains(&exponent) {
        return Err(LimitError::new(
            "a number's magnitude is between 1E-130 and 9.99…E+125, or zero",
            path,
            text,
        ));
    }
    Ok(())
}

/// The count of significant digits of a decimal text and the decimal exponent of its first
/// significant digit (`123.4` → (4, 2); `0.05` → (1, -2); zero → (0, 0)). `None` when the
/// text is not a decimal number.
fn significant(text: &str) -> Option<(usize, i64)> {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (mantissa, exp) = match unsigned.find(['e', 'E']) {
        Some(i) => (&unsigned[..i], unsigned[i + 1..].parse::<i64>().ok()?),
        None => (unsigned, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let all: Vec<u8> = int.bytes().chain(frac.bytes()).collect();
    let Some(first) = all.iter().position(|&b| b != b'0') else {
        return Some((0, 0));
    };
    let last = all.iter().rposition(|&b| b != b'0').unwrap_or(first);
    let digits = last - first + 1;
    // The first significant digit's place: int.len() - 1 - first for `int.frac`.
    let place = i64::try_from(int.len()).ok()? - 1 - i64::try_from(first).ok()?;
    Some((digits, place.checked_add(exp)?))
}

/// Check a JSON document stored as a DynamoDB map (an entity's `doc`): numbers, nesting
/// depth and map keys. `path` names the attribute (`doc`).
pub fn check_document(value: &Value, path: &str) -> Result<(), LimitError> {
    check_value(value, path, 1)
}

/// `level`: the nesting level of `value` (the attribute itself is level 1).
fn check_value(value: &Value, path: &str, level: usize) -> Result<(), LimitError> {
    match value {
        Value::Number(n) => check_number(&n.to_string(), path),
        Value::Array(items) => {
            nest(path, level)?;
            items
                .iter()
                .enumerate()
                .try_for_each(|(i, v)| check_value(v, &format!("{path}[{i}]"), level + 1))
        }
        Value::Object(map) => {
            nest(path, level)?;
            map.iter().try_for_each(|(k, v)| {
                if k.is_empty() {
                    return Err(LimitError::new(
                        "a map key is at least 1 character long",
                        path,
                        "an empty key",
                    ));
                }
                check_value(v, &format!("{path}.{k}"), level + 1)
            })
        }
        Value::Null | Value::Bool(_) | Value::String(_) => Ok(()),
    }
}

/// A map or list at `level` holds values at `level + 1`, which must not pass the limit.
fn nest(path: &str, level: usize) -> Result<(), LimitError> {
    if level >= MAX_NESTING_DEPTH {
        return Err(LimitError::new(
            format!(
                "attributes nest at most {MAX_NESTING_DEPTH} levels deep (maps and lists at most {} within an attribute)",
                MAX_NESTING_DEPTH - 1
            ),
            path,
            format!("{level} levels of maps and lists"),
        ));
    }
    Ok(())
}

/// Check a key attribute's value: 1 to `max` bytes.
pub fn check_key_attribute(value: &str, path: &str, max: usize) -> Result<(), LimitError> {
    if value.is_empty() || value.len() > max {
        return Err(LimitError::new(
            format!("a key attribute is 1 to {max} bytes"),
            path,
            format!("{} bytes", value.len()),
        ));
    }
    Ok(())
}

/// Check an identifier stored on audit records (`correlationId`, `caller`, `traceId`):
/// 1 to [`MAX_IDENTIFIER_BYTES`] bytes, no control characters.
pub fn check_identifier(value: &str, path: &str) -> Result<(), LimitError> {
    check_key_attribute(value, path, MAX_IDENTIFIER_BYTES).map_err(|e| LimitError {
        limit: format!("an identifier is 1 to {MAX_IDENTIFIER_BYTES} bytes"),
        ..e
    })?;
    if let Some((pos, c)) = value.char_indices().find(|(_, c)| c.is_control()) {
        return Err(LimitError::new(
            "an identifier has no control characters",
            path,
            format!("{c:?} at byte {pos}"),
        ));
    }
    Ok(())
}

/// The size DynamoDB counts for a JSON value stored as an attribute value (the developer
/// guide's "Item sizes and formats": strings by UTF-8 length, numbers 1 byte per two
/// significant digits plus 1, booleans and null 1 byte, maps and lists 3 bytes plus 1 per
/// element plus their contents).
pub fn value_size(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) => 1,
        Value::Number(n) => {
            let digits = significant(&n.to_string()).map_or(1, |(d, _)| d.max(1));
            digits.div_ceil(2) + 1
        }
        Value::String(s) => s.len(),
        Value::Array(items) => 3 + items.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        Value::Object(map) => {
            3 + map
                .iter()
                .map(|(k, v)| 1 + k.len() + value_size(v))
                .sum::<usize>()
        }
    }
}

/// The size of a number attribute holding an integer.
fn int_size(n: i128) -> usize {
    significant(&n.to_string()).map_or(1, |(d, _)| d.max(1).div_ceil(2) + 1)
}

/// Check a staged entity write: its keys, its document and the item's size
/// (`pk`, `sk`, `doc` and `version`).
pub fn check_staged_write(write: &StagedWrite) -> Result<(), LimitError> {
    let key = write.key();
    check_entity_key(key)?;
    if let StagedWrite::Put { doc, .. } = write {
        check_document(doc, "doc")?;
        let size = entity_item_size(key, doc);
        if size > MAX_ITEM_BYTES {
            return Err(LimitError::new(
                format!("an item is at most {MAX_ITEM_BYTES} bytes"),
                format!("entity {key}"),
                format!("{size} bytes"),
            ));
        }
    }
    Ok(())
}

/// Check an entity's key attributes.
pub fn check_entity_key(key: &EntityKey) -> Result<(), LimitError> {
    check_key_attribute(&key.pk, "pk", MAX_PARTITION_KEY_BYTES)?;
    check_key_attribute(&key.sk, "sk", MAX_SORT_KEY_BYTES)
}

fn entity_item_size(key: &EntityKey, doc: &Value) -> usize {
    "pk".len()
        + key.pk.len()
        + "sk".len()
        + key.sk.len()
        + "doc".len()
        + value_size(doc)
        + "version".len()
        + int_size(i128::from(u32::MAX))
}

/// The size of an audit record as the stores write it (an upper bound of the DynamoDB
/// item: attribute names and values, `details` as JSON text).
pub fn audit_item_size(record: &AuditRecord, details_bytes: usize) -> usize {
    let opt = |name: &str, v: &Option<String>| v.as_ref().map_or(0, |v| name.len() + v.len());
    "execution".len()
        + record.execution.len()
        + "seq".len()
        + record.seq.len()
        + "type".len()
        + record.action.len()
        + "status".len()
        + record.status.as_str().len()
        + "details".len()
        + details_bytes
        + "timestamp".len()
        + record.timestamp.len()
        + "duration_ms".len()
        + int_size(i128::from(record.duration_ms))
        + "attempt".len()
        + int_size(i128::from(record.attempt))
        + "request_id".len()
        + record.request_id.len()
        + "source".len()
        + record.source.as_str().len()
        + opt("caller", &record.caller)
        + opt("correlation_id", &record.correlation_id)
        + opt("trace_id", &record.trace_id)
}

/// Check an audit record's keys, GSI keys and size (`details` as the stores write it,
/// [`crate::audit::stored_details`]).
pub fn check_audit(record: &AuditRecord) -> Result<(), LimitError> {
    check_audit_measured(record)
        .map(|(size, _)| size)
        .map(|_| ())
}

/// The bytes `details` take as stored ([`crate::audit::stored_details`]), without
/// building the text when it is stored as is: serialized into a counter, compressed only
/// when it is over the compression threshold.
pub fn details_stored_len(details: &Value) -> usize {
    let len = details_text_len(details);
    if len > crate::store::COMPRESS_ABOVE_BYTES {
        return crate::audit::stored_details(details).stored_len();
    }
    len
}

/// The length of the JSON text of `details`, counted without building it: an upper
/// bound of their stored size (compression only makes it smaller).
pub fn details_text_len(details: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, details) {
        Ok(()) => count.0,
        Err(_) => usize::MAX / 4,
    }
}

/// Check an audit record and answer the size of its item, and whether that size is
/// exact. The text length of `details` bounds their stored size from above, so the
/// details are compressed (to learn their exact stored size) only when the bound does
/// not fit: the checks refuse exactly what DynamoDB refuses without compressing on
/// every commit.
fn check_audit_measured(record: &AuditRecord) -> Result<(usize, bool), LimitError> {
    let text_len = details_text_len(&record.details);
    match check_audit_sized(record, text_len) {
        Ok(size) => Ok((size, text_len <= crate::store::COMPRESS_ABOVE_BYTES)),
        Err(_) if text_len > crate::store::COMPRESS_ABOVE_BYTES => {
            check_audit_sized(record, details_stored_len(&record.details)).map(|s| (s, true))
        }
        Err(e) => Err(e),
    }
}

/// [`check_audit`] with the stored size of `details` known; answers the item's size.
fn check_audit_sized(record: &AuditRecord, details_bytes: usize) -> Result<usize, LimitError> {
    check_key_attribute(&record.execution, "execution", MAX_PARTITION_KEY_BYTES)?;
    check_key_attribute(&record.seq, "seq", MAX_SORT_KEY_BYTES)?;
    check_key_attribute(&record.action, "type", MAX_PARTITION_KEY_BYTES)?;
    for (path, value) in [
        ("correlationId", &record.correlation_id),
        ("caller", &record.caller),
        ("traceId", &record.trace_id),
    ] {
        if let Some(v) = value {
            check_identifier(v, path)?;
        }
    }
    let size = audit_item_size(record, details_bytes);
    if size > MAX_ITEM_BYTES {
        return Err(LimitError::new(
            format!("an item is at most {MAX_ITEM_BYTES} bytes"),
            format!("audit record {}", record.seq),
            format!("{size} bytes"),
        ));
    }
    Ok(size)
}

/// The bytes an idempotency record takes besides its id, `result` and `error` (an upper
/// bound: attribute names, status, payload hash, lease owner, times and counters).
pub const RECORD_FIXED_BYTES: usize = 256;

/// Whether the record `id` with `result` fits in an item: the test that keeps a result in
/// its record or sends it to the object store (docs/architecture.md §4.6). The same
/// measure as the commit check, so a result that passes it is never refused.
pub fn result_fits_in_record(id: &str, result: &crate::store::StoredResult) -> bool {
    RECORD_FIXED_BYTES + id.len() + result.stored_len() <= MAX_ITEM_BYTES
}

/// The size of the idempotency record a write leaves (an upper bound).
fn record_write_size(write: &RecordWrite) -> usize {
    const FIXED: usize = RECORD_FIXED_BYTES;
    match write {
        RecordWrite::Finish {
            id, result, error, ..
        } => {
            FIXED
                + id.len()
                + result.as_ref().map_or(0, |r| r.stored_len())
                + error.as_ref().map_or(0, String::len)
        }
        RecordWrite::Release { id, .. } => FIXED + id.len(),
        RecordWrite::Insert { record, .. } => {
            FIXED
                + record.id.len()
                + record.result.as_ref().map_or(0, |r| r.stored_len())
                + record.error.as_ref().map_or(0, String::len)
        }
        RecordWrite::None => 0,
    }
}

/// Check a claim: the record's id is a partition key.
pub fn check_claim(claim: &Claim) -> Result<(), LimitError> {
    check_key_attribute(&claim.id, "id", MAX_PARTITION_KEY_BYTES)
}

/// Check a whole commit: the record, the audit record, every staged write, and the
/// transaction's item count and size.
pub fn check_commit(commit: &Commit) -> Result<(), LimitError> {
    let record_size = record_write_size(&commit.record);
    if record_size > MAX_ITEM_BYTES {
        return Err(LimitError::new(
            format!("an item is at most {MAX_ITEM_BYTES} bytes"),
            "the idempotency record",
            format!("{record_size} bytes"),
        ));
    }
    let (audit_size, exact) = check_audit_measured(&commit.audit)?;
    let items = usize::from(!matches!(commit.record, RecordWrite::None)) + 1 + commit.writes.len();
    if items > MAX_TRANSACTION_ITEMS {
        return Err(LimitError::new(
            format!("a transaction holds at most {MAX_TRANSACTION_ITEMS} items"),
            "transaction",
            format!("{items} items"),
        ));
    }
    let mut total = record_size + audit_size;
    for write in &commit.writes {
        check_staged_write(write)?;
        total += match write {
            StagedWrite::Put { key, doc, .. } => entity_item_size(key, doc),
            StagedWrite::Delete { key, .. } => key.pk.len() + key.sk.len() + 4,
        };
    }
    if total > MAX_TRANSACTION_BYTES && !exact {
        // The audit record was measured from above: measure it exactly.
        let exact_size =
            check_audit_sized(&commit.audit, details_stored_len(&commit.audit.details))?;
        total = total - audit_size + exact_size;
    }
    if total > MAX_TRANSACTION_BYTES {
        return Err(LimitError::new(
            format!("a transaction is at most {MAX_TRANSACTION_BYTES} bytes"),
            "transaction",
            format!("{total} bytes"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_at_the_edges_of_the_range() {
        for ok in [
            "0",
            "-0.0",
            "1e-130",
            "-1e-130",
            "9.9999999999999999999999999999999999999e125",
            "12345678901234567890123456789012345678",
            "100000000000000000000.0",
            "18446744073709551615",
        ] {
            assert_eq!(check_number(ok, "n"), Ok(()), "{ok}");
        }
        for bad in [
            "1e126",
            "1e-131",
            "9.99e-131",
            "1e200",
            "-1e200",
            "123456789012345678901234567890123456789",
        ] {
            assert!(check_number(bad, "n").is_err(), "{bad}");
        }
    }

    #[test]
    fn significant_digits_and_exponent() {
        assert_eq!(significant("123.4"), Some((4, 2)));
        assert_eq!(significant("0.05"), Some((1, -2)));
        assert_eq!(significant("1.5e3"), Some((2, 3)));
        assert_eq!(significant("0"), Some((0, 0)));
        assert_eq!(significant("1e"), None);
        assert_eq!(significant("NaN"), None);
    }

    #[test]
    fn documents_nest_at_most_32_levels_and_have_no_empty_keys() {
        let mut deep = json!(1);
        for _ in 0..MAX_NESTING_DEPTH - 1 {
            deep = json!({ "a": deep });
        }
        assert_eq!(
            check_document(&deep, "doc"),
            Ok(()),
            "31 maps, the number at 32"
        );
        let too_deep = json!([deep]);
        let err = check_document(&too_deep, "doc").expect_err("32 containers");
        assert_eq!(err.found, "32 levels of maps and lists");
        let err = check_document(&json!({"a": {"": 1}}), "doc").expect_err("empty key");
        assert_eq!(err.path, "doc.a");
        let err = check_document(&json!({"a": [1, 1e200]}), "doc").expect_err("range");
        assert_eq!(err.path, "doc.a[1]");
    }

    #[test]
    fn identifiers_and_key_attributes() {
        assert!(check_identifier("", "correlationId").is_err());
        assert!(check_identifier(&"x".repeat(MAX_IDENTIFIER_BYTES), "c").is_ok());
        assert!(check_identifier(&"x".repeat(MAX_IDENTIFIER_BYTES + 1), "c").is_err());
        assert!(check_identifier("a\nb", "c").is_err());
        assert!(check_identifier("arn:aws:states:eu-west-1:1:execution:m:é", "c").is_ok());
        assert!(check_entity_key(&EntityKey::new("p", "")).is_err());
        assert!(check_entity_key(&EntityKey::new("p".repeat(2048), "s".repeat(1024))).is_ok());
        assert!(check_entity_key(&EntityKey::new("p".repeat(2049), "s")).is_err());
        assert!(check_entity_key(&EntityKey::new("p", "s".repeat(1025))).is_err());
    }

    #[test]
    fn the_stored_size_of_details_is_counted_without_building_the_text() {
        let small = json!({"input": {"a": [1, 2.5, "x"]}, "output": null});
        assert_eq!(details_stored_len(&small), small.to_string().len());
        let large = json!({"output": "ab".repeat(crate::store::COMPRESS_ABOVE_BYTES)});
        assert_eq!(
            details_stored_len(&large),
            crate::audit::stored_details(&large).stored_len()
        );
        assert!(details_stored_len(&large) < large.to_string().len());
    }

    #[test]
    fn sizes_follow_the_developer_guide() {
        assert_eq!(value_size(&json!("abc")), 3);
        assert_eq!(value_size(&json!(true)), 1);
        assert_eq!(value_size(&json!(12345)), 4);
        assert_eq!(value_size(&json!({"ab": "c"})), 3 + 1 + 2 + 1);
        assert_eq!(value_size(&json!([1, 2])), 3 + 2 * (1 + 2));
    }
}
