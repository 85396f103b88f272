//! Tests of `score-lead` on the embedded store.

use actiondo::testing::{self, TestResult, executor};
use actiondo::{ErrorKind, Execution, StoreError};
use serde_json::{Value, json};

use super::*;

async fn run_with(action: ScoreLead, params: Value) -> Result<Execution, StoreError> {
    Ok(testing::run(&executor()?, &action, params, "k").await)
}

async fn score(params: Value) -> Result<ScoreLeadOutput, Box<dyn std::error::Error>> {
    Ok(run_with(ScoreLead::default(), params).await?.output()?)
}

fn rule_points(out: &ScoreLeadOutput) -> Vec<(&str, i32)> {
    out.rules
        .iter()
        .map(|r| (r.rule.as_str(), r.points))
        .collect()
}

fn lead() -> Value {
    json!({
        "email": "ann.lee@acme.com", "name": "Ann Lee", "company": "Acme",
        "phone": "+12015550123", "source": "referral",
        "freeMail": false, "disposable": false, "companyDomain": "acme.com"
    })
}

#[tokio::test]
async fn a_strong_business_lead_qualifies_and_every_rule_is_explained() -> TestResult {
    let out = score(lead()).await?;
    assert_eq!(
        rule_points(&out),
        vec![
            ("business-email", 25),
            ("company-domain", 15),
            ("company-name", 10),
            ("phone", 15),
            ("full-name", 10),
            ("source", 20)
        ]
    );
    assert_eq!((out.score, out.qualified, out.threshold), (95, true, 60));
    assert_eq!(
        out.rules[0].reason,
        "the email is on a business domain (acme.com)"
    );
    assert!(out.rules.iter().all(|r| !r.reason.is_empty()));
    Ok(())
}

#[tokio::test]
async fn a_bare_free_mail_lead_does_not_qualify() -> TestResult {
    let out = score(
        json!({"email": "bob@gmail.com", "name": "Bob", "freeMail": true, "disposable": false}),
    )
    .await?;
    assert_eq!(rule_points(&out), vec![("free-email", 0)]);
    assert_eq!((out.score, out.qualified), (0, false));
    Ok(())
}

#[tokio::test]
async fn a_disposable_role_address_is_clamped_to_zero() -> TestResult {
    let out = score(json!({
        "email": "info+x@mailinator.com", "name": "Info Desk", "source": "cold",
        "freeMail": false, "disposable": true
    }))
    .await?;
    assert_eq!(
        rule_points(&out),
        vec![
            ("disposable-email", -50),
            ("role-email", -15),
            ("full-name", 10),
            ("source", -10)
        ]
    );
    assert_eq!(out.score, 0);
    assert!(!out.qualified);
    Ok(())
}

#[tokio::test]
async fn unknown_enrichment_and_unnormalized_phone_are_explained() -> TestResult {
    let out = score(json!({
        "email": "cy@gamma.dev", "name": "Cy", "phone": "(201) 555-0123", "source": "Carrier Pigeon"
    }))
    .await?;
    assert_eq!(
        rule_points(&out),
        vec![
            ("email-type-unknown", 0),
            ("phone-unverified", 5),
            ("source-unknown", 0)
        ]
    );
    assert_eq!(out.score, 5);
    Ok(())
}

#[tokio::test]
async fn the_threshold_comes_from_configuration_unless_the_input_overrides_it() -> TestResult {
    // 25 + 15 + 10 + 10 = 60 without phone and source.
    let mut params = lead();
    params["phone"] = Value::Null;
    params["source"] = Value::Null;
    let at_default = score(params.clone()).await?;
    assert_eq!(
        (at_default.score, at_default.qualified, at_default.threshold),
        (60, true, 60)
    );

    let strict: ScoreLeadOutput = run_with(ScoreLead::with_threshold(61)?, params.clone())
        .await?
        .output()?;
    assert_eq!((strict.qualified, strict.threshold), (false, 61));

    params["threshold"] = json!(40);
    let overridden: ScoreLeadOutput = run_with(ScoreLead::with_threshold(90)?, params)
        .await?
        .output()?;
    assert_eq!((overridden.qualified, overridden.threshold), (true, 40));
    assert!(ScoreLead::with_threshold(101).is_err());
    Ok(())
}

#[tokio::test]
async fn sources_match_case_and_separator_insensitively() -> TestResult {
    assert_eq!(source_points("Demo Request"), Some(25));
    assert_eq!(source_points("demo_request"), Some(25));
    assert_eq!(source_points(" WEBINAR "), Some(15));
    assert_eq!(source_points("purchased list"), Some(-10));
    assert_eq!(source_points("tv"), None);
    Ok(())
}

#[tokio::test]
async fn the_output_of_the_other_lead_actions_is_accepted_as_is() -> TestResult {
    let mut params = lead();
    params["domain"] = json!("acme.com");
    params["provider"] = json!({"employees": 500});
    assert_eq!(score(params).await?.score, 95);
    Ok(())
}

#[tokio::test]
async fn scoring_is_deterministic_and_a_replay_is_byte_identical() -> TestResult {
    let executor = executor()?;
    let action = ScoreLead::default();
    let a = testing::run(&executor, &action, lead(), "a").await;
    let b = testing::run(&executor, &action, lead(), "b").await;
    let replay = testing::run(&executor, &action, lead(), "a").await;
    assert!(!a.replayed && !b.replayed && replay.replayed);
    let (a, b, replay) = (a.outcome?, b.outcome?, replay.outcome?);
    assert_eq!(a.get(), b.get());
    assert_eq!(a.get(), replay.get());
    Ok(())
}

#[tokio::test]
async fn every_problem_is_listed() -> TestResult {
    let execution = run_with(
        ScoreLead::default(),
        json!({"email": "nobody", "name": " ", "threshold": 150}),
    )
    .await?;
    let err = execution.outcome.err().ok_or("expected an error")?;
    assert_eq!(err.kind(), ErrorKind::Validation);
    assert_eq!(testing::paths(&err), vec!["/email", "/name", "/threshold"]);
    Ok(())
}

#[tokio::test]
async fn schema_violations_are_rejected() -> TestResult {
    let execution = run_with(
        ScoreLead::default(),
        json!({"email": "a@b.co", "freeMail": "no", "threshold": -1}),
    )
    .await?;
    let err = execution.outcome.err().ok_or("expected an error")?;
    assert_eq!(err.kind(), ErrorKind::Validation);
    let count = err
        .details()
        .and_then(|d| d["errors"].as_array())
        .map(Vec::len)
        .unwrap_or_default();
    // The missing name, a string for freeMail, a negative threshold.
    assert!(count >= 3, "{err:?}");
    Ok(())
}

#[test]
fn e164_is_recognized() {
    assert!(is_e164("+12015550123"));
    assert!(!is_e164("12015550123"));
    assert!(!is_e164("+0123456789"));
    assert!(!is_e164("+1 201 555"));
    assert!(!is_e164("+123"));
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
fn the_threshold_setting_is_read_and_a_bad_one_is_reported_not_panicked() {
    assert_eq!(
        ScoreLead::from_lookup(settings(&[])).threshold(),
        DEFAULT_THRESHOLD
    );
    assert_eq!(
        ScoreLead::from_lookup(settings(&[(THRESHOLD_ENV, " ")])).threshold(),
        DEFAULT_THRESHOLD,
        "blank is unset"
    );
    let strict = ScoreLead::from_lookup(settings(&[(THRESHOLD_ENV, " 75 ")]));
    assert_eq!(strict.threshold(), 75);
    assert!(strict.check_configured().is_ok());
    let bad: [&'static [(&str, &str)]; 3] = [
        &[(THRESHOLD_ENV, "high")],
        &[(THRESHOLD_ENV, "-1")],
        &[(THRESHOLD_ENV, "101")],
    ];
    for pairs in bad {
        let err = ScoreLead::try_from_lookup(settings(pairs))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with("SCORE_QUALIFIED_THRESHOLD: "),
            "{pairs:?}: {err}"
        );
        assert!(
            ScoreLead::from_lookup(settings(pairs))
                .check_configured()
                .is_err(),
            "{pairs:?}"
        );
    }
}

#[tokio::test]
async fn a_bad_threshold_fails_every_execution_as_not_configured_instead_of_panicking() -> TestResult
{
    let executor = executor()?;
    let action = ScoreLead::from_lookup(settings(&[(THRESHOLD_ENV, "101")]));
    let mut overridden = lead();
    overridden["threshold"] = json!(50);
    for (key, params) in [("plain", lead()), ("overridden", overridden)] {
        let execution = testing::run(&executor, &action, params, key).await;
        let err = execution.outcome.err().ok_or("expected an error")?;
        assert_eq!(err.kind(), ErrorKind::Internal, "{key}");
        assert_eq!(
            err.message(),
            "score-lead is not configured: SCORE_QUALIFIED_THRESHOLD: a threshold must be 0 to 100, got 101"
        );
        assert_eq!(
            err.details().map(|d| d["reason"].clone()),
            Some(json!("not_configured"))
        );
        assert!(
            executor
                .store()
                .get_record(&format!("score-lead#{key}"))
                .await?
                .is_none(),
            "nothing stored: a retry after fixing the setting runs"
        );
    }
    Ok(())
}
