//! # provision-resources
//!
//! The `provision-resources` atomic action: creates a user's workspace and quota, once
//! per user.
//!
//! Input `{"userId": "u_…", "plan": "pro"?}` → output `{"userId": "u_…",
//! "workspaceId": "ws_…", "quotaId": "q_…", "plan": "pro", "alreadyProvisioned": false}`.
//!
//! - The user must exist (entity of `create-user`); an unknown user is
//!   `ActionDo.Rejected` (`details.reason = "unknown_user"`).
//! - `plan` defaults to the user's plan; it sets the quota's limits ([`QuotaLimits::for_plan`]).
//! - The workspace, the quota and the user's provisioning record are staged writes: they
//!   commit in one transaction with the idempotency record and the audit record, or not
//!   at all ([`Mode::Optimistic`]).
//! - Once per **user**, whatever the key: the provisioning record is read first; when it
//!   exists and is active the action writes nothing and returns the same ids with
//!   `alreadyProvisioned: true` (a different `plan` then changes nothing: changing a
//!   plan is another action). Two concurrent runs with different keys both stage the
//!   provisioning record with [`Expect::Absent`]; one commits, the other is re-run in
//!   place by the executor and finds it.
//! - After `release-resources` (the compensation of this action) marked the user's
//!   resources [`ResourceStatus::Released`], the user holds nothing: the released
//!   provisioning record counts as absent, and a new run provisions a **new** workspace
//!   and quota (new ids) and replaces the record, on the condition that it still has the
//!   released version ([`Expect::Version`]) — so a release and a provisioning of one user
//!   never interleave. The released workspace and quota stay, marked, as the trace.
//!   (A replay is still a replay: the same key within the retention returns the stored
//!   outcome, so re-provision under a new key — the default key derived from the same
//!   params would replay the first provisioning.)
//!
//! ## Entities
//!
//! | pk | sk | document |
//! |---|---|---|
//! | `user#<userId>` | `provisioning` | [`Provisioning`]: `{userId, workspaceId, quotaId, plan, provisionedAt, status, release?}` |
//! | `workspace#<workspaceId>` | `workspace` | [`Workspace`]: `{workspaceId, ownerId, name, plan, createdAt, status, release?}` |
//! | `quota#<quotaId>` | `quota` | [`Quota`]: `{quotaId, workspaceId, userId, plan, limits, createdAt, status, release?}` |
//!
//! `status` is `active` when written here (a document without it reads as `active`) and
//! `released` once `release-resources` gave it back; `release` ([`Release`]) then says
//! when, why and by which execution.
//!
//! Reads `user#<userId>` / `profile` ([`create_user::UserProfile`]). Ids are `ws_` and
//! `q_` followed by a UUID v4 in simple form.
//!
//! ## Configuration
//!
//! None.

use actiondo::{
    Action, ActionContext, ActionError, ActionOptions, EntityKey, Expect, FieldErrors, Mode,
};
use create_user::Plan;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The sort key of a user's provisioning record (partition `user#<userId>`).
pub const PROVISIONING_SK: &str = "provisioning";

/// The key of a user's provisioning record: `user#<userId>` / `provisioning`.
pub fn provisioning_key(user_id: &str) -> EntityKey {
    EntityKey::new(format!("user#{user_id}"), PROVISIONING_SK)
}

/// The key of a workspace: `workspace#<workspaceId>` / `workspace`.
pub fn workspace_key(workspace_id: &str) -> EntityKey {
    EntityKey::new(format!("workspace#{workspace_id}"), "workspace")
}

/// The key of a quota: `quota#<quotaId>` / `quota`.
pub fn quota_key(quota_id: &str) -> EntityKey {
    EntityKey::new(format!("quota#{quota_id}"), "quota")
}

/// Whether a provisioned resource is held or was given back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResourceStatus {
    /// Held by its user (as provisioned; the default of a document without `status`).
    #[default]
    Active,
    /// Released by `release-resources`: kept as a trace, no longer the user's.
    Released,
}

/// The trace of a release, on each released entity (written by `release-resources`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    /// When, RFC 3339 (UTC).
    pub released_at: String,
    /// Why, as `release-resources` names it (e.g. `onboarding_failed`).
    pub reason: String,
    /// The releasing execution, `release-resources#<idempotency key>`: the id of its
    /// idempotency record and of its audit trail.
    pub execution: String,
}

/// What was provisioned for a user: the document of `user#<userId>` / `provisioning`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Provisioning {
    /// The user.
    pub user_id: String,
    /// Their workspace.
    pub workspace_id: String,
    /// The workspace's quota.
    pub quota_id: String,
    /// The plan the quota was sized for.
    pub plan: Plan,
    /// When, RFC 3339 (UTC).
    pub provisioned_at: String,
    /// `active`, or `released` by `release-resources`.
    #[serde(default)]
    pub status: ResourceStatus,
    /// When, why and by whom it was released; `None` while active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<Release>,
}

/// A workspace: the document of `workspace#<workspaceId>` / `workspace`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Workspace {
    /// `ws_` + 32 hex digits.
    pub workspace_id: String,
    /// The user who owns it.
    pub owner_id: String,
    /// A display name ("Ada's workspace").
    pub name: String,
    /// The plan.
    pub plan: Plan,
    /// When, RFC 3339 (UTC).
    pub created_at: String,
    /// `active`, or `released` by `release-resources`.
    #[serde(default)]
    pub status: ResourceStatus,
    /// When, why and by whom it was released; `None` while active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<Release>,
}

/// The limits of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuotaLimits {
    /// Members of the workspace.
    pub seats: u32,
    /// Storage, in MiB.
    pub storage_mib: u64,
    /// Action executions per calendar month.
    pub actions_per_month: u64,
}

impl QuotaLimits {
    /// The limits of `plan`.
    pub const fn for_plan(plan: Plan) -> Self {
        match plan {
            Plan::Free => Self {
                seats: 1,
                storage_mib: 1_024,
                actions_per_month: 1_000,
            },
            Plan::Pro => Self {
                seats: 5,
                storage_mib: 50 * 1_024,
                actions_per_month: 100_000,
            },
            Plan::Team => Self {
                seats: 50,
                storage_mib: 500 * 1_024,
                actions_per_month: 1_000_000,
            },
            Plan::Enterprise => Self {
                seats: 1_000,
                storage_mib: 5 * 1_024 * 1_024,
                actions_per_month: 100_000_000,
            },
        }
    }
}

/// A quota: the document of `quota#<quotaId>` / `quota`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Quota {
    /// `q_` + 32 hex digits.
    pub quota_id: String,
    /// The workspace it limits.
    pub workspace_id: String,
    /// The workspace's owner.
    pub user_id: String,
    /// The plan it was sized for.
    pub plan: Plan,
    /// The limits.
    pub limits: QuotaLimits,
    /// When, RFC 3339 (UTC).
    pub created_at: String,
    /// `active`, or `released` by `release-resources`.
    #[serde(default)]
    pub status: ResourceStatus,
    /// When, why and by whom it was released; `None` while active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<Release>,
}

/// Parameters of `provision-resources`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProvisionResourcesInput {
    /// The user, as returned by `create-user`.
    #[schemars(length(min = 1, max = 200))]
    pub user_id: String,
    /// The plan to size the quota for; the user's plan when absent.
    #[serde(default)]
    pub plan: Option<Plan>,
}

/// Result of `provision-resources`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProvisionResourcesOutput {
    /// The user.
    pub user_id: String,
    /// Their workspace.
    pub workspace_id: String,
    /// Its quota.
    pub quota_id: String,
    /// The plan the quota is sized for.
    pub plan: Plan,
    /// Whether the user had been provisioned before (nothing was written).
    pub already_provisioned: bool,
}

/// The `provision-resources` action. See the [crate docs](crate).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProvisionResources;

impl ProvisionResources {
    /// The action with its configuration from the environment (it has none).
    pub fn from_env() -> Self {
        ProvisionResources
    }
}

impl Action for ProvisionResources {
    type Input = ProvisionResourcesInput;
    type Output = ProvisionResourcesOutput;
    const NAME: &'static str = "provision-resources";
    const DESCRIPTION: &'static str =
        "Creates a user's workspace and quota, once per user; a second run returns the same ids.";

    fn options(&self) -> ActionOptions {
        ActionOptions {
            mode: Mode::Optimistic,
            ..ActionOptions::default()
        }
    }

    fn validate(&self, input: &ProvisionResourcesInput) -> Result<(), ActionError> {
        let mut errors = FieldErrors::new();
        if input.user_id.trim().is_empty() {
            errors.add("/userId", "must not be blank");
        }
        errors.into_result(Self::NAME)
    }

    async fn execute(
        &self,
        input: ProvisionResourcesInput,
        cx: &mut ActionContext,
    ) -> Result<ProvisionResourcesOutput, ActionError> {
        let user_id = input.user_id.trim();
        // A released record counts as absent: provision anew over it, on its version.
        let record_expect = match cx
            .get_as::<Provisioning>(&provisioning_key(user_id))
            .await?
        {
            Some((done, _)) if done.status == ResourceStatus::Active => {
                return Ok(ProvisionResourcesOutput {
                    user_id: done.user_id,
                    workspace_id: done.workspace_id,
                    quota_id: done.quota_id,
                    plan: done.plan,
                    already_provisioned: true,
                });
            }
            Some((_released, version)) => Expect::Version(version),
            None => Expect::Absent,
        };
        let user = create_user::find_user(cx, user_id)
            .await?
            .ok_or_else(|| create_user::unknown_user(user_id))?;
        let plan = input.plan.unwrap_or(user.plan);
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let workspace_id = format!("ws_{}", uuid::Uuid::new_v4().simple());
        let quota_id = format!("q_{}", uuid::Uuid::new_v4().simple());
        cx.put(
            workspace_key(&workspace_id),
            &Workspace {
                workspace_id: workspace_id.clone(),
                owner_id: user.user_id.clone(),
                name: format!("{}'s workspace", user.name),
                plan,
                created_at: now.clone(),
                status: ResourceStatus::Active,
                release: None,
            },
            Expect::Absent,
        )?;
        cx.put(
            quota_key(&quota_id),
            &Quota {
                quota_id: quota_id.clone(),
                workspace_id: workspace_id.clone(),
                user_id: user.user_id.clone(),
                plan,
                limits: QuotaLimits::for_plan(plan),
                created_at: now.clone(),
                status: ResourceStatus::Active,
                release: None,
            },
            Expect::Absent,
        )?;
        cx.put(
            provisioning_key(&user.user_id),
            &Provisioning {
                user_id: user.user_id.clone(),
                workspace_id: workspace_id.clone(),
                quota_id: quota_id.clone(),
                plan,
                provisioned_at: now,
                status: ResourceStatus::Active,
                release: None,
            },
            record_expect,
        )?;
        Ok(ProvisionResourcesOutput {
            user_id: user.user_id,
            workspace_id,
            quota_id,
            plan,
            already_provisioned: false,
        })
    }
}

#[cfg(test)]
mod tests;
