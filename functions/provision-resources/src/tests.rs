use std::sync::Arc;

use actiondo::store::faulty::{Fault, FaultyStore};
use actiondo::store::sqlite::SqliteStore;
use actiondo::testing;
use actiondo::{ErrorKind, Execution, Executor, Invocation, Source, Store};
use create_user::{CreateUser, CreateUserOutput};
use serde_json::{Value, json};

use super::*;

fn executor() -> Executor {
    testing::executor().expect("in-memory store")
}

async fn run(ex: &Executor, key: &str, params: Value) -> Execution {
    testing::run(ex, &ProvisionResources, params, key).await
}

async fn user(ex: &Executor, email: &str, plan: &str) -> String {
    let out: CreateUserOutput = ex
        .execute(
            &CreateUser,
            Invocation::new(
                json!({"email": email, "name": "Ada", "plan": plan}),
                Source::Cli,
            ),
        )
        .await
        .output()
        .expect("user created");
    out.user_id
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

#[tokio::test]
async fn provisions_a_workspace_and_a_quota_sized_for_the_users_plan() {
    let ex = executor();
    let user_id = user(&ex, "ada@example.com", "pro").await;
    let out: ProvisionResourcesOutput = run(&ex, "p1", json!({"userId": user_id}))
        .await
        .output()
        .expect("provisioned");
    assert_eq!(out.user_id, user_id);
    assert!(out.workspace_id.starts_with("ws_") && out.quota_id.starts_with("q_"));
    assert_eq!(out.plan, Plan::Pro);
    assert!(!out.already_provisioned);

    let (workspace, v): (Workspace, u64) = doc(&ex, &workspace_key(&out.workspace_id))
        .await
        .expect("workspace");
    assert_eq!(v, 1);
    assert_eq!(workspace.owner_id, user_id);
    assert_eq!(workspace.name, "Ada's workspace");
    let (quota, _): (Quota, u64) = doc(&ex, &quota_key(&out.quota_id)).await.expect("quota");
    assert_eq!(quota.workspace_id, out.workspace_id);
    assert_eq!(quota.user_id, user_id);
    assert_eq!(quota.limits, QuotaLimits::for_plan(Plan::Pro));
    assert_eq!(quota.limits.seats, 5);
    let (record, _): (Provisioning, u64) = doc(&ex, &provisioning_key(&user_id))
        .await
        .expect("provisioning");
    assert_eq!(
        (record.workspace_id, record.quota_id),
        (out.workspace_id, out.quota_id)
    );
}

#[tokio::test]
async fn a_replay_is_byte_identical_and_another_key_is_a_no_op_with_the_same_ids() {
    let ex = executor();
    let user_id = user(&ex, "ada@example.com", "free").await;
    let first = run(&ex, "p1", json!({"userId": user_id})).await;
    let replay = run(&ex, "p1", json!({"userId": user_id})).await;
    assert!(replay.replayed);
    let first_raw = first.outcome.expect("first");
    assert_eq!(first_raw.get(), replay.outcome.expect("replay").get());
    let first: ProvisionResourcesOutput = serde_json::from_str(first_raw.get()).expect("output");

    // Another key, even asking for another plan: nothing new, the same ids.
    let second = run(&ex, "p2", json!({"userId": user_id, "plan": "enterprise"})).await;
    assert!(!second.replayed, "a new execution, not a replay");
    let second: ProvisionResourcesOutput = second.output().expect("no-op");
    assert!(second.already_provisioned);
    assert_eq!(second.workspace_id, first.workspace_id);
    assert_eq!(second.quota_id, first.quota_id);
    assert_eq!(second.plan, Plan::Free);
    let (_, version): (Provisioning, u64) = doc(&ex, &provisioning_key(&user_id))
        .await
        .expect("provisioning");
    assert_eq!(version, 1, "written once");
}

#[tokio::test]
async fn the_plan_parameter_overrides_the_users_plan() {
    let ex = executor();
    let user_id = user(&ex, "ada@example.com", "free").await;
    let out: ProvisionResourcesOutput = run(&ex, "p", json!({"userId": user_id, "plan": "team"}))
        .await
        .output()
        .expect("provisioned");
    assert_eq!(out.plan, Plan::Team);
    let (quota, _): (Quota, u64) = doc(&ex, &quota_key(&out.quota_id)).await.expect("quota");
    assert_eq!(quota.limits, QuotaLimits::for_plan(Plan::Team));
}

#[tokio::test]
async fn an_unknown_user_is_rejected_and_nothing_is_written() {
    let ex = executor();
    let err = run(&ex, "p", json!({"userId": "u_missing"}))
        .await
        .outcome
        .expect_err("unknown user");
    assert_eq!(err.kind(), ErrorKind::Rejected);
    assert_eq!(err.details().expect("details")["reason"], "unknown_user");
    assert!(
        doc::<Provisioning>(&ex, &provisioning_key("u_missing"))
            .await
            .is_none()
    );
    let again = run(&ex, "p", json!({"userId": "u_missing"})).await;
    assert!(again.replayed);
    assert_eq!(
        again.outcome.expect_err("stored").kind(),
        ErrorKind::Rejected
    );
}

#[tokio::test]
async fn invalid_params_are_refused_before_any_effect() {
    let ex = executor();
    for params in [
        json!({"userId": "  "}),
        json!({}),
        json!({"userId": "u_1", "plan": "gold"}),
        json!({"userId": "u_1", "workspace": "x"}),
    ] {
        let err = run(&ex, "bad", params.clone())
            .await
            .outcome
            .expect_err("invalid");
        assert_eq!(err.kind(), ErrorKind::Validation, "{params}");
    }
    assert!(
        ex.store()
            .get_record("provision-resources#bad")
            .await
            .expect("get_record")
            .is_none()
    );
}

#[tokio::test]
async fn a_failed_commit_writes_nothing_and_a_retry_provisions() {
    let faulty = Arc::new(FaultyStore::new(
        SqliteStore::in_memory().expect("in-memory store"),
    ));
    let clock = testing::ManualClock::new();
    let ex = Executor::from_arc(faulty.clone()).with_clock(clock.clone());
    let user_id = user(&ex, "ada@example.com", "pro").await;
    // Every send of the commit fails; the key stays locked until its lease ends.
    for _ in 0..3 {
        faulty.arm(Fault::CommitOutcome);
    }
    let err = run(&ex, "p", json!({"userId": user_id}))
        .await
        .outcome
        .expect_err("commit failed");
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert!(
        faulty
            .get_entity(&provisioning_key(&user_id))
            .await
            .expect("get")
            .is_none(),
        "no workspace, no quota, no provisioning without the completion"
    );
    clock.advance(std::time::Duration::from_secs(301));
    let out: ProvisionResourcesOutput = run(&ex, "p", json!({"userId": user_id}))
        .await
        .output()
        .expect("retry provisions");
    assert!(!out.already_provisioned);
    assert!(
        faulty
            .get_entity(&workspace_key(&out.workspace_id))
            .await
            .expect("get")
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_runs_for_one_user_provision_once() {
    let ex = executor();
    let user_id = user(&ex, "ada@example.com", "pro").await;
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let ex = ex.clone();
            let user_id = user_id.clone();
            tokio::spawn(async move {
                ex.execute(
                    &ProvisionResources,
                    Invocation::new(json!({"userId": user_id}), Source::Cli)
                        .with_key(format!("p-{i}")),
                )
                .await
            })
        })
        .collect();
    let mut outs = Vec::new();
    for t in tasks {
        outs.push(
            t.await
                .expect("task")
                .output::<ProvisionResourcesOutput>()
                .expect("each run succeeds"),
        );
    }
    let created = outs.iter().filter(|o| !o.already_provisioned).count();
    assert_eq!(created, 1, "{outs:?}");
    assert!(
        outs.iter()
            .all(|o| o.workspace_id == outs[0].workspace_id && o.quota_id == outs[0].quota_id)
    );
    let (record, version): (Provisioning, u64) = doc(&ex, &provisioning_key(&user_id))
        .await
        .expect("provisioning");
    assert_eq!(version, 1);
    assert_eq!(record.workspace_id, outs[0].workspace_id);
}

#[tokio::test]
async fn new_entities_are_active_and_documents_without_a_status_read_as_active() {
    let ex = executor();
    let user_id = user(&ex, "ada@example.com", "pro").await;
    let out: ProvisionResourcesOutput = run(&ex, "p", json!({"userId": user_id}))
        .await
        .output()
        .expect("provisioned");
    for key in [
        provisioning_key(&user_id),
        workspace_key(&out.workspace_id),
        quota_key(&out.quota_id),
    ] {
        let raw = ex
            .store()
            .get_entity(&key)
            .await
            .expect("get_entity")
            .expect("written");
        assert_eq!(raw.doc["status"], "active", "{key}");
        assert!(raw.doc.get("release").is_none(), "{key}");
    }
    // A record written before statuses existed is an active one.
    let legacy: Provisioning = serde_json::from_value(json!({
        "userId": "u_1", "workspaceId": "ws_1", "quotaId": "q_1", "plan": "free",
        "provisionedAt": "2024-01-01T00:00:00.000Z",
    }))
    .expect("legacy shape");
    assert_eq!(legacy.status, ResourceStatus::Active);
    assert_eq!(legacy.release, None);
}

/// Writes a user's provisioning record as `release-resources` leaves it: test set-up
/// for the state after a release (the real release is tested in `release-resources`).
struct MarkReleased;

impl Action for MarkReleased {
    type Input = Value;
    type Output = Value;
    const NAME: &'static str = "test-mark-released";
    const DESCRIPTION: &'static str = "test set-up: a released provisioning record";

    async fn execute(&self, input: Value, cx: &mut ActionContext) -> Result<Value, ActionError> {
        let key = provisioning_key(input["userId"].as_str().unwrap_or_default());
        let (mut record, version) = cx
            .get_as::<Provisioning>(&key)
            .await?
            .ok_or_else(|| ActionError::rejected("not provisioned"))?;
        record.status = ResourceStatus::Released;
        record.release = Some(Release {
            released_at: "2024-01-01T00:00:00.000Z".into(),
            reason: "onboarding_failed".into(),
            execution: "release-resources#test".into(),
        });
        cx.put(key, &record, Expect::Version(version))?;
        Ok(json!({}))
    }
}

#[tokio::test]
async fn a_released_record_counts_as_absent_and_is_replaced_on_its_version() {
    let ex = executor();
    let user_id = user(&ex, "ada@example.com", "pro").await;
    let first: ProvisionResourcesOutput = run(&ex, "p1", json!({"userId": user_id}))
        .await
        .output()
        .expect("provisioned");
    ex.execute(
        &MarkReleased,
        Invocation::new(json!({"userId": user_id}), Source::Cli),
    )
    .await
    .output::<Value>()
    .expect("marked released");

    let second: ProvisionResourcesOutput = run(&ex, "p2", json!({"userId": user_id}))
        .await
        .output()
        .expect("provisioned anew");
    assert!(!second.already_provisioned);
    assert_ne!(second.workspace_id, first.workspace_id);
    assert_ne!(second.quota_id, first.quota_id);
    let (record, version): (Provisioning, u64) = doc(&ex, &provisioning_key(&user_id))
        .await
        .expect("provisioning");
    assert_eq!(version, 3, "written over the released version");
    assert_eq!(record.status, ResourceStatus::Active);
    assert_eq!(record.release, None);
    assert_eq!(record.workspace_id, second.workspace_id);
    let third: ProvisionResourcesOutput = run(&ex, "p3", json!({"userId": user_id}))
        .await
        .output()
        .expect("no-op");
    assert!(third.already_provisioned);
    assert_eq!(third.workspace_id, second.workspace_id);
}
