//! `actiondo audit`: the audit trail, newest first, as a table or as JSON.
//!
//! Filters map onto the store's [`AuditFilter`]: `--type NAME --key K` is one execution
//! (`{type}#{key}`), `--type NAME` one action, `--correlation ID` one correlation id, and
//! nothing at all lists every record (the embedded store; DynamoDB refuses an unfiltered
//! listing, and the CLI shows its message).

use std::io::Write as _;

use actiondo::{AuditFilter, AuditPage, AuditQuery, AuditRecord, StoreConfig};
use clap::Args;
use comfy_table::{ContentArrangement, Table, presets};

use crate::{CliError, EXIT_OK};

/// The arguments of `actiondo audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only the records of this action.
    #[arg(long = "type", value_name = "NAME")]
    pub action_type: Option<String>,

    /// Only the records of this execution (needs --type: the execution is `{type}#{key}`).
    #[arg(long, value_name = "KEY", requires = "action_type")]
    pub key: Option<String>,

    /// Only the records of this correlation id.
    #[arg(long, value_name = "ID", conflicts_with_all = ["action_type", "key"])]
    pub correlation: Option<String>,

    /// Only records at or after this time (RFC 3339, e.g. 2024-05-01T00:00:00Z).
    #[arg(long, value_name = "RFC3339", value_parser = parse_since)]
    pub since: Option<String>,

    /// At most this many records (1 to 100).
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u16).range(1..=100))]
    pub limit: u16,

    /// Continue after the page that printed this cursor.
    #[arg(long, value_name = "CURSOR")]
    pub cursor: Option<String>,

    /// Print `{"records": [...], "nextCursor": ...}` instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl AuditArgs {
    /// The store query these arguments ask for.
    pub fn query(&self) -> AuditQuery {
        let filter = match (&self.action_type, &self.key, &self.correlation) {
            (Some(action), Some(key), _) => AuditFilter::Execution(format!("{action}#{key}")),
            (Some(action), None, _) => AuditFilter::Type(action.clone()),
            (None, _, Some(correlation)) => AuditFilter::Correlation(correlation.clone()),
            (None, _, None) => AuditFilter::All,
        };
        AuditQuery {
            filter,
            since: self.since.clone(),
            limit: usize::from(self.limit),
            cursor: self.cursor.clone(),
        }
    }
}

/// `--since`: any RFC 3339 time, normalized to the stored form (UTC, milliseconds,
/// `2023-10-27T10:30:00.000Z`), which sorts as text.
pub fn parse_since(text: &str) -> Result<String, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| actiondo::audit::timestamp(t.timestamp_millis()))
        .map_err(|e| format!("not an RFC 3339 time ({e}); e.g. 2024-05-01T00:00:00Z"))
}

/// Run `actiondo audit`.
pub async fn run(store: &StoreConfig, args: &AuditArgs) -> Result<u8, CliError> {
    let store = crate::open_store(store).await?;
    let page = store.query_audit(&args.query()).await?;
    if args.json {
        let text =
            crate::json::pretty(&page).map_err(|e| CliError::Output(std::io::Error::other(e)))?;
        crate::print_stdout(&text)?;
    } else {
        crate::print_stdout(&render_table(&page))?;
        if let Some(cursor) = &page.next_cursor {
            writeln!(
                std::io::stderr().lock(),
                "more records: add --cursor {cursor}"
            )?;
        }
    }
    Ok(EXIT_OK)
}

/// A table with this crate's look and `header`.
pub fn new_table<const N: usize>(header: [&str; N]) -> Table {
    let mut table = Table::new();
    table
        .load_style(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header);
    table
}

/// The page as a readable table, one row per record.
pub fn render_table(page: &AuditPage) -> String {
    if page.records.is_empty() {
        return "no audit records".to_owned();
    }
    let mut table = new_table([
        "TIME",
        "TYPE",
        "STATUS",
        "ATTEMPT",
        "KEY",
        "MS",
        "SOURCE",
        "CORRELATION",
        "ERROR",
    ]);
    for record in &page.records {
        table.add_row([
            record.timestamp.clone(),
            record.action.clone(),
            record.status.as_str().to_owned(),
            record.attempt.to_string(),
            key_of(record).to_owned(),
            record.duration_ms.to_string(),
            record.source.as_str().to_owned(),
            record.correlation_id.clone().unwrap_or_else(|| "-".into()),
            error_type(record).unwrap_or("-").to_owned(),
        ]);
    }
    table.to_string()
}

/// The idempotency key of a record: its execution id without the `{type}#` prefix.
pub fn key_of(record: &AuditRecord) -> &str {
    record
        .execution
        .strip_prefix(&record.action)
        .and_then(|rest| rest.strip_prefix('#'))
        .unwrap_or(&record.execution)
}

/// The error type in a record's details (failed, retrying and rejected records).
fn error_type(record: &AuditRecord) -> Option<&str> {
    record
        .details
        .get("error")
        .and_then(|e| e.get("type"))
        .and_then(serde_json::Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actiondo::{AuditStatus, Source};
    use serde_json::json;

    fn args(t: Option<&str>, key: Option<&str>, corr: Option<&str>) -> AuditArgs {
        AuditArgs {
            action_type: t.map(Into::into),
            key: key.map(Into::into),
            correlation: corr.map(Into::into),
            since: None,
            limit: 50,
            cursor: None,
            json: false,
        }
    }

    #[test]
    fn filters_map_onto_the_store_query() {
        assert_eq!(
            args(Some("send-email"), Some("k1"), None).query().filter,
            AuditFilter::Execution("send-email#k1".into())
        );
        assert_eq!(
            args(Some("send-email"), None, None).query().filter,
            AuditFilter::Type("send-email".into())
        );
        assert_eq!(
            args(None, None, Some("run-7")).query().filter,
            AuditFilter::Correlation("run-7".into())
        );
        assert_eq!(args(None, None, None).query().filter, AuditFilter::All);
    }

    #[test]
    fn since_is_normalized_to_the_stored_form() {
        assert_eq!(
            parse_since("2023-10-27T12:30:00+02:00").ok().as_deref(),
            Some("2023-10-27T10:30:00.000Z")
        );
        assert!(parse_since("yesterday").is_err());
    }

    #[test]
    fn table_shows_one_row_per_record_with_key_and_error() {
        let record = AuditRecord {
            execution: "send-email#k#1".into(),
            seq: "x".into(),
            action: "send-email".into(),
            status: AuditStatus::Rejected,
            details: json!({"error": {"type": "ActionDo.Validation"}}),
            timestamp: "2023-10-27T10:30:00.000Z".into(),
            duration_ms: 7,
            attempt: 0,
            request_id: "r".into(),
            source: Source::Cli,
            caller: None,
            correlation_id: Some("run-7".into()),
            trace_id: None,
        };
        assert_eq!(key_of(&record), "k#1");
        let page = AuditPage {
            records: vec![record],
            next_cursor: None,
        };
        let text = render_table(&page);
        for cell in [
            "2023-10-27T10:30:00.000Z",
            "send-email",
            "rejected",
            "k#1",
            "cli",
            "run-7",
            "ActionDo.Validation",
        ] {
            assert!(text.contains(cell), "{cell} missing in\n{text}");
        }
        assert_eq!(
            render_table(&AuditPage {
                records: vec![],
                next_cursor: None
            }),
            "no audit records"
        );
    }
}
