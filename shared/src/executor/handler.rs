//! One run of a handler: its context, its time budget, panic capture, and the lease an
//! attempt takes.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt as _;

use super::{Executor, HandlerResult, Prepared};
use crate::action::{ActionOptions, Lease};
use crate::context::ActionContext;
use crate::error::ActionError;

impl Executor {
    /// Run the handler with panic capture and a time budget; return its output and the
    /// writes it staged.
    pub(super) async fn run_handler(
        &self,
        p: &Prepared<'_>,
        attempt: u32,
        budget_ms: i64,
    ) -> HandlerResult {
        let mut cx = ActionContext {
            action: p.action.name(),
            key: p.key.clone(),
            attempt,
            request_id: p.request_id.clone(),
            deadline_ms: p.inv.deadline_ms,
            source: p.inv.source,
            correlation_id: p.inv.correlation_id.clone(),
            caller: p.inv.caller.clone(),
            store: self.store.clone(),
            staged: Vec::new(),
        };
        let budget_ms = budget_ms.max(1);
        let run = AssertUnwindSafe(p.action.call(&p.params, &mut cx)).catch_unwind();
        let result = match tokio::time::timeout(
            Duration::from_millis(budget_ms.unsigned_abs()),
            run,
        )
        .await
        {
            Err(_) => Err(ActionError::transient(format!(
                "the handler did not finish within its lease of {budget_ms} ms"
            ))),
            Ok(Err(panic)) => Err(ActionError::internal(format!(
                "the handler panicked: {}",
                panic_message(panic.as_ref())
            ))),
            Ok(Ok(result)) => result,
        };
        result.map(|raw| (raw, cx.staged))
    }
}

/// The part of a lease kept for the commit after the handler: 1 s, or 10 % of leases
/// shorter than 10 s. The handler's budget is the rest.
pub(super) fn commit_reserve_ms(lease_ms: i64) -> i64 {
    if lease_ms >= 10_000 {
        1_000
    } else {
        lease_ms / 10
    }
}

/// The lease of one attempt, in milliseconds.
pub(super) fn lease_ms(options: &ActionOptions, deadline_ms: Option<i64>, now_ms: i64) -> i64 {
    let ms = match options.lease {
        Lease::Fixed(d) => duration_ms(d),
        Lease::RemainingTime { cap } => {
            let cap = duration_ms(cap);
            match deadline_ms {
                Some(deadline) => (deadline - now_ms).max(1_000).min(cap),
                None => cap,
            }
        }
    };
    ms.max(1)
}

pub(super) fn duration_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

pub(super) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a non-string panic payload)".to_owned()
    }
}
