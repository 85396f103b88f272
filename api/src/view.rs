//! What the read routes show: an action of the catalog ([`ActionInfo`]), an idempotency
//! record as JSON, and the query of `GET /audit` read from its query string.

use actiondo::audit::MAX_PAGE_LIMIT;
use actiondo::store::{IdempotencyRecord, RecordStatus};
use actiondo::{ActionError, AuditFilter, AuditQuery, Describe, FieldErrors, KeyPolicy};
use serde::Serialize;
use serde_json::{Value, json};

/// One action as the router's `GET /actions` and `actiondo actions --json` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionInfo {
    /// The action's name.
    pub name: &'static str,
    /// Its one-line description.
    pub description: &'static str,
    /// `derived` (the key defaults to the SHA-256 of the params) or `required`.
    pub key_policy: &'static str,
    /// The JSON Schema of its params.
    pub input_schema: Value,
    /// The JSON Schema of its result.
    pub output_schema: Value,
}

/// One action as JSON: name, description, key policy, input and output schemas.
pub fn describe(action: &dyn Describe) -> ActionInfo {
    ActionInfo {
        name: action.name(),
        description: action.description(),
        key_policy: match action.options().key_policy {
            KeyPolicy::Derived => "derived",
            KeyPolicy::Required => "required",
        },
        input_schema: action.input_schema(),
        output_schema: action.output_schema(),
    }
}

/// `GET /executions/{name}/{key}`'s `execution`: status, attempt, times, and the stored
/// outcome (`result` or `error`).
pub fn record(name: &str, key: &str, record: &IdempotencyRecord) -> Result<Value, ActionError> {
    let time = |ms: i64| actiondo::audit::timestamp(ms);
    let mut view = json!({
        "name": name,
        "key": key,
        "status": record.status.as_str(),
        "attempt": record.attempt,
        "payloadHash": record.payload_hash,
        "createdAt": time(record.created_at_ms),
        "expiresAt": time(record.expires_at_s.saturating_mul(1000)),
    });
    if let Some(done) = record.completed_at_ms {
        view["completedAt"] = json!(time(done));
    }
    match record.status {
        RecordStatus::InProgress => {
            view["leaseExpiresAt"] = json!(time(record.lease_expires_at_ms));
        }
        RecordStatus::Completed => {
            if let Some(result) = &record.result {
                let text = result.decode()?;
                view["result"] = serde_json::from_str(&text).map_err(|e| {
                    ActionError::internal(format!("the stored result is not JSON: {e}"))
                })?;
            }
        }
        RecordStatus::Failed => {
            if let Some(error) = &record.error {
                let body: Value = serde_json::from_str(error).map_err(|e| {
                    ActionError::internal(format!("the stored error is not JSON: {e}"))
                })?;
                view["error"] = body.get("error").cloned().unwrap_or(body);
            }
        }
    }
    Ok(view)
}

/// The statuses `GET /audit?status=` filters on (those of [`actiondo::AuditStatus`]).
pub const AUDIT_STATUSES: [&str; 6] = [
    "completed",
    "failed",
    "retrying",
    "replayed",
    "rejected",
    "taken_over",
];

/// [`audit_query`] plus `status`: one of [`AUDIT_STATUSES`], applied to each page after
/// the store's query (a page may then hold fewer than `limit` records; its cursor goes
/// on).
pub fn audit_request(query: &str) -> Result<(AuditQuery, Option<String>), ActionError> {
    let mut status = None;
    let mut rest = form_urlencoded::Serializer::new(String::new());
    let mut twice = false;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if name == "status" {
            twice |= status.replace(value.into_owned()).is_some();
        } else {
            rest.append_pair(&name, &value);
        }
    }
    let mut errors = FieldErrors::new();
    if twice {
        errors.add("status", "given twice");
    }
    if let Some(s) = &status
        && !AUDIT_STATUSES.contains(&s.as_str())
    {
        errors.add(
            "status",
            format!("must be one of {}, got {s:?}", AUDIT_STATUSES.join(", ")),
        );
    }
    match audit_query(&rest.finish()) {
        Ok(query) if errors.is_empty() => Ok((query, status)),
        Ok(_) => Err(errors.into_error("the audit query is invalid")),
        Err(e) if errors.is_empty() => Err(e),
        // Every problem named: the other parameters' too.
        Err(e) => {
            errors.add("", e.message().to_owned());
            Err(errors.into_error("the audit query is invalid"))
        }
    }
}

/// The default page size of `GET /audit`.
pub const DEFAULT_AUDIT_LIMIT: usize = 20;

/// Read `type`, `key`, `correlationId`, `since`, `limit` and `cursor` from a query string.
/// `key` needs `type`; `type` and `correlationId` exclude each other; `limit` is 1 to
/// 100; `since` is RFC 3339; any other parameter is refused, so that a typo does not
/// silently widen the query.
pub fn audit_query(query: &str) -> Result<AuditQuery, ActionError> {
    let mut errors = FieldErrors::new();
    let (mut action, mut key, mut correlation, mut since, mut limit, mut cursor) =
        (None, None, None, None, None, None);
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let value = value.into_owned();
        let slot = match name.as_ref() {
            "type" => &mut action,
            "key" => &mut key,
            "correlationId" => &mut correlation,
            "since" => &mut since,
            "limit" => &mut limit,
            "cursor" => &mut cursor,
            other => {
                errors.add(
                    other.to_owned(),
                    "unknown parameter; use type, key, correlationId, status, since, limit, cursor",
                );
                continue;
            }
        };
        if slot.replace(value).is_some() {
            errors.add(name.into_owned(), "given twice");
        }
    }
    let limit = match limit {
        None => DEFAULT_AUDIT_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE_LIMIT).contains(&n) => n,
            _ => {
                errors.add(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_PAGE_LIMIT}, got {text:?}"),
                );
                DEFAULT_AUDIT_LIMIT
            }
        },
    };
    if let Some(s) = &since
        && chrono::DateTime::parse_from_rfc3339(s).is_err()
    {
        errors.add(
            "since",
            format!("must be an RFC 3339 time (2024-05-01T00:00:00Z), got {s:?}"),
        );
    }
    // The stored timestamps are UTC with milliseconds: compare like with like.
    let since = since.and_then(|s| {
        chrono::DateTime::parse_from_rfc3339(&s)
            .ok()
            .map(|t| actiondo::audit::timestamp(t.timestamp_millis()))
    });
    let filter = match (action, key, correlation) {
        (Some(action), Some(key), None) => AuditFilter::Execution(format!("{action}#{key}")),
        (Some(action), None, None) => AuditFilter::Type(action),
        (None, None, Some(id)) => AuditFilter::Correlation(id),
        (None, None, None) => AuditFilter::All,
        (None, Some(_), _) => {
            errors.add("key", "needs type (the action's name)");
            AuditFilter::All
        }
        (Some(_), _, Some(_)) => {
            errors.add("correlationId", "give type or correlationId, not both");
            AuditFilter::All
        }
    };
    errors.into_result_with("the audit query is invalid")?;
    Ok(AuditQuery {
        filter,
        since,
        limit,
        cursor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_queries_are_read_strictly() {
        let q = audit_query("type=create-user&limit=5&since=2024-05-01T00:00:00Z").expect("ok");
        assert_eq!(q.filter, AuditFilter::Type("create-user".to_owned()));
        assert_eq!(q.limit, 5);
        assert_eq!(q.since.as_deref(), Some("2024-05-01T00:00:00.000Z"));
        let q = audit_query("type=a&key=k%231").expect("ok");
        assert_eq!(q.filter, AuditFilter::Execution("a#k#1".to_owned()));
        assert_eq!(audit_query("").expect("ok").limit, DEFAULT_AUDIT_LIMIT);

        let err = audit_query("limit=101&since=yesterday&tpye=x&key=k").expect_err("bad");
        let details = err.details().expect("details").to_string();
        for field in ["limit", "since", "tpye", "key"] {
            assert!(details.contains(field), "{field} in {details}");
        }
        assert!(audit_query("limit=0").is_err());
        assert!(audit_query("type=a&correlationId=c").is_err());
    }

    #[test]
    fn audit_requests_filter_by_status() {
        let (q, status) = audit_request("type=a&status=failed&limit=5").expect("ok");
        assert_eq!(q.filter, AuditFilter::Type("a".to_owned()));
        assert_eq!(q.limit, 5);
        assert_eq!(status.as_deref(), Some("failed"));
        assert_eq!(audit_request("").expect("ok").1, None);
        for bad in [
            "status=done",
            "status=failed&status=completed",
            "status=x&limit=0",
        ] {
            let err = audit_request(bad).expect_err(bad);
            assert!(err.message().contains("status"), "{bad}: {}", err.message());
        }
        let err = audit_request("status=failed&limit=0").expect_err("limit");
        assert!(err.message().contains("limit"), "{}", err.message());
    }
}
