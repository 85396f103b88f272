//! Time for the engine: `Wait`, `Retry` intervals and `TimeoutSeconds` go through a
//! [`Timer`], so that tests drive time (tokio's paused clock) and `--time-scale F` runs
//! them `F` times faster ([`ScaledTimer`]).

use std::time::Duration;

use async_trait::async_trait;

/// The variable that sets the time scale of `actiondo workflow run` and `actiondo serve`.
pub const TIME_SCALE_ENV: &str = "ACTIONDO_WORKFLOW_TIME_SCALE";

/// Waits and wall-clock time, for the engine.
#[async_trait]
pub trait Timer: Send + Sync + std::fmt::Debug {
    /// Now, Unix milliseconds (event timestamps, `$$.Execution.StartTime`, the
    /// `Timestamp` of a Wait state).
    fn now_ms(&self) -> i64;
    /// Wait `duration` of workflow time.
    async fn sleep(&self, duration: Duration);
}

/// Workflow time `scale` times faster than real time (1.0: real time), on tokio's
/// clock, so that a test with paused time drives it. Timestamps stay wall-clock time.
#[derive(Debug, Clone, Copy)]
pub struct ScaledTimer {
    scale: f64,
}

impl ScaledTimer {
    /// Real time.
    pub fn real_time() -> Self {
        Self { scale: 1.0 }
    }

    /// `scale` times faster than real time; refuses a scale that is not a positive
    /// finite number.
    pub fn new(scale: f64) -> Result<Self, String> {
        if scale.is_finite() && scale > 0.0 {
            Ok(Self { scale })
        } else {
            Err(format!(
                "the time scale must be a positive number, not {scale}"
            ))
        }
    }

    /// The scale of [`TIME_SCALE_ENV`] in `settings`, else real time.
    pub fn from_settings(settings: &actiondo::config::Settings) -> Result<Self, String> {
        match settings.get(TIME_SCALE_ENV) {
            None => Ok(Self::real_time()),
            Some(v) => v
                .trim()
                .parse::<f64>()
                .map_err(|_| format!("{TIME_SCALE_ENV}={v:?} is not a number"))
                .and_then(Self::new),
        }
    }

    /// The scale.
    pub fn scale(&self) -> f64 {
        self.scale
    }
}

#[async_trait]
impl Timer for ScaledTimer {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration.div_f64(self.scale)).await;
    }
}

/// A random `u64` from the operating system (jitter, `States.MathRandom`); 0 if it is
/// unavailable, which only removes the jitter.
pub(crate) fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    match getrandom::fill(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => 0,
    }
}
