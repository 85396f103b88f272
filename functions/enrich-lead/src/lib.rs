//! # enrich-lead — what a lead's email domain says about it
//!
//! ```json
//! {"email": "Ann.Lee@EU.Acme.co.uk", "company": "Acme"}
//! ```
//!
//! returns
//!
//! ```json
//! {"domain": "eu.acme.co.uk", "companyDomain": "acme.co.uk", "freeMail": false, "disposable": false,
//!  "provider": {"name": "Acme Ltd", "employees": 500}}
//! ```
//!
//! Other fields of the input (the rest of a lead from `validate-lead`) are accepted and
//! ignored, so a workflow can pass the lead as it is.
//!
//! ## The domain work (always done, no network)
//!
//! - `domain`: the email's domain, lower-cased;
//! - `freeMail`: the domain (or a parent of it) is a free-mail provider — a curated list
//!   embedded in the binary (`data/free-mail-domains.txt`);
//! - `disposable`: the domain (or a parent of it) is a throw-away mail service — a curated
//!   list embedded in the binary (`data/disposable-domains.txt`);
//! - `companyDomain`: the registrable domain (by the Public Suffix List, crate `psl`:
//!   `eu.acme.co.uk` → `acme.co.uk`) of a business address; for a free-mail or
//!   disposable address, the registrable domain of `company` when that is a domain or a
//!   URL (`acme.com`, `https://www.acme.com/about`); otherwise absent.
//!
//! ## The provider (when configured)
//!
//! With `ENRICHMENT_URL` set and a `companyDomain` found, the action sends
//! `GET {ENRICHMENT_URL}?domain=<companyDomain>` (query parameters already in the URL
//! are kept; `Accept: application/json`; `Authorization: Bearer {ENRICHMENT_API_KEY}`
//! when that is set) and puts the JSON object it answers under `provider`. Without a
//! company domain there is nothing a company-data provider can look up, so no request is
//! sent and `provider` is absent.
//!
//! | provider answer | outcome |
//! |---|---|
//! | 2xx with a JSON object (at most [`MAX_PROVIDER_BYTES`]) | `provider` = the object |
//! | timeout, connection failure, 5xx, 408, 429 | `ActionDo.Transient` (retryable) |
//! | other 4xx | `ActionDo.Rejected` (stored and replayed), with the status and body in `details` |
//! | 2xx that is not a JSON object, or too large | `ActionDo.Transient` |
//!
//! The action runs in claim mode: although it only reads from the provider, a lookup
//! may cost money or quota, and a claim makes sure that a replay (or a concurrent
//! duplicate) of the same key returns the stored answer without asking again.
//!
//! ## Configuration
//!
//! - `ENRICHMENT_URL`: the provider's endpoint (http or https); unset: no provider.
//! - `ENRICHMENT_TIMEOUT_MS`: the provider request's timeout, a positive number of
//!   milliseconds (default 3000); only read when `ENRICHMENT_URL` is set.
//! - `ENRICHMENT_API_KEY`: sent as a bearer token when set.
//!
//! [`EnrichLead::from_env`] never fails (the `actiondo` CLI builds every action at
//! start-up, where the settings may be wrong): an invalid `ENRICHMENT_URL` or
//! `ENRICHMENT_TIMEOUT_MS` is logged as a warning and every execution then fails with
//! `ActionDo.Internal` `"enrich-lead is not configured: …"` (details
//! `{"reason": "not_configured", …}`; retryable, nothing stored, the provider not asked)
//! until the setting is fixed; the action does not fall back to the domain work alone.
//! [`EnrichLead::try_from_env`] fails at once instead. The URL is never repeated in the
//! problem (its query may carry a secret).

use std::collections::HashSet;
use std::sync::OnceLock;
use std::time::Duration;

use actiondo::config::{ConfigError, FromSettings};
use actiondo::http_client::{self, body_snippet};
use actiondo::{Action, ActionContext, ActionError, ActionOptions, Effects, FieldErrors, Mode};
use reqwest::header;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// The environment variable of the provider's URL.
pub const URL_ENV: &str = "ENRICHMENT_URL";
/// The environment variable of the provider's timeout, in milliseconds.
pub const TIMEOUT_ENV: &str = "ENRICHMENT_TIMEOUT_MS";
/// The environment variable of the provider's bearer token.
pub const API_KEY_ENV: &str = "ENRICHMENT_API_KEY";
/// The provider timeout when `ENRICHMENT_TIMEOUT_MS` is unset.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(3000);
/// The largest provider answer accepted (it is stored with the output and audited).
pub const MAX_PROVIDER_BYTES: usize = 64 * 1024;

const FREE_MAIL: &str = include_str!("../data/free-mail-domains.txt");
const DISPOSABLE: &str = include_str!("../data/disposable-domains.txt");

fn parse_list(text: &'static str) -> HashSet<&'static str> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .collect()
}

fn free_mail_list() -> &'static HashSet<&'static str> {
    static LIST: OnceLock<HashSet<&'static str>> = OnceLock::new();
    LIST.get_or_init(|| parse_list(FREE_MAIL))
}

fn disposable_list() -> &'static HashSet<&'static str> {
    static LIST: OnceLock<HashSet<&'static str>> = OnceLock::new();
    LIST.get_or_init(|| parse_list(DISPOSABLE))
}

/// `domain` and each of its parent domains: `a.b.c` → `a.b.c`, `b.c`, `c`.
fn self_and_parents(domain: &str) -> impl Iterator<Item = &str> {
    std::iter::successors(Some(domain), |d| d.split_once('.').map(|(_, rest)| rest))
}

/// Whether `domain` (lower case) or a parent of it is a free-mail provider.
pub fn is_free_mail(domain: &str) -> bool {
    self_and_parents(domain).any(|d| free_mail_list().contains(d))
}

/// Whether `domain` (lower case) or a parent of it is a disposable-mail service.
pub fn is_disposable(domain: &str) -> bool {
    self_and_parents(domain).any(|d| disposable_list().contains(d))
}

/// The registrable domain of a host name by the Public Suffix List (`eu.acme.co.uk` →
/// `acme.co.uk`); `None` when its suffix is not a known public suffix or the host is a
/// suffix itself.
pub fn registrable_domain(host: &str) -> Option<String> {
    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    let domain = psl::domain(host.as_bytes())?;
    if !domain.suffix().is_known() {
        return None;
    }
    std::str::from_utf8(domain.trim().as_bytes())
        .ok()
        .map(str::to_owned)
}

/// The registrable domain named by a company field that is a domain or a URL
/// (`acme.com`, `www.acme.com`, `https://acme.com/about`); `None` for a company name.
pub fn company_field_domain(company: &str) -> Option<String> {
    let company = company.trim();
    if company.is_empty() || company.contains(char::is_whitespace) {
        return None;
    }
    let url = if company.contains("://") {
        reqwest::Url::parse(company).ok()?
    } else {
        if !company.contains('.') {
            return None;
        }
        reqwest::Url::parse(&format!("http://{company}")).ok()?
    };
    // `domain()` is `None` for an IP address.
    registrable_domain(url.domain()?)
}

/// The input of `enrich-lead`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnrichLeadInput {
    /// The lead's email address.
    pub email: String,
    /// The lead's company: a name, a domain or a URL.
    #[serde(default)]
    pub company: Option<String>,
}

/// The output of `enrich-lead`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnrichLeadOutput {
    /// The email's domain, lower-cased.
    pub domain: String,
    /// The company's registrable domain, when one is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_domain: Option<String>,
    /// Whether the email is on a free-mail provider.
    pub free_mail: bool,
    /// Whether the email is on a disposable-mail service.
    pub disposable: bool,
    /// What the enrichment provider answered (a JSON object), when one was asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Map<String, Value>>,
}

/// An HTTP enrichment provider.
#[derive(Debug, Clone)]
pub struct Provider {
    url: reqwest::Url,
    api_key: Option<String>,
    timeout: Duration,
    client: http_client::LazyClient,
}

impl Provider {
    /// A provider at `url` (http or https) with a request timeout. The error says what
    /// is wrong without repeating the URL (its query may carry a secret).
    pub fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        let url = http_client::http_url(url)?;
        // Built on the first lookup: describing the action (the router) builds none.
        let client = http_client::LazyClient::new(move || {
            http_client::client_builder(
                concat!("action.do enrich-lead/", env!("CARGO_PKG_VERSION")),
                timeout,
            )
        });
        Ok(Self {
            url,
            api_key: None,
            timeout,
            client,
        })
    }

    /// Send `Authorization: Bearer <key>`.
    #[must_use]
    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// The request URL for `domain`.
    pub fn url_for(&self, domain: &str) -> reqwest::Url {
        let mut url = self.url.clone();
        url.query_pairs_mut().append_pair("domain", domain);
        url
    }

    /// Ask the provider about `domain`.
    pub async fn lookup(&self, domain: &str) -> Result<Map<String, Value>, ActionError> {
        let url = self.url_for(domain);
        let mut request = self
            .client
            .get("enrich-lead")?
            .get(url.clone())
            .header(header::ACCEPT, "application/json");
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(|e| self.send_error(e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| self.send_error(e))?;
        if let Some(e) = http_client::status_error(
            SERVICE,
            format_args!("the lookup of {domain}"),
            status,
            &body,
        ) {
            return Err(e);
        }
        if body.len() > MAX_PROVIDER_BYTES {
            return Err(ActionError::transient(format!(
                "the enrichment provider's answer is too large: {} bytes (limit {MAX_PROVIDER_BYTES})",
                body.len()
            )));
        }
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(other) => Err(ActionError::transient(format!(
                "the enrichment provider answered JSON that is not an object: {}",
                body_snippet(other.to_string().as_bytes())
            ))),
            Err(e) => Err(ActionError::transient(format!(
                "the enrichment provider answered something that is not JSON: {e}"
            ))
            .with_details(json!({"status": status.as_u16(), "body": body_snippet(&body)}))),
        }
    }

    fn send_error(&self, e: reqwest::Error) -> ActionError {
        // The URL may carry a secret in its query: `transport_error` keeps it out of
        // messages and logs.
        http_client::transport_error(SERVICE, self.timeout, e)
    }
}

/// How errors name the provider.
const SERVICE: &str = "enrichment provider";

/// The `enrich-lead` action.
#[derive(Debug, Clone, Default)]
pub struct EnrichLead {
    provider: Option<Provider>,
    /// Why the configuration is unusable, if it is: every execution fails with it.
    problem: Option<String>,
}

impl EnrichLead {
    /// The action without a provider: domain work only.
    pub fn new() -> Self {
        Self {
            provider: None,
            problem: None,
        }
    }

    /// The action with a provider.
    pub fn with_provider(provider: Provider) -> Self {
        Self {
            provider: Some(provider),
            problem: None,
        }
    }

    /// `Ok` when the action has a usable configuration; otherwise the error every
    /// execution answers: `ActionDo.Internal` from [`actiondo::config::not_configured`].
    pub fn check_configured(&self) -> Result<(), ActionError> {
        actiondo::config::ensure_configured(<Self as Action>::NAME, self.problem.as_deref())
    }

    /// The provider, if any (none for an action built without a usable configuration,
    /// which never executes).
    pub fn provider(&self) -> Option<&Provider> {
        self.provider.as_ref()
    }
}

/// The email's domain, or a validation error.
fn email_domain(email: &str) -> Result<String, ActionError> {
    match actiondo::validation::parse_email(&email.trim().to_lowercase()) {
        Ok(address) => Ok(address.domain().trim_end_matches('.').to_owned()),
        Err(message) => Err(FieldErrors::new()
            .with("/email", message)
            .into_error("invalid lead")),
    }
}

/// Configured from `ENRICHMENT_URL`, `ENRICHMENT_TIMEOUT_MS` and `ENRICHMENT_API_KEY`.
/// When `ENRICHMENT_URL` is not an http(s) URL or `ENRICHMENT_TIMEOUT_MS` is not a
/// positive integer, [`FromSettings::from_env`] logs the problem (never the URL itself)
/// and every execution fails with `ActionDo.Internal` naming it (see
/// [`check_configured`](EnrichLead::check_configured)).
impl FromSettings for EnrichLead {
    fn try_from_settings(settings: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let Some(url) = settings(URL_ENV) else {
            return Ok(Self::new());
        };
        let timeout = match settings(TIMEOUT_ENV) {
            None => DEFAULT_TIMEOUT,
            Some(ms) => actiondo::config::millis(TIMEOUT_ENV, &ms).map_err(ConfigError::new)?,
        };
        let provider = Provider::new(url.trim(), timeout)
            .map_err(|e| ConfigError::new(format!("{URL_ENV}: {e}")))?;
        Ok(Self::with_provider(match settings(API_KEY_ENV) {
            Some(key) => provider.with_api_key(key),
            None => provider,
        }))
    }

    fn unconfigured(problem: ConfigError) -> Self {
        Self {
            provider: None,
            problem: Some(problem.into_problem()),
        }
    }
}

impl Action for EnrichLead {
    type Input = EnrichLeadInput;
    type Output = EnrichLeadOutput;
    const NAME: &'static str = "enrich-lead";
    const DESCRIPTION: &'static str =
        "Adds a lead's company domain, free-mail and disposable-domain flags, and provider data.";

    fn options(&self) -> ActionOptions {
        ActionOptions {
            // An optimistic execution runs the handler before it learns that the key
            // was already completed; a claim never calls the provider for a replay.
            mode: Mode::Claim,
            // Asks the enrichment provider (MCP openWorldHint).
            effects: Effects {
                external: true,
                destructive: false,
            },
            ..ActionOptions::default()
        }
    }

    fn validate(&self, input: &EnrichLeadInput) -> Result<(), ActionError> {
        email_domain(&input.email).map(|_| ())
    }

    async fn execute(
        &self,
        input: EnrichLeadInput,
        _cx: &mut ActionContext,
    ) -> Result<EnrichLeadOutput, ActionError> {
        self.check_configured()?;
        let domain = email_domain(&input.email)?;
        let free_mail = is_free_mail(&domain);
        let disposable = is_disposable(&domain);
        let company_domain = if free_mail || disposable {
            input
                .company
                .as_deref()
                .and_then(company_field_domain)
                .filter(|d| !is_free_mail(d) && !is_disposable(d))
        } else {
            registrable_domain(&domain)
        };
        let provider = match (&self.provider, &company_domain) {
            (Some(provider), Some(d)) => Some(provider.lookup(d).await?),
            _ => None,
        };
        Ok(EnrichLeadOutput {
            domain,
            company_domain,
            free_mail,
            disposable,
            provider,
        })
    }
}

#[cfg(test)]
mod tests;
