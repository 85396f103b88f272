use std::collections::BTreeMap;
use std::time::Duration;

use actiondo::testing::{self, http::form};
use actiondo::{AuditStatus, ErrorKind, Execution, Executor, Invocation, Source};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;

const API_KEY: &str = "sk_test_123";

fn executor() -> Executor {
    testing::executor().expect("in-memory store")
}

fn action(server: &MockServer) -> ProcessPayment {
    ProcessPayment::new(
        PaymentProvider::new(&server.uri(), API_KEY, Duration::from_millis(500)).expect("provider"),
    )
}

fn params() -> Value {
    json!({
        "userId": "u_1",
        "amount": 1999,
        "currency": "eur",
        "paymentMethod": "pm_card_visa",
        "description": "Pro plan",
    })
}

fn intent(id: &str, status: &str) -> Value {
    json!({"id": id, "object": "payment_intent", "status": status, "amount": 1999, "currency": "eur"})
}

async fn run(ex: &Executor, action: &ProcessPayment, key: &str, params: Value) -> Execution {
    testing::run(ex, action, params, key).await
}

/// The requests the provider received: (Idempotency-Key, form fields).
async fn charges(server: &MockServer) -> Vec<(String, BTreeMap<String, String>)> {
    testing::http::received(server)
        .await
        .iter()
        .map(|r| {
            let key = testing::http::idempotency_key(r).unwrap_or_default();
            (key.to_owned(), form(r))
        })
        .collect()
}

#[tokio::test]
async fn charges_once_with_the_key_and_records_the_payment() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .and(header(
            "authorization",
            format!("Bearer {API_KEY}").as_str(),
        ))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .respond_with(ResponseTemplate::new(200).set_body_json(intent("pi_1", "succeeded")))
        .mount(&server)
        .await;
    let action = action(&server);
    let ex = executor();
    let first = run(&ex, &action, "order-1", params()).await;
    let out: ProcessPaymentOutput = first.output().expect("charged");
    assert_eq!(
        out,
        ProcessPaymentOutput {
            payment_id: "pi_1".into(),
            status: "succeeded".into(),
            amount: 1999,
            currency: "EUR".into(),
        }
    );

    let sent = charges(&server).await;
    assert_eq!(sent.len(), 1);
    let (key, form) = &sent[0];
    assert_eq!(
        key, "order-1",
        "the execution's key is the provider's Idempotency-Key"
    );
    let expected: BTreeMap<String, String> = [
        ("amount", "1999"),
        ("currency", "eur"),
        ("payment_method", "pm_card_visa"),
        ("confirm", "true"),
        ("description", "Pro plan"),
        ("metadata[user_id]", "u_1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(form, &expected);

    let entity = ex
        .store()
        .get_entity(&payment_key("pi_1"))
        .await
        .expect("get")
        .expect("payment recorded");
    let payment: Payment = serde_json::from_value(entity.doc).expect("payment shape");
    assert_eq!(payment.user_id, "u_1");
    assert_eq!(payment.amount, 1999);
    assert_eq!(payment.currency, "EUR");
    assert_eq!(payment.status, "succeeded");
    assert_eq!(payment.idempotency_key, "order-1");
    assert_eq!(payment.refunded_amount, 0);

    // A replay answers from the store: the provider is not called again.
    let again = run(&ex, &action, "order-1", params()).await;
    assert!(again.replayed);
    assert_eq!(
        first.outcome.expect("first").get(),
        again.outcome.expect("replay").get()
    );
    assert_eq!(charges(&server).await.len(), 1, "no second charge");
    assert_eq!(
        testing::audit_statuses(&ex, "process-payment#order-1")
            .await
            .expect("query_audit"),
        vec![AuditStatus::Replayed, AuditStatus::Completed]
    );
}

#[tokio::test]
async fn a_retry_after_a_transient_failure_sends_the_same_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(ResponseTemplate::new(503).set_body_json(
            json!({"error": {"type": "api_error", "message": "Service unavailable"}}),
        ))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(ResponseTemplate::new(200).set_body_json(intent("pi_2", "succeeded")))
        .mount(&server)
        .await;
    let action = action(&server);
    let ex = executor();
    let err = run(&ex, &action, "order-2", params())
        .await
        .outcome
        .expect_err("503");
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert!(
        actiondo::testing::key_is_free(ex.store(), "process-payment#order-2")
            .await
            .expect("get_record"),
        "the key is released for the retry"
    );
    assert!(
        ex.store()
            .get_entity(&payment_key("pi_2"))
            .await
            .expect("get")
            .is_none()
    );

    let out: ProcessPaymentOutput = run(&ex, &action, "order-2", params())
        .await
        .output()
        .expect("retry succeeds");
    assert_eq!(out.payment_id, "pi_2");
    let sent = charges(&server).await;
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].0, "order-2");
    assert_eq!(
        sent[1].0, "order-2",
        "the same Idempotency-Key: the provider deduplicates, no double charge"
    );
    assert_eq!(sent[0].1, sent[1].1, "the same parameters");
    assert_eq!(
        testing::audit_statuses(&ex, "process-payment#order-2")
            .await
            .expect("query_audit"),
        vec![AuditStatus::Completed, AuditStatus::Retrying]
    );
}

#[tokio::test]
async fn a_decline_is_rejected_with_the_providers_details_and_replayed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(ResponseTemplate::new(402).set_body_json(json!({"error": {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "insufficient_funds",
            "message": "Your card has insufficient funds.",
            "payment_intent": {"id": "pi_3", "status": "requires_payment_method"},
        }})))
        .mount(&server)
        .await;
    let action = action(&server);
    let ex = executor();
    let err = run(&ex, &action, "order-3", params())
        .await
        .outcome
        .expect_err("declined");
    assert_eq!(err.kind(), ErrorKind::Rejected);
    let d = err.details().expect("details");
    assert_eq!(d["code"], "card_declined");
    assert_eq!(d["declineCode"], "insufficient_funds");
    assert_eq!(d["message"], "Your card has insufficient funds.");
    assert_eq!(d["paymentIntentId"], "pi_3");
    assert_eq!(d["status"], 402);

    let again = run(&ex, &action, "order-3", params()).await;
    assert!(again.replayed, "the decline is a stored outcome");
    let replayed = again.outcome.expect_err("stored decline");
    assert_eq!(replayed.kind(), ErrorKind::Rejected);
    assert_eq!(replayed.details(), Some(d));
    assert_eq!(charges(&server).await.len(), 1, "not charged again");
    assert!(
        ex.store()
            .get_entity(&payment_key("pi_3"))
            .await
            .expect("get")
            .is_none(),
        "a failed execution writes no entity"
    );
}

#[tokio::test]
async fn provider_answers_map_to_the_error_classes() {
    let cases = [
        (
            ResponseTemplate::new(429).insert_header("retry-after", "3"),
            ErrorKind::Transient,
        ),
        (ResponseTemplate::new(500), ErrorKind::Transient),
        (
            ResponseTemplate::new(400).set_body_json(json!({"error": {
                "type": "invalid_request_error",
                "code": "resource_missing",
                "param": "payment_method",
                "message": "No such PaymentMethod: 'pm_nope'",
            }})),
            ErrorKind::Validation,
        ),
        (ResponseTemplate::new(401), ErrorKind::Rejected),
        (
            ResponseTemplate::new(200).set_body_json(intent("pi_4", "requires_action")),
            ErrorKind::Rejected,
        ),
        (
            ResponseTemplate::new(200).set_body_json(intent("pi_5", "canceled")),
            ErrorKind::Rejected,
        ),
        (
            ResponseTemplate::new(200).set_body_string("<html>oops</html>"),
            ErrorKind::Internal,
        ),
        (
            ResponseTemplate::new(200)
                .set_body_json(intent("pi_6", "succeeded"))
                .set_delay(Duration::from_secs(3)),
            ErrorKind::Transient,
        ),
    ];
    for (i, (response, kind)) in cases.into_iter().enumerate() {
        let server = testing::http::answering("POST", response).await;
        let ex = executor();
        let err = run(&ex, &action(&server), &format!("k{i}"), params())
            .await
            .outcome
            .expect_err("an error");
        assert_eq!(err.kind(), kind, "case {i}: {err}");
        if i == 0 {
            assert_eq!(err.retry_after_ms(), Some(3000));
        }
    }
    // Nothing listens: connection refused is transient.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let down = ProcessPayment::new(
        PaymentProvider::new(&url, API_KEY, Duration::from_millis(500)).expect("provider"),
    );
    let err = run(&executor(), &down, "down", params())
        .await
        .outcome
        .expect_err("down");
    assert_eq!(err.kind(), ErrorKind::Transient);
}

#[tokio::test]
async fn invalid_params_and_a_missing_key_never_reach_the_provider() {
    let server = MockServer::start().await;
    let action = action(&server);
    let ex = executor();
    let err = run(
        &ex,
        &action,
        "bad",
        json!({"userId": " ", "amount": 10, "currency": "XYZ", "paymentMethod": " "}),
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
    assert_eq!(paths, vec!["/userId", "/currency", "/paymentMethod"]);
    for bad in [
        json!({"userId": "u", "amount": 0, "currency": "EUR", "paymentMethod": "pm"}),
        json!({"userId": "u", "amount": -5, "currency": "EUR", "paymentMethod": "pm"}),
        json!({"userId": "u", "amount": 12.5, "currency": "EUR", "paymentMethod": "pm"}),
        json!({"userId": "u", "amount": 100_000_000u64, "currency": "EUR", "paymentMethod": "pm"}),
        json!({"userId": "u", "amount": 5, "currency": "XAU", "paymentMethod": "pm"}),
        json!({"userId": "u", "amount": 5, "currency": "euro", "paymentMethod": "pm"}),
        json!({"userId": "u", "amount": 5, "currency": "EUR"}),
        json!({"userId": "u", "amount": 5, "currency": "EUR", "paymentMethod": "pm", "card": "4242"}),
    ] {
        let err = run(&ex, &action, "bad", bad.clone())
            .await
            .outcome
            .expect_err("invalid");
        assert_eq!(err.kind(), ErrorKind::Validation, "{bad}");
    }
    // No key: refused, since a derived key would merge two identical purchases.
    let err = ex
        .execute(&action, Invocation::new(params(), Source::Cli))
        .await
        .outcome
        .expect_err("key required");
    assert_eq!(err.kind(), ErrorKind::Validation);
    assert!(err.message().contains("idempotency key"), "{err}");
    assert!(
        charges(&server).await.is_empty(),
        "the provider was never called"
    );
}

#[test]
fn currencies_are_iso_4217() {
    assert_eq!(currency_problem("usd"), None);
    assert_eq!(currency_problem("JPY"), None);
    assert!(currency_problem("ABC").is_some());
    assert!(currency_problem("XXX").is_some());
}

#[tokio::test]
async fn an_unconfigured_action_fails_each_execution_without_a_charge() {
    let action = ProcessPayment {
        provider: Err("PAYMENT_API_URL is not set".into()),
    };
    let ex = executor();
    let err = run(&ex, &action, "k", params())
        .await
        .outcome
        .expect_err("not configured");
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert!(err.message().contains("PAYMENT_API_URL"), "{err}");
    assert_eq!(err.details().expect("details")["reason"], "not_configured");
    assert!(
        actiondo::testing::key_is_free(ex.store(), "process-payment#k")
            .await
            .expect("get_record"),
        "released: a retry after fixing the configuration runs"
    );
}
