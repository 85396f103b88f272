//! Tests of `send-notification` against a local webhook that records its requests.

use std::time::Duration;

use actiondo::audit::AuditStatus;
use actiondo::store::RecordStatus;
use actiondo::testing::http::{answering, failing_once, idempotency_keys, received};
use actiondo::testing::{self, TestResult, error_kind as kind, executor};
use actiondo::{ErrorKind, Execution, Executor, Invocation, Source};
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;

fn action(server: &MockServer, timeout_ms: u64) -> Result<SendNotification, String> {
    Ok(SendNotification::new(Webhook::new(
        &format!("{}/hooks/T0/secret-part", server.uri()),
        Duration::from_millis(timeout_ms),
    )?))
}

async fn run(
    executor: &Executor,
    action: &SendNotification,
    params: Value,
    key: &str,
) -> Execution {
    testing::run(executor, action, params, key).await
}

fn notification() -> Value {
    json!({"message": "New qualified lead: Ann Lee", "channel": "#sales", "data": {"score": 95}})
}

#[tokio::test]
async fn posts_the_message_with_the_execution_key_and_a_replay_sends_nothing() -> TestResult {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hooks/T0/secret-part"))
        .and(header("idempotency-key", "notify-1"))
        .and(header("content-type", "application/json"))
        .and(body_json(notification()))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let executor = executor()?;
    let action = action(&server, 3000)?;

    let first = run(&executor, &action, notification(), "notify-1").await;
    assert_eq!(
        first.output::<NotificationOutput>()?,
        NotificationOutput {
            delivered: true,
            status: 200
        }
    );
    let record = executor
        .store()
        .get_record("send-notification#notify-1")
        .await?
        .ok_or("no record")?;
    assert_eq!(record.status, RecordStatus::Completed);

    let replay = run(&executor, &action, notification(), "notify-1").await;
    assert!(replay.replayed);
    assert_eq!(first.outcome?.get(), replay.outcome?.get());
    let requests = received(&server).await;
    assert_eq!(
        idempotency_keys(&requests),
        vec!["notify-1"],
        "exactly one send, with the key"
    );

    assert_eq!(
        testing::audit_statuses(&executor, "send-notification#notify-1").await?,
        vec![AuditStatus::Replayed, AuditStatus::Completed]
    );
    Ok(())
}

#[tokio::test]
async fn without_a_key_the_derived_key_is_sent() -> TestResult {
    let server = answering("POST", ResponseTemplate::new(202)).await;
    let executor = executor()?;
    let params = json!({"message": "hello"});
    let execution = executor
        .execute(
            &action(&server, 3000)?,
            Invocation::new(params.clone(), Source::Cli),
        )
        .await;
    assert_eq!(execution.output::<NotificationOutput>()?.status, 202);
    let key = execution.key.clone().ok_or("no key")?;
    assert_eq!(key, actiondo::hash::payload_hash(&params));
    assert_eq!(idempotency_keys(&received(&server).await), vec![key]);
    // The body is exactly the input: no null fields for what was not given.
    let requests = received(&server).await;
    assert_eq!(serde_json::from_slice::<Value>(&requests[0].body)?, params);
    Ok(())
}

#[tokio::test]
async fn a_5xx_is_transient_and_the_retry_sends_the_same_key_again() -> TestResult {
    let server = failing_once(
        "POST",
        ResponseTemplate::new(502).set_body_string("bad gateway"),
        ResponseTemplate::new(200),
    )
    .await;
    let executor = executor()?;
    let action = action(&server, 3000)?;

    let failed = run(&executor, &action, notification(), "k").await;
    assert_eq!(kind(&failed), Some(ErrorKind::Transient));
    let details = testing::error_details(&failed);
    assert_eq!(details, Some(json!({"status": 502, "body": "bad gateway"})));
    // The key was released: the retry runs again.
    assert!(actiondo::testing::key_is_free(executor.store(), "send-notification#k").await?);

    let retried = run(&executor, &action, notification(), "k").await;
    assert!(!retried.replayed);
    assert_eq!(retried.output::<NotificationOutput>()?.status, 200);
    assert_eq!(idempotency_keys(&received(&server).await), vec!["k", "k"]);

    let again = run(&executor, &action, notification(), "k").await;
    assert!(again.replayed);
    assert_eq!(received(&server).await.len(), 2, "the replay sent nothing");
    Ok(())
}

#[tokio::test]
async fn throttling_is_transient() -> TestResult {
    let server = answering("POST", ResponseTemplate::new(429)).await;
    let execution = run(&executor()?, &action(&server, 3000)?, notification(), "k").await;
    assert_eq!(kind(&execution), Some(ErrorKind::Transient));
    Ok(())
}

#[tokio::test]
async fn a_4xx_is_rejected_stored_and_replayed_without_sending() -> TestResult {
    let server = answering(
        "POST",
        ResponseTemplate::new(400).set_body_string("invalid_payload"),
    )
    .await;
    let executor = executor()?;
    let action = action(&server, 3000)?;
    let execution = run(&executor, &action, notification(), "k").await;
    assert_eq!(kind(&execution), Some(ErrorKind::Rejected));
    let details = testing::error_details(&execution);
    assert_eq!(
        details,
        Some(json!({"status": 400, "body": "invalid_payload"}))
    );
    let record = executor
        .store()
        .get_record("send-notification#k")
        .await?
        .ok_or("no record")?;
    assert_eq!(record.status, RecordStatus::Failed);

    let replay = run(&executor, &action, notification(), "k").await;
    assert!(replay.replayed);
    assert_eq!(kind(&replay), Some(ErrorKind::Rejected));
    assert_eq!(received(&server).await.len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_redirect_is_not_followed() -> TestResult {
    let server = answering(
        "POST",
        ResponseTemplate::new(301).insert_header("location", "http://127.0.0.1:9/elsewhere"),
    )
    .await;
    let execution = run(&executor()?, &action(&server, 3000)?, notification(), "k").await;
    assert_eq!(kind(&execution), Some(ErrorKind::Rejected));
    assert_eq!(received(&server).await.len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_timeout_is_transient() -> TestResult {
    let server = answering(
        "POST",
        ResponseTemplate::new(200).set_delay(Duration::from_millis(2000)),
    )
    .await;
    let started = std::time::Instant::now();
    let execution = run(&executor()?, &action(&server, 150)?, notification(), "k").await;
    assert_eq!(kind(&execution), Some(ErrorKind::Transient));
    let message = testing::error_message(&execution);
    assert!(message.contains("within 150 ms"), "{message}");
    assert!(
        !message.contains("secret-part"),
        "the URL leaked: {message}"
    );
    assert!(started.elapsed() < Duration::from_millis(1500));
    Ok(())
}

#[tokio::test]
async fn an_unreachable_webhook_is_transient_and_its_url_is_not_shown() -> TestResult {
    let port = testing::unused_port()?;
    let action = SendNotification::new(Webhook::new(
        &format!("http://127.0.0.1:{port}/services/SECRET-TOKEN"),
        Duration::from_millis(500),
    )?);
    let execution = run(&executor()?, &action, notification(), "k").await;
    assert_eq!(kind(&execution), Some(ErrorKind::Transient));
    let err = execution.outcome.err().ok_or("expected an error")?;
    let chain = testing::error_chain(&err);
    assert!(!chain.contains("SECRET-TOKEN"), "the URL leaked: {chain}");
    Ok(())
}

#[tokio::test]
async fn a_token_is_sent_as_a_bearer() -> TestResult {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(header("authorization", "Bearer t0k3n"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let action =
        SendNotification::new(Webhook::new(&server.uri(), DEFAULT_TIMEOUT)?.with_token("t0k3n"));
    let out: NotificationOutput = run(&executor()?, &action, notification(), "k")
        .await
        .output()?;
    assert_eq!(out.status, 204);
    Ok(())
}

#[tokio::test]
async fn every_problem_is_listed_and_nothing_is_sent() -> TestResult {
    let server = MockServer::start().await;
    let executor = executor()?;
    let action = action(&server, 3000)?;
    let execution = run(
        &executor,
        &action,
        json!({"message": "  ", "channel": " "}),
        "bad",
    )
    .await;
    assert_eq!(kind(&execution), Some(ErrorKind::Validation));
    assert_eq!(
        testing::error_paths(&execution),
        vec!["/message", "/channel"]
    );

    let huge = run(
        &executor,
        &action,
        json!({"message": "x", "data": {"blob": "y".repeat(MAX_BODY_BYTES)}}),
        "huge",
    )
    .await;
    assert_eq!(kind(&huge), Some(ErrorKind::Validation));

    let schema = run(
        &executor,
        &action,
        json!({"message": "x", "data": [1], "to": "z"}),
        "schema",
    )
    .await;
    assert_eq!(kind(&schema), Some(ErrorKind::Validation));

    assert!(received(&server).await.is_empty());
    assert!(
        executor
            .store()
            .get_record("send-notification#bad")
            .await?
            .is_none()
    );
    Ok(())
}

#[test]
fn webhook_urls_must_be_http_and_are_not_echoed() {
    let err = Webhook::new("ftp://user:pw@host/x", DEFAULT_TIMEOUT)
        .err()
        .unwrap_or_default();
    assert!(err.contains("scheme") && !err.contains("pw"), "{err}");
    assert!(Webhook::new("not a url", DEFAULT_TIMEOUT).is_err());
}

/// A settings lookup answering `pairs` (what `from_lookup` reads instead of the process
/// environment).
fn settings(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    }
}

#[tokio::test]
async fn the_webhook_settings_are_read() -> TestResult {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/hooks/T0"))
        .and(header("authorization", "Bearer from-settings"))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let action = SendNotification::try_from_lookup(settings(vec![
        (URL_ENV, format!(" {}/hooks/T0 ", server.uri())),
        (TIMEOUT_ENV, "2000".into()),
        (TOKEN_ENV, "from-settings".into()),
    ]))?;
    action.webhook()?;
    let out: NotificationOutput = run(&executor()?, &action, notification(), "k")
        .await
        .output()?;
    assert_eq!(out.status, 200);
    Ok(())
}

#[tokio::test]
async fn missing_or_bad_settings_fail_every_execution_as_not_configured_instead_of_panicking()
-> TestResult {
    let server = MockServer::start().await;
    let executor = executor()?;
    let cases = [
        (
            "missing",
            vec![(URL_ENV, " ".to_owned())],
            "send-notification is not configured: NOTIFY_WEBHOOK_URL must be set to the webhook's http(s) URL",
        ),
        (
            "url",
            vec![(URL_ENV, "ftp://user:s3cret@x.example/".to_owned())],
            "send-notification is not configured: NOTIFY_WEBHOOK_URL: ",
        ),
        (
            "timeout",
            vec![
                (URL_ENV, format!("{}/hooks/T0", server.uri())),
                (TIMEOUT_ENV, "0".into()),
            ],
            "send-notification is not configured: NOTIFY_TIMEOUT_MS=\"0\" is not a positive number of milliseconds",
        ),
    ];
    for (key, pairs, message) in cases {
        assert!(
            SendNotification::try_from_lookup(settings(pairs.clone())).is_err(),
            "{key}"
        );
        let action = SendNotification::from_lookup(settings(pairs));
        assert!(action.webhook().is_err(), "{key}");
        let execution = run(&executor, &action, notification(), key).await;
        assert_eq!(kind(&execution), Some(ErrorKind::Internal), "{key}");
        let err = execution.outcome.err().ok_or("expected an error")?;
        assert!(err.message().starts_with(message), "{key}: {err}");
        assert!(!err.message().contains("s3cret"), "the URL leaked: {err}");
        assert_eq!(
            err.details().map(|d| d["reason"].clone()),
            Some(json!("not_configured"))
        );
        assert!(
            actiondo::testing::key_is_free(executor.store(), &format!("send-notification#{key}"))
                .await?,
            "released: a retry after fixing the setting runs"
        );
    }
    assert!(received(&server).await.is_empty(), "nothing is sent");
    Ok(())
}
