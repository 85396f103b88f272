//! Issue 3, "one binary, every trigger", end to end: the real `create-user` binary under
//! `cargo lambda watch`, storing in DynamoDB Local, invoked through the Lambda Invoke API
//! (`aws-sdk-lambda`) with each trigger's real event (the SAM samples of
//! `shared/tests/fixtures`, bodies substituted). Outcomes are read back from the tables:
//! idempotency records, audit rows, entities.
//!
//! `create-user` runs in optimistic mode (docs/architecture.md §4): a second user with a taken email is
//! `ActionDo.Rejected` (terminal), and an execution whose key is held `IN_PROGRESS` by a
//! live lease is `ActionDo.InProgress` (retryable). The tests hold such leases by claiming
//! the key in the store directly, as a concurrent invocation would.

use actiondo::store::{Claim, ClaimOutcome, RecordStatus};
use actiondo::{AuditFilter, AuditStatus, Source, Store as _};
use actiondo_e2e::Stack;
use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use aws_lambda_events::encodings::Body;
use aws_lambda_events::sqs::SqsBatchResponse;
use create_user::email_index_key;
use serde_json::{Value, json};

const FUNCTION: &str = "create-user";

const SQS: &str = include_str!("../../../shared/tests/fixtures/sqs-receive-message.json");
const APIGW_V2: &str =
    include_str!("../../../shared/tests/fixtures/apigateway-http-api-proxy.json");
const EVENTBRIDGE: &str =
    include_str!("../../../shared/tests/fixtures/eventbridge-scheduled-event.json");

async fn stack() -> Option<Stack> {
    Stack::builder().function(FUNCTION).start().await
}

fn fixture(text: &str) -> Value {
    serde_json::from_str(text).expect("fixture is JSON")
}

fn user(email: &str) -> Value {
    json!({"email": email, "name": "Ada Lovelace"})
}

/// One SQS message: id, body, and for FIFO queues (group, deduplication id).
struct Message<'a> {
    id: &'a str,
    body: String,
    fifo: Option<(&'a str, &'a str)>,
}

fn message<'a>(id: &'a str, body: &Value) -> Message<'a> {
    Message {
        id,
        body: body.to_string(),
        fifo: None,
    }
}

fn fifo<'a>(id: &'a str, body: &Value, group: &'a str, dedup: &'a str) -> Message<'a> {
    Message {
        id,
        body: body.to_string(),
        fifo: Some((group, dedup)),
    }
}

/// An SQS event of `messages`, each a copy of the SAM sample record with its id and body
/// (and, on a FIFO queue, the attributes SQS adds there).
fn sqs_event(messages: &[Message<'_>]) -> Value {
    let sample = fixture(SQS)["Records"][0].clone();
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let mut record = sample.clone();
            record["messageId"] = json!(m.id);
            record["body"] = json!(m.body);
            if let Some((group, dedup)) = m.fifo {
                record["attributes"]["MessageGroupId"] = json!(group);
                record["attributes"]["MessageDeduplicationId"] = json!(dedup);
                record["attributes"]["SequenceNumber"] = json!("18849496460467696128");
                record["eventSourceARN"] = json!("arn:aws:sqs:us-east-1:123456789012:intake.fifo");
            }
            record
        })
        .collect();
    json!({ "Records": records })
}

/// The message ids of `batchItemFailures`, sorted.
fn failures(reply: Value) -> Vec<String> {
    let response: SqsBatchResponse = serde_json::from_value(reply).expect("an SQS batch response");
    let mut ids: Vec<String> = response
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect();
    ids.sort();
    ids
}

fn statuses(records: &[actiondo::AuditRecord]) -> Vec<AuditStatus> {
    records.iter().map(|r| r.status).collect()
}

/// Hold `create-user#{key}` the way a concurrent invocation does: an `IN_PROGRESS` claim
/// with a live lease (five minutes) for the same params.
async fn hold(stack: &Stack, key: &str, params: &Value) {
    let now_ms = actiondo::Clock::now_ms(&actiondo::SystemClock);
    let claim = Claim {
        id: format!("{FUNCTION}#{key}"),
        payload_hash: actiondo::hash::payload_hash(params),
        lease_owner: "a-concurrent-invocation".into(),
        lease_expires_at_ms: now_ms + 300_000,
        expires_at_s: now_ms / 1000 + 3_600,
        now_ms,
    };
    let outcome = stack.store().claim(&claim).await.expect("claim");
    assert!(
        matches!(outcome, ClaimOutcome::Claimed { .. }),
        "{outcome:?}"
    );
}

/// The user id that owns `email` (from the email index entity), if any.
async fn owner(stack: &Stack, email: &str) -> Option<String> {
    let entity = stack.entity(&email_index_key(email)).await?;
    Some(entity.doc["userId"].as_str().expect("userId").to_owned())
}

/// Create a user directly (a bare-params invoke), for tests that need one to exist.
async fn existing_user(stack: &Stack, email: &str) -> String {
    let out = stack
        .invoke(FUNCTION, &user(email))
        .await
        .expect("the user is created");
    out["userId"].as_str().expect("userId").to_owned()
}

#[tokio::test]
async fn sqs_message_delivered_twice_runs_once() {
    let Some(stack) = stack().await else { return };
    let email = "twice@example.com";
    let event = sqs_event(&[message("m-twice", &user(email))]);

    for delivery in 1..=2 {
        let reply = stack
            .invoke(FUNCTION, &event)
            .await
            .expect("batch answered");
        assert!(failures(reply).is_empty(), "delivery {delivery} succeeded");
    }

    // The message id is the key: one completion, then a replay, both from SQS.
    let audit = stack.audit("create-user#m-twice").await;
    assert_eq!(
        statuses(&audit),
        [AuditStatus::Replayed, AuditStatus::Completed]
    );
    assert!(audit.iter().all(|a| a.source == Source::Sqs));
    let record = stack.record("create-user#m-twice").await.expect("record");
    assert_eq!(record.status, RecordStatus::Completed);
    // One user, the one the record's result names; no other execution of the action ran.
    let user_id = owner(&stack, email).await.expect("the email is taken");
    let result: Value = serde_json::from_str(
        &record
            .result
            .expect("result")
            .decode()
            .expect("stored result"),
    )
    .expect("JSON result");
    assert_eq!(result["userId"], user_id.as_str());
    let profile = stack
        .entity(&create_user::user_key(&user_id))
        .await
        .expect("profile");
    assert_eq!(profile.version, 1, "written once");
    let all = stack
        .audit_records(AuditFilter::Type(FUNCTION.into()))
        .await;
    assert_eq!(
        statuses(&all),
        [AuditStatus::Replayed, AuditStatus::Completed]
    );
}

#[tokio::test]
async fn sqs_mixed_batch_reports_exactly_the_retryable_failures() {
    let Some(stack) = stack().await else { return };
    let taken = existing_user(&stack, "taken@example.com").await;
    let busy = user("busy@example.com");
    hold(&stack, "m-busy", &busy).await;

    let event = sqs_event(&[
        message("m-ok", &user("ok@example.com")),
        message("m-busy", &busy),
        message("m-taken", &user("Taken@Example.com")),
        message("m-invalid", &json!({"email": "no-name@example.com"})),
        Message {
            id: "m-garbage",
            body: "this is not JSON".into(),
            fifo: None,
        },
    ]);
    let reply = stack
        .invoke(FUNCTION, &event)
        .await
        .expect("batch answered");
    assert_eq!(
        failures(reply),
        ["m-busy"],
        "only the retryable failure is redelivered"
    );

    // Succeeded.
    assert!(owner(&stack, "ok@example.com").await.is_some());
    assert_eq!(
        statuses(&stack.audit("create-user#m-ok").await),
        [AuditStatus::Completed]
    );
    // Retryable: nothing written, the concurrent claim untouched, no audit of its own.
    assert_eq!(owner(&stack, "busy@example.com").await, None);
    let held = stack.record("create-user#m-busy").await.expect("record");
    assert_eq!(held.status, RecordStatus::InProgress);
    assert_eq!(held.lease_owner, "a-concurrent-invocation");
    // Terminal, audited, not redelivered: the business rule (stored and replayable) ...
    let rejected = stack.audit("create-user#m-taken").await;
    assert_eq!(statuses(&rejected), [AuditStatus::Failed]);
    assert_eq!(
        rejected[0].details["error"]["type"], "ActionDo.Rejected",
        "{:?}",
        rejected[0].details
    );
    assert_eq!(
        stack
            .record("create-user#m-taken")
            .await
            .expect("record")
            .status,
        RecordStatus::Failed
    );
    assert_eq!(
        owner(&stack, "taken@example.com").await.as_deref(),
        Some(taken.as_str())
    );
    // ... and input rejected before anything ran: only the `rejected` audit row.
    for key in ["m-invalid", "m-garbage"] {
        let audit = stack.audit(&format!("create-user#{key}")).await;
        assert_eq!(statuses(&audit), [AuditStatus::Rejected], "{key}");
        assert_eq!(audit[0].details["error"]["type"], "ActionDo.Validation");
        assert!(
            stack.record(&format!("create-user#{key}")).await.is_none(),
            "{key}"
        );
    }
    assert_eq!(owner(&stack, "no-name@example.com").await, None);
}

#[tokio::test]
async fn sqs_fifo_group_stops_after_its_first_retryable_failure() {
    let Some(stack) = stack().await else { return };
    existing_user(&stack, "b-taken@example.com").await;
    let a2 = user("a2@example.com");
    hold(&stack, "a2", &a2).await;

    let event = sqs_event(&[
        fifo("a1", &user("a1@example.com"), "A", "d-a1"),
        fifo("b1", &user("b-taken@example.com"), "B", "d-b1"),
        fifo("a2", &a2, "A", "d-a2"),
        fifo("a3", &user("a3@example.com"), "A", "d-a3"),
        fifo("b2", &user("b2@example.com"), "B", "d-b2"),
    ]);
    let reply = stack
        .invoke(FUNCTION, &event)
        .await
        .expect("batch answered");
    assert_eq!(
        failures(reply),
        ["a2", "a3"],
        "group A stops at a2 and returns the rest; group B goes on"
    );

    // The deduplication id is the key.
    assert_eq!(
        statuses(&stack.audit("create-user#a1").await),
        [AuditStatus::Completed]
    );
    assert!(owner(&stack, "a1@example.com").await.is_some());
    // a2 met the live lease; a3 never ran: no record, no audit, no user.
    assert_eq!(owner(&stack, "a2@example.com").await, None);
    assert!(stack.audit("create-user#a3").await.is_empty());
    assert!(stack.record("create-user#a3").await.is_none());
    assert_eq!(owner(&stack, "a3@example.com").await, None);
    // A terminal failure is final (audited, not redelivered), so it does not hold its
    // group back: b2 ran after b1 was rejected.
    assert_eq!(
        statuses(&stack.audit("create-user#b1").await),
        [AuditStatus::Failed]
    );
    assert_eq!(
        statuses(&stack.audit("create-user#b2").await),
        [AuditStatus::Completed]
    );
    assert!(owner(&stack, "b2@example.com").await.is_some());
    // Nothing else ran: the action's whole audit is the set-up user and these four.
    let mut all: Vec<(String, AuditStatus)> = stack
        .audit_records(AuditFilter::Type(FUNCTION.into()))
        .await
        .into_iter()
        .map(|r| (r.execution, r.status))
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let setup = format!(
        "create-user#{}",
        actiondo::hash::payload_hash(&user("b-taken@example.com"))
    );
    let mut expected = vec![
        (setup, AuditStatus::Completed),
        ("create-user#a1".to_owned(), AuditStatus::Completed),
        ("create-user#b1".to_owned(), AuditStatus::Failed),
        ("create-user#b2".to_owned(), AuditStatus::Completed),
    ];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(all, expected);
}

/// An HTTP API (payload v2) request from the SAM sample: `POST`, a JSON body, the
/// `Idempotency-Key` header.
fn http_request(body: &Value, key: &str) -> Value {
    let mut event = fixture(APIGW_V2);
    event["body"] = json!(body.to_string());
    event["isBase64Encoded"] = json!(false);
    event["headers"] = json!({
        "content-type": "application/json",
        "idempotency-key": key,
    });
    event["requestContext"]["http"]["method"] = json!("POST");
    event
}

fn http_response(reply: Value) -> (i64, http::HeaderMap, String) {
    let response: ApiGatewayV2httpResponse =
        serde_json::from_value(reply.clone()).unwrap_or_else(|e| panic!("{e}: {reply}"));
    let body = match response.body {
        Some(Body::Text(text)) => text,
        other => panic!("a JSON text body, not {other:?}"),
    };
    (response.status_code, response.headers, body)
}

#[tokio::test]
async fn api_gateway_v2_replay_carries_the_replay_header_and_the_same_body() {
    let Some(stack) = stack().await else { return };
    let event = http_request(&user("http@example.com"), "signup-http-1");

    let (status, headers, first) = http_response(stack.invoke(FUNCTION, &event).await.expect("ok"));
    assert_eq!(status, 200, "{first}");
    assert!(headers.get("idempotent-replayed").is_none());
    assert_eq!(headers["idempotency-key"], "signup-http-1");
    let created: Value = serde_json::from_str(&first).expect("JSON body");
    assert_eq!(created["email"], "http@example.com");

    let (status, headers, again) = http_response(stack.invoke(FUNCTION, &event).await.expect("ok"));
    assert_eq!(status, 200);
    assert_eq!(headers["idempotent-replayed"], "true");
    assert_eq!(again, first, "the replay's body is byte-identical");

    let audit = stack.audit("create-user#signup-http-1").await;
    assert_eq!(
        statuses(&audit),
        [AuditStatus::Replayed, AuditStatus::Completed]
    );
    assert!(audit.iter().all(|a| a.source == Source::Http));
    assert_eq!(
        owner(&stack, "http@example.com").await.as_deref(),
        created["userId"].as_str()
    );
}

#[tokio::test]
async fn step_functions_task_with_a_terminal_error_is_a_function_error_with_the_wire_name() {
    let Some(stack) = stack().await else { return };
    let first = existing_user(&stack, "sfn@example.com").await;
    let execution = "arn:aws:states:us-east-1:123456789012:execution:onboarding:run-1";
    let key = format!("{execution}#CreateUser");
    let task = json!({
        "params": user("sfn@example.com"),
        "idempotencyKey": key,
        "correlationId": execution,
    });

    let err = stack
        .invoke(FUNCTION, &task)
        .await
        .expect_err("a function error");
    assert_eq!(err.function_error, "Unhandled");
    assert_eq!(err.error_type, "ActionDo.Rejected");
    let body = err.body().expect("errorMessage is the JSON error body");
    assert_eq!(body.error.error_type, "ActionDo.Rejected");
    assert!(!body.error.retryable);
    let details = body.error.details.expect("details");
    assert_eq!(details["reason"], "email_taken");
    assert_eq!(details["userId"], first.as_str());

    // Stored and replayed like a result: a Step Functions retry gets the same error.
    let again = stack
        .invoke(FUNCTION, &task)
        .await
        .expect_err("replayed error");
    assert_eq!(again.error_type, "ActionDo.Rejected");
    assert_eq!(again.error_message, err.error_message);
    let id = format!("create-user#{key}");
    assert_eq!(
        stack.record(&id).await.expect("record").status,
        RecordStatus::Failed
    );
    let audit = stack.audit(&id).await;
    assert_eq!(
        statuses(&audit),
        [AuditStatus::Replayed, AuditStatus::Failed]
    );
    assert!(audit.iter().all(|a| a.source == Source::StepFunctions));
    assert!(
        audit
            .iter()
            .all(|a| a.correlation_id.as_deref() == Some(execution))
    );

    // Input that fails the schema: ActionDo.Validation, nothing stored but the audit row.
    let invalid = json!({
        "params": {"email": "sfn2@example.com"},
        "idempotencyKey": format!("{execution}#Invalid"),
        "correlationId": execution,
    });
    let err = stack
        .invoke(FUNCTION, &invalid)
        .await
        .expect_err("a function error");
    assert_eq!(err.error_type, "ActionDo.Validation");
    let id = format!("create-user#{execution}#Invalid");
    assert!(stack.record(&id).await.is_none());
    assert_eq!(statuses(&stack.audit(&id).await), [AuditStatus::Rejected]);
    let by_run = stack
        .audit_records(AuditFilter::Correlation(execution.into()))
        .await;
    assert_eq!(by_run.len(), 3, "the run's three audit rows: {by_run:?}");
}

#[tokio::test]
async fn eventbridge_event_runs_with_the_event_id_as_key() {
    let Some(stack) = stack().await else { return };
    let mut event = fixture(EVENTBRIDGE);
    let event_id = event["id"].as_str().expect("id").to_owned();
    event["detail"] = user("rule@example.com");

    let out = stack.invoke(FUNCTION, &event).await.expect("created");
    assert_eq!(out["email"], "rule@example.com");
    // EventBridge redelivers an event with the same id: a replay.
    let again = stack.invoke(FUNCTION, &event).await.expect("replayed");
    assert_eq!(again, out);

    let id = format!("create-user#{event_id}");
    assert_eq!(
        stack.record(&id).await.expect("record").status,
        RecordStatus::Completed
    );
    let audit = stack.audit(&id).await;
    assert_eq!(
        statuses(&audit),
        [AuditStatus::Replayed, AuditStatus::Completed]
    );
    assert!(audit.iter().all(|a| a.source == Source::EventBridge));
    assert!(
        audit
            .iter()
            .all(|a| a.correlation_id.as_deref() == Some(event_id.as_str()))
    );
    assert_eq!(
        owner(&stack, "rule@example.com").await.as_deref(),
        out["userId"].as_str()
    );
}
