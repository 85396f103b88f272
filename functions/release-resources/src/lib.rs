//! # release-resources
//!
//! The `release-resources` atomic action: gives back a user's workspace and quota — the
//! compensation of `provision-resources` in a workflow.
//!
//! Input `{"userId": "u_…", "workspaceId": "ws_…"?, "quotaId": "q_…"?, "reason":
//! "payment_failed"?}` → output `{"userId": "u_…", "outcome": "released",
//! "workspaceId": "ws_…", "quotaId": "q_…", "releasedAt": "2024-…Z"}`.
//!
//! - **Marks, never deletes.** The user's provisioning record, workspace and quota get
//!   `status: "released"` and a [`Release`] trace (`releasedAt`, `reason`, and
//!   `execution` = `release-resources#<key>`, the id of this execution's idempotency
//!   record and audit trail). The entities stay as the auditable trace; nothing needs
//!   `DeleteItem`. A released provisioning record counts as absent for
//!   `provision-resources`, which provisions new resources (new ids) when the user
//!   onboards again.
//! - **Atomic.** The three marks are staged writes, each conditioned on the version read
//!   ([`Expect::Version`]); they commit with the idempotency record and the audit record
//!   in one transaction, or not at all ([`Mode::Optimistic`]). Two concurrent releases of
//!   one user (different keys): one commits, the other's conditions fail and the executor
//!   runs it again in place, where it finds the user released. A provisioning and a
//!   release of one user cannot interleave either: each writes only over the version it
//!   read.
//! - **Idempotent per user, never an error for "nothing to do"**, because a compensation
//!   must always be able to finish. `outcome` says what happened:
//!   - `released`: the user's active resources were released now;
//!   - `already_released`: they had been released before (by any key); nothing is
//!     written, the output names them and when they were released;
//!   - `nothing_to_release`: the user has no provisioning record — never provisioned, or
//!     an unknown user (a compensation for a user that does not exist has nothing to
//!     undo; the profile is not read). Nothing is written.
//! - `workspaceId` and `quotaId` are optional: they name the resources the caller expects
//!   to release. When they are the user's current ones (or absent) the above applies.
//!   When they are not (the user was released and provisioned again since), the named
//!   ones must be this user's and released already: the outcome is then
//!   `already_released` for them, and the user's current resources are left alone.
//!   Otherwise (another user's workspace, an unknown id) the call is
//!   `ActionDo.Rejected` with `details.reason = "resources_mismatch"` and the user's
//!   current ids: nothing is released on a wrong guess.
//! - `reason` ([`ReleaseReason`]) defaults to `onboarding_failed`.
//! - The key defaults to one derived from the params; pass a key (Step Functions pass
//!   `<execution>#ReleaseResources`) when the same user may be released, provisioned
//!   and released again within the 24 h retention, or the second release replays the
//!   first.
//!
//! ## Entities (of `provision-resources`)
//!
//! | pk | sk | read | written (when released now) |
//! |---|---|---|---|
//! | `user#<userId>` | `provisioning` | [`Provisioning`] | `status: released`, `release` |
//! | `workspace#<workspaceId>` | `workspace` | [`Workspace`] | `status: released`, `release` |
//! | `quota#<quotaId>` | `quota` | [`Quota`] | `status: released`, `release` |
//!
//! A workspace or quota that the record names but that is missing (or already released)
//! is left as it is; the record is released all the same.
//!
//! ## Configuration
//!
//! None: [`ReleaseResources::from_env`] reads no setting.
//!
//! # Example
//!
//! ```
//! use actiondo::{Executor, Invocation, Source};
//! use actiondo::store::sqlite::SqliteStore;
//! use release_resources::{ReleaseOutcome, ReleaseResources, ReleaseResourcesOutput};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let executor = Executor::new(SqliteStore::in_memory()?);
//! // Nobody was provisioned: the compensation succeeds and says so.
//! let run = executor
//!     .execute(
//!         &ReleaseResources,
//!         Invocation::new(serde_json::json!({"userId": "u_1"}), Source::Cli).with_key("r-1"),
//!     )
//!     .await;
//! let out: ReleaseResourcesOutput = run.output()?;
//! assert_eq!(out.outcome, ReleaseOutcome::NothingToRelease);
//! assert_eq!(out.workspace_id, None);
//! # Ok::<_, Box<dyn std::error::Error>>(()) }).unwrap();
//! ```

use actiondo::{
    Action, ActionContext, ActionError, ActionOptions, Effects, Expect, FieldErrors, Mode,
};
use provision_resources::{
    Provisioning, Quota, Release, ResourceStatus, Workspace, provisioning_key, quota_key,
    workspace_key,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Why resources are released (stored in each entity's [`Release::reason`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseReason {
    /// The user's onboarding failed (the default; the workflow's compensation).
    #[default]
    OnboardingFailed,
    /// The user's payment failed.
    PaymentFailed,
    /// The user's account was closed.
    AccountClosed,
    /// An operator or the user asked for it.
    Requested,
}

impl ReleaseReason {
    /// The snake-case name, as stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseReason::OnboardingFailed => "onboarding_failed",
            ReleaseReason::PaymentFailed => "payment_failed",
            ReleaseReason::AccountClosed => "account_closed",
            ReleaseReason::Requested => "requested",
        }
    }
}

impl std::fmt::Display for ReleaseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a release did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseOutcome {
    /// The user's resources were released by this execution.
    Released,
    /// They had been released before; nothing was written.
    AlreadyReleased,
    /// The user holds no resources (never provisioned, or unknown); nothing was written.
    NothingToRelease,
}

/// Parameters of `release-resources`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReleaseResourcesInput {
    /// The user whose resources go back, as returned by `create-user`.
    #[schemars(length(min = 1, max = 200))]
    pub user_id: String,
    /// The workspace the caller expects to release (`provision-resources`'
    /// `workspaceId`); the user's current one when absent.
    #[serde(default)]
    #[schemars(length(min = 1, max = 200))]
    pub workspace_id: Option<String>,
    /// The quota the caller expects to release; the user's current one when absent.
    #[serde(default)]
    #[schemars(length(min = 1, max = 200))]
    pub quota_id: Option<String>,
    /// Why; `onboarding_failed` when absent.
    #[serde(default)]
    pub reason: Option<ReleaseReason>,
}

/// Result of `release-resources`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseResourcesOutput {
    /// The user.
    pub user_id: String,
    /// What happened.
    pub outcome: ReleaseOutcome,
    /// The workspace released (now or before); `null` when there was nothing to release.
    pub workspace_id: Option<String>,
    /// The quota released (now or before); `null` when there was nothing to release.
    pub quota_id: Option<String>,
    /// When they were released, RFC 3339 (UTC); `null` when there was nothing to release.
    pub released_at: Option<String>,
}

impl ReleaseResourcesOutput {
    fn nothing(user_id: &str) -> Self {
        Self {
            user_id: user_id.to_owned(),
            outcome: ReleaseOutcome::NothingToRelease,
            workspace_id: None,
            quota_id: None,
            released_at: None,
        }
    }
}

/// The `release-resources` action. See the [crate docs](crate).
#[derive(Debug, Clone, Copy, Default)]
pub struct ReleaseResources;

impl ReleaseResources {
    /// The action with its configuration from the environment (it has none).
    pub fn from_env() -> Self {
        ReleaseResources
    }
}

/// `Some(trimmed)` when the caller named an id.
fn named(id: Option<&String>) -> Option<&str> {
    id.map(|id| id.trim())
}

impl Action for ReleaseResources {
    type Input = ReleaseResourcesInput;
    type Output = ReleaseResourcesOutput;
    const NAME: &'static str = "release-resources";
    const DESCRIPTION: &'static str = "Releases a user's workspace and quota (the compensation of provision-resources); a user already released or never provisioned is a successful no-op.";

    fn options(&self) -> ActionOptions {
        ActionOptions {
            mode: Mode::Optimistic,
            // Releases a workspace and quota (MCP destructiveHint).
            effects: Effects {
                external: false,
                destructive: true,
            },
            ..ActionOptions::default()
        }
    }

    fn validate(&self, input: &ReleaseResourcesInput) -> Result<(), ActionError> {
        let mut errors = FieldErrors::new();
        if input.user_id.trim().is_empty() {
            errors.add("/userId", "must not be blank");
        }
        if named(input.workspace_id.as_ref()).is_some_and(str::is_empty) {
            errors.add("/workspaceId", "must not be blank");
        }
        if named(input.quota_id.as_ref()).is_some_and(str::is_empty) {
            errors.add("/quotaId", "must not be blank");
        }
        errors.into_result(Self::NAME)
    }

    async fn execute(
        &self,
        input: ReleaseResourcesInput,
        cx: &mut ActionContext,
    ) -> Result<ReleaseResourcesOutput, ActionError> {
        let user_id = input.user_id.trim();
        let record_key = provisioning_key(user_id);
        let Some((mut record, record_version)) = cx.get_as::<Provisioning>(&record_key).await?
        else {
            return Ok(ReleaseResourcesOutput::nothing(user_id));
        };
        let asked_workspace = named(input.workspace_id.as_ref());
        let asked_quota = named(input.quota_id.as_ref());
        if asked_workspace.is_some_and(|id| id != record.workspace_id)
            || asked_quota.is_some_and(|id| id != record.quota_id)
        {
            return earlier_release(cx, &record, asked_workspace, asked_quota).await;
        }
        if record.status == ResourceStatus::Released {
            return Ok(ReleaseResourcesOutput {
                user_id: record.user_id,
                outcome: ReleaseOutcome::AlreadyReleased,
                workspace_id: Some(record.workspace_id),
                quota_id: Some(record.quota_id),
                released_at: record.release.map(|r| r.released_at),
            });
        }

        let release = Release {
            released_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            reason: input.reason.unwrap_or_default().as_str().to_owned(),
            execution: format!("{}#{}", cx.action(), cx.idempotency_key()),
        };
        let key = workspace_key(&record.workspace_id);
        if let Some((mut workspace, version)) = cx.get_as::<Workspace>(&key).await?
            && workspace.status == ResourceStatus::Active
        {
            workspace.status = ResourceStatus::Released;
            workspace.release = Some(release.clone());
            cx.put(key, &workspace, Expect::Version(version))?;
        }
        let key = quota_key(&record.quota_id);
        if let Some((mut quota, version)) = cx.get_as::<Quota>(&key).await?
            && quota.status == ResourceStatus::Active
        {
            quota.status = ResourceStatus::Released;
            quota.release = Some(release.clone());
            cx.put(key, &quota, Expect::Version(version))?;
        }
        let released_at = release.released_at.clone();
        record.status = ResourceStatus::Released;
        record.release = Some(release);
        cx.put(record_key, &record, Expect::Version(record_version))?;
        Ok(ReleaseResourcesOutput {
            user_id: record.user_id,
            outcome: ReleaseOutcome::Released,
            workspace_id: Some(record.workspace_id),
            quota_id: Some(record.quota_id),
            released_at: Some(released_at),
        })
    }
}

/// The caller named a workspace or quota other than the user's current ones: a no-op
/// success (`already_released`) if every one it named is this user's and was released
/// before — as every earlier resource of the user is, since `provision-resources` only
/// replaces a released record — else `ActionDo.Rejected` (`resources_mismatch`).
async fn earlier_release(
    cx: &ActionContext,
    current: &Provisioning,
    asked_workspace: Option<&str>,
    asked_quota: Option<&str>,
) -> Result<ReleaseResourcesOutput, ActionError> {
    let user_id = current.user_id.as_str();
    let mut released_at: Option<String> = None;
    let mut theirs = true;
    if let Some(id) = asked_workspace {
        match cx.get_as::<Workspace>(&workspace_key(id)).await? {
            Some((w, _)) if w.owner_id == user_id && w.status == ResourceStatus::Released => {
                released_at = w.release.map(|r| r.released_at);
            }
            _ => theirs = false,
        }
    }
    if let Some(id) = asked_quota {
        match cx.get_as::<Quota>(&quota_key(id)).await? {
            Some((q, _)) if q.user_id == user_id && q.status == ResourceStatus::Released => {
                released_at = released_at.or(q.release.map(|r| r.released_at));
            }
            _ => theirs = false,
        }
    }
    if !theirs {
        return Err(ActionError::rejected(format!(
            "the resources named are not the current ones of user {user_id:?}, nor released ones of theirs"
        ))
        .with_details(json!({
            "reason": "resources_mismatch",
            "userId": user_id,
            "workspaceId": current.workspace_id,
            "quotaId": current.quota_id,
            "requested": {"workspaceId": asked_workspace, "quotaId": asked_quota},
        })));
    }
    Ok(ReleaseResourcesOutput {
        user_id: user_id.to_owned(),
        outcome: ReleaseOutcome::AlreadyReleased,
        workspace_id: asked_workspace.map(str::to_owned),
        quota_id: asked_quota.map(str::to_owned),
        released_at,
    })
}

#[cfg(test)]
mod tests;
