//! # send-notification — post a JSON message to a webhook, once per key
//!
//! ```json
//! {"message": "New qualified lead: Ann Lee (Acme)", "channel": "#sales",
//!  "data": {"contactId": "c_6f1d0c8e2b7a4a10", "score": 95}}
//! ```
//!
//! sends
//!
//! ```text
//! POST {NOTIFY_WEBHOOK_URL}
//! Content-Type: application/json
//! Idempotency-Key: <the execution's idempotency key>
//!
//! {"message": "New qualified lead: Ann Lee (Acme)", "channel": "#sales", "data": {...}}
//! ```
//!
//! and returns `{"delivered": true, "status": 200}` (the webhook's HTTP status).
//!
//! ## Once per key
//!
//! The action runs in claim mode: the key is claimed before the request is sent, so a
//! replay or a concurrent duplicate of the same key returns the stored outcome and sends
//! nothing. When a send may or may not have reached the webhook (a timeout, a 5xx), the
//! error is `ActionDo.Transient` and the retry sends the **same** `Idempotency-Key`, so
//! a receiver that honours it delivers the message once.
//!
//! | webhook answer | outcome |
//! |---|---|
//! | 2xx | `{"delivered": true, "status": <status>}` |
//! | timeout, connection failure, 5xx, 408, 429 | `ActionDo.Transient` (retryable) |
//! | any other status (4xx; 3xx, as redirects are not followed) | `ActionDo.Rejected`, with the status and body in `details` |
//!
//! Error messages never contain the webhook URL (which often carries a secret).
//! Without an explicit key the key is derived from the input, so the same message sent
//! twice within the retention (24 h) is delivered once: give distinct keys for
//! deliberate repeats.
//!
//! ## Input rules
//!
//! `message`: not blank, at most [`MAX_MESSAGE_CHARS`] characters; `channel`: not blank,
//! at most [`MAX_CHANNEL_CHARS`] characters, no control characters; `data`: a JSON
//! object; the whole body at most [`MAX_BODY_BYTES`]. Every problem is listed.
//!
//! ## Configuration
//!
//! - `NOTIFY_WEBHOOK_URL` (required): the http(s) endpoint.
//! - `NOTIFY_TIMEOUT_MS`: the request timeout, a positive number of milliseconds
//!   (default 5000).
//! - `NOTIFY_WEBHOOK_TOKEN`: sent as `Authorization: Bearer <token>` when set.
//!
//! [`SendNotification::from_env`] never fails (the `actiondo` CLI builds every action at
//! start-up, where the settings may be unset): a missing or invalid `NOTIFY_WEBHOOK_URL`
//! or an invalid `NOTIFY_TIMEOUT_MS` is logged as a warning and every execution then
//! fails with `ActionDo.Internal` `"send-notification is not configured: …"` (details
//! `{"reason": "not_configured", …}`; retryable, nothing sent or stored) until the
//! setting is fixed. [`SendNotification::try_from_env`] fails at once instead. The URL
//! is never repeated in the problem.

use std::time::Duration;

use actiondo::config::{ConfigError, FromSettings};
use actiondo::http_client;
use actiondo::{Action, ActionContext, ActionError, ActionOptions, Effects, FieldErrors, Mode};
use reqwest::header;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The environment variable of the webhook URL.
pub const URL_ENV: &str = "NOTIFY_WEBHOOK_URL";
/// The environment variable of the request timeout, in milliseconds.
pub const TIMEOUT_ENV: &str = "NOTIFY_TIMEOUT_MS";
/// The environment variable of the bearer token.
pub const TOKEN_ENV: &str = "NOTIFY_WEBHOOK_TOKEN";
/// The request timeout when `NOTIFY_TIMEOUT_MS` is unset.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(5000);
/// The longest message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 40_000;
/// The longest channel, in characters.
pub const MAX_CHANNEL_CHARS: usize = 200;
/// The largest request body, in bytes.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The input of `send-notification`, sent as the webhook's JSON body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotificationInput {
    /// The text of the notification.
    pub message: String,
    /// Structured data for the receiver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Map<String, Value>>,
    /// Where the receiver should post it (`#sales`, a team, a topic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
}

/// The output of `send-notification`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationOutput {
    /// Always true: a failed delivery is an error.
    pub delivered: bool,
    /// The webhook's HTTP status (2xx).
    pub status: u16,
}

/// The webhook the action posts to.
#[derive(Debug, Clone)]
pub struct Webhook {
    url: reqwest::Url,
    token: Option<String>,
    timeout: Duration,
    client: http_client::LazyClient,
}

impl Webhook {
    /// A webhook at `url` (http or https) with a request timeout.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        // The URL may hold a secret: name only what is wrong with it.
        let url = http_client::http_url(url)?;
        // Built on the first post: describing the action (the router) builds none.
        let client = http_client::LazyClient::new(move || {
            http_client::client_builder(
                concat!("action.do send-notification/", env!("CARGO_PKG_VERSION")),
                timeout,
            )
            .redirect(reqwest::redirect::Policy::none())
        });
        Ok(Self {
            url,
            token: None,
            timeout,
            client,
        })
    }

    /// Send `Authorization: Bearer <token>`.
    #[must_use]
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// POST `body` with the idempotency key; the status on success.
    pub async fn post(&self, body: Vec<u8>, idempotency_key: &str) -> Result<u16, ActionError> {
        let mut request = self
            .client
            .get("send-notification")?
            .post(self.url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", idempotency_key)
            .body(body);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| self.send_error(e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(status.as_u16());
        }
        // The body explains the refusal; a failure to read it changes nothing.
        let body = response.bytes().await.unwrap_or_default();
        match http_client::status_error("webhook", "the notification", status, &body) {
            Some(e) => Err(e),
            None => Ok(status.as_u16()),
        }
    }

    fn send_error(&self, e: reqwest::Error) -> ActionError {
        http_client::transport_error("webhook", self.timeout, e)
    }
}

/// The `send-notification` action.
#[derive(Debug, Clone)]
pub struct SendNotification {
    /// The webhook, or why the configuration gives none: every execution fails with it.
    webhook: Result<Webhook, String>,
}

impl SendNotification {
    /// The action posting to `webhook`.
    pub fn new(webhook: Webhook) -> Self {
        Self {
            webhook: Ok(webhook),
        }
    }

    /// The webhook, or, for an action built without a usable configuration, the error
    /// every execution answers: `ActionDo.Internal` from
    /// [`actiondo::config::not_configured`].
    pub fn webhook(&self) -> Result<&Webhook, ActionError> {
        self.webhook
            .as_ref()
            .map_err(|e| actiondo::config::not_configured(<Self as Action>::NAME, e))
    }
}

fn body_of(input: &NotificationInput) -> Result<Vec<u8>, ActionError> {
    serde_json::to_vec(input)
        .map_err(|e| ActionError::internal(format!("the notification does not serialize: {e}")))
}

/// Configured from `NOTIFY_WEBHOOK_URL`, `NOTIFY_TIMEOUT_MS` and `NOTIFY_WEBHOOK_TOKEN`.
/// When `NOTIFY_WEBHOOK_URL` is missing or not an http(s) URL, or `NOTIFY_TIMEOUT_MS` is
/// not a positive integer, [`FromSettings::from_env`] logs the problem (never the URL
/// itself) and every execution fails with `ActionDo.Internal` naming it (see
/// [`webhook`](SendNotification::webhook)).
impl FromSettings for SendNotification {
    fn try_from_settings(settings: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let url = settings(URL_ENV).ok_or_else(|| {
            ConfigError::new(format!(
                "{URL_ENV} must be set to the webhook's http(s) URL"
            ))
        })?;
        let timeout = match settings(TIMEOUT_ENV) {
            None => DEFAULT_TIMEOUT,
            Some(ms) => actiondo::config::millis(TIMEOUT_ENV, &ms).map_err(ConfigError::new)?,
        };
        let webhook = Webhook::new(url.trim(), timeout)
            .map_err(|e| ConfigError::new(format!("{URL_ENV}: {e}")))?;
        Ok(Self::new(match settings(TOKEN_ENV) {
            Some(token) => webhook.with_token(token),
            None => webhook,
        }))
    }

    fn unconfigured(problem: ConfigError) -> Self {
        Self {
            webhook: Err(problem.into_problem()),
        }
    }
}

impl Action for SendNotification {
    type Input = NotificationInput;
    type Output = NotificationOutput;
    const NAME: &'static str = "send-notification";
    const DESCRIPTION: &'static str =
        "Posts a JSON message to the notification webhook, with the idempotency key in a header.";

    fn options(&self) -> ActionOptions {
        ActionOptions {
            mode: Mode::Claim,
            // Posts to a webhook outside this deployment (MCP openWorldHint).
            effects: Effects {
                external: true,
                destructive: false,
            },
            ..ActionOptions::default()
        }
    }

    fn validate(&self, input: &NotificationInput) -> Result<(), ActionError> {
        let mut problems = FieldErrors::new();
        let mut problem = |path: &str, message: String| problems.add(path, message);
        if input.message.trim().is_empty() {
            problem("/message", "must not be blank".into());
        } else if input.message.chars().count() > MAX_MESSAGE_CHARS {
            problem(
                "/message",
                format!("must be at most {MAX_MESSAGE_CHARS} characters"),
            );
        }
        if let Some(channel) = &input.channel {
            if channel.trim().is_empty() {
                problem("/channel", "must not be blank when given".into());
            } else if let Some(message) =
                actiondo::validation::text_problem(channel, MAX_CHANNEL_CHARS)
            {
                problem("/channel", message);
            }
        }
        let size = body_of(input)?.len();
        if size > MAX_BODY_BYTES {
            problem(
                "",
                format!("the notification is {size} bytes of JSON; the limit is {MAX_BODY_BYTES}"),
            );
        }
        problems.into_result_with("invalid notification")
    }

    async fn execute(
        &self,
        input: NotificationInput,
        cx: &mut ActionContext,
    ) -> Result<NotificationOutput, ActionError> {
        let webhook = self.webhook()?;
        let body = body_of(&input)?;
        let status = webhook.post(body, cx.idempotency_key()).await?;
        Ok(NotificationOutput {
            delivered: true,
            status,
        })
    }
}

#[cfg(test)]
mod tests;
