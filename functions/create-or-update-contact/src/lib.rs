//! # create-or-update-contact — one CRM contact per email address
//!
//! ```json
//! {"email": "Ann.Lee@Acme.com", "name": "Ann Lee", "company": "Acme"}
//! ```
//!
//! returns
//!
//! ```json
//! {"contactId": "c_6f1d0c8e2b7a4a10", "email": "ann.lee@acme.com", "outcome": "created", "version": 1}
//! ```
//!
//! `outcome` is `created` (no contact had this email), `updated` (the name or the company
//! changed) or `unchanged` (nothing to write); `version` is the contact entity's version
//! after the execution.
//!
//! ## One contact per email, even under concurrency
//!
//! The contact is the entity `contact#<email>` / `contact`, keyed by the trimmed,
//! lower-cased email; its id is deterministic: `c_` + the first 16 hex digits of SHA-256
//! of that email ([`contact_id`]). A new contact is staged with `Expect::Absent`, a change
//! with `Expect::Version(v)` of the version read (optimistic concurrency). Two concurrent
//! executions for one email can therefore never both create it, nor overwrite each
//! other's change unseen: the loser's completion transaction writes nothing and the
//! action is re-run in place against the new version (optimistic mode), or answered
//! `ActionDo.Conflict` (retryable) when the in-place retries run out.
//!
//! ## Input rules
//!
//! Checked before anything is claimed; every problem is listed in the
//! `ActionDo.Validation` error's `details.errors`:
//!
//! - `email`: a syntactically valid address with a dotted domain (no display name, no
//!   domain literal); trimmed and lower-cased;
//! - `name`: 1–[`MAX_FIELD_CHARS`] characters after trimming;
//! - `company`: at most [`MAX_FIELD_CHARS`] characters after trimming. Absent or `null`
//!   keeps the stored company (none for a new contact); `""` clears it.
//!
//! ## Configuration
//!
//! None of its own.

use actiondo::{
    Action, ActionContext, ActionError, ActionOptions, Effects, EntityKey, Expect, FieldErrors,
    Mode,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The longest name or company, in characters.
pub const MAX_FIELD_CHARS: usize = 200;

/// The input of `create-or-update-contact`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContactInput {
    /// The contact's email address; one contact per (lower-cased) address.
    pub email: String,
    /// The contact's full name.
    pub name: String,
    /// The contact's company. Absent or `null` keeps the stored one; `""` clears it.
    #[serde(default)]
    pub company: Option<String>,
}

/// What the execution did to the contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// No contact had this email; one was created (version 1).
    Created,
    /// The contact existed and its name or company changed.
    Updated,
    /// The contact existed with the same name and company; nothing was written.
    Unchanged,
}

/// The output of `create-or-update-contact`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContactOutput {
    /// The contact's id, derived from its email (see [`contact_id`]).
    pub contact_id: String,
    /// The normalized (trimmed, lower-cased) email.
    pub email: String,
    /// Created, updated or unchanged.
    pub outcome: Outcome,
    /// The contact entity's version after this execution.
    pub version: u64,
}

/// The contact entity's document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactDoc {
    /// See [`contact_id`].
    pub contact_id: String,
    /// The normalized email.
    pub email: String,
    /// The full name.
    pub name: String,
    /// The company, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    /// When the contact was created (RFC 3339, UTC).
    pub created_at: String,
    /// When the contact was last changed (RFC 3339, UTC).
    pub updated_at: String,
}

/// The contact id of a normalized email: `c_` + the first 16 hex digits of its SHA-256.
pub fn contact_id(email: &str) -> String {
    let digest = actiondo::hash::sha256_hex(email.as_bytes());
    format!("c_{}", &digest[..16])
}

/// The entity key of the contact of a normalized email.
pub fn contact_key(email: &str) -> EntityKey {
    EntityKey::new(format!("contact#{email}"), "contact")
}

/// The normalized form of an email as this action stores it: trimmed and lower-cased.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// The `create-or-update-contact` action.
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateOrUpdateContact;

impl CreateOrUpdateContact {
    /// The action; it has no configuration of its own.
    pub fn new() -> Self {
        Self
    }

    /// The action configured from the environment (it reads nothing of its own).
    pub fn from_env() -> Self {
        Self
    }
}

/// A validated, normalized request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Checked {
    email: String,
    name: String,
    /// `None`: keep; `Some(None)`: clear; `Some(Some(c))`: set.
    company: Option<Option<String>>,
}

fn check(input: &ContactInput) -> Result<Checked, ActionError> {
    let mut problems = FieldErrors::new();
    let mut problem = |path: &str, message: String| problems.add(path, message);

    let email = normalize_email(&input.email);
    if email.is_empty() {
        problem("/email", "must not be empty".into());
    } else if let Some(message) = actiondo::validation::email_syntax_problem(&email) {
        problem("/email", message);
    }

    let name = input.name.trim();
    if name.is_empty() {
        problem("/name", "must not be empty".into());
    } else if name.chars().count() > MAX_FIELD_CHARS {
        problem(
            "/name",
            format!("must be at most {MAX_FIELD_CHARS} characters"),
        );
    }

    let company = input.company.as_deref().map(str::trim);
    if company.is_some_and(|c| c.chars().count() > MAX_FIELD_CHARS) {
        problem(
            "/company",
            format!("must be at most {MAX_FIELD_CHARS} characters"),
        );
    }

    problems.into_result_with("invalid contact")?;
    Ok(Checked {
        email,
        name: name.to_owned(),
        company: company.map(|c| (!c.is_empty()).then(|| c.to_owned())),
    })
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Action for CreateOrUpdateContact {
    type Input = ContactInput;
    type Output = ContactOutput;
    const NAME: &'static str = "create-or-update-contact";
    const DESCRIPTION: &'static str =
        "Creates the CRM contact of an email address, or updates its name and company.";

    fn options(&self) -> ActionOptions {
        ActionOptions {
            mode: Mode::Optimistic,
            optimistic_retries: 10,
            // Overwrites an existing contact's name and company (MCP destructiveHint).
            effects: Effects {
                external: false,
                destructive: true,
            },
            ..ActionOptions::default()
        }
    }

    fn validate(&self, input: &ContactInput) -> Result<(), ActionError> {
        check(input).map(|_| ())
    }

    async fn execute(
        &self,
        input: ContactInput,
        cx: &mut ActionContext,
    ) -> Result<ContactOutput, ActionError> {
        let Checked {
            email,
            name,
            company,
        } = check(&input)?;
        let key = contact_key(&email);
        let contact_id = contact_id(&email);

        let (outcome, version) = match cx.get_as::<ContactDoc>(&key).await? {
            None => {
                let at = now();
                let doc = ContactDoc {
                    contact_id: contact_id.clone(),
                    email: email.clone(),
                    name,
                    company: company.flatten(),
                    created_at: at.clone(),
                    updated_at: at,
                };
                cx.put(key, &doc, Expect::Absent)?;
                (Outcome::Created, 1)
            }
            Some((stored, version)) => {
                let company = company.unwrap_or_else(|| stored.company.clone());
                if stored.name == name && stored.company == company {
                    (Outcome::Unchanged, version)
                } else {
                    let doc = ContactDoc {
                        name,
                        company,
                        updated_at: now(),
                        ..stored
                    };
                    cx.put(key, &doc, Expect::Version(version))?;
                    (Outcome::Updated, version + 1)
                }
            }
        };
        Ok(ContactOutput {
            contact_id,
            email,
            outcome,
            version,
        })
    }
}

#[cfg(test)]
mod tests;
