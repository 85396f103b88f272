//! The SQS intake (`router::intake::handle_batch`): events built from the SAM sample
//! record, run in-process on the embedded store.

#[allow(dead_code)]
#[path = "../../../api/tests/common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use actiondo::store::RecordStatus;
use actiondo::{AuditStatus, Catalog, Source};
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use common::{Flaky, Setup};
use router::intake::{INTAKE_CALLER, handle_batch};
use serde_json::{Value, json};

const SQS: &str = include_str!("../../../shared/tests/fixtures/sqs-receive-message.json");

/// One message of a batch.
struct Message {
    id: &'static str,
    body: String,
    group: Option<&'static str>,
    dedup: Option<&'static str>,
    correlation: Option<&'static str>,
}

impl Message {
    fn new(id: &'static str, body: Value) -> Self {
        Self::text(id, body.to_string())
    }

    fn text(id: &'static str, body: impl Into<String>) -> Self {
        Self {
            id,
            body: body.into(),
            group: None,
            dedup: None,
            correlation: None,
        }
    }

    fn fifo(mut self, group: &'static str, dedup: Option<&'static str>) -> Self {
        self.group = Some(group);
        self.dedup = dedup;
        self
    }

    fn correlated(mut self, id: &'static str) -> Self {
        self.correlation = Some(id);
        self
    }
}

/// An SQS event of `messages`, each a copy of the SAM sample record.
fn event(messages: &[Message]) -> SqsEvent {
    let sample: Value = serde_json::from_str(SQS).expect("the fixture is JSON");
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let mut record = sample["Records"][0].clone();
            record["messageId"] = json!(m.id);
            record["body"] = json!(m.body);
            if let Some(group) = m.group {
                record["attributes"]["MessageGroupId"] = json!(group);
                record["eventSourceARN"] = json!("arn:aws:sqs:us-east-1:123456789012:intake.fifo");
            }
            if let Some(dedup) = m.dedup {
                record["attributes"]["MessageDeduplicationId"] = json!(dedup);
            }
            if let Some(id) = m.correlation {
                record["messageAttributes"]["correlationId"] =
                    json!({"stringValue": id, "dataType": "String"});
            }
            record
        })
        .collect();
    serde_json::from_value(json!({"Records": records})).expect("an SQS event")
}

fn failures(response: &SqsBatchResponse) -> BTreeSet<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|id| (*id).to_owned()).collect()
}

fn user(email: &str) -> Value {
    json!({"email": email, "name": "Queue User"})
}

#[tokio::test]
async fn a_redelivered_message_replays() {
    let s = Setup::open(Catalog::new());
    let message = || {
        Message::new(
            "m-1",
            json!({"name": "create-user", "params": user("q@example.com")}),
        )
        .correlated("import-9")
    };
    let first = handle_batch(&s.api, event(&[message()])).await;
    assert!(failures(&first).is_empty());
    let again = handle_batch(&s.api, event(&[message()])).await;
    assert!(failures(&again).is_empty());

    // Keyed by the message id: one record, its trail says the second was a replay.
    let record = s.record("create-user", "m-1").await.expect("a record");
    assert_eq!(record.status, RecordStatus::Completed);
    let audit = s.audit_of("create-user", "m-1").await;
    let statuses: Vec<_> = audit.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [AuditStatus::Replayed, AuditStatus::Completed]);
    for r in &audit {
        assert_eq!(r.source, Source::Sqs);
        assert_eq!(r.caller.as_deref(), Some(INTAKE_CALLER));
        assert_eq!(r.request_id, "m-1");
        assert_eq!(r.correlation_id.as_deref(), Some("import-9"));
    }
    let users = s
        .all_audit()
        .await
        .into_iter()
        .filter(|r| r.action == "create-user")
        .count();
    assert_eq!(users, 2, "no other execution");
}

#[tokio::test]
async fn the_key_is_the_messages_else_its_message_id_never_the_deduplication_id() {
    let s = Setup::open(Catalog::new());
    let batch = event(&[
        Message::new(
            "m-1",
            json!({"name": "validate-lead", "params": user("a@example.com"), "idempotencyKey": "lead-a", "correlationId": "c-body"}),
        )
        .correlated("c-attribute"),
        Message::new(
            "m-2",
            json!({"name": "validate-lead", "params": user("b@example.com")}),
        )
        .fifo("g", Some("dedup-b")),
    ]);
    assert!(failures(&handle_batch(&s.api, batch).await).is_empty());
    let a = s.audit_of("validate-lead", "lead-a").await;
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].correlation_id.as_deref(), Some("c-body"));
    assert!(s.record("validate-lead", "m-2").await.is_some());
    assert!(s.record("validate-lead", "m-1").await.is_none());
    assert!(
        s.record("validate-lead", "dedup-b").await.is_none(),
        "the FIFO deduplication id is never the key"
    );
}

#[tokio::test]
async fn unreadable_and_unknown_messages_return_to_the_queue() {
    let s = Setup::open(Catalog::new());
    let batch = event(&[
        Message::text("not-json", "Hello from SQS!"),
        Message::new("no-name", json!({"params": {}})),
        Message::new("extra-field", json!({"name": "create-user", "parms": {}})),
        Message::new(
            "unknown",
            json!({"name": "creat-user", "params": user("u@example.com")}),
        ),
        Message::new(
            "good",
            json!({"name": "create-user", "params": user("g@example.com")}),
        ),
    ]);
    let response = handle_batch(&s.api, batch).await;
    assert_eq!(
        failures(&response),
        set(&["not-json", "no-name", "extra-field", "unknown"])
    );
    assert!(s.record("create-user", "good").await.is_some());
    let audited: BTreeSet<String> = s
        .all_audit()
        .await
        .into_iter()
        .map(|r| r.execution)
        .collect();
    assert_eq!(audited, set(&["create-user#good"]));
}

#[tokio::test]
async fn a_terminal_failure_is_not_redelivered() {
    let s = Setup::open(Catalog::new());
    let batch = event(&[
        Message::new(
            "first",
            json!({"name": "create-user", "params": user("dup@example.com")}),
        ),
        Message::new(
            "second",
            json!({"name": "create-user", "params": user("DUP@example.com")}),
        )
        .fifo("users", None),
        Message::new(
            "invalid",
            json!({"name": "create-user", "params": {"email": "nope"}}),
        ),
    ]);
    // "first" is a standard message; run it before "second" so the email is taken.
    let (first, rest): (Vec<_>, Vec<_>) = batch
        .records
        .into_iter()
        .partition(|r| r.message_id.as_deref() == Some("first"));
    let mut first_event = SqsEvent::default();
    first_event.records = first;
    assert!(failures(&handle_batch(&s.api, first_event).await).is_empty());
    let mut rest_event = SqsEvent::default();
    rest_event.records = rest;
    let response = handle_batch(&s.api, rest_event).await;
    assert!(failures(&response).is_empty(), "{response:?}");

    let second = s.record("create-user", "second").await.expect("a record");
    assert_eq!(second.status, RecordStatus::Failed);
    assert!(
        second
            .error
            .as_deref()
            .is_some_and(|e| e.contains("ActionDo.Rejected"))
    );
    let invalid = s.audit_of("create-user", "invalid").await;
    assert_eq!(
        invalid.iter().map(|r| r.status).collect::<Vec<_>>(),
        [AuditStatus::Rejected]
    );
}

#[tokio::test]
async fn a_fifo_group_stops_at_a_retryable_failure() {
    let flaky = Flaky::failing(1);
    let s = Setup::open(Catalog::new().with(flaky.clone()));
    let messages = || {
        vec![
            Message::new("a1", json!({"name": "flaky", "params": {"label": "a1"}}))
                .fifo("a", Some("a1")),
            Message::new(
                "a2",
                json!({"name": "create-user", "params": user("a2@example.com")}),
            )
            .fifo("a", Some("a2")),
            Message::new(
                "b1",
                json!({"name": "validate-lead", "params": user("b1@example.com")}),
            )
            .fifo("b", Some("b1")),
            Message::new(
                "s1",
                json!({"name": "validate-lead", "params": user("s1@example.com")}),
            ),
        ]
    };
    let response = handle_batch(&s.api, event(&messages())).await;
    assert_eq!(failures(&response), set(&["a1", "a2"]));
    assert!(
        s.record("flaky", "a1")
            .await
            .is_none_or(|r| r.is_released()),
        "released for a retry"
    );
    assert!(s.record("create-user", "a2").await.is_none(), "never ran");
    assert!(s.audit_of("create-user", "a2").await.is_empty());
    assert!(
        s.record("validate-lead", "b1").await.is_some(),
        "group b ran"
    );
    assert!(
        s.record("validate-lead", "s1").await.is_some(),
        "the standard message ran"
    );
    assert_eq!(flaky.calls.load(Ordering::SeqCst), 1);
    let a1: Vec<_> = s
        .audit_of("flaky", "a1")
        .await
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(a1, [AuditStatus::Retrying]);

    // Redelivered: the group goes through; what ran before replays.
    let response = handle_batch(&s.api, event(&messages())).await;
    assert!(failures(&response).is_empty(), "{response:?}");
    for (name, key) in [
        ("flaky", "a1"),
        ("create-user", "a2"),
        ("validate-lead", "b1"),
        ("validate-lead", "s1"),
    ] {
        let record = s.record(name, key).await.expect("a record");
        assert_eq!(record.status, RecordStatus::Completed, "{name}#{key}");
    }
    assert_eq!(flaky.calls.load(Ordering::SeqCst), 2);
    let b1: Vec<_> = s
        .audit_of("validate-lead", "b1")
        .await
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(b1, [AuditStatus::Replayed, AuditStatus::Completed]);
}

#[tokio::test]
async fn a_retryable_failure_of_a_standard_message_is_reported() {
    let flaky = Flaky::failing(1);
    let s = Setup::open(Catalog::new().with(flaky.clone()));
    let batch = || {
        event(&[
            Message::new("s1", json!({"name": "flaky", "params": {"label": "s1"}})),
            Message::new(
                "s2",
                json!({"name": "validate-lead", "params": user("s2@example.com")}),
            ),
        ])
    };
    assert_eq!(failures(&handle_batch(&s.api, batch()).await), set(&["s1"]));
    assert!(
        s.record("flaky", "s1")
            .await
            .is_none_or(|r| r.is_released()),
        "released for a retry"
    );
    assert!(failures(&handle_batch(&s.api, batch()).await).is_empty());
    assert_eq!(flaky.calls.load(Ordering::SeqCst), 2);
    let record = s.record("flaky", "s1").await.expect("a record");
    assert_eq!(record.status, RecordStatus::Completed);
}

/// A clock that does not move: every event falls in the same millisecond.
#[derive(Debug)]
struct Frozen(i64);

impl actiondo::Clock for Frozen {
    fn now_ms(&self) -> i64 {
        self.0
    }
}

/// Two deliveries of one message that fail the same way in the same millisecond (frozen
/// clock) share time, attempt, event and request id (the message id): their audit `seq`s
/// must still differ, or the second release could not commit its audit record and the
/// record would stay IN_PROGRESS until the lease ends (a regression test).
#[tokio::test]
async fn redeliveries_in_one_millisecond_are_audited_apart() {
    use std::sync::Arc;

    let flaky = Flaky::failing(2);
    let store: Arc<dyn actiondo::Store> = Arc::new(
        actiondo::store::sqlite::SqliteStore::in_memory().expect("an in-memory store opens"),
    );
    let now_ms = chrono::Utc::now().timestamp_millis();
    let executor = actiondo::Executor::from_arc(Arc::clone(&store)).with_clock(Frozen(now_ms));
    let mut catalog = actiondo_catalog::catalog();
    catalog.insert(Arc::new(flaky.clone()));
    let api = actiondo_api::Api::new(
        catalog.clone(),
        Arc::new(actiondo_api::InProcess::new(catalog, executor)),
        Arc::clone(&store),
        actiondo_api::Auth::Disabled,
    );
    let batch = || {
        event(&[Message::new(
            "s1",
            json!({"name": "flaky", "params": {"label": "s1"}}),
        )])
    };
    assert_eq!(failures(&handle_batch(&api, batch()).await), set(&["s1"]));
    assert_eq!(failures(&handle_batch(&api, batch()).await), set(&["s1"]));
    assert!(
        store
            .get_record("flaky#s1")
            .await
            .expect("reads")
            .is_some_and(|r| r.is_released() && r.attempt == 2),
        "both failures released the key, the second as attempt 2"
    );
    assert!(failures(&handle_batch(&api, batch()).await).is_empty());
    assert_eq!(flaky.calls.load(Ordering::SeqCst), 3);
}
