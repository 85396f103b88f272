use std::time::Duration;

use actiondo::testing::{self, http::form};
use actiondo::{ErrorKind, Execution, Executor, Invocation, Source};
use process_payment::{ProcessPayment, ProcessPaymentOutput};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::*;

fn provider(server: &MockServer) -> PaymentProvider {
    PaymentProvider::new(&server.uri(), "sk_test_1", Duration::from_millis(500)).expect("provider")
}

/// The provider charges `pi_1`: 2000 EUR cents.
async fn mount_charge(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "pi_1", "status": "succeeded", "amount": 2000, "currency": "eur",
        })))
        .mount(server)
        .await;
}

/// A provider that charges `pi_1` (2000 EUR cents) and answers each refund with a
/// refund of the requested amount, its id derived from the Idempotency-Key (as the
/// provider deduplicates by key).
async fn provider_server() -> MockServer {
    let server = MockServer::start().await;
    mount_charge(&server).await;
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .respond_with(|req: &Request| {
            let form = form(req);
            let key = testing::http::idempotency_key(req).unwrap_or_default();
            let amount: u64 = form
                .get("amount")
                .and_then(|a| a.parse().ok())
                .unwrap_or(2000);
            ResponseTemplate::new(200).set_body_json(json!({
                "id": format!("re_{key}"),
                "object": "refund",
                "status": "succeeded",
                "amount": amount,
                "currency": "eur",
                "payment_intent": form.get("payment_intent"),
            }))
        })
        .mount(&server)
        .await;
    server
}

async fn pay(ex: &Executor, server: &MockServer) -> ProcessPaymentOutput {
    ex.execute(
        &ProcessPayment::new(provider(server)),
        Invocation::new(
            json!({"userId": "u_1", "amount": 2000, "currency": "EUR", "paymentMethod": "pm_card_visa"}),
            Source::Cli,
        )
        .with_key("order-1"),
    )
    .await
    .output()
    .expect("paid")
}

async fn refund(ex: &Executor, server: &MockServer, key: &str, params: Value) -> Execution {
    testing::run(ex, &RefundPayment::new(provider(server)), params, key).await
}

async fn refund_requests(server: &MockServer) -> Vec<Request> {
    testing::http::received(server)
        .await
        .into_iter()
        .filter(|r| r.url.path() == "/v1/refunds")
        .collect()
}

async fn payment(ex: &Executor) -> (Payment, u64) {
    let e = ex
        .store()
        .get_entity(&payment_key("pi_1"))
        .await
        .expect("get")
        .expect("payment");
    (serde_json::from_value(e.doc).expect("shape"), e.version)
}

fn executor() -> Executor {
    testing::executor().expect("in-memory store")
}

#[tokio::test]
async fn refunds_in_part_then_in_full_and_updates_the_payment() {
    let server = provider_server().await;
    let ex = executor();
    let paid = pay(&ex, &server).await;
    let first = refund(
        &ex,
        &server,
        "r1",
        json!({"paymentId": paid.payment_id, "amount": 500, "reason": "requested_by_customer"}),
    )
    .await;
    let out: RefundPaymentOutput = first.output().expect("refunded");
    assert_eq!(
        out,
        RefundPaymentOutput {
            refund_id: "re_r1".into(),
            status: "succeeded".into(),
            payment_id: "pi_1".into(),
            amount: 500,
            currency: "EUR".into(),
        }
    );
    let requests = refund_requests(&server).await;
    assert_eq!(requests.len(), 1);
    assert_eq!(testing::http::idempotency_key(&requests[0]), Some("r1"));
    let form = form(&requests[0]);
    assert_eq!(form["payment_intent"], "pi_1");
    assert_eq!(form["amount"], "500");
    assert_eq!(form["reason"], "requested_by_customer");

    let (p, version) = payment(&ex).await;
    assert_eq!(version, 2);
    assert_eq!(p.refunded_amount, 500);
    assert_eq!(p.status, "partially_refunded");
    assert_eq!(p.refunds, vec!["re_r1"]);
    let record = ex
        .store()
        .get_entity(&refund_key("re_r1"))
        .await
        .expect("get")
        .expect("refund recorded");
    let record: RefundRecord = serde_json::from_value(record.doc).expect("shape");
    assert_eq!(record.amount, 500);
    assert_eq!(record.reason, Some(RefundReason::RequestedByCustomer));

    // Replay: stored bytes, no provider call, no second update.
    let again = refund(
        &ex,
        &server,
        "r1",
        json!({"paymentId": "pi_1", "amount": 500, "reason": "requested_by_customer"}),
    )
    .await;
    assert!(again.replayed);
    assert_eq!(
        first.outcome.expect("first").get(),
        again.outcome.expect("replay").get()
    );
    assert_eq!(refund_requests(&server).await.len(), 1);

    // The rest, by default.
    let rest: RefundPaymentOutput = refund(&ex, &server, "r2", json!({"paymentId": "pi_1"}))
        .await
        .output()
        .expect("the rest");
    assert_eq!(rest.amount, 1500);
    let (p, _) = payment(&ex).await;
    assert_eq!(p.refunded_amount, 2000);
    assert_eq!(p.status, "refunded");
    assert_eq!(p.refunds, vec!["re_r1", "re_r2"]);

    // Nothing is left: rejected before the provider is called.
    let err = refund(
        &ex,
        &server,
        "r3",
        json!({"paymentId": "pi_1", "amount": 1}),
    )
    .await
    .outcome
    .expect_err("nothing left");
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert_eq!(err.details().expect("details")["reason"], "not_refundable");
    assert_eq!(refund_requests(&server).await.len(), 2);
}

#[tokio::test]
async fn unknown_payments_and_excessive_amounts_are_rejected_without_calling_the_provider() {
    let server = provider_server().await;
    let ex = executor();
    let err = refund(&ex, &server, "x1", json!({"paymentId": "pi_nope"}))
        .await
        .outcome
        .expect_err("unknown");
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert_eq!(err.details().expect("details")["reason"], "unknown_payment");
    pay(&ex, &server).await;
    let err = refund(
        &ex,
        &server,
        "x2",
        json!({"paymentId": "pi_1", "amount": 2001}),
    )
    .await
    .outcome
    .expect_err("too much");
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert_eq!(
        err.details().expect("details")["reason"],
        "exceeds_refundable"
    );
    assert_eq!(err.details().expect("details")["refundable"], 2000);
    assert!(refund_requests(&server).await.is_empty());
    for bad in [
        json!({"paymentId": " "}),
        json!({"paymentId": "pi_1", "amount": 0}),
        json!({"paymentId": "pi_1", "reason": "changed_my_mind"}),
        json!({"paymentId": "pi_1", "currency": "EUR"}),
    ] {
        let err = refund(&ex, &server, "bad", bad.clone())
            .await
            .outcome
            .expect_err("invalid");
        assert_eq!(err.kind(), ErrorKind::Validation, "{bad}");
    }
}

#[tokio::test]
async fn a_retry_after_a_provider_failure_sends_the_same_key_and_refunds_once() {
    let server = MockServer::start().await;
    mount_charge(&server).await;
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "re_9", "status": "succeeded", "amount": 2000, "currency": "eur", "payment_intent": "pi_1",
        })))
        .mount(&server)
        .await;
    let ex = executor();
    pay(&ex, &server).await;
    let err = refund(&ex, &server, "comp-1", json!({"paymentId": "pi_1"}))
        .await
        .outcome
        .expect_err("502");
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert_eq!(payment(&ex).await.0.refunded_amount, 0, "nothing recorded");
    let out: RefundPaymentOutput = refund(&ex, &server, "comp-1", json!({"paymentId": "pi_1"}))
        .await
        .output()
        .expect("retried");
    assert_eq!(out.refund_id, "re_9");
    let keys = testing::http::idempotency_keys(&refund_requests(&server).await);
    assert_eq!(
        keys,
        vec!["comp-1", "comp-1"],
        "same key: the provider refunds once"
    );
    let (p, _) = payment(&ex).await;
    assert_eq!((p.refunded_amount, p.status.as_str()), (2000, "refunded"));
}

#[tokio::test]
async fn a_refund_the_provider_fails_is_rejected_and_leaves_the_payment_alone() {
    let server = MockServer::start().await;
    mount_charge(&server).await;
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "re_f", "status": "failed", "amount": 2000, "currency": "eur",
        })))
        .mount(&server)
        .await;
    let ex = executor();
    pay(&ex, &server).await;
    let err = refund(&ex, &server, "f", json!({"paymentId": "pi_1"}))
        .await
        .outcome
        .expect_err("failed");
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert_eq!(err.details().expect("details")["reason"], "refund_failed");
    let (p, version) = payment(&ex).await;
    assert_eq!((p.refunded_amount, version), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refunds_commit_one_at_a_time_and_never_record_more_than_paid() {
    let server = provider_server().await;
    let ex = executor();
    pay(&ex, &server).await;
    // Four concurrent refunds of 800 out of 2000: at most two fit.
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let ex = ex.clone();
            let action = RefundPayment::new(provider(&server));
            tokio::spawn(async move {
                ex.execute(
                    &action,
                    Invocation::new(json!({"paymentId": "pi_1", "amount": 800}), Source::Cli)
                        .with_key(format!("c{i}")),
                )
                .await
            })
        })
        .collect();
    let mut pending: Vec<usize> = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        let run = t.await.expect("task");
        if let Err(e) = &run.outcome {
            assert!(
                matches!(e.kind(), ErrorKind::Conflict | ErrorKind::Rejected),
                "{e}"
            );
            if e.kind() == ErrorKind::Conflict {
                pending.push(i);
            }
        }
    }
    // Retry the conflicted ones with their keys, as a caller would.
    for i in pending {
        let _ = refund(
            &ex,
            &server,
            &format!("c{i}"),
            json!({"paymentId": "pi_1", "amount": 800}),
        )
        .await;
    }
    let (p, _) = payment(&ex).await;
    assert!(p.refunded_amount <= 2000, "{p:?}");
    assert_eq!(p.refunded_amount, 800 * p.refunds.len() as u64);
    assert_eq!(p.refunds.len(), 2, "two refunds of 800 fit in 2000: {p:?}");
}
