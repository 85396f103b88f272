//! # create-user
//!
//! The `create-user` atomic action: creates a user with a **unique email**.
//!
//! Input `{"email": "Ada@Example.com", "name": "Ada Lovelace", "plan": "pro"}` (`plan` is
//! optional, default `free`) → output `{"userId": "u_…", "email": "ada@example.com",
//! "plan": "pro"}`.
//!
//! - The email is trimmed and lower-cased; a second user with the same email (under any
//!   idempotency key, in any letter case) is `ActionDo.Rejected` with
//!   `details.reason = "email_taken"` and the existing `userId` — a business rule, not a
//!   replay. The same key with the same payload is a replay of the first outcome.
//! - Concurrent creates with the same email and different keys create exactly one user:
//!   both stage the email index with [`Expect::Absent`], one commit wins, the other's
//!   entity condition fails and the executor runs it again in place (optimistic mode),
//!   where it finds the index and answers `Rejected`.
//! - Runs in [`Mode::Optimistic`]: its only effects are the two staged entity writes, which
//!   commit in one transaction with the idempotency record and the audit record.
//!
//! ## Entities (read by `provision-resources` and `send-welcome-email`)
//!
//! | pk | sk | document |
//! |---|---|---|
//! | `user#<userId>` | `profile` | [`UserProfile`]: `{userId, email, name, plan, createdAt, status, statusChange?}` |
//! | `email#<lower-cased email>` | `user` | [`EmailIndex`]: `{userId, email}` |
//!
//! Use [`user_key`], [`email_index_key`] and [`find_user`] rather than spelling the keys.
//!
//! A new profile has `status: "active"` (a profile without `status` reads as `active`);
//! `mark-user` changes it (e.g. to `onboarding_failed`, the compensation of this action in
//! a workflow) and records the change in `statusChange`.
//!
//! `userId` is `u_` followed by a UUID v4 in simple form (32 hex digits).
//!
//! ## Configuration
//!
//! None: [`CreateUser::from_env`] reads no setting.
//!
//! # Example
//!
//! ```
//! use actiondo::{Executor, Invocation, Source};
//! use actiondo::store::sqlite::SqliteStore;
//! use create_user::{CreateUser, CreateUserOutput};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let executor = Executor::new(SqliteStore::in_memory()?);
//! let params = serde_json::json!({"email": "Ada@Example.com", "name": "Ada Lovelace"});
//! let run = executor.execute(&CreateUser, Invocation::new(params, Source::Cli).with_key("signup-1")).await;
//! let out: CreateUserOutput = run.output()?;
//! assert!(out.user_id.starts_with("u_"));
//! assert_eq!(out.email, "ada@example.com");
//! # Ok::<_, Box<dyn std::error::Error>>(()) }).unwrap();
//! ```

use actiondo::{
    Action, ActionContext, ActionError, ActionOptions, EntityKey, Expect, FieldErrors, Mode,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The sort key of a user's profile entity.
pub const USER_PROFILE_SK: &str = "profile";
/// The sort key of an email index entity.
pub const EMAIL_INDEX_SK: &str = "user";
/// The longest accepted name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// The longest accepted email address, in bytes (RFC 5321 path limit).
pub const MAX_EMAIL_BYTES: usize = 254;

/// A subscription plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    /// The free tier (the default).
    #[default]
    Free,
    /// A paid plan for individuals.
    Pro,
    /// A paid plan for teams.
    Team,
    /// A contract plan.
    Enterprise,
}

impl Plan {
    /// The lower-case name, as stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Free => "free",
            Plan::Pro => "pro",
            Plan::Team => "team",
            Plan::Enterprise => "enterprise",
        }
    }
}

impl std::fmt::Display for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The status of a user (the profile's `status`); `mark-user` changes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    /// A user in good standing (every new user; the default).
    #[default]
    Active,
    /// The user's onboarding failed and was compensated.
    OnboardingFailed,
    /// The account was deactivated.
    Deactivated,
}

impl UserStatus {
    /// The snake-case name, as stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "active",
            UserStatus::OnboardingFailed => "onboarding_failed",
            UserStatus::Deactivated => "deactivated",
        }
    }
}

impl std::fmt::Display for UserStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The last change of a user's status (written by `mark-user`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatusChange {
    /// The status before the change.
    pub previous: UserStatus,
    /// When, RFC 3339 (UTC).
    pub changed_at: String,
    /// Why, as the caller put it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The changing execution, `<action>#<idempotency key>`: the id of its idempotency
    /// record and of its audit trail.
    pub execution: String,
}

/// The document of `user#<userId>` / `profile`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserProfile {
    /// `u_` + 32 hex digits.
    pub user_id: String,
    /// Trimmed and lower-cased.
    pub email: String,
    /// Trimmed display name.
    pub name: String,
    /// The plan chosen at sign-up.
    #[serde(default)]
    pub plan: Plan,
    /// When the user was created, RFC 3339 (UTC).
    pub created_at: String,
    /// `active` when created; changed by `mark-user`.
    #[serde(default)]
    pub status: UserStatus,
    /// The last status change; `None` until there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_change: Option<StatusChange>,
}

/// The document of `email#<lower-cased email>` / `user`: which user owns an email.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmailIndex {
    /// The owner.
    pub user_id: String,
    /// The lower-cased email.
    pub email: String,
}

/// The key of a user's profile: `user#<userId>` / `profile`.
pub fn user_key(user_id: &str) -> EntityKey {
    EntityKey::new(format!("user#{user_id}"), USER_PROFILE_SK)
}

/// The key of the index entry of an email: `email#<trimmed, lower-cased email>` / `user`.
pub fn email_index_key(email: &str) -> EntityKey {
    EntityKey::new(format!("email#{}", normalize_email(email)), EMAIL_INDEX_SK)
}

/// An email as stored and compared: trimmed and lower-cased.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Why an email address is not acceptable, if it is not: not empty after trimming, at
/// most [`MAX_EMAIL_BYTES`], and the syntax of
/// [`actiondo::validation::parse_email`] (RFC 5322, a domain with a top-level domain, no
/// display name, no domain literal).
pub fn email_problem(email: &str) -> Option<String> {
    let email = email.trim();
    if email.is_empty() {
        return Some("must not be empty".into());
    }
    if email.len() > MAX_EMAIL_BYTES {
        return Some(format!("must be at most {MAX_EMAIL_BYTES} bytes"));
    }
    actiondo::validation::email_syntax_problem(email)
}

/// Read a user's profile (a staged write of this execution is seen first).
///
/// `ActionDo.Internal` if the stored document does not have the [`UserProfile`] shape.
pub async fn find_user(
    cx: &ActionContext,
    user_id: &str,
) -> Result<Option<UserProfile>, ActionError> {
    Ok(cx
        .get_as::<UserProfile>(&user_key(user_id))
        .await?
        .map(|(profile, _version)| profile))
}

/// The `ActionDo.Rejected` error for a user id that has no profile.
pub fn unknown_user(user_id: &str) -> ActionError {
    ActionError::rejected(format!("no user with id {user_id:?}"))
        .with_details(json!({"reason": "unknown_user", "userId": user_id}))
}

/// Parameters of `create-user`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateUserInput {
    /// The user's email; unique across users, compared case-insensitively.
    #[schemars(length(min = 1, max = 254))]
    pub email: String,
    /// The user's display name (1–200 characters after trimming).
    #[schemars(length(min = 1))]
    pub name: String,
    /// The plan; `free` when absent.
    #[serde(default)]
    pub plan: Option<Plan>,
}

/// Result of `create-user`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateUserOutput {
    /// The new user's id.
    pub user_id: String,
    /// The normalized (trimmed, lower-cased) email.
    pub email: String,
    /// The plan.
    pub plan: Plan,
}

/// The `create-user` action. See the [crate docs](crate).
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateUser;

impl CreateUser {
    /// The action with its configuration from the environment (it has none).
    pub fn from_env() -> Self {
        CreateUser
    }
}

impl Action for CreateUser {
    type Input = CreateUserInput;
    type Output = CreateUserOutput;
    const NAME: &'static str = "create-user";
    const DESCRIPTION: &'static str =
        "Creates a user with a unique (case-insensitive) email; returns its userId.";

    fn options(&self) -> ActionOptions {
        ActionOptions {
            mode: Mode::Optimistic,
            ..ActionOptions::default()
        }
    }

    fn validate(&self, input: &CreateUserInput) -> Result<(), ActionError> {
        let mut errors = FieldErrors::new();
        if let Some(problem) = email_problem(&input.email) {
            errors.add("/email", problem);
        }
        let name = input.name.trim();
        if name.is_empty() {
            errors.add("/name", "must not be blank");
        } else if let Some(problem) = actiondo::validation::text_problem(name, MAX_NAME_CHARS) {
            errors.add("/name", problem);
        }
        errors.into_result(Self::NAME)
    }

    async fn execute(
        &self,
        input: CreateUserInput,
        cx: &mut ActionContext,
    ) -> Result<CreateUserOutput, ActionError> {
        let email = normalize_email(&input.email);
        let index_key = email_index_key(&email);
        if let Some((owner, _)) = cx.get_as::<EmailIndex>(&index_key).await? {
            return Err(ActionError::rejected(format!(
                "a user with the email {email} already exists"
            ))
            .with_details(json!({
                "reason": "email_taken",
                "email": email,
                "userId": owner.user_id,
            })));
        }
        let plan = input.plan.unwrap_or_default();
        let user_id = format!("u_{}", uuid::Uuid::new_v4().simple());
        let profile = UserProfile {
            user_id: user_id.clone(),
            email: email.clone(),
            name: input.name.trim().to_owned(),
            plan,
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            status: UserStatus::Active,
            status_change: None,
        };
        cx.put(user_key(&user_id), &profile, Expect::Absent)?;
        cx.put(
            index_key,
            &EmailIndex {
                user_id: user_id.clone(),
                email: email.clone(),
            },
            Expect::Absent,
        )?;
        Ok(CreateUserOutput {
            user_id,
            email,
            plan,
        })
    }
}

#[cfg(test)]
mod tests;
