//! Tests of `validate-lead` on the embedded store.

use actiondo::audit::{AuditFilter, AuditQuery, AuditStatus};
use actiondo::testing::{self, TestResult, error_paths, executor};
use actiondo::{ErrorKind, Execution, StoreError};
use serde_json::{Value, json};

use super::*;

async fn run_with(action: ValidateLead, params: Value) -> Result<Execution, StoreError> {
    Ok(testing::run(&executor()?, &action, params, "k").await)
}

async fn run(params: Value) -> Result<Execution, StoreError> {
    run_with(ValidateLead::default(), params).await
}

#[tokio::test]
async fn normalizes_a_complete_lead() -> TestResult {
    let execution = run(json!({
        "email": "  Ann.Lee@Acme.COM ",
        "name": " Ann \t  Lee ",
        "company": " Acme   Corp ",
        "phone": " (201) 555-0123 ",
        "source": " Website "
    }))
    .await?;
    assert_eq!(
        execution.outcome?.get(),
        r#"{"email":"ann.lee@acme.com","name":"Ann Lee","company":"Acme Corp","phone":"+12015550123","source":"Website"}"#
    );
    Ok(())
}

#[tokio::test]
async fn blank_optional_fields_are_dropped() -> TestResult {
    let lead: Lead = run(
        json!({"email": "bo@beta.io", "name": "Bo", "company": "  ", "phone": "", "source": null}),
    )
    .await?
    .output()?;
    assert_eq!(
        lead,
        Lead {
            email: "bo@beta.io".into(),
            name: "Bo".into(),
            company: None,
            phone: None,
            source: None
        }
    );
    Ok(())
}

#[tokio::test]
async fn phones_are_read_in_the_default_region_unless_they_carry_a_country_code() -> TestResult {
    let cases = [
        ("US", "201-555-0123", "+12015550123"),
        ("US", "+44 20 7946 0958", "+442079460958"),
        ("US", "+1 (201) 555 0123", "+12015550123"),
        ("GB", "020 7946 0958", "+442079460958"),
        ("GB", "07400 123456", "+447400123456"),
        ("DE", "030 123456", "+4930123456"),
        ("FR", "01 23 45 67 89", "+33123456789"),
    ];
    for (region, raw, e164) in cases {
        let action = ValidateLead::with_region_code(region)?;
        let lead: Lead = run_with(
            action,
            json!({"email": "a@b.co", "name": "A", "phone": raw}),
        )
        .await?
        .output()?;
        assert_eq!(lead.phone.as_deref(), Some(e164), "{region} {raw}");
    }
    Ok(())
}

#[tokio::test]
async fn an_unparseable_or_invalid_phone_is_a_problem() -> TestResult {
    for raw in [
        "12",
        "call me",
        "+1 000 000 0000",
        "555-0123-999999999",
        "+999 123",
    ] {
        let execution = run(json!({"email": "a@b.co", "name": "A", "phone": raw})).await?;
        assert_eq!(error_paths(&execution), vec!["/phone"], "{raw}");
    }
    Ok(())
}

#[tokio::test]
async fn every_problem_is_listed_at_once_and_nothing_is_recorded() -> TestResult {
    let executor = executor()?;
    let params = json!({
        "email": "ann at acme",
        "name": "  ",
        "company": "x".repeat(MAX_FIELD_CHARS + 1),
        "phone": "not a phone",
        "source": "s".repeat(MAX_SOURCE_CHARS + 1)
    });
    let execution = testing::run(&executor, &ValidateLead::default(), params, "bad").await;
    assert_eq!(testing::error_kind(&execution), Some(ErrorKind::Validation));
    assert_eq!(
        error_paths(&execution),
        vec!["/email", "/name", "/company", "/source", "/phone"]
    );
    let message = testing::error_message(&execution);
    assert!(message.starts_with("invalid lead: /email:"), "{message}");
    assert!(
        executor
            .store()
            .get_record("validate-lead#bad")
            .await?
            .is_none()
    );
    let audit = executor
        .store()
        .query_audit(&AuditQuery::new(AuditFilter::Execution(
            "validate-lead#bad".into(),
        )))
        .await?;
    assert_eq!(audit.records.len(), 1);
    assert_eq!(audit.records[0].status, AuditStatus::Rejected);
    Ok(())
}

#[tokio::test]
async fn email_rules() -> TestResult {
    let long = format!("{}@example.com", "a".repeat(250));
    for bad in [
        "ann@localhost",
        "Ann <ann@acme.com>",
        "ann@[10.0.0.1]",
        "@acme.com",
        "ann@",
        "",
        long.as_str(),
    ] {
        let execution = run(json!({"email": bad, "name": "Ann"})).await?;
        assert_eq!(error_paths(&execution), vec!["/email"], "{bad:?}");
    }
    let ok: Lead = run(json!({"email": "first.last+tag@sub.example.co.uk", "name": "Ann"}))
        .await?
        .output()?;
    assert_eq!(ok.email, "first.last+tag@sub.example.co.uk");
    Ok(())
}

#[tokio::test]
async fn control_characters_are_refused() -> TestResult {
    let execution = run(json!({"email": "a@b.co", "name": "A\u{0}B", "company": "C\u{7}"})).await?;
    assert_eq!(error_paths(&execution), vec!["/name", "/company"]);
    Ok(())
}

#[tokio::test]
async fn schema_violations_are_rejected() -> TestResult {
    let execution = run(json!({"name": 5, "phone": 2015550123_u64, "utm": "x"})).await?;
    assert_eq!(testing::error_kind(&execution), Some(ErrorKind::Validation));
    // The missing email, a number for the name, a number for the phone, the unknown field.
    assert!(
        error_paths(&execution).len() >= 4,
        "{:?}",
        execution.outcome
    );
    Ok(())
}

#[tokio::test]
async fn a_replay_returns_the_stored_lead_byte_for_byte() -> TestResult {
    let executor = executor()?;
    let params = json!({"email": "Cy@Gamma.dev", "name": "Cy", "phone": "2015550123"});
    let action = ValidateLead::default();
    let first = testing::run(&executor, &action, params.clone(), "k").await;
    let replay = testing::run(&executor, &action, params, "k").await;
    assert!(!first.replayed && replay.replayed);
    assert_eq!(first.outcome?.get(), replay.outcome?.get());
    let record = executor
        .store()
        .get_record("validate-lead#k")
        .await?
        .ok_or("no record")?;
    assert_eq!(record.status, actiondo::store::RecordStatus::Completed);
    Ok(())
}

#[test]
fn regions_are_iso_codes() {
    assert_eq!(
        ValidateLead::with_region_code("gb").map(|a| a.region()),
        Ok(country::Id::GB)
    );
    assert!(ValidateLead::with_region_code("XX").is_err());
    assert!(ValidateLead::with_region_code("").is_err());
    assert_eq!(ValidateLead::default().region(), country::Id::US);
}

/// A settings lookup answering `pairs` (what `from_lookup` reads instead of the process
/// environment).
fn settings(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

#[test]
fn the_region_setting_is_read_and_a_bad_one_is_reported_not_panicked() {
    assert_eq!(
        ValidateLead::from_lookup(settings(&[])).region(),
        country::Id::US
    );
    assert_eq!(
        ValidateLead::from_lookup(settings(&[(DEFAULT_PHONE_REGION_ENV, "  ")])).region(),
        country::Id::US,
        "blank is unset"
    );
    let gb = ValidateLead::from_lookup(settings(&[(DEFAULT_PHONE_REGION_ENV, " gb ")]));
    assert_eq!(gb.region(), country::Id::GB);
    assert!(gb.check_configured().is_ok());

    let err = ValidateLead::try_from_lookup(settings(&[(DEFAULT_PHONE_REGION_ENV, "XX")]))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.starts_with("DEFAULT_PHONE_REGION: "), "{err}");
    let unconfigured = ValidateLead::from_lookup(settings(&[(DEFAULT_PHONE_REGION_ENV, "XX")]));
    assert!(unconfigured.check_configured().is_err());
}

#[tokio::test]
async fn a_bad_region_fails_every_execution_as_not_configured_instead_of_panicking() -> TestResult {
    let executor = executor()?;
    let action = ValidateLead::from_lookup(settings(&[(DEFAULT_PHONE_REGION_ENV, "XX")]));
    // A valid lead, and one whose phone only the configured region could judge.
    for (key, params) in [
        (
            "ok",
            json!({"email": "a@b.co", "name": "A", "phone": "2015550123"}),
        ),
        (
            "phone",
            json!({"email": "a@b.co", "name": "A", "phone": "020 7946 0958"}),
        ),
    ] {
        let execution = testing::run(&executor, &action, params, key).await;
        let err = execution.outcome.err().ok_or("expected an error")?;
        assert_eq!(err.kind(), ErrorKind::Internal, "{key}");
        assert_eq!(
            err.message(),
            "validate-lead is not configured: DEFAULT_PHONE_REGION: \"XX\" is not an ISO 3166-1 alpha-2 phone region"
        );
        assert_eq!(
            err.details().map(|d| d["reason"].clone()),
            Some(json!("not_configured"))
        );
        assert!(
            executor
                .store()
                .get_record(&format!("validate-lead#{key}"))
                .await?
                .is_none(),
            "nothing stored: a retry after fixing the setting runs"
        );
    }
    Ok(())
}
