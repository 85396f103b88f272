//! # send-email
//!
//! The `send-email` atomic action, and the [`mailer`] and [`templates`] that every
//! email-sending action of action.do uses (`send-welcome-email` depends on this crate).
//!
//! Two input forms:
//!
//! - text: `{"to": "ada@example.com", "subject": "Your invoice", "body": "Hello…"}`
//! - template: `{"to": "ada@example.com", "template": "lead-follow-up",
//!   "data": {"name": "Ada", "company": "Acme"}, "subject": "optional override"}`
//!
//! Output: `{"messageId": "…", "transport": "ses" | "outbox", "to": "ada@example.com",
//! "subject": "…", "template": "lead-follow-up"?, "path": ".actiondo/outbox/….eml"?}`
//! (`template` only for the template form, `path` only for the outbox).
//!
//! - In AWS the message goes through SES v2; locally (the default outside Lambda) it is
//!   written as an RFC 5322 `.eml` file into `.actiondo/outbox/`. See [`mailer`] for the
//!   configuration (`EMAIL_TRANSPORT`, `EMAIL_FROM`, `EMAIL_OUTBOX_DIR`,
//!   `SES_CONFIGURATION_SET`) and the error classes.
//! - Templates are embedded in the binary; see [`templates`] for the list and their
//!   variables. An unknown template or a missing variable is `ActionDo.Validation`,
//!   found before anything is claimed or sent.
//! - Runs in claim mode (an external effect): one send at a time per key; a replay returns
//!   the stored result without sending again.
//!
//! No entity is written.
//!
//! # Example
//!
//! ```
//! use actiondo::{Executor, Invocation, Source};
//! use actiondo::store::sqlite::SqliteStore;
//! use send_email::{SendEmail, SendEmailOutput, mailer::{Mailer, TransportKind}};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let outbox = tempfile::tempdir()?;
//! let action = SendEmail::new(Mailer::outbox(outbox.path(), "shop@example.com")?);
//! let executor = Executor::new(SqliteStore::in_memory()?);
//! let params = serde_json::json!({
//!     "to": "ada@example.com",
//!     "template": "lead-follow-up",
//!     "data": {"name": "Ada", "company": "Acme"},
//! });
//! let out: SendEmailOutput = executor
//!     .execute(&action, Invocation::new(params, Source::Cli).with_key("lead-7"))
//!     .await
//!     .output()?;
//! assert_eq!(out.transport, TransportKind::Outbox);
//! assert_eq!(out.subject, "Following up with Acme, Ada");
//! # Ok::<_, Box<dyn std::error::Error>>(()) }).unwrap();
//! ```

use actiondo::{Action, ActionContext, ActionError, ActionOptions, Effects, FieldErrors};
use create_user::email_problem;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub mod mailer;
pub mod templates;

use mailer::{Delivery, Email, Mailer, TransportKind};

/// The longest accepted subject, in characters.
pub const MAX_SUBJECT_CHARS: usize = 998;
/// The largest accepted body, in bytes (SES accepts 40 MB messages; an action's input is
/// stored in its audit record, so we stay far below).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Parameters of `send-email`: `to` and either `subject` + `body`, or `template` + `data`
/// (with an optional `subject` that replaces the template's).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendEmailInput {
    /// The recipient's address.
    #[schemars(length(min = 3, max = 254))]
    pub to: String,
    /// The subject (required with `body`; replaces the template's subject otherwise).
    #[serde(default)]
    pub subject: Option<String>,
    /// The plain-text body (not with `template`).
    #[serde(default)]
    pub body: Option<String>,
    /// A template name (see [`templates`]); not with `body`.
    #[serde(default)]
    pub template: Option<String>,
    /// The template's variables (only with `template`).
    #[serde(default)]
    pub data: Option<Map<String, Value>>,
}

/// Result of `send-email`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SendEmailOutput {
    /// SES's `MessageId`, or the outbox message's `Message-ID` (without `<>`).
    pub message_id: String,
    /// Which transport sent it.
    pub transport: TransportKind,
    /// The recipient.
    pub to: String,
    /// The subject sent.
    pub subject: String,
    /// The template used, for the template form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The `.eml` file written, for the outbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl SendEmailOutput {
    /// The output for a delivered message.
    pub fn delivered(delivery: Delivery, email: &Email, template: Option<String>) -> Self {
        Self {
            message_id: delivery.message_id,
            transport: delivery.transport,
            to: email.to.trim().to_owned(),
            subject: email.subject.clone(),
            template,
            path: delivery.path.map(|p| p.display().to_string()),
        }
    }
}

/// The `send-email` action. See the [crate docs](crate).
#[derive(Debug, Clone)]
pub struct SendEmail {
    mailer: Result<Mailer, String>,
}

impl SendEmail {
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
            mailer: mailer::mailer_or_problem(<Self as Action>::NAME),
        }
    }

    /// The action with the mailer the environment describes, or why it cannot be built.
    pub fn try_from_env() -> Result<Self, mailer::ConfigError> {
        Mailer::from_env().map(Self::new)
    }

    /// The mailer, or `ActionDo.Internal` if the action was built without one.
    pub fn mailer(&self) -> Result<&Mailer, ActionError> {
        self.mailer
            .as_ref()
            .map_err(|e| actiondo::config::not_configured(<Self as Action>::NAME, e))
    }
}

/// The message of a valid input: the text form as given, the template form rendered.
fn compose(input: &SendEmailInput) -> Result<Email, ActionError> {
    let mut errors = FieldErrors::new();
    let mut problem = |path: &str, message: String| errors.add(path, message);
    if let Some(p) = email_problem(&input.to) {
        problem("/to", p);
    }
    let subject = input
        .subject
        .as_deref()
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "));
    if let Some(s) = &subject {
        if s.is_empty() {
            problem("/subject", "must not be blank".into());
        } else if s.chars().count() > MAX_SUBJECT_CHARS {
            problem(
                "/subject",
                format!("must be at most {MAX_SUBJECT_CHARS} characters"),
            );
        }
    }
    let mut rendered = None;
    match (&input.body, &input.template) {
        (Some(_), Some(_)) => problem("/body", "give either body or template, not both".into()),
        (None, None) => problem(
            "",
            "one of body (with subject) or template is required".into(),
        ),
        (Some(body), None) => {
            if subject.is_none() {
                problem("/subject", "is required with body".into());
            }
            if input.data.is_some() {
                problem("/data", "is only used with template".into());
            }
            if body.len() > MAX_BODY_BYTES {
                problem("/body", format!("must be at most {MAX_BODY_BYTES} bytes"));
            }
        }
        (None, Some(name)) => {
            let data = input.data.clone().unwrap_or_default();
            match templates::render(name, &data) {
                Ok(r) => rendered = Some(r),
                Err(e) => {
                    // Merge the template's own field errors into the list.
                    let listed = e
                        .details()
                        .and_then(|d| d["errors"].as_array())
                        .cloned()
                        .unwrap_or_default();
                    if listed.is_empty() {
                        problem("/template", e.message().to_owned());
                    }
                    for item in listed {
                        let path = item["path"].as_str().unwrap_or_default().to_owned();
                        let message = item["message"].as_str().unwrap_or_default().to_owned();
                        problem(&path, message);
                    }
                }
            }
        }
    }
    errors.into_result(SendEmail::NAME)?;
    let (subject, body) = match rendered {
        Some(r) => (subject.unwrap_or(r.subject), r.body),
        None => (
            subject.unwrap_or_default(),
            input.body.clone().unwrap_or_default(),
        ),
    };
    Ok(Email {
        to: input.to.trim().to_owned(),
        subject,
        body,
    })
}

impl Action for SendEmail {
    type Input = SendEmailInput;
    type Output = SendEmailOutput;
    const NAME: &'static str = "send-email";
    const DESCRIPTION: &'static str = "Sends one plain-text email, from a subject and body or a named template (SES in AWS, an .eml outbox locally).";

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

    fn validate(&self, input: &SendEmailInput) -> Result<(), ActionError> {
        compose(input).map(drop)
    }

    async fn execute(
        &self,
        input: SendEmailInput,
        cx: &mut ActionContext,
    ) -> Result<SendEmailOutput, ActionError> {
        let email = compose(&input)?;
        let delivery = self.mailer()?.send_for(cx, &email).await?;
        Ok(SendEmailOutput::delivered(delivery, &email, input.template))
    }
}

#[cfg(test)]
mod tests;
