//! JSON output: pretty-printed without reordering anything.
//!
//! A stored result is JSON text whose key order is the action's; going through
//! `serde_json::Value` would sort the keys. [`pretty`] re-indents the text token by token
//! instead (with `serde-transcode`), so the printed result shows the action's order.

use serde::Serialize;

/// `value` as indented JSON (two spaces), keys in their serialization order.
pub fn pretty<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_json::Error> {
    let compact = serde_json::to_string(value)?;
    pretty_text(&compact)
}

/// Re-indent JSON text (two spaces) keeping its key order.
pub fn pretty_text(text: &str) -> Result<String, serde_json::Error> {
    let mut out = Vec::with_capacity(text.len() * 2);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let mut serializer = serde_json::Serializer::pretty(&mut out);
    serde_transcode::transcode(&mut deserializer, &mut serializer)?;
    deserializer.end()?;
    // serde_json only writes valid UTF-8.
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_key_order_of_the_text() {
        let text = r#"{"zeta":1,"alpha":{"b":[1,2],"a":null},"mid":"x"}"#;
        let out = pretty_text(text).unwrap_or_default();
        let zeta = out.find("zeta");
        let alpha = out.find("alpha");
        let mid = out.find("mid");
        assert!(zeta < alpha && alpha < mid, "{out}");
        assert!(out.contains("\n  \"alpha\": {\n    \"b\": ["), "{out}");
        let reparsed: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        assert_eq!(
            reparsed,
            serde_json::from_str::<serde_json::Value>(text).unwrap_or_default()
        );
    }

    #[test]
    fn rejects_trailing_garbage() {
        assert!(pretty_text("{} {}").is_err());
    }
}
