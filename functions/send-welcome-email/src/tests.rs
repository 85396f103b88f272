use std::path::{Path, PathBuf};

use actiondo::testing;
use actiondo::{AuditStatus, ErrorKind, Execution, Executor, Invocation, Source};
use create_user::{CreateUser, CreateUserOutput};
use mail_parser::MessageParser;
use serde_json::{Value, json};

use super::*;

fn executor() -> Executor {
    testing::executor().expect("in-memory store")
}

fn action(dir: &Path) -> SendWelcomeEmail {
    SendWelcomeEmail::new(Mailer::outbox(dir, "hello@example.com").expect("mailer"))
}

async fn run(ex: &Executor, action: &SendWelcomeEmail, key: &str, params: Value) -> Execution {
    testing::run(ex, action, params, key).await
}

async fn create_user(ex: &Executor, email: &str, name: &str) -> CreateUserOutput {
    ex.execute(
        &CreateUser,
        Invocation::new(
            json!({"email": email, "name": name, "plan": "team"}),
            Source::Cli,
        ),
    )
    .await
    .output()
    .expect("user created")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| entries.map(|e| e.expect("entry").path()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn welcomes_the_user_created_by_create_user_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let action = action(dir.path());
    let ex = executor();
    let user = create_user(&ex, "Ada@Example.com", "Ada Lovelace").await;
    let params = json!({"userId": user.user_id, "template": "new-user-welcome-v2"});
    let first = run(&ex, &action, "welcome-1", params.clone()).await;
    let out: SendWelcomeEmailOutput = first.output().expect("sent");
    assert_eq!(out.user_id, user.user_id);
    assert_eq!(out.to, "ada@example.com");
    assert_eq!(out.subject, "Welcome to action.do, Ada Lovelace!");
    assert_eq!(out.template, "new-user-welcome-v2");
    assert_eq!(out.transport, TransportKind::Outbox);

    let written = files(dir.path());
    assert_eq!(written.len(), 1);
    let raw = std::fs::read(&written[0]).expect("eml");
    let message = MessageParser::default().parse(&raw).expect("parses");
    assert_eq!(
        message
            .to()
            .and_then(|a| a.first())
            .and_then(|a| a.address()),
        Some("ada@example.com")
    );
    assert_eq!(
        message
            .from()
            .and_then(|a| a.first())
            .and_then(|a| a.address()),
        Some("hello@example.com")
    );
    assert_eq!(message.message_id(), Some(out.message_id.as_str()));
    let body = message.body_text(0).expect("body");
    assert!(body.contains("Hi Ada Lovelace,"), "{body}");
    assert!(body.contains("ada@example.com"), "{body}");
    assert!(body.contains("You are on the team plan."), "{body}");

    let again = run(&ex, &action, "welcome-1", params).await;
    assert!(again.replayed);
    assert_eq!(
        first.outcome.expect("first").get(),
        again.outcome.expect("replay").get()
    );
    assert_eq!(files(dir.path()), written, "no second message");
    assert_eq!(
        testing::audit_statuses(&ex, "send-welcome-email#welcome-1")
            .await
            .expect("query_audit"),
        vec![AuditStatus::Replayed, AuditStatus::Completed]
    );
}

#[tokio::test]
async fn the_seed_example_for_an_unknown_user_is_rejected_and_replayed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let action = action(dir.path());
    let ex = executor();
    // The seed SDK's example, verbatim.
    let params = json!({"userId": "u_123", "template": "new-user-welcome-v2"});
    let err = run(&ex, &action, "seed", params.clone())
        .await
        .outcome
        .expect_err("unknown user");
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert_eq!(err.details().expect("details")["reason"], "unknown_user");
    assert_eq!(err.details().expect("details")["userId"], "u_123");
    let again = run(&ex, &action, "seed", params).await;
    assert!(again.replayed);
    assert_eq!(
        again.outcome.expect_err("stored").kind(),
        ErrorKind::Rejected
    );
    assert!(files(dir.path()).is_empty(), "nothing sent");
    assert_eq!(
        testing::audit_statuses(&ex, "send-welcome-email#seed")
            .await
            .expect("query_audit"),
        vec![AuditStatus::Replayed, AuditStatus::Failed]
    );
}

#[tokio::test]
async fn an_unknown_template_or_blank_user_is_refused_before_the_claim() {
    let dir = tempfile::tempdir().expect("tempdir");
    let action = action(dir.path());
    let ex = executor();
    let user = create_user(&ex, "grace@example.com", "Grace").await;
    let err = run(
        &ex,
        &action,
        "bad",
        json!({"userId": " ", "template": "welcome-v1"}),
    )
    .await
    .outcome
    .expect_err("invalid");
    assert_eq!(err.kind(), ErrorKind::Validation);
    let paths: Vec<&str> = err.details().expect("details")["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["path"].as_str())
        .collect();
    assert_eq!(paths, vec!["/userId", "/template"]);
    assert!(err.message().contains("new-user-welcome-v2"));
    for params in [
        json!({"userId": user.user_id}),
        json!({"userId": user.user_id, "template": "new-user-welcome-v2", "extra": 1}),
    ] {
        let err = run(&ex, &action, "bad", params)
            .await
            .outcome
            .expect_err("schema");
        assert_eq!(err.kind(), ErrorKind::Validation);
    }
    assert!(
        ex.store()
            .get_record("send-welcome-email#bad")
            .await
            .expect("get_record")
            .is_none()
    );
    assert!(files(dir.path()).is_empty());
}

#[tokio::test]
async fn other_templates_render_with_the_user_fields() {
    let dir = tempfile::tempdir().expect("tempdir");
    let action = action(dir.path());
    let ex = executor();
    let user = create_user(&ex, "lin@example.com", "Lin").await;
    let out: SendWelcomeEmailOutput = run(
        &ex,
        &action,
        "nurture",
        json!({"userId": user.user_id, "template": "lead-nurture"}),
    )
    .await
    .output()
    .expect("sent");
    assert_eq!(out.subject, "Lin, three ways teams use atomic actions");
}
