//! The conformance suite: every guarantee of docs/architecture.md §4, one test per scenario, run against
//! every store — embedded SQLite always (in memory, and in a file through its writer
//! thread); DynamoDB Local and moto server when the test runner (`tests/run.sh`) exports
//! their endpoints.

mod boundaries;
mod harness;
mod results;
mod storable;
mod write_units;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actiondo::store::faulty::Fault;
use actiondo::store::{RecordStatus, StoredResult};
use actiondo::{
    ActionOptions, AuditFilter, AuditQuery, AuditStatus, EntityKey, ErrorKind, Expect, Invocation,
    Lease, Mode, Params, Source, Store,
};
use boundaries::*;
use harness::{Backend, Behavior, Harness, Probe};
use results::*;
use serde_json::{Value, json};
use storable::*;
use write_units::*;

pub(crate) fn inv(params: Value, key: &str) -> Invocation {
    Invocation::new(params, Source::Direct).with_key(key)
}

pub(crate) fn with_write(value: &str, pk: &str, expect: Value) -> Value {
    json!({"value": value, "writes": [{"pk": pk, "sk": "doc", "expect": expect}]})
}

async fn first_execution(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let probe = Probe::new(ActionOptions::default());
    h.reset_calls();
    let ex = h
        .executor
        .execute(
            &probe,
            inv(with_write("a", "thing#1", json!("absent")), "k1"),
        )
        .await;
    h.assert_round_trips(&["UpdateItem", "TransactWriteItems"]);
    let out: Value = ex.output().expect("succeeds");
    assert_eq!(out["value"], "a");
    assert_eq!((ex.attempt, ex.replayed), (1, false));
    assert_eq!(probe.calls(), 1);

    let record = h.record("probe#k1").await.expect("record exists");
    assert_eq!(record.status, RecordStatus::Completed);
    assert_eq!(record.attempt, 1);
    let stored = record
        .result
        .as_ref()
        .expect("result stored")
        .decode()
        .expect("decodes");
    assert_eq!(stored, ex.outcome.as_ref().expect("ok").get());

    let entity = h.entity("thing#1").await.expect("entity written");
    assert_eq!(entity.version, 1);
    assert_eq!(entity.doc["by"], "k1");

    let audit = h.audit("probe#k1").await;
    assert_eq!(h.statuses(&audit), [AuditStatus::Completed]);
    assert_eq!(audit[0].action, "probe");
    assert_eq!(audit[0].details["input"]["value"], "a");
    assert_eq!(audit[0].details["output"]["value"], "a");
    assert_eq!(audit[0].attempt, 1);
}

async fn replay_of_completed_result_is_byte_identical(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let probe = Probe::new(ActionOptions::default());
    let first = h
        .executor
        .execute(&probe, inv(json!({"value": "x"}), "k"))
        .await;
    h.reset_calls();
    let again = h
        .executor
        .execute(&probe, inv(json!({"value": "x"}), "k"))
        .await;
    h.assert_round_trips(&["UpdateItem", "PutItem"]);
    assert!(again.replayed);
    assert_eq!(
        first.outcome.expect("ok").get(),
        again.outcome.expect("ok").get(),
        "a replay returns the stored bytes"
    );
    assert_eq!(probe.calls(), 1, "the handler ran once");
    assert_eq!(
        h.statuses(&h.audit("probe#k").await),
        [AuditStatus::Replayed, AuditStatus::Completed]
    );

    // Replays without their audit record cost one round trip.
    let quiet = Probe::new(ActionOptions {
        audit_replays: false,
        ..ActionOptions::default()
    });
    h.reset_calls();
    let third = h
        .executor
        .execute(&quiet, inv(json!({"value": "x"}), "k"))
        .await;
    h.assert_round_trips(&["UpdateItem"]);
    assert!(third.replayed);
    assert_eq!(h.audit("probe#k").await.len(), 2);
}

async fn replay_of_terminal_failure(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let probe = Probe::new(ActionOptions::default());
    probe.plan([Behavior::Reject]);
    let params = with_write("x", "thing#f", json!("absent"));
    let first = h.executor.execute(&probe, inv(params.clone(), "k")).await;
    let err = first.outcome.expect_err("rejected");
    assert_eq!(err.kind(), ErrorKind::Rejected);
    let record = h.record("probe#k").await.expect("record");
    assert_eq!(record.status, RecordStatus::Failed);
    assert!(
        h.entity("thing#f").await.is_none(),
        "a failed execution's writes are dropped"
    );

    let again = h.executor.execute(&probe, inv(params, "k")).await;
    assert!(again.replayed);
    let replayed = again.outcome.expect_err("replayed error");
    assert_eq!(
        serde_json::to_string(&replayed.to_body()).expect("json"),
        serde_json::to_string(&err.to_body()).expect("json"),
        "the stored terminal error is replayed as it was"
    );
    assert_eq!(probe.calls(), 1);
    assert_eq!(
        h.statuses(&h.audit("probe#k").await),
        [AuditStatus::Replayed, AuditStatus::Failed]
    );
}

async fn concurrent_duplicate_is_in_progress_with_the_time_left(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let probe = Arc::new(Probe::new(ActionOptions {
        lease: Lease::Fixed(Duration::from_secs(30)),
        ..ActionOptions::default()
    }));
    probe.plan([Behavior::WaitForRelease]);
    let running = h.spawn(&probe, inv(json!({"value": "x"}), "k"));
    probe.wait_started().await;

    h.clock.advance_ms(10_000);
    h.reset_calls();
    let dup = h
        .executor
        .execute(&*probe, inv(json!({"value": "x"}), "k"))
        .await;
    h.assert_round_trips(&["UpdateItem"]);
    let err = dup.outcome.expect_err("in progress");
    assert_eq!(err.kind(), ErrorKind::InProgress);
    let left = err.retry_after_ms().expect("retry after");
    assert!(
        (19_900..=20_000).contains(&left),
        "the lease has 20 s left, not {left} ms"
    );
    assert_eq!(err.kind().http_status(), 409);

    probe.release.notify_one();
    let first = running.await.expect("joins");
    assert!(first.outcome.is_ok());
    assert_eq!(probe.calls(), 1);
}

async fn expired_lease_is_taken_over(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let probe = Arc::new(Probe::new(ActionOptions {
        lease: Lease::Fixed(Duration::from_secs(30)),
        ..ActionOptions::default()
    }));
    probe.plan([Behavior::WaitForRelease]);
    let params = with_write("x", "thing#t", json!("absent"));
    // The first attempt dies mid-handler (its task is aborted, as a Lambda timeout would).
    let crashed = h.spawn(&probe, inv(params.clone(), "k"));
    probe.wait_started().await;
    crashed.abort();
    let _ = crashed.await;
    assert_eq!(
        h.record("probe#k").await.expect("left behind").status,
        RecordStatus::InProgress
    );

    h.clock.advance_ms(30_001);
    // Only the same payload may take over: another one is a mismatch, and changes nothing.
    let other = h
        .executor
        .execute(
            &*probe,
            inv(with_write("y", "thing#t", json!("absent")), "k"),
        )
        .await;
    assert_eq!(
        other.outcome.expect_err("mismatch").kind(),
        ErrorKind::PayloadMismatch
    );
    let left = h.record("probe#k").await.expect("still there");
    assert_eq!((left.status, left.attempt), (RecordStatus::InProgress, 1));

    let ex = h.executor.execute(&*probe, inv(params, "k")).await;
    assert!(ex.outcome.is_ok());
    assert_eq!(ex.attempt, 2);
    let record = h.record("probe#k").await.expect("record");
    assert_eq!(
        (record.status, record.attempt),
        (RecordStatus::Completed, 2)
    );
    assert_eq!(h.entity("thing#t").await.expect("written once").version, 1);
    let audit = h.audit("probe#k").await;
    assert_eq!(
        h.statuses(&audit),
        [
            AuditStatus::Completed,
            AuditStatus::TakenOver,
            AuditStatus::Rejected
        ]
    );
    assert!(audit[..2].iter().all(|a| a.attempt == 2));
}

async fn retryable_error_releases_the_record_and_a_retry_runs_again(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let probe = Probe::new(ActionOptions::default());
    probe.plan([Behavior::Transient]);
    let params = with_write("x", "thing#r", json!("absent"));
    let first = h.executor.execute(&probe, inv(params.clone(), "k")).await;
    assert_eq!(
        first.outcome.expect_err("transient").kind(),
        ErrorKind::Transient
    );
    // The release keeps the record, its lease ended, so the retry is the next attempt.
    let released = h.record("probe#k").await.expect("kept");
    assert!(released.is_released(), "{released:?}");
    assert_eq!(released.attempt, 1);
    assert!(h.entity("thing#r").await.is_none());

    // A released record is claimable by the same payload only.
    let other = h
        .executor
        .execute(
            &probe,
            inv(with_write("y", "thing#r2", json!("absent")), "k"),
        )
        .await;
    assert_eq!(
        other.outcome.expect_err("mismatch").kind(),
        ErrorKind::PayloadMismatch
    );
    let retry = h.executor.execute(&probe, inv(params.clone(), "k")).await;
    assert!(retry.outcome.is_ok());
    assert!(!retry.replayed);
    assert_eq!(retry.attempt, 2);
    assert_eq!(probe.calls(), 2);
    assert_eq!(h.entity("thing#r").await.expect("written").version, 1);
    assert_eq!(
        h.statuses(&h.audit("probe#k").await),
        [
            AuditStatus::Completed,
            AuditStatus::Rejected,
            AuditStatus::Retrying
        ]
    );
}

async fn payload_mismatch_is_refused(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let probe = Probe::new(ActionOptions::default());
    let first = h
        .executor
        .execute(&probe, inv(json!({"value": "a"}), "k"))
        .await;
    assert!(first.outcome.is_ok());
    let before = h.record("probe#k").await;
    h.reset_calls();
    let other = h
        .executor
        .execute(&probe, inv(json!({"value": "b"}), "k"))
        .await;
    h.assert_round_trips(&["UpdateItem", "PutItem"]);
    let err = other.outcome.expect_err("mismatch");
    assert_eq!(err.kind(), ErrorKind::PayloadMismatch);
    assert_eq!(err.kind().http_status(), 422);
    assert_eq!(probe.calls(), 1, "nothing ran");
    assert_eq!(h.record("probe#k").await, before, "the record is untouched");
    assert_eq!(
        h.statuses(&h.audit("probe#k").await),
        [AuditStatus::Rejected, AuditStatus::Completed]
    );
}

async fn completed_record_past_its_retention_runs_again(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let probe = Probe::new(ActionOptions {
        retention: Duration::from_secs(60),
        ..ActionOptions::default()
    });
    assert!(
        h.executor
            .execute(&probe, inv(json!({"value": "a"}), "k"))
            .await
            .outcome
            .is_ok()
    );
    h.clock.advance_ms(59_000);
    assert!(
        h.executor
            .execute(&probe, inv(json!({"value": "a"}), "k"))
            .await
            .replayed
    );
    h.clock.advance_ms(2_000);
    let later = h
        .executor
        .execute(&probe, inv(json!({"value": "a"}), "k"))
        .await;
    assert!(!later.replayed, "past its retention the record is gone");
    assert!(later.outcome.is_ok());
    assert_eq!(probe.calls(), 2);
    // Even another payload may use the key now.
    h.clock.advance_ms(61_000);
    assert!(
        h.executor
            .execute(&probe, inv(json!({"value": "b"}), "k"))
            .await
            .outcome
            .is_ok()
    );
}

async fn lease_lost_before_commit_writes_nothing(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let probe = Probe::new(ActionOptions::default());
    h.faulty.arm(Fault::StealLease);
    let ex = h
        .executor
        .execute(
            &probe,
            inv(with_write("x", "thing#l", json!("absent")), "k"),
        )
        .await;
    let err = ex.outcome.expect_err("lease lost");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(err.details().expect("details")["reason"], "lease_lost");
    assert!(
        h.entity("thing#l").await.is_none(),
        "none of the attempt's writes exist"
    );
    let record = h.record("probe#k").await.expect("the thief's record");
    assert_eq!(record.lease_owner, "another-attempt");
    assert_eq!(record.status, RecordStatus::InProgress);
    assert_eq!(
        h.statuses(&h.audit("probe#k").await),
        [AuditStatus::Retrying]
    );
}

async fn entity_version_conflict_writes_nothing(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let probe = Probe::new(ActionOptions::default());
    let setup = h
        .executor
        .execute(
            &probe,
            inv(with_write("v1", "thing#c", json!("absent")), "setup"),
        )
        .await;
    assert!(setup.outcome.is_ok());

    let params = json!({"value": "v2", "writes": [
        {"pk": "thing#new", "sk": "doc", "expect": "absent"},
        {"pk": "thing#c", "sk": "doc", "expect": {"version": 7}},
    ]});
    let ex = h.executor.execute(&probe, inv(params, "k")).await;
    let err = ex.outcome.expect_err("conflict");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(err.is_retryable());
    assert_eq!(err.details().expect("details")["entity"], "thing#c/doc");
    assert!(
        h.entity("thing#new").await.is_none(),
        "the transaction wrote nothing"
    );
    let kept = h.entity("thing#c").await.expect("kept");
    assert_eq!((kept.version, kept.doc["value"].clone()), (1, json!("v1")));
    assert!(
        h.record("probe#k").await.expect("kept").is_released(),
        "released for a retry"
    );
    assert_eq!(
        h.statuses(&h.audit("probe#k").await),
        [AuditStatus::Retrying]
    );

    // The right version commits.
    let ok = h
        .executor
        .execute(
            &probe,
            inv(with_write("v2", "thing#c", json!({"version": 1})), "k2"),
        )
        .await;
    assert!(ok.outcome.is_ok());
    assert_eq!(h.entity("thing#c").await.expect("updated").version, 2);
}

async fn optimistic_first_run_and_replay(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let probe = Probe::new(ActionOptions {
        mode: Mode::Optimistic,
        ..ActionOptions::default()
    });
    let params = with_write("x", "thing#o", json!("any"));
    h.reset_calls();
    let first = h.executor.execute(&probe, inv(params.clone(), "k")).await;
    h.assert_round_trips(&["TransactWriteItems"]);
    assert!(first.outcome.is_ok());
    assert_eq!(
        h.record("probe#k").await.expect("record").status,
        RecordStatus::Completed
    );
    assert_eq!(h.entity("thing#o").await.expect("written").version, 1);

    h.reset_calls();
    let again = h.executor.execute(&probe, inv(params, "k")).await;
    h.assert_round_trips(&["TransactWriteItems", "PutItem"]);
    assert!(again.replayed);
    assert_eq!(
        first.outcome.expect("ok").get(),
        again.outcome.expect("ok").get()
    );
    assert_eq!(
        h.entity("thing#o").await.expect("once").version,
        1,
        "exactly once"
    );
    assert_eq!(
        h.statuses(&h.audit("probe#k").await),
        [AuditStatus::Replayed, AuditStatus::Completed]
    );
}

async fn optimistic_conflict_runs_again_in_place(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let probe = Probe::new(ActionOptions {
        mode: Mode::Optimistic,
        ..ActionOptions::default()
    });
    // Reads the counter, writes version + 1; a rival bumps it between the read and the
    // commit on the first run only.
    probe.plan([Behavior::BumpCounterBehindMyBack]);
    probe.rival(h.faulty.clone());
    let ex = h
        .executor
        .execute(&probe, inv(json!({"value": "x", "counter": true}), "k"))
        .await;
    assert!(ex.outcome.is_ok(), "{:?}", ex.outcome);
    assert_eq!(probe.calls(), 2, "re-run once after the conflict");
    assert_eq!(h.entity("counter").await.expect("counter").version, 2);
}

async fn handler_panic_is_internal_and_releases(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let probe = Probe::new(ActionOptions::default());
    probe.plan([Behavior::Panic]);
    let params = with_write("x", "thing#p", json!("absent"));
    let ex = h.executor.execute(&probe, inv(params.clone(), "k")).await;
    let err = ex.outcome.expect_err("internal");
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert!(err.message().contains("boom"), "{}", err.message());
    assert!(
        h.record("probe#k").await.expect("kept").is_released(),
        "released"
    );
    assert!(h.entity("thing#p").await.is_none());
    let audit = h.audit("probe#k").await;
    assert_eq!(h.statuses(&audit), [AuditStatus::Retrying]);
    assert_eq!(audit[0].details["error"]["type"], "ActionDo.Internal");
    // The store is not poisoned: the retry runs and commits.
    assert!(
        h.executor
            .execute(&probe, inv(params, "k"))
            .await
            .outcome
            .is_ok()
    );
    assert_eq!(h.entity("thing#p").await.expect("written").version, 1);
}

async fn invalid_keys_are_rejected_with_nothing_written(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let probe = Probe::new(ActionOptions::default());
    let long = "k".repeat(256);
    for key in ["", long.as_str(), "tab\tkey", "naïve"] {
        h.reset_calls();
        let ex = h
            .executor
            .execute(&probe, inv(with_write("x", "thing#k", json!("any")), key))
            .await;
        h.assert_round_trips(&[]);
        assert_eq!(
            ex.outcome.expect_err("invalid").kind(),
            ErrorKind::Validation,
            "{key:?}"
        );
        assert!(ex.key.is_none());
        assert!(h.record(&format!("probe#{key}")).await.is_none());
    }
    assert_eq!(probe.calls(), 0);
    assert!(h.entity("thing#k").await.is_none());
    assert!(
        h.audit_by_type("probe").await.is_empty(),
        "not even an audit record"
    );
}

async fn schema_violation_is_rejected_before_the_claim(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let probe = Probe::new(ActionOptions::default());
    h.reset_calls();
    let ex = h
        .executor
        .execute(&probe, inv(json!({"value": 5, "writes": "nope"}), "k"))
        .await;
    h.assert_round_trips(&["PutItem"]);
    let err = ex.outcome.expect_err("invalid");
    assert_eq!(err.kind(), ErrorKind::Validation);
    let errors = err.details().expect("details")["errors"]
        .as_array()
        .expect("list")
        .len();
    assert_eq!(errors, 2, "every bad field is listed: {err}");
    assert_eq!(probe.calls(), 0);
    assert!(h.record("probe#k").await.is_none());
    let audit = h.audit("probe#k").await;
    assert_eq!(h.statuses(&audit), [AuditStatus::Rejected]);
    assert_eq!(audit[0].details["error"]["type"], "ActionDo.Validation");

    // Malformed JSON text: rejected with its position, audited because the key is valid.
    let mut bad = inv(Value::Null, "k2");
    bad.params = Params::Text("{\"value\": ".into());
    let ex = h.executor.execute(&probe, bad).await;
    let err = ex.outcome.expect_err("bad json");
    assert!(err.message().contains("line 1"), "{}", err.message());
    assert_eq!(
        h.statuses(&h.audit("probe#k2").await),
        [AuditStatus::Rejected]
    );
    assert!(h.record("probe#k2").await.is_none());
}

async fn fifty_concurrent_executions_run_the_handler_once(backend: Backend) {
    if backend == Backend::Moto {
        // moto's threaded server checks a condition and then writes without a lock, for
        // single items and transactions alike, so under a 50-way race two claims and even
        // two commits can both succeed: this scenario would test moto, not the protocol.
        // It runs against SQLite and DynamoDB Local, which serialize conditional writes as
        // DynamoDB does.
        eprintln!(
            "*** NOT RUN on moto: 50 concurrent executions (moto's conditional writes are not atomic) ***"
        );
        return;
    }
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let probe = Arc::new(Probe::new(ActionOptions::default()));
    probe.plan([Behavior::Sleep(Duration::from_millis(200))]);
    let params = with_write("x", "thing#50", json!("absent"));
    let tasks: Vec<_> = (0..50)
        .map(|_| h.spawn(&probe, inv(params.clone(), "k")))
        .collect();
    let mut firsts = 0;
    let mut in_progress = 0;
    for task in tasks {
        let ex = task.await.expect("joins");
        match &ex.outcome {
            Ok(_) if !ex.replayed => firsts += 1,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::InProgress => in_progress += 1,
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(probe.calls(), 1, "the handler ran exactly once");
    assert_eq!(firsts, 1, "one execution committed");
    assert!(in_progress > 0, "duplicates met the lease");
    assert_eq!(
        h.entity("thing#50").await.expect("written").version,
        1,
        "effects exactly once"
    );
}

async fn store_failures_surface_as_transient_with_no_partial_state(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let probe = Probe::new(ActionOptions {
        lease: Lease::Fixed(Duration::from_secs(30)),
        ..ActionOptions::default()
    });

    // Claiming fails: nothing ran, nothing written.
    h.faulty.arm(Fault::Claim);
    let ex = h
        .executor
        .execute(
            &probe,
            inv(with_write("x", "thing#s1", json!("absent")), "k1"),
        )
        .await;
    assert_eq!(
        ex.outcome.expect_err("transient").kind(),
        ErrorKind::Transient
    );
    assert_eq!(probe.calls(), 0);
    assert!(h.record("probe#k1").await.is_none());
    assert!(h.audit("probe#k1").await.is_empty());

    // One failed commit is sent again under the same lease: the handler ran once and
    // its outcome committed once.
    h.faulty.arm(Fault::CommitOutcome);
    let ex = h
        .executor
        .execute(
            &probe,
            inv(with_write("x", "thing#s2", json!("absent")), "k2"),
        )
        .await;
    assert!(ex.outcome.is_ok(), "{:?}", ex.outcome);
    assert_eq!(probe.calls(), 1);
    assert_eq!(h.entity("thing#s2").await.expect("written").version, 1);
    assert_eq!(
        h.statuses(&h.audit("probe#k2").await),
        [AuditStatus::Completed]
    );

    // Every send of the commit fails: nothing is written, and the record keeps its lease
    // until it ends (no release that would invite an immediate re-run); then a retry takes
    // it over and the entity is written once.
    for _ in 0..3 {
        h.faulty.arm(Fault::CommitOutcome);
    }
    let params = with_write("x", "thing#s3", json!("absent"));
    let ex = h.executor.execute(&probe, inv(params.clone(), "k3")).await;
    let err = ex.outcome.expect_err("transient");
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert!(
        err.retry_after_ms().is_some_and(|ms| ms > 25_000),
        "{err:?}"
    );
    assert!(
        !err.message().contains("fault"),
        "no store internals reach the caller: {}",
        err.message()
    );
    assert!(
        err.details().is_some_and(|d| d["requestId"].is_string()),
        "the request id finds the cause in the log: {err:?}"
    );
    assert_eq!(probe.calls(), 2);
    assert!(h.entity("thing#s3").await.is_none());
    let kept = h.record("probe#k3").await.expect("kept");
    assert_eq!(kept.status, RecordStatus::InProgress);
    assert!(!kept.is_released());
    let blocked = h.executor.execute(&probe, inv(params.clone(), "k3")).await;
    assert_eq!(
        blocked.outcome.expect_err("leased").kind(),
        ErrorKind::InProgress
    );
    assert_eq!(probe.calls(), 2, "the handler did not run again");
    h.clock.advance_ms(30_001);
    let retry = h.executor.execute(&probe, inv(params, "k3")).await;
    assert!(retry.outcome.is_ok());
    assert_eq!(retry.attempt, 2);
    assert_eq!(h.entity("thing#s3").await.expect("once").version, 1);

    // A retryable failure whose release fails on every send: the record waits for its
    // lease to end too.
    probe.plan([Behavior::Transient]);
    for _ in 0..3 {
        h.faulty.arm(Fault::Release);
    }
    let params = with_write("x", "thing#s4", json!("absent"));
    let ex = h.executor.execute(&probe, inv(params.clone(), "k4")).await;
    assert_eq!(
        ex.outcome.expect_err("transient").kind(),
        ErrorKind::Transient
    );
    let kept = h.record("probe#k4").await.expect("kept");
    assert!(kept.status == RecordStatus::InProgress && !kept.is_released());
    h.clock.advance_ms(30_001);
    let retry = h.executor.execute(&probe, inv(params, "k4")).await;
    assert!(retry.outcome.is_ok());
    assert_eq!(retry.attempt, 2);

    // A lone audit put failing does not fail a replay.
    h.faulty.arm(Fault::PutAudit);
    let replay = h
        .executor
        .execute(
            &probe,
            inv(with_write("x", "thing#s2", json!("absent")), "k2"),
        )
        .await;
    assert!(replay.replayed && replay.outcome.is_ok());
}

async fn large_results_are_compressed_and_oversized_ones_fail_cleanly(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let probe = Probe::new(ActionOptions::default());
    let big = h
        .executor
        .execute(
            &probe,
            inv(json!({"value": "x", "padding": 200_000}), "big"),
        )
        .await;
    let text = big.outcome.as_ref().expect("ok").get().to_owned();
    assert!(text.len() > 200_000);
    let record = h.record("probe#big").await.expect("record");
    assert!(
        matches!(record.result, Some(StoredResult::Gzip(_))),
        "compressed"
    );
    let again = h
        .executor
        .execute(
            &probe,
            inv(json!({"value": "x", "padding": 200_000}), "big"),
        )
        .await;
    assert_eq!(again.outcome.expect("replay").get(), text);

    // Too large for its record, with no object store (results.rs has the object store).
    let Some(h) = Harness::without_objects(backend).await else {
        return;
    };
    let huge = h
        .executor
        .execute(
            &probe,
            inv(
                with_write("x", "thing#huge", json!("absent"))
                    .as_object()
                    .cloned()
                    .map(|mut m| {
                        m.insert("noise".into(), json!(900_000));
                        Value::Object(m)
                    })
                    .expect("object"),
                "huge",
            ),
        )
        .await;
    let err = huge.outcome.expect_err("too large");
    assert_eq!(err.kind(), ErrorKind::Validation);
    assert!(err.message().contains("limit"), "{}", err.message());
    assert!(
        h.entity("thing#huge").await.is_none(),
        "nothing of it commits"
    );
    assert_eq!(
        h.record("probe#huge").await.expect("record").status,
        RecordStatus::Failed
    );
}

async fn audit_redacts_and_pages_newest_first(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let probe = Probe::new(ActionOptions {
        redact: vec!["secret".into()],
        ..ActionOptions::default()
    });
    for i in 0..5 {
        let ex = h
            .executor
            .execute(
                &probe,
                inv(
                    json!({"value": format!("v{i}"), "secret": "hunter2"}),
                    &format!("k{i}"),
                )
                .with_correlation_id("run-1"),
            )
            .await;
        assert!(ex.outcome.is_ok());
        h.clock.advance_ms(1_000);
    }
    let audit = h.audit("probe#k0").await;
    assert_eq!(audit[0].details["input"]["secret"], "[REDACTED]");
    assert_eq!(audit[0].details["output"]["secret"], "[REDACTED]");
    assert_eq!(audit[0].correlation_id.as_deref(), Some("run-1"));

    for filter in [
        AuditFilter::Type("probe".into()),
        AuditFilter::Correlation("run-1".into()),
    ] {
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let page = h
                .faulty
                .query_audit(&AuditQuery {
                    filter: filter.clone(),
                    since: None,
                    limit: 2,
                    cursor: cursor.take(),
                })
                .await
                .expect("page");
            assert!(page.records.len() <= 2);
            seen.extend(
                page.records
                    .into_iter()
                    .map(|r| r.details["input"]["value"].clone()),
            );
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        assert_eq!(
            seen,
            [
                json!("v4"),
                json!("v3"),
                json!("v2"),
                json!("v1"),
                json!("v0")
            ],
            "{filter:?}"
        );
    }
    let since = h.audit_by_type("probe").await[1].timestamp.clone();
    let recent = h
        .faulty
        .query_audit(&AuditQuery {
            since: Some(since),
            ..AuditQuery::new(AuditFilter::Type("probe".into()))
        })
        .await
        .expect("page");
    assert_eq!(recent.records.len(), 2);
}

async fn derived_keys_make_equal_inputs_one_execution(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let probe = Probe::new(ActionOptions::default());
    let a = h
        .executor
        .execute(
            &probe,
            Invocation::new(json!({"value": "x", "secret": "s"}), Source::Cli),
        )
        .await;
    let b = h
        .executor
        .execute(
            &probe,
            Invocation::new(json!({"secret": "s", "value": "x"}), Source::Cli),
        )
        .await;
    assert!(!a.replayed && b.replayed, "key order does not matter");
    assert_eq!(a.key, b.key);
    assert_eq!(a.key.as_deref().map(str::len), Some(64));
    assert_eq!(probe.calls(), 1);
    assert_eq!(probe.calls.load(Ordering::SeqCst), 1);
}

/// `Store::put_entity`: one conditional put with no record and no audit record; a
/// condition that fails writes nothing and is `Ok(false)`, not an error; one request on
/// DynamoDB.
async fn a_lone_entity_put_is_conditional_and_unaudited(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let key = EntityKey::new("thing#lone", "doc");
    let put = |doc: Value, expect: Expect| {
        let (h, key) = (&h, &key);
        async move {
            h.faulty
                .put_entity(key, &doc, expect)
                .await
                .expect("put_entity")
        }
    };
    h.reset_calls();
    assert!(put(json!({"value": "v1"}), Expect::Absent).await);
    h.assert_round_trips(&["UpdateItem"]);
    assert!(
        !put(json!({"value": "again"}), Expect::Absent).await,
        "exists"
    );
    assert!(!put(json!({"value": "stale"}), Expect::Version(7)).await);
    let kept = h.entity("thing#lone").await.expect("written");
    assert_eq!(
        (kept.version, kept.doc.clone()),
        (1, json!({"value": "v1"}))
    );
    assert!(put(json!({"value": "v2"}), Expect::Version(1)).await);
    assert!(put(json!({"value": "v3"}), Expect::Any).await);
    let now = h.entity("thing#lone").await.expect("written");
    assert_eq!((now.version, now.doc.clone()), (3, json!({"value": "v3"})));
    // No audit record: on DynamoDB the single `UpdateItem` above says so (the audit
    // cannot be listed there without a filter); SQLite lists it.
    if backend.is_sqlite() {
        let audit = h
            .faulty
            .query_audit(&AuditQuery::new(AuditFilter::All))
            .await
            .expect("query_audit");
        assert!(audit.records.is_empty(), "no audit record");
    }
}

macro_rules! conformance {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    super::$scenario(super::Backend::Sqlite).await;
                }
            )*
        }
        mod sqlite_file {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    super::$scenario(super::Backend::SqliteFile).await;
                }
            )*
        }
        mod dynamodb_local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    super::$scenario(super::Backend::DynamoDbLocal).await;
                }
            )*
        }
        mod moto {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    super::$scenario(super::Backend::Moto).await;
                }
            )*
        }
    };
}

conformance!(
    first_execution,
    replay_of_completed_result_is_byte_identical,
    replay_of_terminal_failure,
    concurrent_duplicate_is_in_progress_with_the_time_left,
    expired_lease_is_taken_over,
    retryable_error_releases_the_record_and_a_retry_runs_again,
    payload_mismatch_is_refused,
    completed_record_past_its_retention_runs_again,
    lease_lost_before_commit_writes_nothing,
    entity_version_conflict_writes_nothing,
    optimistic_first_run_and_replay,
    optimistic_conflict_runs_again_in_place,
    handler_panic_is_internal_and_releases,
    invalid_keys_are_rejected_with_nothing_written,
    schema_violation_is_rejected_before_the_claim,
    fifty_concurrent_executions_run_the_handler_once,
    store_failures_surface_as_transient_with_no_partial_state,
    large_results_are_compressed_and_oversized_ones_fail_cleanly,
    audit_redacts_and_pages_newest_first,
    derived_keys_make_equal_inputs_one_execution,
    unstorable_values_in_caller_data_complete_and_replay,
    unstorable_staged_documents_fail_at_put,
    invalid_identifiers_are_refused_before_the_claim,
    unparsable_input_is_audited_as_its_digest,
    a_resent_claim_that_finds_its_own_lease_has_it,
    a_lost_commit_answer_completes_once,
    a_refused_commit_settles_the_key_as_failed,
    a_slow_handler_ends_inside_its_lease,
    attempts_grow_across_releases,
    redacted_values_never_reach_errors_or_the_audit,
    a_lease_is_taken_over_from_the_millisecond_after_it_ends,
    a_record_expires_from_the_second_after_its_retention,
    records_carry_the_lease_and_retention_times,
    results_are_compressed_from_the_byte_after_512_bytes,
    digests_are_the_sha256_of_the_canonical_text,
    a_write_staged_twice_keeps_its_first_condition,
    optimistic_failures_and_reruns,
    optimistic_resends,
    audit_pages_hold_exactly_their_limit,
    write_units_per_execution,
    a_completion_output_is_stored_once,
    a_lone_entity_put_is_conditional_and_unaudited,
    large_results_are_stored_as_objects_and_replayed_byte_identical,
    results_just_under_and_just_over_the_record_limit,
    results_over_6_mib_are_refused_and_nothing_is_stored,
    without_an_object_store_large_results_are_refused,
    a_fault_between_the_object_and_the_commit_is_repaired_by_the_retry,
    an_object_store_outage_holds_the_key_until_its_lease_ends,
    optimistic_large_results_are_objects_too,
    write_units_by_result_size,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamodb_local_refuses_exactly_what_the_limits_refuse() {
    dynamodb_refuses_exactly_what_the_limits_refuse().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_stores_agree_on_arbitrary_inputs_on_dynamodb_local() {
    both_stores_agree_on_arbitrary_inputs().await;
}
