//! Tests of `create-or-update-contact` on the embedded store.

use actiondo::audit::{AuditFilter, AuditQuery, AuditStatus};
use actiondo::store::sqlite::SqliteStore;
use actiondo::testing::{self, SlowReads, TestResult, error_paths, executor};
use actiondo::{ErrorKind, Execution, Executor};
use serde_json::{Value, json};

use super::*;

async fn run(executor: &Executor, params: Value, key: &str) -> Execution {
    testing::run(executor, &CreateOrUpdateContact::new(), params, key).await
}

async fn contact(
    executor: &Executor,
    email: &str,
) -> Result<(ContactDoc, u64), Box<dyn std::error::Error>> {
    let entity = executor
        .store()
        .get_entity(&contact_key(email))
        .await?
        .ok_or("no contact entity")?;
    Ok((serde_json::from_value(entity.doc)?, entity.version))
}

#[tokio::test]
async fn creates_the_contact_keyed_by_the_lower_cased_email() -> TestResult {
    let executor = executor()?;
    let out: ContactOutput = run(
        &executor,
        json!({"email": "  Ann.Lee@Acme.COM ", "name": " Ann Lee ", "company": "Acme"}),
        "k1",
    )
    .await
    .output()?;
    assert_eq!(out.outcome, Outcome::Created);
    assert_eq!(out.version, 1);
    assert_eq!(out.email, "ann.lee@acme.com");
    let expected_id = format!(
        "c_{}",
        &actiondo::hash::sha256_hex(b"ann.lee@acme.com")[..16]
    );
    assert_eq!(out.contact_id, expected_id);

    let (doc, version) = contact(&executor, "ann.lee@acme.com").await?;
    assert_eq!(version, 1);
    assert_eq!(doc.contact_id, expected_id);
    assert_eq!(doc.name, "Ann Lee");
    assert_eq!(doc.company.as_deref(), Some("Acme"));
    assert_eq!(doc.created_at, doc.updated_at);
    Ok(())
}

#[tokio::test]
async fn a_change_updates_the_same_contact_and_bumps_its_version() -> TestResult {
    let executor = executor()?;
    let created: ContactOutput = run(
        &executor,
        json!({"email": "ann@acme.com", "name": "Ann", "company": "Acme"}),
        "k1",
    )
    .await
    .output()?;
    let (before, _) = contact(&executor, "ann@acme.com").await?;
    let updated: ContactOutput = run(
        &executor,
        json!({"email": "ANN@acme.com", "name": "Ann Lee", "company": "Acme Corp"}),
        "k2",
    )
    .await
    .output()?;
    assert_eq!(updated.outcome, Outcome::Updated);
    assert_eq!(updated.version, 2);
    assert_eq!(updated.contact_id, created.contact_id);

    let (after, version) = contact(&executor, "ann@acme.com").await?;
    assert_eq!(version, 2);
    assert_eq!(after.name, "Ann Lee");
    assert_eq!(after.company.as_deref(), Some("Acme Corp"));
    assert_eq!(after.created_at, before.created_at);
    Ok(())
}

#[tokio::test]
async fn the_same_data_under_another_key_is_unchanged_and_writes_nothing() -> TestResult {
    let executor = executor()?;
    let params = json!({"email": "bo@beta.io", "name": "Bo", "company": "Beta"});
    run(&executor, params.clone(), "k1")
        .await
        .output::<ContactOutput>()?;
    let again: ContactOutput = run(
        &executor,
        json!({"email": "Bo@Beta.io", "name": " Bo", "company": "Beta "}),
        "k2",
    )
    .await
    .output()?;
    assert_eq!(again.outcome, Outcome::Unchanged);
    assert_eq!(again.version, 1);
    assert_eq!(contact(&executor, "bo@beta.io").await?.1, 1);
    Ok(())
}

#[tokio::test]
async fn an_absent_company_keeps_the_stored_one_and_an_empty_one_clears_it() -> TestResult {
    let executor = executor()?;
    run(
        &executor,
        json!({"email": "cy@gamma.dev", "name": "Cy", "company": "Gamma"}),
        "k1",
    )
    .await
    .output::<ContactOutput>()?;
    let kept: ContactOutput = run(
        &executor,
        json!({"email": "cy@gamma.dev", "name": "Cy"}),
        "k2",
    )
    .await
    .output()?;
    assert_eq!(kept.outcome, Outcome::Unchanged);
    let renamed: ContactOutput = run(
        &executor,
        json!({"email": "cy@gamma.dev", "name": "Cy Young", "company": null}),
        "k3",
    )
    .await
    .output()?;
    assert_eq!(renamed.outcome, Outcome::Updated);
    assert_eq!(
        contact(&executor, "cy@gamma.dev")
            .await?
            .0
            .company
            .as_deref(),
        Some("Gamma")
    );
    let cleared: ContactOutput = run(
        &executor,
        json!({"email": "cy@gamma.dev", "name": "Cy Young", "company": ""}),
        "k4",
    )
    .await
    .output()?;
    assert_eq!((cleared.outcome, cleared.version), (Outcome::Updated, 3));
    assert_eq!(contact(&executor, "cy@gamma.dev").await?.0.company, None);
    Ok(())
}

#[tokio::test]
async fn a_replay_returns_the_stored_output_byte_for_byte_and_writes_nothing() -> TestResult {
    let executor = executor()?;
    let params = json!({"email": "di@delta.org", "name": "Di", "company": "Delta"});
    let first = run(&executor, params.clone(), "k").await;
    // Someone else changes the contact in between.
    run(
        &executor,
        json!({"email": "di@delta.org", "name": "Diana", "company": "Delta"}),
        "other",
    )
    .await
    .output::<ContactOutput>()?;
    let replay = run(&executor, params, "k").await;
    assert!(replay.replayed);
    let (first, replay) = (first.outcome?, replay.outcome?);
    assert_eq!(first.get(), replay.get());
    // The replay did not undo the later change.
    let (doc, version) = contact(&executor, "di@delta.org").await?;
    assert_eq!((doc.name.as_str(), version), ("Diana", 2));

    assert_eq!(
        testing::audit_statuses(&executor, "create-or-update-contact#k").await?,
        vec![AuditStatus::Replayed, AuditStatus::Completed]
    );
    Ok(())
}

#[tokio::test]
async fn every_problem_is_listed_and_nothing_is_written() -> TestResult {
    let executor = executor()?;
    let execution = run(
        &executor,
        json!({"email": "not an email", "name": "   ", "company": "x".repeat(MAX_FIELD_CHARS + 1)}),
        "bad",
    )
    .await;
    assert_eq!(testing::error_kind(&execution), Some(ErrorKind::Validation));
    assert_eq!(error_paths(&execution), vec!["/email", "/name", "/company"]);
    assert!(
        executor
            .store()
            .get_record("create-or-update-contact#bad")
            .await?
            .is_none()
    );

    for bad in [
        "ann@localhost",
        "Ann <ann@acme.com>",
        "ann@[127.0.0.1]",
        "",
        "@acme.com",
    ] {
        let execution = run(&executor, json!({"email": bad, "name": "Ann"}), "bad2").await;
        assert_eq!(error_paths(&execution), vec!["/email"], "{bad:?}");
    }
    Ok(())
}

#[tokio::test]
async fn schema_violations_are_rejected_before_the_handler() -> TestResult {
    let executor = executor()?;
    let execution = run(&executor, json!({"email": 42, "nmae": "Ann"}), "schema").await;
    assert_eq!(testing::error_kind(&execution), Some(ErrorKind::Validation));
    // A number for the email, the missing name, the unknown field.
    assert!(
        error_paths(&execution).len() >= 3,
        "{:?}",
        execution.outcome
    );
    let audit = executor
        .store()
        .query_audit(&AuditQuery::new(AuditFilter::Execution(
            "create-or-update-contact#schema".into(),
        )))
        .await?;
    assert_eq!(audit.records.len(), 1);
    assert_eq!(audit.records[0].status, AuditStatus::Rejected);
    Ok(())
}

/// Run like a real client: retry on `ActionDo.Conflict`, a bounded number of times.
async fn run_retrying(executor: Executor, params: Value, key: String) -> Execution {
    testing::run_retrying(&executor, &CreateOrUpdateContact::new(), params, &key)
        .await
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_for_one_email_never_duplicate_the_contact() -> TestResult {
    let executor = Executor::new(SlowReads::new(SqliteStore::in_memory()?));
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            // The same address in different cases, a different name each time.
            let email = if i % 2 == 0 {
                "eve@epsilon.io"
            } else {
                "EVE@Epsilon.IO"
            };
            let params = json!({"email": email, "name": format!("Eve {i}"), "company": "Epsilon"});
            tokio::spawn(run_retrying(executor.clone(), params, format!("key-{i}")))
        })
        .collect();
    let mut outputs = Vec::new();
    for task in futures::future::join_all(tasks).await {
        outputs.push(task?.output::<ContactOutput>()?);
    }
    let created = outputs
        .iter()
        .filter(|o| o.outcome == Outcome::Created)
        .count();
    let updated = outputs
        .iter()
        .filter(|o| o.outcome == Outcome::Updated)
        .count();
    assert_eq!(created, 1, "exactly one execution created the contact");
    assert_eq!(created + updated, 20, "every other one changed the name");
    assert!(
        outputs
            .iter()
            .all(|o| o.contact_id == contact_id("eve@epsilon.io"))
    );

    // Every write was applied on top of the one before it: the versions 1..=20 were
    // each returned exactly once, and the stored version is the last.
    let mut versions: Vec<u64> = outputs.iter().map(|o| o.version).collect();
    versions.sort_unstable();
    assert_eq!(versions, (1..=20).collect::<Vec<u64>>());
    let (doc, version) = contact(&executor, "eve@epsilon.io").await?;
    assert_eq!(version, 20);
    let last = outputs
        .iter()
        .position(|o| o.version == 20)
        .ok_or("no output has the last version")?;
    assert_eq!(doc.name, format!("Eve {last}"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_calls_for_distinct_emails_create_one_contact_each() -> TestResult {
    let executor = Executor::new(SlowReads::new(SqliteStore::in_memory()?));
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let params = json!({"email": format!("user{i}@example.com"), "name": "User"});
            tokio::spawn(run_retrying(executor.clone(), params, format!("key-{i}")))
        })
        .collect();
    for task in futures::future::join_all(tasks).await {
        let out: ContactOutput = task?.output()?;
        assert_eq!((out.outcome, out.version), (Outcome::Created, 1));
    }
    for i in 0..10 {
        assert_eq!(
            contact(&executor, &format!("user{i}@example.com")).await?.1,
            1
        );
    }
    Ok(())
}
