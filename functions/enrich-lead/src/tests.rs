//! Tests of `enrich-lead`: the domain work, and the provider against a local HTTP server.

use std::time::Duration;

use actiondo::store::RecordStatus;
use actiondo::testing::http::{answering, failing_once, received};
use actiondo::testing::{self, TestResult, error_kind as kind, executor};
use actiondo::{ErrorKind, Execution, Executor};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;

async fn run(executor: &Executor, action: &EnrichLead, params: Value, key: &str) -> Execution {
    testing::run(executor, action, params, key).await
}

async fn enrich(params: Value) -> Result<EnrichLeadOutput, Box<dyn std::error::Error>> {
    Ok(run(&executor()?, &EnrichLead::new(), params, "k")
        .await
        .output()?)
}

fn with_provider(server: &MockServer, timeout_ms: u64) -> Result<EnrichLead, String> {
    Ok(EnrichLead::with_provider(
        Provider::new(
            &format!("{}/v1/companies?format=full", server.uri()),
            Duration::from_millis(timeout_ms),
        )?
        .with_api_key("secret-key"),
    ))
}

async fn requests(server: &MockServer) -> usize {
    received(server).await.len()
}

#[test]
fn the_embedded_lists_are_loaded_and_match_parent_domains() {
    assert!(free_mail_list().len() > 50);
    assert!(disposable_list().len() > 50);
    assert!(free_mail_list().is_disjoint(disposable_list()));
    assert!(is_free_mail("gmail.com"));
    assert!(is_free_mail("yahoo.co.uk"));
    assert!(!is_free_mail("acme.com"));
    assert!(!is_free_mail("com"));
    assert!(is_disposable("mailinator.com"));
    assert!(is_disposable("inbox.mailinator.com"));
    assert!(!is_disposable("notmailinator.org"));
    // No comment or blank line leaked into a list.
    assert!(
        free_mail_list()
            .iter()
            .all(|d| d.contains('.') && !d.contains(' '))
    );
    assert!(
        disposable_list()
            .iter()
            .all(|d| d.contains('.') && !d.contains(' '))
    );
}

#[test]
fn registrable_domains_follow_the_public_suffix_list() {
    assert_eq!(
        registrable_domain("eu.acme.co.uk").as_deref(),
        Some("acme.co.uk")
    );
    assert_eq!(
        registrable_domain("mail.acme.com.").as_deref(),
        Some("acme.com")
    );
    assert_eq!(
        registrable_domain("acme.com.au").as_deref(),
        Some("acme.com.au")
    );
    assert_eq!(registrable_domain("co.uk"), None);
    assert_eq!(registrable_domain("acme.notatld"), None);
    assert_eq!(
        company_field_domain("https://www.Acme.com/about").as_deref(),
        Some("acme.com")
    );
    assert_eq!(
        company_field_domain("shop.acme.de").as_deref(),
        Some("acme.de")
    );
    assert_eq!(company_field_domain("Acme Inc."), None);
    assert_eq!(company_field_domain("Acme"), None);
    assert_eq!(company_field_domain("http://10.0.0.1/"), None);
}

#[tokio::test]
async fn a_business_address_gives_its_registrable_domain() -> TestResult {
    let out = enrich(json!({"email": " Ann.Lee@EU.Acme.co.uk ", "company": "Acme"})).await?;
    assert_eq!(
        out,
        EnrichLeadOutput {
            domain: "eu.acme.co.uk".into(),
            company_domain: Some("acme.co.uk".into()),
            free_mail: false,
            disposable: false,
            provider: None
        }
    );
    Ok(())
}

#[tokio::test]
async fn a_free_mail_address_takes_the_company_domain_from_the_company_field() -> TestResult {
    let named = enrich(json!({"email": "bob@gmail.com", "company": "Acme Inc"})).await?;
    assert!(named.free_mail && !named.disposable);
    assert_eq!(
        (named.domain.as_str(), named.company_domain),
        ("gmail.com", None)
    );

    let url =
        enrich(json!({"email": "bob@gmail.com", "company": "https://www.acme.com/team"})).await?;
    assert_eq!(url.company_domain.as_deref(), Some("acme.com"));

    // A company field that is itself a free-mail domain names no company.
    let bogus = enrich(json!({"email": "bob@gmail.com", "company": "gmail.com"})).await?;
    assert_eq!(bogus.company_domain, None);
    Ok(())
}

#[tokio::test]
async fn a_disposable_address_is_flagged_and_has_no_company_domain() -> TestResult {
    let out = enrich(json!({"email": "x@mailinator.com"})).await?;
    assert!(out.disposable && !out.free_mail);
    assert_eq!(out.company_domain, None);
    let sub = enrich(json!({"email": "x@a.guerrillamail.com"})).await?;
    assert!(sub.disposable);
    Ok(())
}

#[tokio::test]
async fn other_lead_fields_are_accepted() -> TestResult {
    let out =
        enrich(json!({"email": "ann@acme.com", "name": "Ann", "phone": "+12015550123"})).await?;
    assert_eq!(out.company_domain.as_deref(), Some("acme.com"));
    Ok(())
}

#[tokio::test]
async fn a_bad_email_is_a_validation_error_and_a_schema_violation_too() -> TestResult {
    let executor = executor()?;
    for (i, bad) in [
        json!({"email": "nope"}),
        json!({"email": "a@localhost"}),
        json!({"company": "x"}),
        json!({"email": 3}),
    ]
    .into_iter()
    .enumerate()
    {
        let execution = run(
            &executor,
            &EnrichLead::new(),
            bad.clone(),
            &format!("bad{i}"),
        )
        .await;
        assert_eq!(kind(&execution), Some(ErrorKind::Validation), "{bad}");
        assert!(
            executor
                .store()
                .get_record(&format!("enrich-lead#bad{i}"))
                .await?
                .is_none()
        );
    }
    Ok(())
}

#[tokio::test]
async fn the_provider_is_asked_about_the_company_domain() -> TestResult {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/companies"))
        .and(query_param("domain", "acme.com"))
        .and(query_param("format", "full"))
        .and(header("authorization", "Bearer secret-key"))
        .and(header("accept", "application/json"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"name": "Acme", "employees": 500})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let executor = executor()?;
    let action = with_provider(&server, 3000)?;
    let first = run(
        &executor,
        &action,
        json!({"email": "ann@mail.acme.com"}),
        "k",
    )
    .await;
    let out: EnrichLeadOutput = first.output()?;
    assert_eq!(out.company_domain.as_deref(), Some("acme.com"));
    assert_eq!(
        out.provider.map(Value::Object),
        Some(json!({"name": "Acme", "employees": 500}))
    );

    // A replay returns the stored output without asking again.
    let replay = run(
        &executor,
        &action,
        json!({"email": "ann@mail.acme.com"}),
        "k",
    )
    .await;
    assert!(replay.replayed);
    assert_eq!(first.outcome?.get(), replay.outcome?.get());
    assert_eq!(requests(&server).await, 1);
    Ok(())
}

#[tokio::test]
async fn without_a_company_domain_the_provider_is_not_asked() -> TestResult {
    let server = MockServer::start().await;
    let action = with_provider(&server, 3000)?;
    let out: EnrichLeadOutput = run(
        &executor()?,
        &action,
        json!({"email": "bob@gmail.com", "company": "Bob's"}),
        "k",
    )
    .await
    .output()?;
    assert_eq!(out.provider, None);
    assert_eq!(requests(&server).await, 0);
    Ok(())
}

#[tokio::test]
async fn a_provider_5xx_is_transient_and_a_retry_asks_again() -> TestResult {
    let server = failing_once(
        "GET",
        ResponseTemplate::new(503).set_body_string("maintenance"),
        ResponseTemplate::new(200).set_body_json(json!({"name": "Acme"})),
    )
    .await;
    let executor = executor()?;
    let action = with_provider(&server, 3000)?;
    let failed = run(&executor, &action, json!({"email": "ann@acme.com"}), "k").await;
    assert_eq!(kind(&failed), Some(ErrorKind::Transient));
    let details = testing::error_details(&failed);
    assert_eq!(details, Some(json!({"status": 503, "body": "maintenance"})));
    // Nothing was stored: the retry runs again and succeeds.
    assert!(actiondo::testing::key_is_free(executor.store(), "enrich-lead#k").await?);
    let retried = run(&executor, &action, json!({"email": "ann@acme.com"}), "k").await;
    assert!(!retried.replayed);
    assert!(retried.output::<EnrichLeadOutput>()?.provider.is_some());
    assert_eq!(requests(&server).await, 2);
    Ok(())
}

#[tokio::test]
async fn throttling_is_transient() -> TestResult {
    let server = answering("GET", ResponseTemplate::new(429)).await;
    let execution = run(
        &executor()?,
        &with_provider(&server, 3000)?,
        json!({"email": "ann@acme.com"}),
        "k",
    )
    .await;
    assert_eq!(kind(&execution), Some(ErrorKind::Transient));
    Ok(())
}

#[tokio::test]
async fn a_provider_4xx_is_rejected_stored_and_replayed() -> TestResult {
    let server = answering(
        "GET",
        ResponseTemplate::new(404).set_body_json(json!({"error": "unknown domain"})),
    )
    .await;
    let executor = executor()?;
    let action = with_provider(&server, 3000)?;
    let execution = run(&executor, &action, json!({"email": "ann@acme.com"}), "k").await;
    assert_eq!(kind(&execution), Some(ErrorKind::Rejected));
    let details = testing::error_details(&execution).ok_or("no details")?;
    assert_eq!(details["status"], 404);
    assert_eq!(details["body"], r#"{"error":"unknown domain"}"#);
    let record = executor
        .store()
        .get_record("enrich-lead#k")
        .await?
        .ok_or("no record")?;
    assert_eq!(record.status, RecordStatus::Failed);

    let replay = run(&executor, &action, json!({"email": "ann@acme.com"}), "k").await;
    assert!(replay.replayed);
    assert_eq!(kind(&replay), Some(ErrorKind::Rejected));
    assert_eq!(requests(&server).await, 1);
    Ok(())
}

#[tokio::test]
async fn a_slow_provider_times_out_as_transient() -> TestResult {
    let server = answering(
        "GET",
        ResponseTemplate::new(200)
            .set_body_json(json!({}))
            .set_delay(Duration::from_millis(2000)),
    )
    .await;
    let started = std::time::Instant::now();
    let execution = run(
        &executor()?,
        &with_provider(&server, 150)?,
        json!({"email": "ann@acme.com"}),
        "k",
    )
    .await;
    assert_eq!(kind(&execution), Some(ErrorKind::Transient));
    let message = testing::error_message(&execution);
    assert!(message.contains("within 150 ms"), "{message}");
    assert!(started.elapsed() < Duration::from_millis(1500));
    Ok(())
}

#[tokio::test]
async fn an_answer_that_is_not_a_json_object_is_transient() -> TestResult {
    for body in [
        ResponseTemplate::new(200).set_body_json(json!([1, 2])),
        ResponseTemplate::new(200).set_body_string("<html>"),
    ] {
        let server = answering("GET", body).await;
        let execution = run(
            &executor()?,
            &with_provider(&server, 3000)?,
            json!({"email": "ann@acme.com"}),
            "k",
        )
        .await;
        assert_eq!(kind(&execution), Some(ErrorKind::Transient));
    }
    Ok(())
}

#[tokio::test]
async fn an_unreachable_provider_is_transient() -> TestResult {
    // A port that was free a moment ago: nothing listens there.
    let port = testing::unused_port()?;
    let action = EnrichLead::with_provider(Provider::new(
        &format!("http://127.0.0.1:{port}/"),
        Duration::from_millis(500),
    )?);
    let execution = run(&executor()?, &action, json!({"email": "ann@acme.com"}), "k").await;
    assert_eq!(kind(&execution), Some(ErrorKind::Transient));
    Ok(())
}

#[test]
fn provider_urls_must_be_http() {
    assert!(Provider::new("ftp://x.example/", DEFAULT_TIMEOUT).is_err());
    assert!(Provider::new("not a url", DEFAULT_TIMEOUT).is_err());
    let provider = Provider::new("https://api.example/lookup?v=2", DEFAULT_TIMEOUT);
    assert_eq!(
        provider.map(|p| p.url_for("a&b.com").to_string()),
        Ok("https://api.example/lookup?v=2&domain=a%26b.com".to_owned())
    );
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
async fn the_provider_settings_are_read() -> TestResult {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/companies"))
        .and(query_param("domain", "acme.com"))
        .and(header("authorization", "Bearer from-settings"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"name": "Acme"})))
        .expect(1)
        .mount(&server)
        .await;
    let action = EnrichLead::try_from_lookup(settings(vec![
        (URL_ENV, format!(" {}/v1/companies ", server.uri())),
        (TIMEOUT_ENV, "2000".into()),
        (API_KEY_ENV, "from-settings".into()),
    ]))?;
    action.check_configured()?;
    let out: EnrichLeadOutput = run(&executor()?, &action, json!({"email": "ann@acme.com"}), "k")
        .await
        .output()?;
    assert_eq!(
        out.provider.map(Value::Object),
        Some(json!({"name": "Acme"}))
    );

    // Without a URL: domain work only, and the timeout is not read.
    let domain_only = EnrichLead::from_lookup(settings(vec![
        (URL_ENV, "  ".into()),
        (TIMEOUT_ENV, "soon".into()),
    ]));
    assert!(domain_only.provider().is_none());
    assert!(domain_only.check_configured().is_ok());
    Ok(())
}

#[tokio::test]
async fn bad_provider_settings_fail_every_execution_as_not_configured_instead_of_panicking()
-> TestResult {
    let server = MockServer::start().await;
    let executor = executor()?;
    let cases = [
        (
            "url",
            vec![(URL_ENV, "ftp://user:s3cret@x.example/".to_owned())],
            "enrich-lead is not configured: ENRICHMENT_URL: ",
        ),
        (
            "timeout",
            vec![
                (URL_ENV, format!("{}/v1/companies", server.uri())),
                (TIMEOUT_ENV, "soon".into()),
            ],
            "enrich-lead is not configured: ENRICHMENT_TIMEOUT_MS=\"soon\" is not a positive number of milliseconds",
        ),
    ];
    for (key, pairs, message) in cases {
        let action = EnrichLead::from_lookup(settings(pairs.clone()));
        assert!(
            EnrichLead::try_from_lookup(settings(pairs)).is_err(),
            "{key}"
        );
        assert!(action.provider().is_none(), "{key}");
        let execution = run(&executor, &action, json!({"email": "ann@acme.com"}), key).await;
        assert_eq!(kind(&execution), Some(ErrorKind::Internal), "{key}");
        let err = execution.outcome.err().ok_or("expected an error")?;
        assert!(err.message().starts_with(message), "{key}: {err}");
        assert!(!err.message().contains("s3cret"), "the URL leaked: {err}");
        assert_eq!(
            err.details().map(|d| d["reason"].clone()),
            Some(json!("not_configured"))
        );
        assert!(
            actiondo::testing::key_is_free(executor.store(), &format!("enrich-lead#{key}")).await?,
            "released: a retry after fixing the setting runs"
        );
    }
    assert_eq!(requests(&server).await, 0, "the provider is not asked");
    Ok(())
}
