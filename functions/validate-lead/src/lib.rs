//! # validate-lead — validate and normalize a sales lead
//!
//! ```json
//! {"email": "  Ann.Lee@Acme.COM ", "name": " Ann   Lee ", "company": "Acme ",
//!  "phone": "(201) 555-0123", "source": " Website "}
//! ```
//!
//! returns the normalized lead
//!
//! ```json
//! {"email": "ann.lee@acme.com", "name": "Ann Lee", "company": "Acme",
//!  "phone": "+12015550123", "source": "Website"}
//! ```
//!
//! or `ActionDo.Validation` listing **every** problem in `details.errors`
//! (`[{"path": "/email", "message": "..."}, {"path": "/phone", "message": "..."}]`),
//! before anything is claimed.
//!
//! ## Rules
//!
//! - strings are trimmed and runs of white space inside `name`, `company` and `source`
//!   become one space; an optional field that is empty after trimming is dropped;
//! - `email`: required, lower-cased, at most 254 characters, a valid address with a
//!   dotted domain (no display name, no domain literal);
//! - `name`: required, 1–[`MAX_FIELD_CHARS`] characters;
//! - `company`: at most [`MAX_FIELD_CHARS`] characters; `source`: at most
//!   [`MAX_SOURCE_CHARS`];
//! - `phone`: parsed with libphonenumber's metadata (crate `phonenumber`): a number
//!   written with `+` and a country code is read as such, any other in the default
//!   region; it must be a valid number there and comes out in E.164 (`+12015550123`).
//!   A phone that cannot be parsed or is not valid is a validation problem.
//!
//! No control characters are accepted in any field. The action has no effects
//! (optimistic mode: one store round trip for its idempotency record and audit).
//!
//! ## Configuration
//!
//! - `DEFAULT_PHONE_REGION`: the ISO 3166-1 alpha-2 region of phone numbers written
//!   without a country code (default `US`).
//!
//! [`ValidateLead::from_env`] never fails (the `actiondo` CLI builds every action at
//! start-up, where the setting may be wrong): an unknown region is logged as a warning
//! and every execution then fails with `ActionDo.Internal`
//! `"validate-lead is not configured: DEFAULT_PHONE_REGION: …"` (details
//! `{"reason": "not_configured", …}`; retryable, nothing stored) until the setting is
//! fixed. [`ValidateLead::try_from_env`] fails at once instead.

use std::str::FromStr;

use actiondo::config::{ConfigError, FromSettings};
use actiondo::validation::text_problem;
use actiondo::{Action, ActionContext, ActionError, ActionOptions, FieldErrors, Mode};
use phonenumber::country;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The environment variable naming the default phone region.
pub const DEFAULT_PHONE_REGION_ENV: &str = "DEFAULT_PHONE_REGION";

/// The default phone region when `DEFAULT_PHONE_REGION` is unset.
pub const DEFAULT_PHONE_REGION: &str = "US";

/// The longest name or company, in characters.
pub const MAX_FIELD_CHARS: usize = 200;

/// The longest source, in characters.
pub const MAX_SOURCE_CHARS: usize = 100;

/// The longest email address (RFC 5321 path limit), in characters.
pub const MAX_EMAIL_CHARS: usize = 254;

/// The input of `validate-lead`: a lead as a form or an import delivers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeadInput {
    /// The lead's email address.
    pub email: String,
    /// The lead's full name.
    pub name: String,
    /// The lead's company.
    #[serde(default)]
    pub company: Option<String>,
    /// The lead's phone number, with or without a country code.
    #[serde(default)]
    pub phone: Option<String>,
    /// Where the lead came from (`website`, `referral`, `webinar`…).
    #[serde(default)]
    pub source: Option<String>,
}

/// The output of `validate-lead`: the normalized lead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Lead {
    /// Trimmed and lower-cased.
    pub email: String,
    /// Trimmed, inner white space collapsed.
    pub name: String,
    /// Trimmed, inner white space collapsed; absent when not given or blank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    /// E.164 (`+12015550123`); absent when not given or blank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Trimmed, inner white space collapsed; absent when not given or blank.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// The `validate-lead` action.
#[derive(Debug, Clone)]
pub struct ValidateLead {
    region: country::Id,
    /// Why the configuration is unusable, if it is: every execution fails with it.
    problem: Option<String>,
}

impl Default for ValidateLead {
    fn default() -> Self {
        Self::new(country::Id::US)
    }
}

impl ValidateLead {
    /// The action with phone numbers without a country code read in `region`.
    pub fn new(region: country::Id) -> Self {
        Self {
            region,
            problem: None,
        }
    }

    /// The action with the default region given by its ISO 3166-1 alpha-2 code (`"GB"`,
    /// case-insensitive); an error naming the code when it is not a known region.
    pub fn with_region_code(code: &str) -> Result<Self, String> {
        let upper = code.trim().to_ascii_uppercase();
        country::Id::from_str(&upper)
            .map(Self::new)
            .map_err(|_| format!("{code:?} is not an ISO 3166-1 alpha-2 phone region"))
    }

    /// `Ok` when the action has a usable configuration; otherwise the error every
    /// execution answers: `ActionDo.Internal` from [`actiondo::config::not_configured`].
    pub fn check_configured(&self) -> Result<(), ActionError> {
        actiondo::config::ensure_configured(<Self as Action>::NAME, self.problem.as_deref())
    }

    /// The default phone region ([`DEFAULT_PHONE_REGION`] for an action built without a
    /// usable configuration, which never reads a phone).
    pub fn region(&self) -> country::Id {
        self.region
    }

    /// Validate and normalize `input`; every problem is listed in the error. Fails with
    /// [`check_configured`](Self::check_configured)'s error, whatever the input, when the
    /// action has no usable configuration.
    pub fn normalize(&self, input: &LeadInput) -> Result<Lead, ActionError> {
        self.check_configured()?;
        let mut problems = FieldErrors::new();
        let mut problem = |path: &str, message: String| problems.add(path, message);

        let email = input.email.trim().to_lowercase();
        if email.is_empty() {
            problem("/email", "must not be empty".into());
        } else if email.chars().count() > MAX_EMAIL_CHARS {
            problem(
                "/email",
                format!("must be at most {MAX_EMAIL_CHARS} characters"),
            );
        } else if let Some(message) = actiondo::validation::email_syntax_problem(&email) {
            problem("/email", message);
        }

        let name = collapse(&input.name);
        if name.is_empty() {
            problem("/name", "must not be empty".into());
        } else if let Some(message) = text_problem(&name, MAX_FIELD_CHARS) {
            problem("/name", message);
        }

        let company = input
            .company
            .as_deref()
            .map(collapse)
            .filter(|c| !c.is_empty());
        if let Some(message) = company
            .as_deref()
            .and_then(|c| text_problem(c, MAX_FIELD_CHARS))
        {
            problem("/company", message);
        }

        let source = input
            .source
            .as_deref()
            .map(collapse)
            .filter(|s| !s.is_empty());
        if let Some(message) = source
            .as_deref()
            .and_then(|s| text_problem(s, MAX_SOURCE_CHARS))
        {
            problem("/source", message);
        }

        let raw_phone = input
            .phone
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty());
        let phone = match raw_phone {
            None => None,
            Some(raw) => match self.e164(raw) {
                Ok(p) => Some(p),
                Err(message) => {
                    problem("/phone", message);
                    None
                }
            },
        };

        problems.into_result_with("invalid lead")?;
        Ok(Lead {
            email,
            name,
            company,
            phone,
            source,
        })
    }

    /// A phone number in E.164, or why it is not one.
    fn e164(&self, raw: &str) -> Result<String, String> {
        if raw.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        let number = phonenumber::parse(Some(self.region), raw)
            .map_err(|e| format!("{raw:?} is not a phone number: {e}"))?;
        if !number.is_valid() {
            let region = number
                .country()
                .id()
                .map_or_else(|| "its region".to_owned(), |id| id.as_ref().to_owned());
            return Err(format!(
                "{raw:?} is not a valid phone number in {region} (default region {})",
                self.region.as_ref()
            ));
        }
        Ok(number.format().mode(phonenumber::Mode::E164).to_string())
    }
}

/// Trim and collapse runs of white space into one space.
fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Configured from `DEFAULT_PHONE_REGION` (default `US`). When it is not a known region,
/// [`FromSettings::from_env`] logs the problem and every execution fails with
/// `ActionDo.Internal` naming it (see [`check_configured`](ValidateLead::check_configured)).
impl FromSettings for ValidateLead {
    fn try_from_settings(settings: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        match settings(DEFAULT_PHONE_REGION_ENV) {
            None => Ok(Self::default()),
            Some(code) => Self::with_region_code(&code)
                .map_err(|e| ConfigError::new(format!("{DEFAULT_PHONE_REGION_ENV}: {e}"))),
        }
    }

    fn unconfigured(problem: ConfigError) -> Self {
        Self {
            problem: Some(problem.into_problem()),
            ..Self::default()
        }
    }
}

impl Action for ValidateLead {
    type Input = LeadInput;
    type Output = Lead;
    const NAME: &'static str = "validate-lead";
    const DESCRIPTION: &'static str =
        "Validates a lead and normalizes it (trimmed, lower-cased email, E.164 phone).";

    fn options(&self) -> ActionOptions {
        ActionOptions {
            mode: Mode::Optimistic,
            ..ActionOptions::default()
        }
    }

    fn validate(&self, input: &LeadInput) -> Result<(), ActionError> {
        // Without a usable region the phone cannot be judged; an error here would be
        // audited as a rejected request, so `execute` answers the configuration problem.
        if self.problem.is_some() {
            return Ok(());
        }
        self.normalize(input).map(|_| ())
    }

    async fn execute(
        &self,
        input: LeadInput,
        _cx: &mut ActionContext,
    ) -> Result<Lead, ActionError> {
        self.normalize(&input)
    }
}

#[cfg(test)]
mod tests;
