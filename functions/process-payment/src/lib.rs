//! # process-payment
//!
//! The `process-payment` atomic action: charges a payment through a Stripe-shaped HTTP
//! provider ([`provider`], shared with `refund-payment`).
//!
//! Input `{"userId": "u_…", "amount": 1999, "currency": "EUR", "paymentMethod": "pm_card_visa",
//! "description": "Pro plan, first month"?}` → output `{"paymentId": "pi_…",
//! "status": "succeeded", "amount": 1999, "currency": "EUR"}`.
//!
//! - `amount` is an integer in the currency's minor unit (cents), 1 to
//!   [`MAX_AMOUNT`]; `currency` an ISO 4217 code (any case; answered upper-case, sent to
//!   the provider lower-case). Every invalid field is listed in one `ActionDo.Validation`.
//! - **An idempotency key is required** ([`KeyPolicy::Required`]): two identical
//!   purchases are two payments, so the key cannot be derived from the parameters. The
//!   key goes to the provider as its `Idempotency-Key`: a retry of the same execution
//!   (after a timeout, a 5xx, a crash) is deduplicated by the provider and never charges
//!   twice; a replay does not call the provider at all.
//! - The provider's answer: `succeeded`, `processing` or `requires_capture` complete the
//!   action; `requires_action` (customer authentication needed) and
//!   `requires_payment_method`/`canceled` are `ActionDo.Rejected`, and so is a decline
//!   (HTTP 402, with the provider's `code`, `declineCode` and `message` in the details).
//!   A rejection is stored and replayed as the execution's outcome. See [`provider`] for
//!   every error class.
//! - Claim mode (an external effect): one attempt at a time per key.
//!
//! ## Entities
//!
//! | pk | sk | document |
//! |---|---|---|
//! | `payment#<paymentId>` | `payment` | [`Payment`]: `{paymentId, userId, amount, currency, status, paymentMethod, description, idempotencyKey, createdAt, refundedAmount, refunds}` |
//!
//! Written with the completion (only for a completed charge: the executor drops the
//! staged writes of a failed execution, so a declined charge lives in the idempotency
//! record and the audit trail). `refund-payment` updates it. `paymentId` is the
//! provider's PaymentIntent id.
//!
//! ## Configuration
//!
//! `PAYMENT_API_URL`, `PAYMENT_API_KEY` (required), `PAYMENT_API_TIMEOUT_MS` (default
//! 10000): see [`provider`].

use actiondo::{
    Action, ActionContext, ActionError, ActionOptions, Effects, EntityKey, Expect, FieldErrors,
    KeyPolicy,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

pub mod provider;

use provider::{NewPaymentIntent, PaymentProvider};

/// The largest amount accepted, in minor units (Stripe's limit: eight digits).
pub const MAX_AMOUNT: u64 = 99_999_999;

/// The sort key of a payment entity.
pub const PAYMENT_SK: &str = "payment";

/// The key of a payment: `payment#<paymentId>` / `payment`.
pub fn payment_key(payment_id: &str) -> EntityKey {
    EntityKey::new(format!("payment#{payment_id}"), PAYMENT_SK)
}

/// A recorded payment: the document of `payment#<paymentId>` / `payment`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    /// The provider's PaymentIntent id.
    pub payment_id: String,
    /// Who paid.
    pub user_id: String,
    /// Minor units.
    pub amount: u64,
    /// Upper-case ISO 4217.
    pub currency: String,
    /// `succeeded`, `processing`, `requires_capture`; after refunds `partially_refunded`
    /// or `refunded`.
    pub status: String,
    /// The payment method charged.
    pub payment_method: String,
    /// The description sent to the provider.
    #[serde(default)]
    pub description: Option<String>,
    /// The idempotency key of the charge (also the provider's).
    pub idempotency_key: String,
    /// When, RFC 3339 (UTC).
    pub created_at: String,
    /// Minor units refunded so far (refunds pending included).
    #[serde(default)]
    pub refunded_amount: u64,
    /// The provider's ids of the refunds, oldest first.
    #[serde(default)]
    pub refunds: Vec<String>,
}

/// Why a currency code cannot be charged, if it cannot: not ISO 4217, or a code with no
/// minor unit (precious metals, testing and "no currency" codes).
pub fn currency_problem(code: &str) -> Option<String> {
    match iso_currency::Currency::from_code(&code.trim().to_uppercase()) {
        None => Some(format!("{code:?} is not an ISO 4217 currency code")),
        Some(c) if c.exponent().is_none() => Some(format!(
            "{} is not a currency that can be charged",
            c.code()
        )),
        Some(_) => None,
    }
}

/// Parameters of `process-payment`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcessPaymentInput {
    /// Who pays (sent as `metadata[user_id]`).
    #[schemars(length(min = 1, max = 200))]
    pub user_id: String,
    /// Minor units of `currency` (e.g. cents), 1 to 99 999 999.
    #[schemars(range(min = 1, max = 99_999_999))]
    pub amount: u64,
    /// ISO 4217 code, e.g. `EUR`.
    #[schemars(length(equal = 3))]
    pub currency: String,
    /// The provider's payment method id, e.g. `pm_card_visa`.
    #[schemars(length(min = 1, max = 255))]
    pub payment_method: String,
    /// Shown on the provider's dashboard and statements.
    #[serde(default)]
    #[schemars(length(max = 1000))]
    pub description: Option<String>,
}

/// Result of `process-payment`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessPaymentOutput {
    /// The provider's PaymentIntent id: pass it to `refund-payment`.
    pub payment_id: String,
    /// `succeeded`, `processing` or `requires_capture`.
    pub status: String,
    /// Minor units charged.
    pub amount: u64,
    /// Upper-case ISO 4217.
    pub currency: String,
}

/// The `process-payment` action. See the [crate docs](crate).
#[derive(Debug, Clone)]
pub struct ProcessPayment {
    provider: Result<PaymentProvider, String>,
}

impl ProcessPayment {
    /// The action charging through `provider`.
    pub fn new(provider: PaymentProvider) -> Self {
        Self {
            provider: Ok(provider),
        }
    }

    /// The action with the provider the environment describes.
    ///
    /// Never fails: when `PAYMENT_API_URL` or `PAYMENT_API_KEY` is missing or invalid
    /// the problem is logged and every execution fails with `ActionDo.Internal` naming
    /// it. Use [`try_from_env`](Self::try_from_env) to fail at once instead.
    pub fn from_env() -> Self {
        Self {
            provider: provider::provider_or_problem(<Self as Action>::NAME),
        }
    }

    /// The action with the provider the environment describes, or why it cannot be built.
    pub fn try_from_env() -> Result<Self, provider::ConfigError> {
        PaymentProvider::from_env().map(Self::new)
    }

    /// The provider, or `ActionDo.Internal` if the action was built without one.
    pub fn provider(&self) -> Result<&PaymentProvider, ActionError> {
        self.provider
            .as_ref()
            .map_err(|e| actiondo::config::not_configured(<Self as Action>::NAME, e))
    }
}

/// The PaymentIntent statuses that complete the action.
const COMPLETED_STATUSES: [&str; 3] = ["succeeded", "processing", "requires_capture"];

impl Action for ProcessPayment {
    type Input = ProcessPaymentInput;
    type Output = ProcessPaymentOutput;
    const NAME: &'static str = "process-payment";
    const DESCRIPTION: &'static str = "Charges a payment through the payment provider, passing the idempotency key so that a retry never charges twice.";

    fn options(&self) -> ActionOptions {
        ActionOptions {
            key_policy: KeyPolicy::Required,
            // Charges through the payment provider (MCP openWorldHint); a charge adds, it does
            // not overwrite.
            effects: Effects {
                external: true,
                destructive: false,
            },
            ..ActionOptions::default()
        }
    }

    fn validate(&self, input: &ProcessPaymentInput) -> Result<(), ActionError> {
        let mut errors = FieldErrors::new();
        if input.user_id.trim().is_empty() {
            errors.add("/userId", "must not be blank");
        }
        if input.amount == 0 || input.amount > MAX_AMOUNT {
            errors.add("/amount", format!("must be 1 to {MAX_AMOUNT} minor units"));
        }
        if let Some(p) = currency_problem(&input.currency) {
            errors.add("/currency", p);
        }
        if input.payment_method.trim().is_empty() {
            errors.add("/paymentMethod", "must not be blank");
        }
        errors.into_result(Self::NAME)
    }

    async fn execute(
        &self,
        input: ProcessPaymentInput,
        cx: &mut ActionContext,
    ) -> Result<ProcessPaymentOutput, ActionError> {
        let currency = input.currency.trim().to_uppercase();
        let request = NewPaymentIntent {
            amount: input.amount,
            currency: currency.clone(),
            payment_method: input.payment_method.trim().to_owned(),
            description: input.description.clone(),
            user_id: input.user_id.trim().to_owned(),
        };
        let intent = self
            .provider()?
            .create_payment_intent(&request, cx.idempotency_key())
            .await?;
        tracing::info!(payment_id = %intent.id, status = %intent.status, "payment intent answered");
        if !COMPLETED_STATUSES.contains(&intent.status.as_str()) {
            let reason = if intent.status == "requires_action" {
                "authentication_required"
            } else {
                "payment_failed"
            };
            return Err(ActionError::rejected(format!(
                "the payment {} was not completed: its status is {}",
                intent.id, intent.status
            ))
            .with_details(json!({
                "reason": reason,
                "paymentIntentId": intent.id,
                "providerStatus": intent.status,
            })));
        }
        let output = ProcessPaymentOutput {
            payment_id: intent.id.clone(),
            status: intent.status.clone(),
            amount: intent.amount,
            currency: intent.currency.to_uppercase(),
        };
        let key = payment_key(&intent.id);
        if cx.get(&key).await?.is_none() {
            cx.put(
                key,
                &Payment {
                    payment_id: intent.id,
                    user_id: request.user_id,
                    amount: intent.amount,
                    currency: output.currency.clone(),
                    status: intent.status,
                    payment_method: request.payment_method,
                    description: request.description,
                    idempotency_key: cx.idempotency_key().to_owned(),
                    created_at: chrono::Utc::now()
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    refunded_amount: 0,
                    refunds: Vec::new(),
                },
                Expect::Absent,
            )?;
        }
        Ok(output)
    }
}

#[cfg(test)]
mod tests;
