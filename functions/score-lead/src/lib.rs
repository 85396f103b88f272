//! # score-lead — a deterministic, explainable lead score
//!
//! Takes a lead — typically the output of `validate-lead` merged with the output of
//! `enrich-lead` (other fields, such as `domain` or `provider`, are accepted and ignored):
//!
//! ```json
//! {"email": "ann.lee@acme.com", "name": "Ann Lee", "company": "Acme", "phone": "+12015550123",
//!  "source": "referral", "freeMail": false, "disposable": false, "companyDomain": "acme.com"}
//! ```
//!
//! and returns its score, whether it qualifies, and every rule that matched:
//!
//! ```json
//! {"score": 95, "qualified": true, "threshold": 60, "rules": [
//!   {"rule": "business-email", "points": 25, "reason": "the email is on a business domain (acme.com)"},
//!   {"rule": "company-domain", "points": 15, "reason": "the company's domain is known (acme.com)"},
//!   …]}
//! ```
//!
//! ## The rules
//!
//! Evaluated in this order; each matching rule is listed with its points (a rule listed
//! with 0 points explains why a bonus was not given). The score is the sum, clamped to
//! 0–100; the lead qualifies when `score >= threshold`. The same input always gives the
//! same output.
//!
//! | rule | when | points |
//! |---|---|---|
//! | `disposable-email` | `disposable` is true | −50 |
//! | `business-email` | `freeMail` is false and the address is not disposable | +25 |
//! | `free-email` | `freeMail` is true | 0 |
//! | `email-type-unknown` | `freeMail` is absent (run `enrich-lead` first) | 0 |
//! | `role-email` | the local part is a role (`info@`, `sales@`, `noreply@`…) | −15 |
//! | `company-domain` | `companyDomain` is given | +15 |
//! | `company-name` | `company` is given | +10 |
//! | `phone` | `phone` is given in E.164 (`+` and 7–15 digits) | +15 |
//! | `phone-unverified` | `phone` is given in another form | +5 |
//! | `full-name` | `name` has at least two words | +10 |
//! | `source` | `source` is a known channel: see [`source_points`] | −10 to +25 |
//! | `source-unknown` | `source` is given but not a known channel | 0 |
//!
//! ## Configuration
//!
//! - `SCORE_QUALIFIED_THRESHOLD`: the default threshold, 0–100 (default 60). The
//!   input's `threshold` overrides it for one request.
//!
//! [`ScoreLead::from_env`] never fails (the `actiondo` CLI builds every action at
//! start-up, where the setting may be wrong): an invalid value is logged as a warning
//! and every execution then fails with `ActionDo.Internal`
//! `"score-lead is not configured: SCORE_QUALIFIED_THRESHOLD: …"` (details
//! `{"reason": "not_configured", …}`; retryable, nothing stored) until the setting is
//! fixed, even when the input gives its own `threshold`. [`ScoreLead::try_from_env`]
//! fails at once instead.

use actiondo::config::{ConfigError, FromSettings};
use actiondo::{Action, ActionContext, ActionError, ActionOptions, FieldErrors, Mode};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The environment variable of the default threshold.
pub const THRESHOLD_ENV: &str = "SCORE_QUALIFIED_THRESHOLD";

/// The default threshold when `SCORE_QUALIFIED_THRESHOLD` is unset.
pub const DEFAULT_THRESHOLD: u32 = 60;

/// The highest score (and threshold).
pub const MAX_SCORE: u32 = 100;

/// Local parts that name a role or a mailbox rather than a person.
const ROLE_LOCAL_PARTS: &[&str] = &[
    "admin",
    "billing",
    "contact",
    "enquiries",
    "hello",
    "help",
    "hr",
    "info",
    "inquiries",
    "jobs",
    "marketing",
    "no-reply",
    "noreply",
    "office",
    "postmaster",
    "sales",
    "support",
    "team",
    "webmaster",
];

/// The input of `score-lead`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScoreLeadInput {
    /// The lead's email address.
    pub email: String,
    /// The lead's full name.
    pub name: String,
    /// The lead's company.
    #[serde(default)]
    pub company: Option<String>,
    /// The lead's phone number (E.164 from `validate-lead` scores best).
    #[serde(default)]
    pub phone: Option<String>,
    /// Where the lead came from.
    #[serde(default)]
    pub source: Option<String>,
    /// From `enrich-lead`: whether the email is on a free-mail domain.
    #[serde(default)]
    pub free_mail: Option<bool>,
    /// From `enrich-lead`: whether the email is on a disposable-mail domain.
    #[serde(default)]
    pub disposable: Option<bool>,
    /// From `enrich-lead`: the company's domain.
    #[serde(default)]
    pub company_domain: Option<String>,
    /// Overrides the configured qualification threshold (0–100) for this request.
    #[serde(default)]
    pub threshold: Option<u32>,
}

/// One rule that matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RuleHit {
    /// The rule's stable name (`business-email`, `source`…).
    pub rule: String,
    /// What it added (negative: took away).
    pub points: i32,
    /// Why, in words.
    pub reason: String,
}

/// The output of `score-lead`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ScoreLeadOutput {
    /// The sum of the rules' points, clamped to 0–100.
    pub score: u32,
    /// `score >= threshold`.
    pub qualified: bool,
    /// The threshold applied.
    pub threshold: u32,
    /// The rules that matched, in evaluation order.
    pub rules: Vec<RuleHit>,
}

/// The points of a lead source, by channel. The source is compared case-insensitively,
/// with spaces and underscores read as `-`; `None` for a channel not in the table.
pub fn source_points(source: &str) -> Option<i32> {
    let normalized: String = source
        .trim()
        .to_lowercase()
        .chars()
        .map(|c| if c == ' ' || c == '_' { '-' } else { c })
        .collect();
    Some(match normalized.as_str() {
        "demo-request" | "demo" | "contact-sales" | "pricing" | "trial" | "free-trial" => 25,
        "referral" | "partner" | "customer-referral" => 20,
        "webinar" | "event" | "trade-show" | "conference" => 15,
        "website" | "web" | "contact-form" | "organic" | "inbound" | "search" => 10,
        "content" | "newsletter" | "blog" | "ebook" | "social" | "paid" | "ads" | "ppc" => 5,
        "purchased-list" | "cold" | "cold-outreach" | "scraped" => -10,
        _ => return None,
    })
}

/// The `score-lead` action.
#[derive(Debug, Clone)]
pub struct ScoreLead {
    threshold: u32,
    /// Why the configuration is unusable, if it is: every execution fails with it.
    problem: Option<String>,
}

impl Default for ScoreLead {
    fn default() -> Self {
        Self {
            threshold: DEFAULT_THRESHOLD,
            problem: None,
        }
    }
}

impl ScoreLead {
    /// The action with this default threshold; an error when it is above 100.
    pub fn with_threshold(threshold: u32) -> Result<Self, String> {
        if threshold > MAX_SCORE {
            return Err(format!(
                "a threshold must be 0 to {MAX_SCORE}, got {threshold}"
            ));
        }
        Ok(Self {
            threshold,
            problem: None,
        })
    }

    /// `Ok` when the action has a usable configuration; otherwise the error every
    /// execution answers: `ActionDo.Internal` from [`actiondo::config::not_configured`].
    pub fn check_configured(&self) -> Result<(), ActionError> {
        actiondo::config::ensure_configured(<Self as Action>::NAME, self.problem.as_deref())
    }

    /// The default threshold ([`DEFAULT_THRESHOLD`] for an action built without a usable
    /// configuration, which never scores an execution).
    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// Score a lead (no validation).
    pub fn score(&self, lead: &ScoreLeadInput) -> ScoreLeadOutput {
        let mut rules = Vec::new();
        let mut hit = |rule: &str, points: i32, reason: String| {
            rules.push(RuleHit {
                rule: rule.to_owned(),
                points,
                reason,
            });
        };
        let email = lead.email.trim().to_lowercase();
        let (local, domain) = email.rsplit_once('@').unwrap_or((email.as_str(), ""));
        let disposable = lead.disposable == Some(true);

        if disposable {
            hit(
                "disposable-email",
                -50,
                format!("the email domain {domain} is a disposable-mail service"),
            );
        }
        match lead.free_mail {
            Some(false) if !disposable => hit(
                "business-email",
                25,
                format!("the email is on a business domain ({domain})"),
            ),
            Some(false) => {}
            Some(true) => hit(
                "free-email",
                0,
                format!("the email is on a free-mail domain ({domain}): no business-email bonus"),
            ),
            None => hit(
                "email-type-unknown",
                0,
                "freeMail is not given (run enrich-lead first): no business-email bonus".into(),
            ),
        }
        // `first.last+tag@` → `first.last`; roles are compared without a tag.
        let mailbox = local.split('+').next().unwrap_or(local);
        if ROLE_LOCAL_PARTS.contains(&mailbox) {
            hit(
                "role-email",
                -15,
                format!("{mailbox}@ is a role address, not a person"),
            );
        }
        if let Some(d) = non_blank(lead.company_domain.as_deref()) {
            hit(
                "company-domain",
                15,
                format!("the company's domain is known ({})", d.to_lowercase()),
            );
        }
        if let Some(c) = non_blank(lead.company.as_deref()) {
            hit("company-name", 10, format!("a company is given ({c})"));
        }
        if let Some(p) = non_blank(lead.phone.as_deref()) {
            if is_e164(p) {
                hit("phone", 15, "a phone number in E.164 is given".into());
            } else {
                hit(
                    "phone-unverified",
                    5,
                    "a phone number is given, but not in E.164 (run validate-lead first)".into(),
                );
            }
        }
        if lead.name.split_whitespace().count() >= 2 {
            hit("full-name", 10, "a first and a last name are given".into());
        }
        if let Some(s) = non_blank(lead.source.as_deref()) {
            match source_points(s) {
                Some(points) => hit("source", points, format!("the lead came from {s:?}")),
                None => hit(
                    "source-unknown",
                    0,
                    format!("the source {s:?} is not a known channel"),
                ),
            }
        }

        let threshold = lead.threshold.unwrap_or(self.threshold);
        let sum: i64 = rules.iter().map(|r| i64::from(r.points)).sum();
        let score = u32::try_from(sum.clamp(0, i64::from(MAX_SCORE))).unwrap_or_default();
        ScoreLeadOutput {
            score,
            qualified: score >= threshold,
            threshold,
            rules,
        }
    }
}

fn non_blank(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

/// `+`, a non-zero digit, then 6 to 14 more digits.
fn is_e164(phone: &str) -> bool {
    let Some(digits) = phone.strip_prefix('+') else {
        return false;
    };
    (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// Configured from `SCORE_QUALIFIED_THRESHOLD` (default 60). When it is set but not an
/// integer from 0 to 100, [`FromSettings::from_env`] logs the problem and every
/// execution fails with `ActionDo.Internal` naming it (see
/// [`check_configured`](ScoreLead::check_configured)).
impl FromSettings for ScoreLead {
    fn try_from_settings(settings: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        match settings(THRESHOLD_ENV) {
            None => Ok(Self::default()),
            Some(v) => v
                .trim()
                .parse::<u32>()
                .map_err(|e| format!("{v:?} is not an integer: {e}"))
                .and_then(Self::with_threshold)
                .map_err(|e| ConfigError::new(format!("{THRESHOLD_ENV}: {e}"))),
        }
    }

    fn unconfigured(problem: ConfigError) -> Self {
        Self {
            problem: Some(problem.into_problem()),
            ..Self::default()
        }
    }
}

impl Action for ScoreLead {
    type Input = ScoreLeadInput;
    type Output = ScoreLeadOutput;
    const NAME: &'static str = "score-lead";
    const DESCRIPTION: &'static str =
        "Scores a lead 0-100 with the list of rules that contributed, and says if it qualifies.";

    fn options(&self) -> ActionOptions {
        ActionOptions {
            mode: Mode::Optimistic,
            ..ActionOptions::default()
        }
    }

    fn validate(&self, input: &ScoreLeadInput) -> Result<(), ActionError> {
        let mut problems = FieldErrors::new();
        let email = input.email.trim();
        match email.split_once('@') {
            Some((local, domain))
                if !local.is_empty() && !domain.is_empty() && !domain.contains('@') => {}
            _ => problems.add("/email", format!("{email:?} is not an email address")),
        }
        if input.name.trim().is_empty() {
            problems.add("/name", "must not be empty");
        }
        if let Some(t) = input.threshold.filter(|t| *t > MAX_SCORE) {
            problems.add("/threshold", format!("must be 0 to {MAX_SCORE}, got {t}"));
        }
        problems.into_result_with("invalid lead")
    }

    async fn execute(
        &self,
        input: ScoreLeadInput,
        _cx: &mut ActionContext,
    ) -> Result<ScoreLeadOutput, ActionError> {
        self.check_configured()?;
        Ok(self.score(&input))
    }
}

#[cfg(test)]
mod tests;
