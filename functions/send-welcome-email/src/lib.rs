//! # send-welcome-email
//!
//! The `send-welcome-email` atomic action: the seed SDK's own example,
//! `execute({name: "send-welcome-email", params: {userId: "u_123", template: "new-user-welcome-v2"}})`.
//!
//! Input `{"userId": "u_…", "template": "new-user-welcome-v2"}` → output
//! `{"messageId": "…", "transport": "ses" | "outbox", "userId": "u_…",
//! "to": "ada@example.com", "subject": "Welcome to action.do, Ada!",
//! "template": "new-user-welcome-v2", "path": ".actiondo/outbox/….eml"?}`.
//!
//! - Looks the user up in the entity written by `create-user` (`user#<userId>` /
//!   `profile`, see [`create_user::UserProfile`]); an unknown user is `ActionDo.Rejected`
//!   (`details.reason = "unknown_user"`), stored and replayed like a result.
//! - Renders the named template (see [`send_email::templates`]) with the user's fields:
//!   `name`, `email`, `userId`, `plan`, `createdAt`. An unknown template is
//!   `ActionDo.Validation` before anything is claimed.
//! - Sends through [`send_email::mailer::Mailer`], so the transport and its settings
//!   (`EMAIL_TRANSPORT`, `EMAIL_FROM`, `EMAIL_OUTBOX_DIR`, `SES_CONFIGURATION_SET`) are
//!   those of `send-email`.
//! - Claim mode (an external effect). Writes no entity.
//!
//! # Example
//!
//! ```
//! use actiondo::{Executor, Invocation, Source};
//! use actiondo::store::sqlite::SqliteStore;
//! use create_user::{CreateUser, CreateUserOutput};
//! use send_email::mailer::Mailer;
//! use send_welcome_email::{SendWelcomeEmail, SendWelcomeEmailOutput};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let outbox = tempfile::tempdir()?;
//! let executor = Executor::new(SqliteStore::in_memory()?);
//! let user: CreateUserOutput = executor
//!     .execute(&CreateUser, Invocation::new(serde_json::json!({"email": "ada@example.com", "name": "Ada"}), Source::Cli))
//!     .await
//!     .output()?;
//! let action = SendWelcomeEmail::new(Mailer::outbox(outbox.path(), "hello@example.com")?);
//! let params = serde_json::json!({"userId": user.user_id, "template": "new-user-welcome-v2"});
//! let sent: SendWelcomeEmailOutput = executor
//!     .execute(&action, Invocation::new(params, Source::Cli))
//!     .await
//!     .output()?;
//! assert_eq!(sent.to, "ada@example.com");
//! assert_eq!(sent.subject, "Welcome to action.do, Ada!");
//! # Ok::<_, Box<dyn std::error::Error>>(()) }).unwrap();
//! ```

use actiondo::{Action, ActionContext, ActionError, ActionOptions, Effects, FieldErrors};
use schemars::JsonSchema;
use send_email::mailer::{Email, Mailer, TransportKind};
use send_email::templates;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// Parameters of `send-welcome-email`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendWelcomeEmailInput {
    /// The user, as returned by `create-user`.
    #[schemars(length(min = 1, max = 200))]
    pub user_id: String,
    /// The template to render, e.g. `new-user-welcome-v2`.
    #[schemars(length(min = 1, max = 100))]
    pub template: String,
}

/// Result of `send-welcome-email`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendWelcomeEmailOutput {
    /// SES's `MessageId`, or the outbox message's `Message-ID` (without `<>`).
    pub message_id: String,
    /// Which transport sent it.
    pub transport: TransportKind,
    /// The user welcomed.
    pub user_id: String,
    /// The user's email.
    pub to: String,
    /// The subject sent.
    pub subject: String,
    /// The template rendered.
    pub template: String,
    /// The `.eml` file written, for the outbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// The `send-welcome-email` action. See the [crate docs](crate).
#[derive(Debug, Clone)]
pub struct SendWelcomeEmail {
    mailer: Result<Mailer, String>,
}

impl SendWelcomeEmail {
    /// The action sending through `mailer`.
    pub fn new(mailer: Mailer) -> Self {
        Self { mailer: Ok(mailer) }
    }

    /// The action with the mailer the environment describes ([`Mailer::from_env`]).
    ///
    /// Never fails: with an unusable email configuration (e.g. `EMAIL_TRANSPORT=ses`
    /// without `EMAIL_FROM`) the problem is logged and every execution fails with
    /// `ActionDo.Internal` naming it. Use [`try_from_env`](Self::try_from_env) to fail
    /// at once instead.
    pub fn from_env() -> Self {
        Self {
            mailer: send_email::mailer::mailer_or_problem(<Self as Action>::NAME),
        }
    }

    /// The action with the mailer the environment describes, or why it cannot be built.
    pub fn try_from_env() -> Result<Self, send_email::mailer::ConfigError> {
        Mailer::from_env().map(Self::new)
    }

    /// The mailer, or `ActionDo.Internal` if the action was built without one.
    pub fn mailer(&self) -> Result<&Mailer, ActionError> {
        self.mailer
            .as_ref()
            .map_err(|e| actiondo::config::not_configured(<Self as Action>::NAME, e))
    }
}

/// The template variables of a user.
fn user_data(user: &create_user::UserProfile) -> Map<String, Value> {
    let mut data = Map::new();
    data.insert("name".into(), json!(user.name));
    data.insert("email".into(), json!(user.email));
    data.insert("userId".into(), json!(user.user_id));
    data.insert("plan".into(), json!(user.plan.as_str()));
    data.insert("createdAt".into(), json!(user.created_at));
    data
}

impl Action for SendWelcomeEmail {
    type Input = SendWelcomeEmailInput;
    type Output = SendWelcomeEmailOutput;
    const NAME: &'static str = "send-welcome-email";
    const DESCRIPTION: &'static str =
        "Sends a user (created by create-user) the welcome email rendered from a named template.";

    fn options(&self) -> ActionOptions {
        ActionOptions {
            // Sends mail through SES (an .eml outbox locally): MCP openWorldHint.
            effects: Effects {
                external: true,
                destructive: false,
            },
            ..ActionOptions::default()
        }
    }

    fn validate(&self, input: &SendWelcomeEmailInput) -> Result<(), ActionError> {
        let mut errors = FieldErrors::new();
        if input.user_id.trim().is_empty() {
            errors.add("/userId", "must not be blank");
        }
        if templates::find(&input.template).is_none() {
            errors.add(
                "/template",
                format!(
                    "unknown template {:?}; known templates: {}",
                    input.template,
                    templates::names().join(", ")
                ),
            );
        }
        errors.into_result(Self::NAME)
    }

    async fn execute(
        &self,
        input: SendWelcomeEmailInput,
        cx: &mut ActionContext,
    ) -> Result<SendWelcomeEmailOutput, ActionError> {
        let user_id = input.user_id.trim();
        let user = create_user::find_user(cx, user_id)
            .await?
            .ok_or_else(|| create_user::unknown_user(user_id))?;
        let rendered = templates::render(&input.template, &user_data(&user))?;
        let email = Email {
            to: user.email.clone(),
            subject: rendered.subject,
            body: rendered.body,
        };
        let delivery = self.mailer()?.send_for(cx, &email).await?;
        Ok(SendWelcomeEmailOutput {
            message_id: delivery.message_id,
            transport: delivery.transport,
            user_id: user.user_id,
            to: email.to,
            subject: email.subject,
            template: input.template,
            path: delivery.path.map(|p| p.display().to_string()),
        })
    }
}

#[cfg(test)]
mod tests;
