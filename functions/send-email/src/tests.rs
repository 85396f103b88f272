use std::path::{Path, PathBuf};

use actiondo::testing::{self, paths};
use actiondo::{AuditStatus, ErrorKind, Execution, Executor};
use mail_parser::{MessageParser, MimeHeaders as _};
use serde_json::{Value, json};

use super::*;

const FROM: &str = "Shop <shop@example.com>";

fn executor() -> Executor {
    testing::executor().expect("in-memory store")
}

async fn run(executor: &Executor, action: &SendEmail, key: &str, params: Value) -> Execution {
    testing::run(executor, action, params, key).await
}

fn outbox_action(dir: &Path) -> SendEmail {
    SendEmail::new(Mailer::outbox(dir, FROM).expect("mailer"))
}

fn files(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Err(_) => Vec::new(),
        Ok(entries) => {
            let mut all: Vec<PathBuf> = entries.map(|e| e.expect("dir entry").path()).collect();
            all.sort();
            all
        }
    }
}

#[tokio::test]
async fn the_outbox_holds_one_rfc5322_message_per_execution() {
    let dir = tempfile::tempdir().expect("tempdir");
    let action = outbox_action(dir.path());
    let ex = executor();
    let params = json!({
        "to": " ada@example.com ",
        "subject": "Your  order\tis on its way",
        "body": "Grüße, Ada!\nLine two — with a long dash.\n",
    });
    let first = run(&ex, &action, "order-42", params.clone()).await;
    let out: SendEmailOutput = first.output().expect("sent");
    assert_eq!(out.transport, TransportKind::Outbox);
    assert_eq!(out.to, "ada@example.com");
    assert_eq!(out.subject, "Your order is on its way");
    assert_eq!(out.template, None);

    let written = files(dir.path());
    assert_eq!(written.len(), 1, "{written:?}");
    assert_eq!(out.path.as_deref(), written[0].to_str());
    let name = written[0]
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name");
    assert!(
        name.starts_with("send-email_order-42-") && name.ends_with(".eml"),
        "{name}"
    );

    let raw = std::fs::read(&written[0]).expect("read eml");
    let text = String::from_utf8(raw.clone()).expect("ascii on the wire");
    assert!(
        text.contains("\r\nMIME-Version: 1.0\r\n"),
        "MIME-Version header: {text}"
    );
    let message = MessageParser::default().parse(&raw).expect("parses");
    let from = message.from().and_then(|a| a.first()).expect("From");
    assert_eq!(from.address(), Some("shop@example.com"));
    assert_eq!(from.name(), Some("Shop"));
    let to = message.to().and_then(|a| a.first()).expect("To");
    assert_eq!(to.address(), Some("ada@example.com"));
    assert_eq!(message.subject(), Some("Your order is on its way"));
    assert!(message.date().is_some(), "Date header");
    assert_eq!(message.message_id(), Some(out.message_id.as_str()));
    assert!(out.message_id.ends_with("@example.com"));
    let content_type = message.content_type().expect("Content-Type");
    assert_eq!(content_type.ctype(), "text");
    assert_eq!(content_type.subtype(), Some("plain"));
    assert_eq!(
        content_type.attribute("charset").map(str::to_lowercase),
        Some("utf-8".to_owned())
    );
    // On the wire lines end with CRLF (RFC 5322).
    assert_eq!(
        message
            .body_text(0)
            .map(|b| b.replace("\r\n", "\n"))
            .as_deref()
            .map(str::trim_end),
        Some("Grüße, Ada!\nLine two — with a long dash.")
    );

    // A replay returns the stored bytes and writes nothing.
    let again = run(&ex, &action, "order-42", params).await;
    assert!(again.replayed);
    assert_eq!(
        first.outcome.expect("first").get(),
        again.outcome.expect("replay").get()
    );
    assert_eq!(files(dir.path()), written, "still one file");
    assert_eq!(
        testing::audit_statuses(&ex, "send-email#order-42")
            .await
            .expect("query_audit"),
        vec![AuditStatus::Replayed, AuditStatus::Completed]
    );
}

#[tokio::test]
async fn a_resend_of_one_execution_overwrites_its_file_and_keeps_its_message_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mailer = Mailer::outbox(dir.path(), FROM).expect("mailer");
    let email = Email {
        to: "ada@example.com".into(),
        subject: "Hi".into(),
        body: "one\n".into(),
    };
    let a = mailer
        .send(&email, "send-email#k/with spaces")
        .await
        .expect("a");
    let b = mailer
        .send(&email, "send-email#k/with spaces")
        .await
        .expect("b");
    assert_eq!(a, b);
    assert_eq!(files(dir.path()).len(), 1);
    let other = mailer.send(&email, "send-email#k2").await.expect("other");
    assert_ne!(other.message_id, a.message_id);
    assert_eq!(files(dir.path()).len(), 2);
    // Names stay safe and distinct even when keys sanitize alike.
    assert_ne!(
        mailer::outbox_file_name("a/b"),
        mailer::outbox_file_name("a?b")
    );
    assert!(mailer::outbox_file_name("../../etc/passwd").starts_with("_.._etc_passwd-"));
}

#[tokio::test]
async fn the_template_form_renders_the_named_template() {
    let dir = tempfile::tempdir().expect("tempdir");
    let action = outbox_action(dir.path());
    let ex = executor();
    let out: SendEmailOutput = run(
        &ex,
        &action,
        "welcome-1",
        json!({
            "to": "ada@example.com",
            "template": "new-user-welcome-v2",
            "data": {"name": "Ada", "email": "ada@example.com", "plan": "pro"},
        }),
    )
    .await
    .output()
    .expect("sent");
    assert_eq!(out.subject, "Welcome to action.do, Ada!");
    assert_eq!(out.template.as_deref(), Some("new-user-welcome-v2"));
    let raw = std::fs::read(out.path.expect("path")).expect("eml");
    let message = MessageParser::default().parse(&raw).expect("parses");
    assert_eq!(message.subject(), Some("Welcome to action.do, Ada!"));
    let body = message.body_text(0).expect("body");
    assert!(body.contains("Hi Ada,") && body.contains("You are on the pro plan."));

    // A subject given with a template replaces the template's.
    let out: SendEmailOutput = run(
        &ex,
        &action,
        "welcome-2",
        json!({
            "to": "ada@example.com",
            "subject": "Custom",
            "template": "lead-nurture",
            "data": {"name": "Ada"},
        }),
    )
    .await
    .output()
    .expect("sent");
    assert_eq!(out.subject, "Custom");
}

#[tokio::test]
async fn template_errors_are_validation_and_send_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let action = outbox_action(dir.path());
    let ex = executor();
    let unknown = run(
        &ex,
        &action,
        "t1",
        json!({"to": "ada@example.com", "template": "no-such-template", "data": {}}),
    )
    .await
    .outcome
    .expect_err("unknown template");
    assert_eq!(unknown.kind(), ErrorKind::Validation);
    assert_eq!(paths(&unknown), vec!["/template"]);
    assert!(unknown.message().contains("new-user-welcome-v2"));

    let missing = run(
        &ex,
        &action,
        "t2",
        json!({"to": "ada@example.com", "template": "new-user-welcome-v2", "data": {"plan": "pro"}}),
    )
    .await
    .outcome
    .expect_err("missing variables");
    assert_eq!(missing.kind(), ErrorKind::Validation);
    assert_eq!(paths(&missing), vec!["/data/email", "/data/name"]);

    assert!(files(dir.path()).is_empty(), "nothing written");
    for key in ["t1", "t2"] {
        assert!(
            ex.store()
                .get_record(&format!("send-email#{key}"))
                .await
                .expect("get_record")
                .is_none(),
            "no record for a rejected request"
        );
        assert_eq!(
            testing::audit_statuses(&ex, &format!("send-email#{key}"))
                .await
                .expect("query_audit"),
            vec![AuditStatus::Rejected]
        );
    }
}

#[tokio::test]
async fn every_input_problem_is_listed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let action = outbox_action(dir.path());
    let ex = executor();
    let cases = [
        (
            json!({"to": "nobody", "body": "x"}),
            vec!["/to", "/subject"],
        ),
        (
            json!({"to": "a@example.com", "subject": " ", "body": "x", "template": "lead-nurture"}),
            vec!["/subject", "/body"],
        ),
        (json!({"to": "a@example.com", "subject": "S"}), vec![""]),
        (
            json!({"to": "a@example.com", "subject": "S", "body": "x", "data": {"a": 1}}),
            vec!["/data"],
        ),
    ];
    for (params, expected) in cases {
        let err = run(&ex, &action, "bad", params.clone())
            .await
            .outcome
            .expect_err("invalid");
        assert_eq!(err.kind(), ErrorKind::Validation, "{params}");
        assert_eq!(paths(&err), expected, "{params}");
    }
    // Schema: unknown fields, wrong types.
    for params in [
        json!({"to": "a@example.com", "subject": "S", "body": "x", "cc": "b@example.com"}),
        json!({"to": 5, "subject": "S", "body": "x"}),
    ] {
        let err = run(&ex, &action, "bad", params.clone())
            .await
            .outcome
            .expect_err("schema");
        assert_eq!(err.kind(), ErrorKind::Validation, "{params}");
    }
    assert!(files(dir.path()).is_empty());
}

#[test]
fn the_transport_follows_the_environment() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    };
    let local = Mailer::from_lookup(env(&[])).expect("outbox by default");
    assert_eq!(local.kind(), TransportKind::Outbox);
    assert_eq!(
        local.from_address(),
        r#""action.do" <no-reply@example.com>"#,
        "the default From, quoted as RFC 5322 wants"
    );
    let lambda = Mailer::from_lookup(env(&[
        ("AWS_LAMBDA_FUNCTION_NAME", "send-email"),
        ("EMAIL_FROM", "noreply@example.com"),
    ]))
    .expect("ses in Lambda");
    assert_eq!(lambda.kind(), TransportKind::Ses);
    let forced = Mailer::from_lookup(env(&[
        ("AWS_LAMBDA_FUNCTION_NAME", "send-email"),
        ("EMAIL_TRANSPORT", "outbox"),
    ]))
    .expect("forced outbox");
    assert_eq!(forced.kind(), TransportKind::Outbox);
    let err = Mailer::from_lookup(env(&[("EMAIL_TRANSPORT", "ses")])).expect_err("no From");
    assert!(err.to_string().contains("EMAIL_FROM"), "{err}");
    let err = Mailer::from_lookup(env(&[("EMAIL_TRANSPORT", "smtp")])).expect_err("unknown");
    assert!(err.to_string().contains("smtp"), "{err}");
    let err = Mailer::from_lookup(env(&[("EMAIL_FROM", "not an address")])).expect_err("bad From");
    assert!(err.to_string().contains("EMAIL_FROM"), "{err}");
}

// ---------------------------------------------------------------- SES (moto)

/// moto's URL, or `None` after a loud notice when it is not configured and not required.
fn moto_url(test: &str) -> Option<String> {
    actiondo::testing::server_url(
        "ACTIONDO_TEST_MOTO_URL",
        &format!("send-email {test} (SES v2 against moto)"),
    )
}

fn ses_client(endpoint: &str) -> aws_sdk_sesv2::Client {
    let config =
        aws_sdk_sesv2::config::Builder::from(&actiondo::testing::local_aws_config(endpoint))
            .retry_config(aws_sdk_sesv2::config::retry::RetryConfig::disabled())
            .timeout_config(
                aws_sdk_sesv2::config::timeout::TimeoutConfig::builder()
                    .operation_timeout(std::time::Duration::from_secs(5))
                    .build(),
            )
            .build();
    aws_sdk_sesv2::Client::from_conf(config)
}

/// The messages moto's SES holds for `recipient`.
async fn moto_messages(url: &str, recipient: &str) -> Vec<Value> {
    let data: Value = reqwest::Client::new()
        .get(format!("{url}/moto-api/data.json"))
        .send()
        .await
        .expect("moto data.json")
        .json()
        .await
        .expect("data.json is JSON");
    data["ses"]["Message"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m["destinations"]["ToAddresses"][0] == recipient)
        .collect()
}

#[tokio::test]
async fn ses_sends_through_sesv2_and_a_replay_does_not_send_again() {
    let Some(url) = moto_url("ses_sends_through_sesv2") else {
        return;
    };
    let client = ses_client(&url);
    let unique = uuid_suffix();
    let from = format!("sender-{unique}@example.com");
    client
        .create_email_identity()
        .email_identity(&from)
        .send()
        .await
        .expect("create_email_identity");
    let action = SendEmail::new(Mailer::ses(client, &from).expect("mailer"));
    let ex = executor();
    let to = format!("ada-{unique}@example.com");
    let params = json!({
        "to": to,
        "template": "new-user-welcome-v2",
        "data": {"name": "Ada", "email": to},
    });
    let first = run(&ex, &action, "ses-1", params.clone()).await;
    let out: SendEmailOutput = first.output().expect("sent");
    assert_eq!(out.transport, TransportKind::Ses);
    assert!(!out.message_id.is_empty());
    assert_eq!(out.path, None);

    let sent = moto_messages(&url, &to).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["id"], json!(out.message_id));
    assert_eq!(sent[0]["source"], json!(from));
    assert_eq!(sent[0]["subject"], "Welcome to action.do, Ada!");
    assert!(
        sent[0]["body"]
            .as_str()
            .is_some_and(|b| b.starts_with("Hi Ada,"))
    );

    let again = run(&ex, &action, "ses-1", params).await;
    assert!(again.replayed);
    assert_eq!(
        first.outcome.expect("first").get(),
        again.outcome.expect("replay").get()
    );
    assert_eq!(moto_messages(&url, &to).await.len(), 1, "not sent twice");
}

#[tokio::test]
async fn ses_refusing_an_unverified_sender_is_rejected_and_stored() {
    let Some(url) = moto_url("ses_refusing_an_unverified_sender") else {
        return;
    };
    let unique = uuid_suffix();
    let action = SendEmail::new(
        Mailer::ses(
            ses_client(&url),
            &format!("unverified-{unique}@unverified-{unique}.example"),
        )
        .expect("mailer"),
    );
    let ex = executor();
    let params = json!({"to": "ada@example.com", "subject": "S", "body": "B"});
    let err = run(&ex, &action, "ses-2", params.clone())
        .await
        .outcome
        .expect_err("rejected");
    assert_eq!(err.kind(), ErrorKind::Rejected, "{err}");
    assert_eq!(err.details().expect("details")["transport"], "ses");
    assert_eq!(err.details().expect("details")["code"], "MessageRejected");
    let again = run(&ex, &action, "ses-2", params).await;
    assert!(again.replayed, "a terminal refusal is replayed");
    assert_eq!(
        again.outcome.expect_err("replayed").kind(),
        ErrorKind::Rejected
    );
}

#[tokio::test]
async fn ses_unreachable_is_transient_and_releases_the_key() {
    // A port nothing listens on: the connection is refused at once.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let action = SendEmail::new(
        Mailer::ses(
            ses_client(&format!("http://127.0.0.1:{port}")),
            "a@example.com",
        )
        .expect("mailer"),
    );
    let ex = executor();
    let err = run(
        &ex,
        &action,
        "down",
        json!({"to": "ada@example.com", "subject": "S", "body": "B"}),
    )
    .await
    .outcome
    .expect_err("transient");
    assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    assert!(err.is_retryable());
    assert!(
        actiondo::testing::key_is_free(ex.store(), "send-email#down")
            .await
            .expect("get_record"),
        "released, so a retry runs again"
    );
    assert_eq!(
        testing::audit_statuses(&ex, "send-email#down")
            .await
            .expect("query_audit"),
        vec![AuditStatus::Retrying]
    );
}

fn uuid_suffix() -> String {
    use sha2::Digest as _;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    hex::encode(sha2::Sha256::digest(
        format!("{nanos}-{}", std::process::id()).as_bytes(),
    ))[..12]
        .to_owned()
}

#[tokio::test]
async fn an_unconfigured_action_fails_each_execution_and_sends_nothing() {
    let action = SendEmail {
        mailer: Err("EMAIL_FROM must name a verified SES identity".into()),
    };
    let ex = executor();
    let err = run(
        &ex,
        &action,
        "k",
        json!({"to": "ada@example.com", "subject": "S", "body": "B"}),
    )
    .await
    .outcome
    .expect_err("not configured");
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert!(err.message().contains("EMAIL_FROM"), "{err}");
    assert!(action.mailer().is_err());
}
