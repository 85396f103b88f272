//! Tests of `assign-owner` on the embedded store.

use actiondo::audit::AuditStatus;
use actiondo::store::sqlite::SqliteStore;
use actiondo::testing::{self, SlowReads, TestResult, error_kind as kind, executor};
use actiondo::{ErrorKind, Execution, Executor, Invocation, Source};
use serde_json::json;

use super::*;

const OWNERS: [&str; 3] = ["ann", "bo", "cy"];

async fn run_with(
    action: &AssignOwner,
    executor: &Executor,
    contact: &str,
    key: &str,
) -> Execution {
    testing::run(executor, action, json!({"contactId": contact}), key).await
}

async fn run(executor: &Executor, contact: &str, key: &str) -> Execution {
    run_with(&AssignOwner::new(OWNERS), executor, contact, key).await
}

async fn rotation(
    executor: &Executor,
) -> Result<Option<(RoundRobinDoc, u64)>, Box<dyn std::error::Error>> {
    match executor.store().get_entity(&round_robin_key()).await? {
        None => Ok(None),
        Some(e) => Ok(Some((serde_json::from_value(e.doc)?, e.version))),
    }
}

#[test]
fn owners_parse_from_a_comma_separated_list() {
    assert_eq!(
        parse_owners(" ann@x.io, bo@x.io,,cy ,"),
        vec!["ann@x.io", "bo@x.io", "cy"]
    );
    assert!(parse_owners(" , ").is_empty());
    assert_eq!(AssignOwner::new(parse_owners(",")).seed(), None);
    assert_eq!(
        AssignOwner::new(["a", " b "]).seed(),
        Some(&["a".to_owned(), "b".to_owned()][..])
    );
}

#[tokio::test]
async fn contacts_get_the_owners_in_turn_and_the_list_is_seeded_once() -> TestResult {
    let executor = executor()?;
    let mut got = Vec::new();
    for i in 0..5 {
        let out: AssignOwnerOutput = run(&executor, &format!("c_{i}"), &format!("k{i}"))
            .await
            .output()?;
        assert!(!out.already_assigned);
        got.push((out.owner, out.turn));
    }
    assert_eq!(
        got,
        vec![
            ("ann".to_owned(), 0),
            ("bo".to_owned(), 1),
            ("cy".to_owned(), 2),
            ("ann".to_owned(), 3),
            ("bo".to_owned(), 4)
        ]
    );
    let (doc, version) = rotation(&executor).await?.ok_or("no round-robin entity")?;
    assert_eq!(
        (doc.owners, doc.next, version),
        (vec!["ann".to_owned(), "bo".into(), "cy".into()], 5, 5)
    );

    let assignment = executor
        .store()
        .get_entity(&assignment_key("c_3"))
        .await?
        .ok_or("no assignment")?;
    let assignment: AssignmentDoc = serde_json::from_value(assignment.doc)?;
    assert_eq!((assignment.owner.as_str(), assignment.turn), ("ann", 3));
    assert_eq!(assignment.contact_id, "c_3");
    Ok(())
}

#[tokio::test]
async fn an_assigned_contact_keeps_its_owner_and_takes_no_turn() -> TestResult {
    let executor = executor()?;
    let first: AssignOwnerOutput = run(&executor, "c_a", "k1").await.output()?;
    run(&executor, "c_b", "k2")
        .await
        .output::<AssignOwnerOutput>()?;
    // Another request (another key) for the same contact, with spaces around the id.
    let again: AssignOwnerOutput = run(&executor, " c_a ", "k3").await.output()?;
    assert_eq!((again.owner, again.turn), (first.owner, first.turn));
    assert!(again.already_assigned);
    assert_eq!(again.contact_id, "c_a");
    let (doc, version) = rotation(&executor).await?.ok_or("no rotation")?;
    assert_eq!((doc.next, version), (2, 2));
    Ok(())
}

#[tokio::test]
async fn a_replay_returns_the_stored_output_byte_for_byte() -> TestResult {
    let executor = executor()?;
    let first = run(&executor, "c_r", "same").await;
    let replay = run(&executor, "c_r", "same").await;
    assert!(!first.replayed && replay.replayed);
    assert_eq!(first.outcome?.get(), replay.outcome?.get());
    assert_eq!(rotation(&executor).await?.ok_or("no rotation")?.1, 1);
    assert_eq!(
        testing::audit_statuses(&executor, "assign-owner#same").await?,
        vec![AuditStatus::Replayed, AuditStatus::Completed]
    );
    Ok(())
}

#[tokio::test]
async fn without_owners_or_a_stored_list_nothing_is_assigned() -> TestResult {
    let executor = executor()?;
    let unseeded = AssignOwner::without_seed();
    let execution = run_with(&unseeded, &executor, "c_1", "k1").await;
    assert_eq!(kind(&execution), Some(ErrorKind::Internal));
    let message = testing::error_message(&execution);
    assert!(message.contains("OWNERS"), "{message}");
    assert!(rotation(&executor).await?.is_none());
    assert!(
        executor
            .store()
            .get_entity(&assignment_key("c_1"))
            .await?
            .is_none()
    );
    // Retryable: the key was not consumed, so the same request works once configured.
    let fixed: AssignOwnerOutput = run(&executor, "c_1", "k1").await.output()?;
    assert_eq!(fixed.turn, 0);
    Ok(())
}

#[tokio::test]
async fn once_stored_the_list_is_the_source_of_truth() -> TestResult {
    let executor = executor()?;
    run(&executor, "c_1", "k1")
        .await
        .output::<AssignOwnerOutput>()?;
    // An instance without OWNERS, and one with another list, both follow the stored list.
    let unseeded: AssignOwnerOutput =
        run_with(&AssignOwner::without_seed(), &executor, "c_2", "k2")
            .await
            .output()?;
    let other: AssignOwnerOutput = run_with(&AssignOwner::new(["zed"]), &executor, "c_3", "k3")
        .await
        .output()?;
    assert_eq!((unseeded.owner.as_str(), unseeded.turn), ("bo", 1));
    assert_eq!((other.owner.as_str(), other.turn), ("cy", 2));
    Ok(())
}

#[tokio::test]
async fn bad_contact_ids_are_rejected_before_any_claim() -> TestResult {
    let executor = executor()?;
    for (i, bad) in ["", "   ", "c\u{0}1", &"x".repeat(MAX_CONTACT_ID_CHARS + 1)]
        .into_iter()
        .enumerate()
    {
        let key = format!("bad{i}");
        let execution = run(&executor, bad, &key).await;
        assert_eq!(kind(&execution), Some(ErrorKind::Validation), "{bad:?}");
        let details = testing::error_details(&execution);
        assert_eq!(
            details.as_ref().map(|d| d["errors"][0]["path"].clone()),
            Some(json!("/contactId"))
        );
        assert!(
            executor
                .store()
                .get_record(&format!("assign-owner#{key}"))
                .await?
                .is_none()
        );
    }
    let schema = executor
        .execute(
            &AssignOwner::new(OWNERS),
            Invocation::new(json!({"contact": "c_1"}), Source::Cli).with_key("schema"),
        )
        .await;
    assert_eq!(kind(&schema), Some(ErrorKind::Validation));
    assert!(rotation(&executor).await?.is_none(), "nothing was written");
    Ok(())
}

/// Run like a real client: retry on `ActionDo.Conflict`, a bounded number of times.
async fn run_retrying(executor: Executor, contact: String, key: String) -> Execution {
    let action = AssignOwner::new(OWNERS);
    testing::run_retrying(&executor, &action, json!({"contactId": contact}), &key)
        .await
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_assignments_take_every_turn_exactly_once() -> TestResult {
    const N: u64 = 20;
    let executor = Executor::new(SlowReads::new(SqliteStore::in_memory()?));
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            tokio::spawn(run_retrying(
                executor.clone(),
                format!("c_{i}"),
                format!("key-{i}"),
            ))
        })
        .collect();
    let mut turns = Vec::new();
    for task in futures::future::join_all(tasks).await {
        let out: AssignOwnerOutput = task?.output()?;
        let index = usize::try_from(out.turn % 3)?;
        assert_eq!(
            out.owner, OWNERS[index],
            "turn {} goes to the owner in rotation",
            out.turn
        );
        // The stored assignment is the one returned.
        let stored = executor
            .store()
            .get_entity(&assignment_key(&out.contact_id))
            .await?
            .ok_or("no assignment")?;
        assert_eq!(stored.doc["turn"], json!(out.turn));
        turns.push(out.turn);
    }
    turns.sort_unstable();
    assert_eq!(turns, (0..N).collect::<Vec<u64>>());
    let (doc, version) = rotation(&executor).await?.ok_or("no rotation")?;
    assert_eq!((doc.next, version), (N, N));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_assignments_of_one_contact_take_one_turn() -> TestResult {
    let executor = Executor::new(SlowReads::new(SqliteStore::in_memory()?));
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            tokio::spawn(run_retrying(
                executor.clone(),
                "c_same".into(),
                format!("key-{i}"),
            ))
        })
        .collect();
    let mut outputs = Vec::new();
    for task in futures::future::join_all(tasks).await {
        outputs.push(task?.output::<AssignOwnerOutput>()?);
    }
    assert!(outputs.iter().all(|o| o.owner == "ann" && o.turn == 0));
    assert_eq!(outputs.iter().filter(|o| !o.already_assigned).count(), 1);
    let (doc, version) = rotation(&executor).await?.ok_or("no rotation")?;
    assert_eq!((doc.next, version), (1, 1));
    Ok(())
}

#[test]
fn the_schemas_name_the_camel_case_fields() -> TestResult {
    let input = serde_json::to_value(schemars::schema_for!(AssignOwnerInput))?;
    assert_eq!(input["required"], json!(["contactId"]));
    let output = serde_json::to_value(schemars::schema_for!(AssignOwnerOutput))?;
    let props: Vec<&String> = output["properties"]
        .as_object()
        .ok_or("no properties")?
        .keys()
        .collect();
    assert_eq!(props.len(), 4);
    Ok(())
}
