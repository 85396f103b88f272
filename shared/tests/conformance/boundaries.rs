//! Edges to the millisecond, the second and the byte, on every store (docs/architecture.md
//! §4.2, §4.3, §4.5, §5.1): when a lease may be taken over, when a record has expired,
//! what a record's times are, when a result is compressed, what a payload hashes to,
//! how a write staged twice is conditioned, how optimistic mode treats failures, and how
//! audit pages are cut.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actiondo::store::{
    Claim, ClaimOutcome, Commit, CommitOutcome, IdempotencyRecord, RecordStatus, RecordWrite,
    StoredResult,
};
use actiondo::{
    Action, ActionContext, ActionError, ActionOptions, AuditFilter, AuditQuery, AuditRecord,
    AuditStatus, Clock, EntityKey, ErrorKind, Expect, Invocation, Lease, Mode, Params, Source,
    Store,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::harness::{Backend, Behavior, Harness, Probe};
use crate::storable::Keeper;

/// Unix ms of a claim in these scenarios: 2033-05-18T03:33:20.500Z.
const NOW: i64 = 2_000_000_000_500;

fn claim(id: &str, hash: &str, owner: &str, now_ms: i64, lease_expires_at_ms: i64) -> Claim {
    Claim {
        id: id.into(),
        payload_hash: hash.into(),
        lease_owner: owner.into(),
        lease_expires_at_ms,
        expires_at_s: lease_expires_at_ms.div_euclid(1000) + 3_600,
        now_ms,
    }
}

fn audit_record(execution: &str, seq: &str) -> AuditRecord {
    AuditRecord {
        execution: execution.into(),
        seq: seq.into(),
        action: "edge".into(),
        status: AuditStatus::Completed,
        details: json!({}),
        timestamp: actiondo::audit::timestamp(NOW),
        duration_ms: 0,
        attempt: 1,
        request_id: "edge".into(),
        source: Source::Direct,
        caller: None,
        correlation_id: None,
        trace_id: None,
    }
}

async fn claimed(h: &Harness, c: &Claim) -> ClaimOutcome {
    h.faulty.claim(c).await.expect("claim")
}

/// A lease ending at `L` (its `lease_expires_at_ms`) holds the key through `L`; from
/// `L + 1` the same payload takes it over (attempt 2), another payload never does.
pub(crate) async fn a_lease_is_taken_over_from_the_millisecond_after_it_ends(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let end = NOW + 1_000;
    let first = claim("edge#lease", "h1", "first", NOW, end);
    assert_eq!(
        claimed(&h, &first).await,
        ClaimOutcome::Claimed {
            attempt: 1,
            taken_over: false
        }
    );
    for now in [end - 1, end] {
        match claimed(&h, &claim("edge#lease", "h1", "second", now, now + 1_000)).await {
            ClaimOutcome::Existing(r) => {
                assert_eq!(
                    (r.lease_owner.as_str(), r.attempt),
                    ("first", 1),
                    "at {now}"
                );
            }
            other => panic!("the lease still holds at {now}: {other:?}"),
        }
    }
    assert!(matches!(
        claimed(
            &h,
            &claim("edge#lease", "h2", "other", end + 1, end + 1_001)
        )
        .await,
        ClaimOutcome::Existing(_)
    ));
    assert_eq!(
        claimed(
            &h,
            &claim("edge#lease", "h1", "second", end + 1, end + 1_001)
        )
        .await,
        ClaimOutcome::Claimed {
            attempt: 2,
            taken_over: true
        }
    );
    let r = h.record("edge#lease").await.expect("record");
    assert_eq!(
        (
            r.lease_owner.as_str(),
            r.lease_expires_at_ms,
            r.created_at_ms
        ),
        ("second", end + 1_001, end + 1)
    );
}

/// A record whose `expires_at_s` is `E` is live through the last millisecond of second
/// `E`; from the first millisecond of `E + 1` any payload may claim it (not a take-over),
/// and an optimistic insert may replace it.
pub(crate) async fn a_record_expires_from_the_second_after_its_retention(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let expires_s = NOW.div_euclid(1000) + 60;
    let first = claim("edge#expiry", "h1", "first", NOW, NOW + 1_000);
    assert!(matches!(
        claimed(&h, &first).await,
        ClaimOutcome::Claimed { attempt: 1, .. }
    ));
    let done = Commit {
        record: RecordWrite::Finish {
            id: "edge#expiry".into(),
            lease_owner: "first".into(),
            status: RecordStatus::Completed,
            result: Some(StoredResult::Json("1".into())),
            error: None,
            completed_at_ms: NOW + 10,
            expires_at_s: expires_s,
        },
        audit: audit_record("edge#expiry", "1"),
        writes: Vec::new(),
    };
    assert_eq!(
        h.faulty.commit(&done).await.expect("commit"),
        CommitOutcome::Committed
    );
    let last_live_ms = (expires_s + 1) * 1000 - 1;
    match claimed(
        &h,
        &claim(
            "edge#expiry",
            "h2",
            "second",
            last_live_ms,
            last_live_ms + 1_000,
        ),
    )
    .await
    {
        ClaimOutcome::Existing(r) => assert_eq!(r.status, RecordStatus::Completed),
        other => panic!("live through its last second: {other:?}"),
    }
    let expired_ms = last_live_ms + 1;
    assert_eq!(
        claimed(
            &h,
            &claim(
                "edge#expiry",
                "h2",
                "second",
                expired_ms,
                expired_ms + 1_000
            )
        )
        .await,
        ClaimOutcome::Claimed {
            attempt: 2,
            taken_over: false
        }
    );

    // The optimistic insert meets the same edge.
    let record = |owner: &str| IdempotencyRecord {
        id: "edge#insert".into(),
        status: RecordStatus::Completed,
        payload_hash: "h1".into(),
        attempt: 1,
        lease_owner: owner.into(),
        lease_expires_at_ms: NOW,
        expires_at_s: expires_s,
        result: Some(StoredResult::Json("1".into())),
        error: None,
        created_at_ms: NOW,
        completed_at_ms: Some(NOW),
    };
    let insert = |owner: &str, now_ms: i64, seq: &str| Commit {
        record: RecordWrite::Insert {
            record: record(owner),
            now_ms,
        },
        audit: audit_record("edge#insert", seq),
        writes: Vec::new(),
    };
    assert_eq!(
        h.faulty
            .commit(&insert("first", NOW, "1"))
            .await
            .expect("insert"),
        CommitOutcome::Committed
    );
    match h
        .faulty
        .commit(&insert("second", last_live_ms, "2"))
        .await
        .expect("insert")
    {
        CommitOutcome::Exists(r) => assert_eq!(r.lease_owner, "first"),
        other => panic!("live through its last second: {other:?}"),
    }
    assert_eq!(
        h.faulty
            .commit(&insert("second", expired_ms, "3"))
            .await
            .expect("insert"),
        CommitOutcome::Committed
    );
    assert_eq!(
        h.record("edge#insert").await.expect("record").lease_owner,
        "second"
    );
}

/// The times of a record (docs/architecture.md §4.5): a claim's lease is the time to the
/// deadline within 1 s and the cap, or the fixed lease; the record expires the retention
/// after the lease's end while in progress and after the commit once finished.
pub(crate) async fn records_carry_the_lease_and_retention_times(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let retention = 60;
    let options = |lease: Lease, mode: Mode| ActionOptions {
        lease,
        mode,
        retention: Duration::from_secs(retention),
        ..ActionOptions::default()
    };
    let remaining = Lease::RemainingTime {
        cap: Duration::from_secs(120),
    };
    let now = h.clock.now_ms();
    for (i, (lease, deadline, lease_ms)) in [
        (Lease::Fixed(Duration::from_secs(30)), None, Some(30_000)),
        (remaining, None, Some(120_000)),
        (remaining, Some(now + 200), Some(1_000)),
        (remaining, Some(now + 500_000), Some(120_000)),
        // Between 1 s and the cap: the lease ends at the deadline itself.
        (remaining, Some(now + 50_000), None),
    ]
    .into_iter()
    .enumerate()
    {
        let probe = std::sync::Arc::new(Probe::new(options(lease, Mode::Claim)));
        probe.plan([Behavior::WaitForRelease]);
        let mut inv = crate::inv(json!({"value": "x"}), &format!("k{i}"));
        inv.deadline_ms = deadline;
        let running = h.spawn(&probe, inv);
        probe.wait_started().await;
        let r = h.record(&format!("probe#k{i}")).await.expect("claimed");
        match lease_ms {
            Some(ms) => assert_eq!(r.lease_expires_at_ms - r.created_at_ms, ms, "case {i}"),
            None => assert_eq!(Some(r.lease_expires_at_ms), deadline, "case {i}"),
        }
        assert_eq!(
            r.expires_at_s,
            r.lease_expires_at_ms.div_euclid(1000) + 60,
            "case {i}"
        );
        probe.release.notify_one();
        assert!(running.await.expect("joins").outcome.is_ok());
        let r = h.record(&format!("probe#k{i}")).await.expect("completed");
        let completed = r.completed_at_ms.expect("completed_at_ms");
        assert!(completed >= r.created_at_ms);
        assert_eq!(r.expires_at_s, completed.div_euclid(1000) + 60, "case {i}");
    }

    // Failed, released and optimistic records.
    let probe = Probe::new(options(Lease::Fixed(Duration::from_secs(30)), Mode::Claim));
    probe.plan([Behavior::Reject, Behavior::Transient]);
    let _ = h
        .executor
        .execute(&probe, crate::inv(json!({"value": "f"}), "failed"))
        .await;
    let r = h.record("probe#failed").await.expect("failed");
    assert_eq!(r.status, RecordStatus::Failed);
    let completed = r.completed_at_ms.expect("completed_at_ms");
    assert_eq!(r.expires_at_s, completed.div_euclid(1000) + 60);
    let _ = h
        .executor
        .execute(&probe, crate::inv(json!({"value": "r"}), "released"))
        .await;
    let r = h.record("probe#released").await.expect("released");
    assert!(r.is_released());
    assert_eq!(
        r.expires_at_s,
        (r.created_at_ms + 30_000).div_euclid(1000) + 60
    );
    let probe = Probe::new(options(Lease::default(), Mode::Optimistic));
    let ex = h
        .executor
        .execute(&probe, crate::inv(json!({"value": "o"}), "optimistic"))
        .await;
    assert!(ex.outcome.is_ok());
    let r = h.record("probe#optimistic").await.expect("inserted");
    let completed = r.completed_at_ms.expect("completed_at_ms");
    assert_eq!(
        (r.attempt, r.created_at_ms, r.lease_expires_at_ms),
        (1, completed, completed)
    );
    assert_eq!(r.expires_at_s, completed.div_euclid(1000) + 60);
}

/// A result's JSON is stored as text up to 512 bytes and gzip-compressed from the byte
/// after; both replay byte-identical.
pub(crate) async fn results_are_compressed_from_the_byte_after_512_bytes(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let keeper = Keeper::default();
    for (chars, compressed) in [(510, false), (511, true)] {
        let params = json!({"data": "x".repeat(chars)});
        let key = format!("c{chars}");
        let run = || {
            h.executor.execute(
                &keeper,
                Invocation::new(params.clone(), Source::Cli).with_key(&key),
            )
        };
        let first = run().await;
        let text = first.outcome.expect("ok").get().to_owned();
        assert_eq!(text.len(), chars + 2);
        let r = h.record(&format!("keeper#{key}")).await.expect("record");
        match (&r.result, compressed) {
            (Some(StoredResult::Json(stored)), false) => assert_eq!(*stored, text),
            (Some(StoredResult::Gzip(_)), true) => {}
            other => panic!("{} bytes stored as {other:?}", text.len()),
        }
        let again = run().await;
        assert!(again.replayed);
        assert_eq!(again.outcome.expect("replay").get(), text);
    }
}

/// The payload hash is the SHA-256 (hex) of the canonical JSON, and text that is not
/// JSON is audited as its SHA-256.
pub(crate) async fn digests_are_the_sha256_of_the_canonical_text(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let probe = Probe::new(ActionOptions::default());
    let ex = h
        .executor
        .execute(&probe, crate::inv(json!({"value": "x"}), "k"))
        .await;
    assert!(ex.outcome.is_ok());
    assert_eq!(
        h.record("probe#k").await.expect("record").payload_hash,
        // printf '{"value":"x"}' | sha256sum
        "da1fa454c2b3e417928b12414a470b10a5c5151532a990a6c4b19d801d42c259"
    );
    let inv = Invocation {
        params: Params::Text("abc".into()),
        ..crate::inv(Value::Null, "text")
    };
    let ex = h.executor.execute(&probe, inv).await;
    assert_eq!(
        ex.outcome.expect_err("not JSON").kind(),
        ErrorKind::Validation
    );
    let audit = h.audit("probe#text").await;
    assert_eq!(
        audit[0].details["input"],
        json!({
            "unparsed": true,
            "bytes": 3,
            "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        })
    );
}

/// A write staged twice to one entity keeps the condition it was first staged with (the
/// later document wins): `absent` then `any` on an existing entity is a conflict; `any`
/// then `absent` writes.
pub(crate) async fn a_write_staged_twice_keeps_its_first_condition(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let probe = Probe::new(ActionOptions::default());
    let setup = h
        .executor
        .execute(
            &probe,
            crate::inv(crate::with_write("v1", "thing#e", json!("absent")), "setup"),
        )
        .await;
    assert!(setup.outcome.is_ok());
    let twice = |first: &str, then: &str| {
        json!({"value": "v2", "writes": [
            {"pk": "thing#e", "sk": "doc", "expect": first},
            {"pk": "thing#e", "sk": "doc", "expect": then},
        ]})
    };
    let ex = h
        .executor
        .execute(&probe, crate::inv(twice("absent", "any"), "absent-any"))
        .await;
    let err = ex.outcome.expect_err("conflict");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert_eq!(err.details().expect("details")["entity"], "thing#e/doc");
    assert_eq!(h.entity("thing#e").await.expect("kept").version, 1);

    let ex = h
        .executor
        .execute(&probe, crate::inv(twice("any", "absent"), "any-absent"))
        .await;
    assert!(ex.outcome.is_ok(), "{:?}", ex.outcome);
    let e = h.entity("thing#e").await.expect("written");
    assert_eq!((e.version, e.doc["value"].clone()), (2, json!("v2")));
}

/// An action that stages a write conditioned on a version no entity has, on its first
/// ten calls (then nothing: a run past the executor's limit would commit).
#[derive(Debug, Default)]
pub(crate) struct Contender {
    calls: AtomicUsize,
    retries: u32,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(crate) struct ContenderInput {
    value: String,
}

impl Action for Contender {
    type Input = ContenderInput;
    type Output = Value;
    const NAME: &'static str = "contender";
    const DESCRIPTION: &'static str = "Stages a write that always conflicts.";

    fn options(&self) -> ActionOptions {
        ActionOptions {
            mode: Mode::Optimistic,
            optimistic_retries: self.retries,
            ..ActionOptions::default()
        }
    }

    async fn execute(
        &self,
        input: ContenderInput,
        cx: &mut ActionContext,
    ) -> Result<Value, ActionError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) < 10 {
            cx.put(
                EntityKey::new("contended", "doc"),
                &json!({"value": input.value}),
                Expect::Version(7),
            )?;
        }
        Ok(json!(input.value))
    }
}

/// Optimistic mode: a terminal failure is stored `FAILED` and replayed; a retryable one
/// stores no record (only its `retrying` audit record); a staged write's conflict runs the
/// handler again up to `optimistic_retries` times, then `ActionDo.Conflict`.
pub(crate) async fn optimistic_failures_and_reruns(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let probe = Probe::new(ActionOptions {
        mode: Mode::Optimistic,
        ..ActionOptions::default()
    });
    probe.plan([Behavior::Reject, Behavior::Normal, Behavior::Transient]);
    let params = crate::with_write("x", "thing#of", json!("any"));
    let err = h
        .executor
        .execute(&probe, crate::inv(params.clone(), "terminal"))
        .await
        .outcome
        .expect_err("rejected");
    assert_eq!(err.kind(), ErrorKind::Rejected);
    let r = h.record("probe#terminal").await.expect("stored");
    assert_eq!((r.status, r.attempt), (RecordStatus::Failed, 1));
    let replay = h
        .executor
        .execute(&probe, crate::inv(params.clone(), "terminal"))
        .await;
    assert!(replay.replayed);
    assert_eq!(
        replay.outcome.expect_err("replayed").kind(),
        ErrorKind::Rejected
    );
    assert!(h.entity("thing#of").await.is_none());

    let err = h
        .executor
        .execute(&probe, crate::inv(params.clone(), "retryable"))
        .await
        .outcome
        .expect_err("transient");
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert!(h.record("probe#retryable").await.is_none());
    assert_eq!(
        h.statuses(&h.audit("probe#retryable").await),
        [AuditStatus::Retrying]
    );
    assert!(h.entity("thing#of").await.is_none());
    let retry = h
        .executor
        .execute(&probe, crate::inv(params, "retryable"))
        .await;
    assert!(retry.outcome.is_ok() && !retry.replayed);
    assert_eq!(h.entity("thing#of").await.expect("written").version, 1);

    for retries in [0, 2] {
        let contender = Contender {
            retries,
            ..Contender::default()
        };
        let key = format!("r{retries}");
        let ex = h
            .executor
            .execute(
                &contender,
                Invocation::new(json!({"value": "x"}), Source::Cli).with_key(&key),
            )
            .await;
        assert_eq!(
            ex.outcome.expect_err("conflict").kind(),
            ErrorKind::Conflict
        );
        assert_eq!(
            contender.calls.load(Ordering::SeqCst),
            usize::try_from(retries).expect("small") + 1
        );
        assert!(h.record(&format!("contender#{key}")).await.is_none());
        assert_eq!(
            h.statuses(&h.audit(&format!("contender#{key}")).await),
            [AuditStatus::Retrying]
        );
    }
}

/// Optimistic mode: an insert whose answer was lost is this execution's own (not a
/// replay); an insert that fails once is sent again.
pub(crate) async fn optimistic_resends(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    let probe = Probe::new(ActionOptions {
        mode: Mode::Optimistic,
        ..ActionOptions::default()
    });
    h.faulty
        .arm(actiondo::store::faulty::Fault::LoseCommitAnswer);
    let ex = h
        .executor
        .execute(&probe, crate::inv(json!({"value": "x"}), "lost"))
        .await;
    assert!(ex.outcome.is_ok() && !ex.replayed, "{:?}", ex.outcome);
    assert_eq!(
        h.statuses(&h.audit("probe#lost").await),
        [AuditStatus::Completed]
    );
    h.faulty.arm(actiondo::store::faulty::Fault::CommitOutcome);
    let ex = h
        .executor
        .execute(&probe, crate::inv(json!({"value": "x"}), "failed-once"))
        .await;
    assert!(ex.outcome.is_ok(), "{:?}", ex.outcome);
    assert_eq!(probe.calls(), 2, "the handler ran once per execution");
}

/// Audit pages hold exactly their limit (1 to 100); the embedded store answers a last
/// page that is exactly full without a cursor.
pub(crate) async fn audit_pages_hold_exactly_their_limit(backend: Backend) {
    let Some(h) = Harness::new(backend).await else {
        return;
    };
    for i in 0..101 {
        let mut record = audit_record("edge#pages", &format!("{i:04}"));
        record.timestamp = actiondo::audit::timestamp(NOW + i);
        h.faulty.put_audit(&record).await.expect("put");
    }
    let page = |limit: usize, cursor: Option<String>| {
        let query = AuditQuery {
            limit,
            cursor,
            ..AuditQuery::new(AuditFilter::Execution("edge#pages".into()))
        };
        let store = h.faulty.clone();
        async move { store.query_audit(&query).await.expect("page") }
    };
    let big = page(500, None).await;
    assert_eq!(big.records.len(), 100, "at most 100");
    assert_eq!(big.records[0].seq, "0100", "newest first");
    assert!(big.next_cursor.is_some());
    let rest = page(500, big.next_cursor).await;
    assert_eq!(rest.records.len(), 1);
    assert_eq!(page(0, None).await.records.len(), 1, "at least 1");
    let two = page(2, None).await;
    assert_eq!(two.records.len(), 2);
    let next = page(2, two.next_cursor).await;
    assert_eq!(
        next.records
            .iter()
            .map(|r| r.seq.as_str())
            .collect::<Vec<_>>(),
        ["0098", "0097"]
    );
    let all = page(101, None).await;
    assert_eq!(all.records.len(), 100);
    assert_eq!(page(100, all.next_cursor).await.records.len(), 1);

    // Four records in pages of two: the second page is exactly full and the last.
    for i in 0..4 {
        let mut record = audit_record("edge#four", &format!("{i}"));
        record.timestamp = actiondo::audit::timestamp(NOW + i);
        h.faulty.put_audit(&record).await.expect("put");
    }
    let query = |cursor: Option<String>| AuditQuery {
        limit: 2,
        cursor,
        ..AuditQuery::new(AuditFilter::Execution("edge#four".into()))
    };
    let first = h.faulty.query_audit(&query(None)).await.expect("page");
    assert_eq!(first.records.len(), 2);
    let second = h
        .faulty
        .query_audit(&query(first.next_cursor))
        .await
        .expect("page");
    assert_eq!(second.records.len(), 2);
    match second.next_cursor {
        None => {}
        // DynamoDB may answer a cursor to an empty page; the embedded store never does.
        Some(_) if backend.is_sqlite() => {
            panic!("an exactly full last page has no cursor")
        }
        Some(c) => {
            let third = h.faulty.query_audit(&query(Some(c))).await.expect("page");
            assert!(third.records.is_empty() && third.next_cursor.is_none());
        }
    }
}
