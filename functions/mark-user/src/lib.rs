//! # mark-user
//!
//! The `mark-user` atomic action: sets a user's status — the compensation of
//! `create-user` in a workflow (`onboarding_failed`).
//!
//! Input `{"userId": "u_…", "status": "onboarding_failed", "reason": "payment declined"?}`
//! → output `{"userId": "u_…", "status": "onboarding_failed", "previousStatus": "active",
//! "changed": true, "changedAt": "2024-…Z"}`.
//!
//! - `status` is a [`UserStatus`]: `active`, `onboarding_failed` or `deactivated`
//!   (`active` reinstates a user).
//! - The profile (`user#<userId>` / `profile`, [`UserProfile`] of `create-user`) gets the
//!   new `status` and a `statusChange` ([`StatusChange`]: the previous status, when, the
//!   reason, and `execution` = `mark-user#<key>`, the id of this execution's idempotency
//!   record and audit trail). Every other field stays as it is. Nothing is deleted: the
//!   email stays taken by this user.
//! - Optimistic concurrency: the profile is written on the condition that it still has
//!   the version read ([`Expect::Version`]), in one transaction with the idempotency
//!   record and the audit record ([`Mode::Optimistic`]). A concurrent change makes the
//!   commit fail; the executor runs the action again in place, on the new version.
//! - A user already in `status` is a successful no-op: nothing is written,
//!   `changed: false`, `changedAt` is the time of the last change (`null` if there was
//!   none), and the stored `reason` is not replaced.
//! - An unknown user is `ActionDo.Rejected` with `details.reason = "unknown_user"`:
//!   unlike `release-resources` (for which an unknown user has nothing to undo), a status
//!   cannot be recorded for nobody, and a workflow only marks the user it created.
//!
//! ## Configuration
//!
//! None: [`MarkUser::from_env`] reads no setting.
//!
//! # Example
//!
//! ```
//! use actiondo::{ErrorKind, Executor, Invocation, Source};
//! use actiondo::store::sqlite::SqliteStore;
//! use mark_user::MarkUser;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let executor = Executor::new(SqliteStore::in_memory()?);
//! let params = serde_json::json!({"userId": "u_nobody", "status": "onboarding_failed"});
//! let run = executor.execute(&MarkUser, Invocation::new(params, Source::Cli).with_key("m-1")).await;
//! let err = run.outcome.unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::Rejected);
//! assert_eq!(err.details().unwrap()["reason"], "unknown_user");
//! # Ok::<_, Box<dyn std::error::Error>>(()) }).unwrap();
//! ```

use actiondo::{
    Action, ActionContext, ActionError, ActionOptions, Effects, Expect, FieldErrors, Mode,
};
use create_user::{StatusChange, UserProfile, UserStatus, unknown_user, user_key};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The longest accepted reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// Parameters of `mark-user`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MarkUserInput {
    /// The user, as returned by `create-user`.
    #[schemars(length(min = 1, max = 200))]
    pub user_id: String,
    /// The status to set.
    pub status: UserStatus,
    /// Why (1–500 characters after trimming, no control characters); recorded in the
    /// profile's `statusChange`.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub reason: Option<String>,
}

/// Result of `mark-user`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MarkUserOutput {
    /// The user.
    pub user_id: String,
    /// The user's status now.
    pub status: UserStatus,
    /// The status before this execution (equal to `status` when nothing changed).
    pub previous_status: UserStatus,
    /// Whether this execution changed the status (false: the user already had it).
    pub changed: bool,
    /// When the status last changed, RFC 3339 (UTC); `null` if it never did.
    pub changed_at: Option<String>,
}

/// The `mark-user` action. See the [crate docs](crate).
#[derive(Debug, Clone, Copy, Default)]
pub struct MarkUser;

impl MarkUser {
    /// The action with its configuration from the environment (it has none).
    pub fn from_env() -> Self {
        MarkUser
    }
}

impl Action for MarkUser {
    type Input = MarkUserInput;
    type Output = MarkUserOutput;
    const NAME: &'static str = "mark-user";
    const DESCRIPTION: &'static str = "Sets a user's status (e.g. onboarding_failed, the compensation of create-user); a user already in that status is a successful no-op.";

    fn options(&self) -> ActionOptions {
        ActionOptions {
            mode: Mode::Optimistic,
            // Overwrites a user's status (MCP destructiveHint).
            effects: Effects {
                external: false,
                destructive: true,
            },
            ..ActionOptions::default()
        }
    }

    fn validate(&self, input: &MarkUserInput) -> Result<(), ActionError> {
        let mut errors = FieldErrors::new();
        if input.user_id.trim().is_empty() {
            errors.add("/userId", "must not be blank");
        }
        if let Some(reason) = input.reason.as_deref().map(str::trim) {
            if reason.is_empty() {
                errors.add("/reason", "must not be blank");
            } else if let Some(problem) =
                actiondo::validation::text_problem(reason, MAX_REASON_CHARS)
            {
                errors.add("/reason", problem);
            }
        }
        errors.into_result(Self::NAME)
    }

    async fn execute(
        &self,
        input: MarkUserInput,
        cx: &mut ActionContext,
    ) -> Result<MarkUserOutput, ActionError> {
        let user_id = input.user_id.trim();
        let key = user_key(user_id);
        let (mut profile, version) = cx
            .get_as::<UserProfile>(&key)
            .await?
            .ok_or_else(|| unknown_user(user_id))?;
        let previous = profile.status;
        if previous == input.status {
            return Ok(MarkUserOutput {
                user_id: profile.user_id,
                status: previous,
                previous_status: previous,
                changed: false,
                changed_at: profile.status_change.map(|c| c.changed_at),
            });
        }
        let changed_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        profile.status = input.status;
        profile.status_change = Some(StatusChange {
            previous,
            changed_at: changed_at.clone(),
            reason: input.reason.map(|r| r.trim().to_owned()),
            execution: format!("{}#{}", cx.action(), cx.idempotency_key()),
        });
        cx.put(key, &profile, Expect::Version(version))?;
        Ok(MarkUserOutput {
            user_id: profile.user_id,
            status: input.status,
            previous_status: previous,
            changed: true,
            changed_at: Some(changed_at),
        })
    }
}

#[cfg(test)]
mod tests;
