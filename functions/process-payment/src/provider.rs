//! The client of the payment provider: a Stripe-shaped HTTP API, shared by
//! `process-payment` and `refund-payment`.
//!
//! - `POST {PAYMENT_API_URL}/v1/payment_intents` and `POST {PAYMENT_API_URL}/v1/refunds`,
//!   form-encoded, `Authorization: Bearer {PAYMENT_API_KEY}`, and
//!   `Idempotency-Key: <the action's idempotency key>` on every request, so that a retry
//!   of one execution is deduplicated by the provider: it never charges or refunds twice.
//! - Amounts are integers in the currency's minor unit; currencies go lower-case.
//!
//! ## Configuration (environment)
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `PAYMENT_API_URL` | the provider's base URL, e.g. `https://api.stripe.com` | required |
//! | `PAYMENT_API_KEY` | the secret key (sent as a bearer token; never logged) | required |
//! | `PAYMENT_API_TIMEOUT_MS` | the time budget of one request | `10000` |
//!
//! ## Errors
//!
//! | provider answer | error |
//! |---|---|
//! | 402 (a card error: declined, expired, insufficient funds…) | `ActionDo.Rejected`, details `{code, declineCode, message, paymentIntentId, status: 402}` |
//! | 400 (`invalid_request_error`: a parameter the provider refuses) | `ActionDo.Validation` |
//! | 409 `idempotency_error` (the key was used with other parameters) | `ActionDo.Rejected` |
//! | other 409 (a request with the same key is in flight) | `ActionDo.Transient` |
//! | 408, 429, 5xx, timeout, connection failure | `ActionDo.Transient` (408, 409, 429: with `Retry-After`) |
//! | other 4xx (401/403: the key is wrong; 404…) | `ActionDo.Rejected` |
//! | 2xx with a body that is not the expected object | `ActionDo.Internal` |
//!
//! The retryable statuses and transport failures are classified by
//! [`actiondo::http_client`], as for every action that calls an HTTP provider.

use std::time::Duration;

use actiondo::ActionError;
use actiondo::http_client::{self, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The provider's base URL.
pub const PAYMENT_API_URL_ENV: &str = "PAYMENT_API_URL";
/// The provider's secret key.
pub const PAYMENT_API_KEY_ENV: &str = "PAYMENT_API_KEY";
/// The time budget of one request, in milliseconds.
pub const PAYMENT_API_TIMEOUT_MS_ENV: &str = "PAYMENT_API_TIMEOUT_MS";
/// The default time budget of one request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A configuration that cannot work (read at start-up).
#[derive(Debug, thiserror::Error)]
#[error("payment provider configuration: {0}")]
pub struct ConfigError(String);

/// The provider of the environment, or (logged) why there is none: what the actions'
/// `from_env` hold, so that a missing setting fails executions, not the process (the
/// CLI builds every action at start-up); they answer
/// [`actiondo::config::not_configured`] with it.
pub fn provider_or_problem(action: &str) -> Result<PaymentProvider, String> {
    PaymentProvider::from_env().map_err(|e| {
        tracing::error!(action, error = %e, "the payment provider is not configured; every execution will fail");
        e.to_string()
    })
}

/// The payment provider client. Cheap to clone (one connection pool).
#[derive(Clone)]
pub struct PaymentProvider {
    http: http_client::LazyClient,
    base_url: String,
    api_key: String,
    timeout: Duration,
}

impl std::fmt::Debug for PaymentProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentProvider")
            .field("base_url", &self.base_url)
            .field("api_key", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

/// A PaymentIntent as the provider returns it (the fields we use).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PaymentIntent {
    /// `pi_…`.
    pub id: String,
    /// `succeeded`, `processing`, `requires_capture`, `requires_action`,
    /// `requires_payment_method`, `canceled`…
    pub status: String,
    /// Minor units.
    pub amount: u64,
    /// Lower-case ISO 4217.
    pub currency: String,
}

/// A Refund as the provider returns it (the fields we use).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Refund {
    /// `re_…`.
    pub id: String,
    /// `succeeded`, `pending`, `requires_action`, `failed`, `canceled`.
    pub status: String,
    /// Minor units.
    pub amount: u64,
    /// Lower-case ISO 4217.
    pub currency: String,
    /// The PaymentIntent refunded.
    #[serde(default)]
    pub payment_intent: Option<String>,
}

/// What to charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPaymentIntent {
    /// Minor units, > 0.
    pub amount: u64,
    /// ISO 4217 (any case; sent lower-case).
    pub currency: String,
    /// The payment method to charge (`pm_…`).
    pub payment_method: String,
    /// Shown on the provider's dashboard.
    pub description: Option<String>,
    /// Sent as `metadata[user_id]`.
    pub user_id: String,
}

/// What to refund.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRefund {
    /// The PaymentIntent.
    pub payment_intent: String,
    /// Minor units; the whole remaining amount when `None`.
    pub amount: Option<u64>,
    /// `duplicate`, `fraudulent` or `requested_by_customer`.
    pub reason: Option<String>,
}

impl PaymentProvider {
    /// A client of the provider at `base_url` (no trailing `/v1`) with `api_key`.
    pub fn new(base_url: &str, api_key: &str, timeout: Duration) -> Result<Self, ConfigError> {
        let base_url = base_url.trim().trim_end_matches('/').to_owned();
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            return Err(ConfigError(format!(
                "{PAYMENT_API_URL_ENV}={base_url:?} must be an http(s) URL"
            )));
        }
        if api_key.trim().is_empty() {
            return Err(ConfigError(format!("{PAYMENT_API_KEY_ENV} is empty")));
        }
        // Built on the first request: describing the action (the router) builds none.
        let http = http_client::LazyClient::new(move || {
            http_client::client_builder(concat!("actiondo/", env!("CARGO_PKG_VERSION")), timeout)
                .connect_timeout(timeout.min(Duration::from_secs(5)))
        });
        Ok(Self {
            http,
            base_url,
            api_key: api_key.trim().to_owned(),
            timeout,
        })
    }

    /// The provider the environment describes (see the [module docs](self)).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The provider described by the settings `lookup` returns, by variable name.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let url = var(PAYMENT_API_URL_ENV)
            .ok_or_else(|| ConfigError(format!("{PAYMENT_API_URL_ENV} is not set")))?;
        let key = var(PAYMENT_API_KEY_ENV)
            .ok_or_else(|| ConfigError(format!("{PAYMENT_API_KEY_ENV} is not set")))?;
        let timeout = match var(PAYMENT_API_TIMEOUT_MS_ENV) {
            None => DEFAULT_TIMEOUT,
            Some(ms) => {
                actiondo::config::millis(PAYMENT_API_TIMEOUT_MS_ENV, &ms).map_err(ConfigError)?
            }
        };
        Self::new(&url, &key, timeout)
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Create and confirm a PaymentIntent (`confirm=true`): the charge itself.
    pub async fn create_payment_intent(
        &self,
        intent: &NewPaymentIntent,
        idempotency_key: &str,
    ) -> Result<PaymentIntent, ActionError> {
        let mut form = vec![
            ("amount", intent.amount.to_string()),
            ("currency", intent.currency.to_lowercase()),
            ("payment_method", intent.payment_method.clone()),
            ("confirm", "true".to_owned()),
            ("metadata[user_id]", intent.user_id.clone()),
        ];
        if let Some(description) = &intent.description {
            form.push(("description", description.clone()));
        }
        self.post("/v1/payment_intents", &form, idempotency_key)
            .await
    }

    /// Refund (part of) a PaymentIntent.
    pub async fn create_refund(
        &self,
        refund: &NewRefund,
        idempotency_key: &str,
    ) -> Result<Refund, ActionError> {
        let mut form = vec![("payment_intent", refund.payment_intent.clone())];
        if let Some(amount) = refund.amount {
            form.push(("amount", amount.to_string()));
        }
        if let Some(reason) = &refund.reason {
            form.push(("reason", reason.clone()));
        }
        self.post("/v1/refunds", &form, idempotency_key).await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        form: &[(&str, String)],
        idempotency_key: &str,
    ) -> Result<T, ActionError> {
        let url = format!("{}{path}", self.base_url);
        let response = self
            .http
            .get("the payment provider")?
            .post(&url)
            .bearer_auth(&self.api_key)
            .header("Idempotency-Key", idempotency_key)
            .form(form)
            .send()
            .await
            .map_err(|e| {
                http_client::transport_error(
                    &format!("payment provider (POST {path})"),
                    self.timeout,
                    e,
                )
                .with_details(json!({"provider": "payment", "endpoint": path}))
            })?;
        let status = response.status().as_u16();
        let retry_after_ms = http_client::retry_after_ms(response.headers());
        let body = response.bytes().await.map_err(|e| {
            ActionError::transient(format!(
                "the payment provider's answer to POST {path} was cut off"
            ))
            .with_source(e)
        })?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&body).map_err(|e| {
                ActionError::internal(format!(
                    "the payment provider answered POST {path} with HTTP {status} and an unexpected body: {e}"
                ))
            });
        }
        Err(classify(path, status, &body, retry_after_ms))
    }
}

/// The `error` object of a Stripe-shaped error body.
#[derive(Debug, Default, Deserialize)]
struct ProviderError {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    decline_code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    param: Option<String>,
    #[serde(default)]
    payment_intent: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    error: ProviderError,
}

/// Map a non-2xx answer to an [`ActionError`] (see the [module docs](self)).
fn classify(path: &str, status: u16, body: &[u8], retry_after_ms: Option<u64>) -> ActionError {
    let error = serde_json::from_slice::<ErrorEnvelope>(body)
        .map(|e| e.error)
        .unwrap_or_default();
    let message = error
        .message
        .clone()
        .unwrap_or_else(|| format!("HTTP {status}"));
    let details = json!({
        "provider": "payment",
        "endpoint": path,
        "status": status,
        "type": error.kind,
        "code": error.code,
        "declineCode": error.decline_code,
        "param": error.param,
        "message": message,
        "paymentIntentId": error.payment_intent.as_ref().and_then(|p| p.get("id")).and_then(Value::as_str),
    });
    let text = |what: &str| format!("{what}: {message}");
    let err = match status {
        402 => ActionError::rejected(text("the payment was declined")),
        400 => ActionError::validation(text("the payment provider refused the request")),
        409 if error.kind.as_deref() == Some("idempotency_error") => ActionError::rejected(text(
            "the idempotency key was already used with other parameters at the payment provider",
        )),
        500.. => ActionError::transient(text("the payment provider failed")),
        // A request with the same key in flight, throttling, a request timeout.
        s if s == 409 || StatusCode::from_u16(s).is_ok_and(http_client::is_retryable_status) => {
            let e = ActionError::transient(text("the payment provider asks to retry later"));
            match retry_after_ms {
                Some(ms) => e.with_retry_after_ms(ms),
                None => e,
            }
        }
        _ => ActionError::rejected(text("the payment provider refused the request")),
    };
    err.with_details(details)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actiondo::ErrorKind;

    #[test]
    fn classifies_provider_answers() {
        let decline = br#"{"error": {"type": "card_error", "code": "card_declined", "decline_code": "insufficient_funds", "message": "Your card has insufficient funds.", "payment_intent": {"id": "pi_1", "status": "requires_payment_method"}}}"#;
        let e = classify("/v1/payment_intents", 402, decline, None);
        assert_eq!(e.kind(), ErrorKind::Rejected);
        let d = e.details().expect("details");
        assert_eq!(d["code"], "card_declined");
        assert_eq!(d["declineCode"], "insufficient_funds");
        assert_eq!(d["paymentIntentId"], "pi_1");
        assert!(e.message().contains("insufficient funds"));

        let cases = [
            (400, ErrorKind::Validation),
            (401, ErrorKind::Rejected),
            (404, ErrorKind::Rejected),
            (408, ErrorKind::Transient),
            (409, ErrorKind::Transient),
            (429, ErrorKind::Transient),
            (500, ErrorKind::Transient),
            (503, ErrorKind::Transient),
        ];
        for (status, kind) in cases {
            assert_eq!(
                classify("/x", status, b"not json", None).kind(),
                kind,
                "{status}"
            );
        }
        let reused = br#"{"error": {"type": "idempotency_error", "message": "Keys for idempotent requests can only be used with the same parameters."}}"#;
        assert_eq!(
            classify("/x", 409, reused, None).kind(),
            ErrorKind::Rejected
        );
        let throttled = classify("/x", 429, b"{}", Some(2000));
        assert_eq!(throttled.retry_after_ms(), Some(2000));
    }

    #[test]
    fn the_configuration_is_checked_and_the_key_never_shown() {
        let env = |url: &'static str, key: &'static str, ms: &'static str| {
            move |name: &str| match name {
                PAYMENT_API_URL_ENV => Some(url.to_owned()),
                PAYMENT_API_KEY_ENV => Some(key.to_owned()),
                PAYMENT_API_TIMEOUT_MS_ENV => Some(ms.to_owned()),
                _ => None,
            }
        };
        let p = PaymentProvider::from_lookup(env("https://pay.example.com/", "sk_live_secret", ""))
            .expect("valid");
        assert_eq!(p.base_url(), "https://pay.example.com");
        assert!(!format!("{p:?}").contains("sk_live_secret"));
        assert!(PaymentProvider::from_lookup(env("", "sk", "")).is_err());
        assert!(PaymentProvider::from_lookup(env("https://x", "", "")).is_err());
        assert!(PaymentProvider::from_lookup(env("ftp://x", "sk", "")).is_err());
        assert!(PaymentProvider::from_lookup(env("https://x", "sk", "soon")).is_err());
    }
}
