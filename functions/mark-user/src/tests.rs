use std::sync::Arc;

use actiondo::store::faulty::{Fault, FaultyStore};
use actiondo::store::sqlite::SqliteStore;
use actiondo::testing::{self, SlowReads};
use actiondo::{AuditStatus, ErrorKind, Execution, Executor, Invocation, Source, Store};
use create_user::{CreateUser, CreateUserOutput, Plan};
use serde_json::{Value, json};

use super::*;

fn executor() -> Executor {
    testing::executor().expect("in-memory store")
}

async fn mark(ex: &Executor, key: &str, params: Value) -> Execution {
    testing::run(ex, &MarkUser, params, key).await
}

async fn user(ex: &Executor) -> String {
    let out: CreateUserOutput = ex
        .execute(
            &CreateUser,
            Invocation::new(
                json!({"email": "ada@example.com", "name": "Ada Lovelace", "plan": "team"}),
                Source::Cli,
            ),
        )
        .await
        .output()
        .expect("user created");
    out.user_id
}

async fn profile(ex: &Executor, user_id: &str) -> (UserProfile, u64) {
    let e = ex
        .store()
        .get_entity(&user_key(user_id))
        .await
        .expect("get_entity")
        .expect("profile");
    (
        serde_json::from_value(e.doc).expect("profile shape"),
        e.version,
    )
}

#[tokio::test]
async fn marks_the_user_and_records_the_change_in_the_profile() {
    let ex = executor();
    let user_id = user(&ex).await;
    let (before, _) = profile(&ex, &user_id).await;
    let run = mark(
        &ex,
        "m1",
        json!({"userId": user_id, "status": "onboarding_failed", "reason": "  payment declined "}),
    )
    .await;
    assert!(!run.replayed);
    let out: MarkUserOutput = run.output().expect("marked");
    assert_eq!(out.user_id, user_id);
    assert_eq!(out.status, UserStatus::OnboardingFailed);
    assert_eq!(out.previous_status, UserStatus::Active);
    assert!(out.changed);
    let changed_at = out.changed_at.expect("changedAt");
    assert!(chrono::DateTime::parse_from_rfc3339(&changed_at).is_ok());

    let (after, version) = profile(&ex, &user_id).await;
    assert_eq!(version, 2, "written once more");
    assert_eq!(after.status, UserStatus::OnboardingFailed);
    assert_eq!(
        after.status_change,
        Some(StatusChange {
            previous: UserStatus::Active,
            changed_at,
            reason: Some("payment declined".into()),
            execution: "mark-user#m1".into(),
        })
    );
    // Everything else as created.
    assert_eq!(
        (
            &after.email,
            &after.name,
            after.plan,
            &after.created_at,
            &after.user_id
        ),
        (
            &before.email,
            &before.name,
            Plan::Team,
            &before.created_at,
            &before.user_id
        )
    );
    assert_eq!(
        testing::audit_statuses(&ex, "mark-user#m1")
            .await
            .expect("audit"),
        vec![AuditStatus::Completed]
    );
}

#[tokio::test]
async fn a_replay_is_byte_identical_and_the_same_status_again_is_a_no_op() {
    let ex = executor();
    let user_id = user(&ex).await;
    let params = json!({"userId": user_id, "status": "onboarding_failed"});
    let first = mark(&ex, "m1", params.clone()).await;
    let replay = mark(&ex, "m1", params).await;
    assert!(replay.replayed);
    let first_raw = first.outcome.expect("first");
    assert_eq!(first_raw.get(), replay.outcome.expect("replay").get());
    let first: MarkUserOutput = serde_json::from_str(first_raw.get()).expect("output");

    // Another key, the same status (another reason): nothing written.
    let second = mark(
        &ex,
        "m2",
        json!({"userId": user_id, "status": "onboarding_failed", "reason": "again"}),
    )
    .await;
    assert!(!second.replayed, "a new execution, not a replay");
    let second: MarkUserOutput = second.output().expect("no-op success");
    assert_eq!(
        second,
        MarkUserOutput {
            user_id: user_id.clone(),
            status: UserStatus::OnboardingFailed,
            previous_status: UserStatus::OnboardingFailed,
            changed: false,
            changed_at: first.changed_at.clone(),
        }
    );
    let (after, version) = profile(&ex, &user_id).await;
    assert_eq!(version, 2, "the no-op wrote nothing");
    let change = after.status_change.expect("change");
    assert_eq!(
        (change.reason, change.execution.as_str()),
        (None, "mark-user#m1"),
        "the first change is kept"
    );
    assert_eq!(
        testing::audit_statuses(&ex, "mark-user#m2")
            .await
            .expect("audit"),
        vec![AuditStatus::Completed]
    );
}

#[tokio::test]
async fn a_new_user_marked_active_is_a_no_op_and_active_reinstates_a_marked_user() {
    let ex = executor();
    let user_id = user(&ex).await;
    let out: MarkUserOutput = mark(&ex, "a0", json!({"userId": user_id, "status": "active"}))
        .await
        .output()
        .expect("no-op");
    assert!(!out.changed);
    assert_eq!(out.changed_at, None, "never changed");
    assert_eq!(profile(&ex, &user_id).await.1, 1);

    mark(
        &ex,
        "d",
        json!({"userId": user_id, "status": "deactivated"}),
    )
    .await
    .output::<MarkUserOutput>()
    .expect("deactivated");
    let out: MarkUserOutput = mark(
        &ex,
        "a1",
        json!({"userId": user_id, "status": "active", "reason": "appeal granted"}),
    )
    .await
    .output()
    .expect("reinstated");
    assert!(out.changed);
    assert_eq!(out.previous_status, UserStatus::Deactivated);
    let (after, version) = profile(&ex, &user_id).await;
    assert_eq!((after.status, version), (UserStatus::Active, 3));
    let change = after.status_change.expect("change");
    assert_eq!(change.previous, UserStatus::Deactivated);
    assert_eq!(change.execution, "mark-user#a1");
}

#[tokio::test]
async fn an_unknown_user_is_rejected_replayed_as_such_and_nothing_is_written() {
    let ex = executor();
    let params = json!({"userId": "u_nobody", "status": "onboarding_failed"});
    let run = mark(&ex, "m", params.clone()).await;
    let err = run.outcome.expect_err("unknown user");
    assert_eq!(err.kind(), ErrorKind::Rejected);
    let details = err.details().expect("details");
    assert_eq!(details["reason"], "unknown_user");
    assert_eq!(details["userId"], "u_nobody");
    assert!(
        ex.store()
            .get_entity(&user_key("u_nobody"))
            .await
            .expect("get_entity")
            .is_none()
    );
    let again = mark(&ex, "m", params).await;
    assert!(again.replayed);
    assert_eq!(
        again.outcome.expect_err("stored").kind(),
        ErrorKind::Rejected
    );
    assert_eq!(
        testing::audit_statuses(&ex, "mark-user#m")
            .await
            .expect("audit"),
        vec![AuditStatus::Replayed, AuditStatus::Failed]
    );
}

#[tokio::test]
async fn every_invalid_field_is_listed_and_schema_violations_are_refused_before_any_effect() {
    let ex = executor();
    let user_id = user(&ex).await;
    let run = mark(
        &ex,
        "bad",
        json!({"userId": "  ", "status": "deactivated", "reason": " \n "}),
    )
    .await;
    assert_eq!(testing::error_kind(&run), Some(ErrorKind::Validation));
    assert_eq!(testing::error_paths(&run), vec!["/userId", "/reason"]);
    for (params, needle) in [
        (
            json!({"userId": user_id, "status": "deactivated", "reason": "x".repeat(501)}),
            "500",
        ),
        (
            json!({"userId": user_id, "status": "deactivated", "reason": "a\u{0}b"}),
            "control",
        ),
        (json!({"userId": user_id}), "status"),
        (json!({"userId": user_id, "status": "banned"}), "banned"),
        (
            json!({"userId": user_id, "status": "active", "note": "x"}),
            "note",
        ),
        (json!({"status": "active"}), "userId"),
    ] {
        let run = mark(&ex, "bad2", params.clone()).await;
        assert_eq!(
            testing::error_kind(&run),
            Some(ErrorKind::Validation),
            "{params}"
        );
        let message = testing::error_message(&run);
        assert!(message.contains(needle), "{params}: {message}");
    }
    for key in ["mark-user#bad", "mark-user#bad2"] {
        assert!(
            ex.store()
                .get_record(key)
                .await
                .expect("get_record")
                .is_none()
        );
    }
    let (after, version) = profile(&ex, &user_id).await;
    assert_eq!((after.status, version), (UserStatus::Active, 1));
}

#[tokio::test]
async fn a_failed_commit_changes_nothing_and_a_retry_marks() {
    let faulty = Arc::new(FaultyStore::new(
        SqliteStore::in_memory().expect("in-memory store"),
    ));
    let clock = testing::ManualClock::new();
    let ex = Executor::from_arc(faulty.clone()).with_clock(clock.clone());
    let user_id = user(&ex).await;
    // Every send of the commit fails: nothing is written, and the key stays locked until
    // its lease ends (docs/architecture.md §4); then the retry runs.
    for _ in 0..3 {
        faulty.arm(Fault::CommitOutcome);
    }
    let params = json!({"userId": user_id, "status": "onboarding_failed"});
    let run = mark(&ex, "m", params.clone()).await;
    assert_eq!(testing::error_kind(&run), Some(ErrorKind::Transient));
    let (after, version) = profile(&ex, &user_id).await;
    assert_eq!((after.status, version), (UserStatus::Active, 1));
    clock.advance(std::time::Duration::from_secs(301));
    let out: MarkUserOutput = mark(&ex, "m", params).await.output().expect("retried");
    assert!(out.changed);
    assert_eq!(
        profile(&ex, &user_id).await.0.status,
        UserStatus::OnboardingFailed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_marks_never_lose_a_change() {
    // Slow reads make the executions interleave between their reads and their commits.
    let ex = Executor::new(SlowReads::new(
        SqliteStore::in_memory().expect("in-memory store"),
    ));
    let user_id = user(&ex).await;
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let ex = ex.clone();
            let user_id = user_id.clone();
            tokio::spawn(async move {
                testing::run_retrying(
                    &ex,
                    &MarkUser,
                    json!({"userId": user_id, "status": "onboarding_failed"}),
                    &format!("m-{i}"),
                )
                .await
                .0
            })
        })
        .collect();
    let mut outs = Vec::new();
    for t in tasks {
        outs.push(
            t.await
                .expect("task")
                .output::<MarkUserOutput>()
                .expect("every mark succeeds"),
        );
    }
    assert_eq!(outs.iter().filter(|o| o.changed).count(), 1, "{outs:?}");
    let (after, version) = profile(&ex, &user_id).await;
    assert_eq!(version, 2, "changed exactly once");
    assert_eq!(after.status, UserStatus::OnboardingFailed);
    assert!(outs.iter().all(|o| o.changed_at == outs[0].changed_at));
}
