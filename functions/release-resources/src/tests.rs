use std::sync::Arc;

use actiondo::store::faulty::{Fault, FaultyStore};
use actiondo::store::sqlite::SqliteStore;
use actiondo::testing::{self, SlowReads};
use actiondo::{AuditStatus, EntityKey, ErrorKind, Execution, Executor, Invocation, Source, Store};
use create_user::{CreateUser, CreateUserOutput};
use provision_resources::{ProvisionResources, ProvisionResourcesOutput};
use serde_json::{Value, json};

use super::*;

fn executor() -> Executor {
    testing::executor().expect("in-memory store")
}

async fn release(ex: &Executor, key: &str, params: Value) -> Execution {
    testing::run(ex, &ReleaseResources, params, key).await
}

async fn user(ex: &Executor, email: &str) -> String {
    let out: CreateUserOutput = ex
        .execute(
            &CreateUser,
            Invocation::new(
                json!({"email": email, "name": "Ada", "plan": "pro"}),
                Source::Cli,
            ),
        )
        .await
        .output()
        .expect("user created");
    out.user_id
}

async fn provision(ex: &Executor, key: &str, user_id: &str) -> ProvisionResourcesOutput {
    testing::run(ex, &ProvisionResources, json!({"userId": user_id}), key)
        .await
        .output()
        .expect("provisioned")
}

async fn doc<T: serde::de::DeserializeOwned>(ex: &Executor, key: &EntityKey) -> Option<(T, u64)> {
    ex.store()
        .get_entity(key)
        .await
        .expect("get_entity")
        .map(|e| {
            (
                serde_json::from_value(e.doc).expect("entity shape"),
                e.version,
            )
        })
}

/// The user's provisioning record, its workspace and its quota, with their versions.
async fn entities(
    ex: &Executor,
    user_id: &str,
    workspace_id: &str,
    quota_id: &str,
) -> ((Provisioning, u64), (Workspace, u64), (Quota, u64)) {
    (
        doc(ex, &provisioning_key(user_id))
            .await
            .expect("provisioning"),
        doc(ex, &workspace_key(workspace_id))
            .await
            .expect("workspace"),
        doc(ex, &quota_key(quota_id)).await.expect("quota"),
    )
}

#[tokio::test]
async fn provision_then_release_marks_the_record_the_workspace_and_the_quota_released() {
    let ex = executor();
    let user_id = user(&ex, "ada@example.com").await;
    let provisioned = provision(&ex, "p1", &user_id).await;
    let run = release(
        &ex,
        "r1",
        json!({
            "userId": user_id,
            "workspaceId": provisioned.workspace_id,
            "quotaId": provisioned.quota_id,
            "reason": "payment_failed",
        }),
    )
    .await;
    assert!(!run.replayed);
    let out: ReleaseResourcesOutput = run.output().expect("released");
    assert_eq!(out.outcome, ReleaseOutcome::Released);
    assert_eq!(out.user_id, user_id);
    assert_eq!(
        out.workspace_id.as_deref(),
        Some(provisioned.workspace_id.as_str())
    );
    assert_eq!(out.quota_id.as_deref(), Some(provisioned.quota_id.as_str()));
    let released_at = out.released_at.expect("releasedAt");
    assert!(chrono::DateTime::parse_from_rfc3339(&released_at).is_ok());

    let expected = Release {
        released_at,
        reason: "payment_failed".into(),
        execution: "release-resources#r1".into(),
    };
    let ((record, rv), (workspace, wv), (quota, qv)) = entities(
        &ex,
        &user_id,
        &provisioned.workspace_id,
        &provisioned.quota_id,
    )
    .await;
    assert_eq!((rv, wv, qv), (2, 2, 2), "each written once more");
    for (status, trace) in [
        (record.status, &record.release),
        (workspace.status, &workspace.release),
        (quota.status, &quota.release),
    ] {
        assert_eq!(status, ResourceStatus::Released);
        assert_eq!(trace.as_ref(), Some(&expected));
    }
    // Marked, not deleted: the rest of each document is as provisioned.
    assert_eq!(workspace.owner_id, user_id);
    assert_eq!(quota.workspace_id, provisioned.workspace_id);
    assert_eq!(record.workspace_id, provisioned.workspace_id);
    assert_eq!(
        testing::audit_statuses(&ex, "release-resources#r1")
            .await
            .expect("audit"),
        vec![AuditStatus::Completed]
    );
}

#[tokio::test]
async fn a_replay_is_byte_identical_and_another_key_is_an_already_released_no_op() {
    let ex = executor();
    let user_id = user(&ex, "ada@example.com").await;
    let provisioned = provision(&ex, "p1", &user_id).await;
    let first = release(&ex, "r1", json!({"userId": user_id})).await;
    let replay = release(&ex, "r1", json!({"userId": user_id})).await;
    assert!(replay.replayed);
    let first_raw = first.outcome.expect("first");
    assert_eq!(first_raw.get(), replay.outcome.expect("replay").get());
    let first: ReleaseResourcesOutput = serde_json::from_str(first_raw.get()).expect("output");
    assert_eq!(first.outcome, ReleaseOutcome::Released);

    let second = release(&ex, "r2", json!({"userId": user_id, "reason": "requested"})).await;
    assert!(!second.replayed, "a new execution, not a replay");
    let second: ReleaseResourcesOutput = second.output().expect("no-op success");
    assert_eq!(
        second,
        ReleaseResourcesOutput {
            outcome: ReleaseOutcome::AlreadyReleased,
            ..first.clone()
        },
        "the same ids and the first release's time"
    );
    let ((record, rv), (_, wv), (_, qv)) = entities(
        &ex,
        &user_id,
        &provisioned.workspace_id,
        &provisioned.quota_id,
    )
    .await;
    assert_eq!((rv, wv, qv), (2, 2, 2), "nothing written by the no-op");
    let trace = record.release.expect("trace");
    assert_eq!(
        (trace.reason.as_str(), trace.execution.as_str()),
        ("onboarding_failed", "release-resources#r1"),
        "the default reason, and the first release's trace kept"
    );
    assert_eq!(
        testing::audit_statuses(&ex, "release-resources#r2")
            .await
            .expect("audit"),
        vec![AuditStatus::Completed]
    );
}

#[tokio::test]
async fn a_user_never_provisioned_or_unknown_has_nothing_to_release() {
    let ex = executor();
    let user_id = user(&ex, "ada@example.com").await;
    for (key, id) in [("r-known", user_id.as_str()), ("r-unknown", "u_nobody")] {
        let run = release(&ex, key, json!({"userId": id, "workspaceId": "ws_1"})).await;
        let out: ReleaseResourcesOutput = run.output().expect("a successful no-op");
        assert_eq!(out, ReleaseResourcesOutput::nothing(id));
        assert!(
            doc::<Provisioning>(&ex, &provisioning_key(id))
                .await
                .is_none(),
            "nothing written for {id}"
        );
        let again = release(&ex, key, json!({"userId": id, "workspaceId": "ws_1"})).await;
        assert!(again.replayed);
    }
    // Provisioning still works for the known user.
    let out = provision(&ex, "p", &user_id).await;
    assert!(!out.already_provisioned);
}

#[tokio::test]
async fn after_a_release_provision_resources_provisions_anew_and_the_old_ids_stay_released() {
    let ex = executor();
    let user_id = user(&ex, "ada@example.com").await;
    let old = provision(&ex, "p1", &user_id).await;
    release(&ex, "r1", json!({"userId": user_id}))
        .await
        .output::<ReleaseResourcesOutput>()
        .expect("released");

    // The user onboards again (another key): new resources, on the released record.
    let new = provision(&ex, "p2", &user_id).await;
    assert!(!new.already_provisioned, "a released user holds nothing");
    assert_ne!(new.workspace_id, old.workspace_id);
    assert_ne!(new.quota_id, old.quota_id);
    let ((record, rv), (workspace, wv), (quota, _)) =
        entities(&ex, &user_id, &new.workspace_id, &new.quota_id).await;
    assert_eq!(rv, 3, "provisioned, released, provisioned");
    assert_eq!(record.status, ResourceStatus::Active);
    assert_eq!(record.release, None);
    assert_eq!(record.workspace_id, new.workspace_id);
    assert_eq!((workspace.status, wv), (ResourceStatus::Active, 1));
    assert_eq!(quota.status, ResourceStatus::Active);
    let (_, (old_ws, _), (old_q, _)) =
        entities(&ex, &user_id, &old.workspace_id, &old.quota_id).await;
    assert_eq!(old_ws.status, ResourceStatus::Released, "the trace stays");
    assert_eq!(old_q.status, ResourceStatus::Released);
    // And now it is provisioned: a third key is a no-op again.
    let again = provision(&ex, "p3", &user_id).await;
    assert!(again.already_provisioned);
    assert_eq!(again.workspace_id, new.workspace_id);

    // A late compensation naming the old resources: they are released, so it is a no-op
    // that leaves the new ones alone.
    let late: ReleaseResourcesOutput = release(
        &ex,
        "r-late",
        json!({"userId": user_id, "workspaceId": old.workspace_id, "quotaId": old.quota_id}),
    )
    .await
    .output()
    .expect("no-op");
    assert_eq!(late.outcome, ReleaseOutcome::AlreadyReleased);
    assert_eq!(
        late.workspace_id.as_deref(),
        Some(old.workspace_id.as_str())
    );
    assert_eq!(
        late.released_at,
        old_ws.release.map(|r| r.released_at),
        "when the old ones were released"
    );
    let ((record, rv), (workspace, _), _) =
        entities(&ex, &user_id, &new.workspace_id, &new.quota_id).await;
    assert_eq!((record.status, rv), (ResourceStatus::Active, 3));
    assert_eq!(workspace.status, ResourceStatus::Active);

    // Releasing the new ones works like the first time.
    let out: ReleaseResourcesOutput = release(
        &ex,
        "r2",
        json!({"userId": user_id, "workspaceId": new.workspace_id}),
    )
    .await
    .output()
    .expect("released");
    assert_eq!(out.outcome, ReleaseOutcome::Released);
    let ((record, rv), (workspace, _), (quota, _)) =
        entities(&ex, &user_id, &new.workspace_id, &new.quota_id).await;
    assert_eq!((record.status, rv), (ResourceStatus::Released, 4));
    assert_eq!(workspace.status, ResourceStatus::Released);
    assert_eq!(quota.status, ResourceStatus::Released);
}

#[tokio::test]
async fn resources_that_are_not_the_users_are_rejected_and_nothing_is_released() {
    let ex = executor();
    let ada = user(&ex, "ada@example.com").await;
    let bob = user(&ex, "bob@example.com").await;
    let ada_res = provision(&ex, "pa", &ada).await;
    let bob_res = provision(&ex, "pb", &bob).await;
    release(&ex, "rb", json!({"userId": bob}))
        .await
        .output::<ReleaseResourcesOutput>()
        .expect("bob released");
    for (key, params) in [
        // Another user's (released) workspace.
        (
            "x1",
            json!({"userId": ada, "workspaceId": bob_res.workspace_id}),
        ),
        // An unknown quota.
        ("x2", json!({"userId": ada, "quotaId": "q_unknown"})),
        // Ada's workspace with a quota that is not hers.
        (
            "x3",
            json!({"userId": ada, "workspaceId": ada_res.workspace_id, "quotaId": bob_res.quota_id}),
        ),
    ] {
        let err = release(&ex, key, params.clone())
            .await
            .outcome
            .expect_err("mismatch");
        assert_eq!(err.kind(), ErrorKind::Rejected, "{params}");
        let details = err.details().expect("details");
        assert_eq!(details["reason"], "resources_mismatch", "{params}");
        assert_eq!(details["workspaceId"], json!(ada_res.workspace_id));
        assert_eq!(details["quotaId"], json!(ada_res.quota_id));
        // A stored terminal outcome: replayed as such.
        let again = release(&ex, key, params.clone()).await;
        assert!(again.replayed);
        assert_eq!(
            again.outcome.expect_err("replayed").kind(),
            ErrorKind::Rejected
        );
        assert_eq!(
            testing::audit_statuses(&ex, &format!("release-resources#{key}"))
                .await
                .expect("audit"),
            vec![AuditStatus::Replayed, AuditStatus::Failed]
        );
    }
    let ((record, rv), (workspace, _), (quota, _)) =
        entities(&ex, &ada, &ada_res.workspace_id, &ada_res.quota_id).await;
    assert_eq!((record.status, rv), (ResourceStatus::Active, 1));
    assert_eq!(workspace.status, ResourceStatus::Active);
    assert_eq!(quota.status, ResourceStatus::Active);
}

#[tokio::test]
async fn every_blank_field_is_listed_and_schema_violations_are_refused_before_any_effect() {
    let ex = executor();
    let run = release(
        &ex,
        "bad",
        json!({"userId": " ", "workspaceId": "  ", "quotaId": "\t"}),
    )
    .await;
    assert_eq!(testing::error_kind(&run), Some(ErrorKind::Validation));
    assert_eq!(
        testing::error_paths(&run),
        vec!["/userId", "/workspaceId", "/quotaId"]
    );
    assert!(
        ex.store()
            .get_record("release-resources#bad")
            .await
            .expect("get_record")
            .is_none()
    );
    assert_eq!(
        testing::audit_statuses(&ex, "release-resources#bad")
            .await
            .expect("audit"),
        vec![AuditStatus::Rejected]
    );
    for (params, needle) in [
        (json!({}), "userId"),
        (json!({"userId": ""}), "userId"),
        (json!({"userId": "u_1", "reason": "bored"}), "bored"),
        (json!({"userId": "u_1", "workspace": "ws_1"}), "workspace"),
        (
            json!({"userId": "u_1", "quotaId": "q".repeat(201)}),
            "quotaId",
        ),
    ] {
        let run = release(&ex, "schema", params.clone()).await;
        assert_eq!(
            testing::error_kind(&run),
            Some(ErrorKind::Validation),
            "{params}"
        );
        let message = testing::error_message(&run);
        assert!(message.contains(needle), "{params}: {message}");
    }
    assert!(
        ex.store()
            .get_record("release-resources#schema")
            .await
            .expect("get_record")
            .is_none()
    );
}

#[tokio::test]
async fn a_failed_commit_releases_nothing_and_a_retry_releases() {
    let faulty = Arc::new(FaultyStore::new(
        SqliteStore::in_memory().expect("in-memory store"),
    ));
    let clock = testing::ManualClock::new();
    let ex = Executor::from_arc(faulty.clone()).with_clock(clock.clone());
    let user_id = user(&ex, "ada@example.com").await;
    let provisioned = provision(&ex, "p", &user_id).await;
    // Every send of the commit fails; the key stays locked until its lease ends.
    for _ in 0..3 {
        faulty.arm(Fault::CommitOutcome);
    }
    let run = release(&ex, "r", json!({"userId": user_id})).await;
    assert_eq!(testing::error_kind(&run), Some(ErrorKind::Transient));
    let ((record, rv), (workspace, _), (quota, _)) = entities(
        &ex,
        &user_id,
        &provisioned.workspace_id,
        &provisioned.quota_id,
    )
    .await;
    assert_eq!((record.status, rv), (ResourceStatus::Active, 1));
    assert_eq!(workspace.status, ResourceStatus::Active, "all or nothing");
    assert_eq!(quota.status, ResourceStatus::Active);

    clock.advance(std::time::Duration::from_secs(301));
    let out: ReleaseResourcesOutput = release(&ex, "r", json!({"userId": user_id}))
        .await
        .output()
        .expect("the retry releases");
    assert_eq!(out.outcome, ReleaseOutcome::Released);
    let ((record, _), (workspace, _), (quota, _)) = entities(
        &ex,
        &user_id,
        &provisioned.workspace_id,
        &provisioned.quota_id,
    )
    .await;
    assert_eq!(
        [record.status, workspace.status, quota.status],
        [ResourceStatus::Released; 3]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_releases_of_one_user_release_once() {
    // Slow reads make the executions interleave between their reads and their commits.
    let ex = Executor::new(SlowReads::new(
        SqliteStore::in_memory().expect("in-memory store"),
    ));
    let user_id = user(&ex, "ada@example.com").await;
    let provisioned = provision(&ex, "p", &user_id).await;
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let ex = ex.clone();
            let user_id = user_id.clone();
            tokio::spawn(async move {
                testing::run_retrying(
                    &ex,
                    &ReleaseResources,
                    json!({"userId": user_id}),
                    &format!("r-{i}"),
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
                .output::<ReleaseResourcesOutput>()
                .expect("every release succeeds"),
        );
    }
    let released = outs
        .iter()
        .filter(|o| o.outcome == ReleaseOutcome::Released)
        .count();
    assert_eq!(released, 1, "{outs:?}");
    assert!(outs.iter().all(|o| o.released_at == outs[0].released_at
        && o.workspace_id.as_deref() == Some(provisioned.workspace_id.as_str())));
    let ((record, rv), (_, wv), (_, qv)) = entities(
        &ex,
        &user_id,
        &provisioned.workspace_id,
        &provisioned.quota_id,
    )
    .await;
    assert_eq!((rv, wv, qv), (2, 2, 2), "released exactly once");
    assert_eq!(record.status, ResourceStatus::Released);
}
