use std::sync::Arc;

use actiondo::testing::{self, paths as error_paths};
use actiondo::{AuditStatus, ErrorKind, Execution, Executor, Invocation, Source};
use serde_json::{Value, json};

use super::*;

fn executor() -> Executor {
    testing::executor().expect("in-memory store")
}

async fn run(executor: &Executor, key: &str, params: Value) -> Execution {
    testing::run(executor, &CreateUser, params, key).await
}

async fn entity(executor: &Executor, key: &EntityKey) -> Option<actiondo::Entity> {
    executor.store().get_entity(key).await.expect("get_entity")
}

#[tokio::test]
async fn creates_the_profile_and_the_email_index() {
    let ex = executor();
    let run = run(
        &ex,
        "k1",
        json!({"email": "  Ada@Example.COM ", "name": " Ada Lovelace ", "plan": "pro"}),
    )
    .await;
    let out: CreateUserOutput = run.output().expect("success");
    assert!(!run.replayed);
    assert_eq!(out.email, "ada@example.com");
    assert_eq!(out.plan, Plan::Pro);
    assert!(out.user_id.starts_with("u_"));
    assert_eq!(out.user_id.len(), 34, "u_ + 32 hex digits");

    let profile = entity(&ex, &user_key(&out.user_id))
        .await
        .expect("profile written");
    assert_eq!(profile.version, 1);
    let profile: UserProfile = serde_json::from_value(profile.doc).expect("profile shape");
    assert_eq!(profile.user_id, out.user_id);
    assert_eq!(profile.email, "ada@example.com");
    assert_eq!(profile.name, "Ada Lovelace");
    assert_eq!(profile.plan, Plan::Pro);
    assert_eq!(profile.status, UserStatus::Active);
    assert_eq!(profile.status_change, None);
    assert!(chrono::DateTime::parse_from_rfc3339(&profile.created_at).is_ok());

    let index = entity(&ex, &email_index_key("ADA@example.com"))
        .await
        .expect("index written");
    assert_eq!(index.key.pk, "email#ada@example.com");
    assert_eq!(
        index.doc,
        json!({"userId": out.user_id, "email": "ada@example.com"})
    );
    assert_eq!(
        testing::audit_statuses(&ex, "create-user#k1")
            .await
            .expect("query_audit"),
        vec![AuditStatus::Completed]
    );
}

#[tokio::test]
async fn the_plan_defaults_to_free() {
    let ex = executor();
    let out: CreateUserOutput = run(&ex, "k", json!({"email": "b@example.org", "name": "B"}))
        .await
        .output()
        .expect("success");
    assert_eq!(out.plan, Plan::Free);
}

#[tokio::test]
async fn a_replay_returns_the_same_bytes_and_creates_nothing() {
    let ex = executor();
    let params = json!({"email": "ada@example.com", "name": "Ada"});
    let first = run(&ex, "k1", params.clone()).await;
    let again = run(&ex, "k1", params).await;
    assert!(again.replayed);
    let (a, b) = (
        first.outcome.expect("first succeeds"),
        again.outcome.expect("replay succeeds"),
    );
    assert_eq!(a.get(), b.get());
    let out: CreateUserOutput = serde_json::from_str(a.get()).expect("output");
    let index = entity(&ex, &email_index_key("ada@example.com"))
        .await
        .expect("index");
    assert_eq!(index.doc["userId"], json!(out.user_id));
    assert_eq!(index.version, 1, "written once");
    assert_eq!(
        testing::audit_statuses(&ex, "create-user#k1")
            .await
            .expect("query_audit"),
        vec![AuditStatus::Replayed, AuditStatus::Completed]
    );
}

#[tokio::test]
async fn a_second_user_with_the_same_email_is_rejected_not_replayed() {
    let ex = executor();
    let first: CreateUserOutput = run(
        &ex,
        "k1",
        json!({"email": "ada@example.com", "name": "Ada"}),
    )
    .await
    .output()
    .expect("first");
    let second = run(
        &ex,
        "k2",
        json!({"email": "ADA@example.com", "name": "Someone else"}),
    )
    .await;
    assert!(!second.replayed);
    let err = second.outcome.expect_err("duplicate email");
    assert_eq!(err.kind(), ErrorKind::Rejected);
    let details = err.details().expect("details");
    assert_eq!(details["reason"], "email_taken");
    assert_eq!(details["userId"], json!(first.user_id));
    // The refusal is a stored terminal outcome of k2: replayed as such.
    let again = run(
        &ex,
        "k2",
        json!({"email": "ADA@example.com", "name": "Someone else"}),
    )
    .await;
    assert!(again.replayed);
    assert_eq!(
        again.outcome.expect_err("replayed refusal").kind(),
        ErrorKind::Rejected
    );
    assert_eq!(
        testing::audit_statuses(&ex, "create-user#k2")
            .await
            .expect("query_audit"),
        vec![AuditStatus::Replayed, AuditStatus::Failed]
    );
    let index = entity(&ex, &email_index_key("ada@example.com"))
        .await
        .expect("index");
    assert_eq!(index.doc["userId"], json!(first.user_id), "index unchanged");
}

#[tokio::test]
async fn every_invalid_field_is_listed_and_nothing_is_written() {
    let ex = executor();
    let run = run(&ex, "bad", json!({"email": "not-an-email", "name": "   "})).await;
    let err = run.outcome.expect_err("invalid");
    assert_eq!(err.kind(), ErrorKind::Validation);
    assert_eq!(error_paths(&err), vec!["/email", "/name"]);
    assert!(
        ex.store()
            .get_record("create-user#bad")
            .await
            .expect("get_record")
            .is_none()
    );
    assert_eq!(
        testing::audit_statuses(&ex, "create-user#bad")
            .await
            .expect("query_audit"),
        vec![AuditStatus::Rejected]
    );
}

#[tokio::test]
async fn schema_violations_are_rejected_before_any_effect() {
    let ex = executor();
    for (params, needle) in [
        (json!({"name": "Ada"}), "email"),
        (
            json!({"email": "a@example.com", "name": "A", "plan": "platinum"}),
            "platinum",
        ),
        (
            json!({"email": "a@example.com", "name": "A", "nmae": "typo"}),
            "nmae",
        ),
        (json!({"email": "a@localhost", "name": "A"}), "email"),
        (
            json!({"email": "a@example.com", "name": "x".repeat(201)}),
            "200",
        ),
    ] {
        let err = run(&ex, "s", params.clone())
            .await
            .outcome
            .expect_err("rejected");
        assert_eq!(err.kind(), ErrorKind::Validation, "{params}");
        assert!(
            err.to_string().contains(needle),
            "{params}: {err} should mention {needle}"
        );
    }
    assert!(
        entity(&ex, &email_index_key("a@example.com"))
            .await
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_with_one_email_make_exactly_one_user() {
    let ex = executor();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let ex = ex.clone();
            tokio::spawn(async move {
                let params = json!({"email": "race@example.com", "name": format!("Racer {i}")});
                ex.execute(
                    &CreateUser,
                    Invocation::new(params, Source::Cli).with_key(format!("race-{i}")),
                )
                .await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let run = task.await.expect("task");
        match run.outcome {
            Ok(raw) => winners.push(
                serde_json::from_str::<CreateUserOutput>(raw.get())
                    .expect("output")
                    .user_id,
            ),
            // A loser either saw the index at once, or lost the commit, ran again in place
            // and then saw it; a loser out of in-place re-runs reports Conflict, which a
            // retry turns into Rejected.
            Err(e) => assert!(
                matches!(e.kind(), ErrorKind::Rejected | ErrorKind::Conflict),
                "{e}"
            ),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one user: {winners:?}");
    let index = entity(&ex, &email_index_key("race@example.com"))
        .await
        .expect("index");
    assert_eq!(index.doc["userId"], json!(winners[0]));
    assert_eq!(index.version, 1);
    // Every loser, retried with its own key, is (or stays) Rejected.
    for i in 0..8 {
        let params = json!({"email": "race@example.com", "name": format!("Racer {i}")});
        let run = ex
            .execute(
                &CreateUser,
                Invocation::new(params, Source::Cli).with_key(format!("race-{i}")),
            )
            .await;
        match run.outcome {
            Ok(raw) => assert_eq!(
                serde_json::from_str::<CreateUserOutput>(raw.get())
                    .expect("output")
                    .user_id,
                winners[0]
            ),
            Err(e) => assert_eq!(e.kind(), ErrorKind::Rejected),
        }
    }
}

#[tokio::test]
async fn find_user_reads_the_profile_written() {
    let ex = executor();
    let out: CreateUserOutput = run(&ex, "k", json!({"email": "f@example.com", "name": "F"}))
        .await
        .output()
        .expect("created");
    // A tiny action that reads through the public helper, as other actions do.
    struct Reader;
    impl Action for Reader {
        type Input = Value;
        type Output = Option<UserProfile>;
        const NAME: &'static str = "reader";
        const DESCRIPTION: &'static str = "reads a user";
        async fn execute(
            &self,
            input: Value,
            cx: &mut ActionContext,
        ) -> Result<Self::Output, ActionError> {
            find_user(cx, input["userId"].as_str().unwrap_or_default()).await
        }
    }
    let reader = Arc::new(Reader);
    let found: Option<UserProfile> = ex
        .execute(
            &*reader,
            Invocation::new(json!({"userId": out.user_id}), Source::Cli),
        )
        .await
        .output()
        .expect("read");
    assert_eq!(found.expect("found").email, "f@example.com");
    let missing: Option<UserProfile> = ex
        .execute(
            &*reader,
            Invocation::new(json!({"userId": "u_nobody"}), Source::Cli),
        )
        .await
        .output()
        .expect("read");
    assert!(missing.is_none());
    assert_eq!(unknown_user("u_x").kind(), ErrorKind::Rejected);
}

#[test]
fn a_profile_written_before_statuses_existed_reads_as_active() {
    let profile: UserProfile = serde_json::from_value(json!({
        "userId": "u_1", "email": "a@example.com", "name": "A", "plan": "pro",
        "createdAt": "2024-01-01T00:00:00.000Z",
    }))
    .expect("old shape");
    assert_eq!(profile.status, UserStatus::Active);
    assert_eq!(profile.status_change, None);
    let written = serde_json::to_value(&profile).expect("serialize");
    assert_eq!(written["status"], "active");
    assert!(written.get("statusChange").is_none());
}
