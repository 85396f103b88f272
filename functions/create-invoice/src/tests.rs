//! Tests of `create-invoice` on the embedded store.

use actiondo::audit::{AuditFilter, AuditQuery, AuditRecord, AuditStatus};
use actiondo::store::sqlite::SqliteStore;
use actiondo::testing::{self, SlowReads, TestResult, error_kind as kind, error_paths, executor};
use actiondo::{Entity, ErrorKind, Execution, Executor, StoreError};
use serde_json::{Value, json};

use super::*;

async fn run(executor: &Executor, params: Value, key: &str) -> Execution {
    testing::run(executor, &CreateInvoice::new(), params, key).await
}

fn invoice(customer: &str, lines: Value) -> Value {
    json!({"customerId": customer, "currency": "EUR", "lines": lines})
}

fn one_line(customer: &str) -> Value {
    invoice(
        customer,
        json!([{"description": "Pro plan", "quantity": 1, "unitAmount": 1000}]),
    )
}

async fn counter(executor: &Executor, customer: &str) -> Option<Entity> {
    executor
        .store()
        .get_entity(&counter_key(customer))
        .await
        .ok()
        .flatten()
}

async fn audit(executor: &Executor, key: &str) -> Result<Vec<AuditRecord>, StoreError> {
    let page = executor
        .store()
        .query_audit(&AuditQuery::new(AuditFilter::Execution(format!(
            "create-invoice#{key}"
        ))))
        .await?;
    Ok(page.records)
}

#[tokio::test]
async fn creates_the_first_invoice_of_an_account_with_its_lines_and_total() -> TestResult {
    let executor = executor()?;
    let params = invoice(
        " cus_1 ",
        json!([
            {"description": " Pro plan ", "quantity": 3, "unitAmount": 1250},
            {"description": "Discount", "quantity": 1, "unitAmount": -500}
        ]),
    );
    let execution = run(&executor, params, "k1").await;
    let out: CreateInvoiceOutput = execution.output()?;
    assert_eq!(out.number, 1);
    assert_eq!(out.total, 3250);
    assert_eq!(out.currency, "EUR");
    assert_eq!(out.customer_id, "cus_1");
    assert_eq!(out.invoice_id, invoice_id("cus_1", 1));
    assert!(out.invoice_id.starts_with("inv_") && out.invoice_id.len() == 20);

    let counter = counter(&executor, "cus_1").await.ok_or("no counter")?;
    assert_eq!(counter.doc, json!({"lastNumber": 1}));
    assert_eq!(counter.version, 1);

    let stored = executor
        .store()
        .get_entity(&invoice_key("cus_1", 1))
        .await?
        .ok_or("no invoice entity")?;
    assert_eq!(stored.key.sk, "invoice#0000000001");
    let doc: InvoiceDoc = serde_json::from_value(stored.doc)?;
    assert_eq!(doc.invoice_id, out.invoice_id);
    assert_eq!(doc.total, 3250);
    assert_eq!(doc.idempotency_key, "k1");
    assert_eq!(
        doc.lines,
        vec![
            InvoiceLine {
                description: "Pro plan".into(),
                quantity: 3,
                unit_amount: 1250,
                amount: 3750
            },
            InvoiceLine {
                description: "Discount".into(),
                quantity: 1,
                unit_amount: -500,
                amount: -500
            },
        ]
    );
    assert!(chrono::DateTime::parse_from_rfc3339(&doc.issued_at).is_ok());

    let trail = audit(&executor, "k1").await?;
    assert_eq!(trail.len(), 1);
    assert_eq!(trail[0].status, AuditStatus::Completed);
    assert_eq!(trail[0].details["output"]["number"], 1);
    Ok(())
}

#[tokio::test]
async fn numbers_are_sequential_per_account() -> TestResult {
    let executor = executor()?;
    let a1: CreateInvoiceOutput = run(&executor, one_line("a"), "a1").await.output()?;
    let a2: CreateInvoiceOutput = run(&executor, one_line("a"), "a2").await.output()?;
    let b1: CreateInvoiceOutput = run(&executor, one_line("b"), "b1").await.output()?;
    let a3: CreateInvoiceOutput = run(&executor, one_line("a"), "a3").await.output()?;
    assert_eq!((a1.number, a2.number, b1.number, a3.number), (1, 2, 1, 3));
    assert_ne!(a1.invoice_id, b1.invoice_id);
    assert_eq!(counter(&executor, "a").await.ok_or("no a")?.version, 3);
    assert_eq!(
        counter(&executor, "b").await.ok_or("no b")?.doc,
        json!({"lastNumber": 1})
    );
    Ok(())
}

#[tokio::test]
async fn a_replay_returns_the_same_number_byte_for_byte_and_burns_none() -> TestResult {
    let executor = executor()?;
    let first = run(&executor, one_line("acme"), "same-key").await;
    let replay = run(&executor, one_line("acme"), "same-key").await;
    assert!(!first.replayed);
    assert!(replay.replayed);
    assert_eq!(
        first.outcome.as_ref().map(|r| r.get()).ok(),
        replay.outcome.as_ref().map(|r| r.get()).ok()
    );
    // The replay wrote nothing: the counter is where the first execution left it.
    let counter_after = counter(&executor, "acme").await.ok_or("no counter")?;
    assert_eq!(
        (
            counter_after.doc["lastNumber"].as_u64(),
            counter_after.version
        ),
        (Some(1), 1)
    );
    assert!(
        executor
            .store()
            .get_entity(&invoice_key("acme", 2))
            .await?
            .is_none()
    );

    let next: CreateInvoiceOutput = run(&executor, one_line("acme"), "other-key")
        .await
        .output()?;
    assert_eq!(next.number, 2);

    assert_eq!(
        testing::audit_statuses(&executor, "create-invoice#same-key").await?,
        vec![AuditStatus::Replayed, AuditStatus::Completed]
    );
    Ok(())
}

#[tokio::test]
async fn the_same_key_with_another_payload_is_a_mismatch_and_burns_no_number() -> TestResult {
    let executor = executor()?;
    run(&executor, one_line("acme"), "k")
        .await
        .output::<CreateInvoiceOutput>()?;
    let other = invoice(
        "acme",
        json!([{"description": "Other", "quantity": 2, "unitAmount": 10}]),
    );
    let mismatch = run(&executor, other, "k").await;
    assert_eq!(kind(&mismatch), Some(ErrorKind::PayloadMismatch));
    assert_eq!(
        counter(&executor, "acme")
            .await
            .ok_or("no counter")?
            .version,
        1
    );
    Ok(())
}

#[tokio::test]
async fn every_business_problem_is_listed_and_nothing_is_written() -> TestResult {
    let executor = executor()?;
    let params = json!({
        "customerId": "  ",
        "currency": "eur",
        "lines": [
            {"description": "", "quantity": 0, "unitAmount": 100},
            {"description": "ok", "quantity": 2, "unitAmount": i64::MAX},
        ]
    });
    let execution = run(&executor, params, "bad").await;
    assert_eq!(kind(&execution), Some(ErrorKind::Validation));
    assert_eq!(
        error_paths(&execution),
        vec![
            "/customerId",
            "/currency",
            "/lines/0/description",
            "/lines/0/quantity",
            "/lines/1/unitAmount"
        ]
    );
    // Rejected before any claim: no record, only the `rejected` audit record.
    assert!(
        executor
            .store()
            .get_record("create-invoice#bad")
            .await?
            .is_none()
    );
    let trail = audit(&executor, "bad").await?;
    assert_eq!(trail.len(), 1);
    assert_eq!(trail[0].status, AuditStatus::Rejected);
    Ok(())
}

#[tokio::test]
async fn currencies_must_be_real_iso_4217_codes_with_minor_units() -> TestResult {
    let executor = executor()?;
    for (code, ok) in [
        ("EUR", true),
        ("JPY", true),
        ("KWD", true),
        ("ABC", false),
        ("XAU", false),
        ("XXX", false),
        ("EURO", false),
        ("usd", false),
    ] {
        let params = json!({"customerId": "c", "currency": code,
            "lines": [{"description": "x", "quantity": 1, "unitAmount": 1}]});
        let execution = run(&executor, params, &format!("cur-{code}")).await;
        if ok {
            assert!(execution.outcome.is_ok(), "{code}: {:?}", execution.outcome);
        } else {
            assert_eq!(error_paths(&execution), vec!["/currency"], "{code}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn an_invoice_needs_lines_and_a_non_negative_total_that_fits_64_bits() -> TestResult {
    let executor = executor()?;
    let empty = run(&executor, invoice("c", json!([])), "empty").await;
    assert_eq!(error_paths(&empty), vec!["/lines"]);

    let negative = run(
        &executor,
        invoice(
            "c",
            json!([{"description": "credit", "quantity": 1, "unitAmount": -1}]),
        ),
        "negative",
    )
    .await;
    assert_eq!(error_paths(&negative), vec!["/lines"]);

    let half = i64::MAX / 2 + 1;
    let overflow = run(
        &executor,
        invoice(
            "c",
            json!([
                {"description": "a", "quantity": 1, "unitAmount": half},
                {"description": "b", "quantity": 1, "unitAmount": half}
            ]),
        ),
        "overflow",
    )
    .await;
    assert_eq!(kind(&overflow), Some(ErrorKind::Validation));
    assert_eq!(error_paths(&overflow), vec!["/lines"]);
    let message = overflow.outcome.err().map(|e| e.message().to_owned());
    assert!(message.is_some_and(|m| m.contains("overflows")));

    let too_many: Vec<Value> = (0..=MAX_LINES)
        .map(|i| json!({"description": format!("l{i}"), "quantity": 1, "unitAmount": 1}))
        .collect();
    let too_many = run(&executor, invoice("c", Value::Array(too_many)), "many").await;
    assert_eq!(error_paths(&too_many), vec!["/lines"]);

    assert!(
        counter(&executor, "c").await.is_none(),
        "nothing was written"
    );
    Ok(())
}

#[tokio::test]
async fn schema_violations_are_rejected_before_the_handler() -> TestResult {
    let executor = executor()?;
    let params = json!({
        "customerId": "c",
        "lines": [{"description": "x", "quantity": "two", "unitAmount": 1.5}],
        "discount": 3
    });
    let execution = run(&executor, params, "schema").await;
    assert_eq!(kind(&execution), Some(ErrorKind::Validation));
    let errors = execution
        .outcome
        .as_ref()
        .err()
        .and_then(|e| e.details())
        .and_then(|d| d["errors"].as_array())
        .map(Vec::len)
        .unwrap_or_default();
    // Missing currency, the unknown field, a string quantity, a fractional amount.
    assert!(errors >= 4, "{:?}", execution.outcome);
    assert!(
        executor
            .store()
            .get_record("create-invoice#schema")
            .await?
            .is_none()
    );
    assert!(counter(&executor, "c").await.is_none());
    Ok(())
}

/// Run like a real client: retry on a retryable error (Conflict), a bounded number of times.
async fn run_retrying(executor: Executor, params: Value, key: String) -> (Execution, u32) {
    testing::run_retrying(&executor, &CreateInvoice::new(), params, &key).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_invoices_take_numbers_one_to_twenty_exactly_once() -> TestResult {
    let executor = Executor::new(SlowReads::new(SqliteStore::in_memory()?));
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let params = invoice(
                "busy",
                json!([{"description": format!("line {i}"), "quantity": 1, "unitAmount": 100 + i}]),
            );
            tokio::spawn(run_retrying(executor.clone(), params, format!("key-{i}")))
        })
        .collect();
    let mut numbers = Vec::new();
    let mut conflicts = 0;
    let mut by_key = Vec::new();
    for (i, task) in futures::future::join_all(tasks)
        .await
        .into_iter()
        .enumerate()
    {
        let (execution, c) = task?;
        conflicts += c;
        let out: CreateInvoiceOutput = execution.output()?;
        numbers.push(out.number);
        by_key.push((i, out.number));
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=20).collect::<Vec<u64>>());

    let counter = counter(&executor, "busy").await.ok_or("no counter")?;
    assert_eq!(
        (counter.doc["lastNumber"].as_u64(), counter.version),
        (Some(20), 20)
    );
    for (i, number) in &by_key {
        let stored = executor
            .store()
            .get_entity(&invoice_key("busy", *number))
            .await?
            .ok_or("invoice missing")?;
        // Each invoice is the one its own execution created.
        assert_eq!(stored.doc["idempotencyKey"], format!("key-{i}"));
        assert_eq!(stored.version, 1);
    }
    eprintln!("{conflicts} conflicts answered to callers while contending");

    // A replay of any key returns its number and burns none.
    let (i, number) = by_key[5];
    let params = invoice(
        "busy",
        json!([{"description": format!("line {i}"), "quantity": 1, "unitAmount": 100 + i}]),
    );
    let replay = run(&executor, params, &format!("key-{i}")).await;
    assert!(replay.replayed);
    assert_eq!(replay.output::<CreateInvoiceOutput>()?.number, number);
    let next: CreateInvoiceOutput = run(&executor, one_line("busy"), "key-new").await.output()?;
    assert_eq!(next.number, 21);
    Ok(())
}

#[test]
fn the_input_schema_names_the_camel_case_fields() -> TestResult {
    let schema = serde_json::to_value(schemars::schema_for!(CreateInvoiceInput))?;
    let required = schema["required"].as_array().ok_or("no required")?;
    assert_eq!(required.len(), 3);
    assert!(required.contains(&json!("customerId")));
    assert_eq!(schema["additionalProperties"], json!(false));
    Ok(())
}
