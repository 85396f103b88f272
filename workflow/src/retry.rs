//! What happens after an error: the pure decision between a retry (and its delay), a
//! catcher and failing the state, from the state's `Retry` and `Catch` and the attempts
//! so far.

use std::time::Duration;

use crate::definition::{Catcher, Retrier};
use crate::error::{StatesError, names};

/// Whether `error` is one of `error_equals` (with the `States.ALL` and
/// `States.TaskFailed` wildcards; neither matches `States.Runtime` or
/// `States.DataLimitExceeded`, and `States.TaskFailed` does not match `States.Timeout`).
pub fn matches(error_equals: &[String], error: &str) -> bool {
    let uncatchable = error == names::RUNTIME || error == names::DATA_LIMIT_EXCEEDED;
    error_equals.iter().any(|n| {
        n == error
            || (!uncatchable && n == names::ALL)
            || (!uncatchable && n == names::TASK_FAILED && error != names::TIMEOUT)
    })
}

/// The decision after an error.
#[derive(Debug, Clone, PartialEq)]
pub enum OnError {
    /// Retry after `delay`; `retrier` is the index whose count goes up.
    Retry {
        /// The retrier that matched.
        retrier: usize,
        /// How long to wait.
        delay: Duration,
    },
    /// Go to the catcher at this index.
    Catch(usize),
    /// The state fails with the error.
    Fail,
}

/// The backoff before retry number `attempt + 1` of `r` (without jitter):
/// `IntervalSeconds × BackoffRate^attempt`, at most `MaxDelaySeconds`.
pub fn backoff(r: &Retrier, attempt: u64) -> Duration {
    let exp = i32::try_from(attempt).unwrap_or(i32::MAX);
    let mut secs = r.interval_seconds as f64 * r.backoff_rate.powi(exp);
    if let Some(max) = r.max_delay_seconds {
        secs = secs.min(max as f64);
    }
    // Step Functions' own ceiling: one year.
    Duration::from_secs_f64(secs.clamp(0.0, crate::definition::MAX_SECONDS as f64))
}

/// Decide what follows `error`, given how many times each retrier has already retried
/// (`attempts[i]`) and `random` in [0, 1) for full jitter. The first retrier whose
/// `ErrorEquals` matches decides: while its count is under `MaxAttempts` the state is
/// retried, after that the catchers are tried; the retriers after it are not.
pub fn decide(
    retry: &[Retrier],
    catch: &[Catcher],
    attempts: &[u64],
    error: &StatesError,
    random: f64,
) -> OnError {
    if let Some((i, r)) = retry
        .iter()
        .enumerate()
        .find(|(_, r)| matches(&r.error_equals, &error.error))
    {
        let done = attempts.get(i).copied().unwrap_or(0);
        if done < r.max_attempts {
            let mut delay = backoff(r, done);
            if r.full_jitter {
                delay = delay.mul_f64(random.clamp(0.0, 1.0));
            }
            return OnError::Retry { retrier: i, delay };
        }
    }
    match catch
        .iter()
        .position(|c| matches(&c.error_equals, &error.error))
    {
        Some(i) => OnError::Catch(i),
        None => OnError::Fail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retrier(names: &[&str], max_attempts: u64) -> Retrier {
        Retrier {
            error_equals: names.iter().map(|s| (*s).to_owned()).collect(),
            interval_seconds: 2,
            max_attempts,
            backoff_rate: 2.0,
            max_delay_seconds: Some(5),
            full_jitter: false,
        }
    }

    #[test]
    fn backoff_grows_and_stops_at_the_cap() {
        let r = retrier(&["X"], 3);
        assert_eq!(backoff(&r, 0), Duration::from_secs(2));
        assert_eq!(backoff(&r, 1), Duration::from_secs(4));
        assert_eq!(backoff(&r, 2), Duration::from_secs(5));
    }

    #[test]
    fn wildcards_leave_out_runtime_and_timeout() {
        let all = vec![names::ALL.to_owned()];
        let task = vec![names::TASK_FAILED.to_owned()];
        assert!(matches(&all, "ActionDo.Rejected"));
        assert!(matches(&all, names::TIMEOUT));
        assert!(!matches(&all, names::RUNTIME));
        assert!(!matches(&task, names::TIMEOUT));
        assert!(matches(&task, "ActionDo.Transient"));
    }

    #[test]
    fn the_first_matching_retrier_decides_then_the_catchers() {
        let retry = vec![retrier(&["A"], 1), retrier(&["A", "B"], 5)];
        let e = StatesError::new("A", "c");
        assert!(matches!(
            decide(&retry, &[], &[0, 0], &e, 0.5),
            OnError::Retry { retrier: 0, .. }
        ));
        assert_eq!(decide(&retry, &[], &[1, 0], &e, 0.5), OnError::Fail);
        let zero = vec![retrier(&["A"], 0)];
        assert_eq!(decide(&zero, &[], &[0], &e, 0.5), OnError::Fail);
    }
}
