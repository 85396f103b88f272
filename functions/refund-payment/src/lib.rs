//! # refund-payment
//!
//! The `refund-payment` atomic action: refunds (part of) a payment made by
//! `process-payment` — its compensation in a workflow.
//!
//! Input `{"paymentId": "pi_…", "amount": 500?, "reason": "requested_by_customer"?}` →
//! output `{"refundId": "re_…", "status": "succeeded", "paymentId": "pi_…",
//! "amount": 500, "currency": "EUR"}`.
//!
//! - The payment must be recorded (`payment#<paymentId>`, written by `process-payment`)
//!   and settled (`succeeded` or `partially_refunded`); `amount` (minor units, default:
//!   everything not yet refunded) must not exceed what is left. Otherwise
//!   `ActionDo.Rejected` (`details.reason`: `unknown_payment`, `not_refundable`,
//!   `exceeds_refundable`), before the provider is called.
//! - `POST {PAYMENT_API_URL}/v1/refunds` (`payment_intent`, `amount`, `reason`) through the
//!   same client as `process-payment` ([`process_payment::provider`]), with the action's
//!   idempotency key as `Idempotency-Key`: a retry never refunds twice. Same error
//!   classes (a provider refusal is `Rejected`, 5xx/timeout/429 `Transient`); a refund the
//!   provider answers `failed` or `canceled` is `Rejected`.
//! - The refund entity and the payment's update (`refundedAmount`, `refunds`, `status`
//!   becoming `partially_refunded` or `refunded`, written with the payment's version as
//!   condition) commit with the completion, or not at all. Two concurrent refunds of one
//!   payment: one commits, the other gets `ActionDo.Conflict` and, retried with its key,
//!   re-reads the payment (the provider returns the same refund for the same key).
//! - The key defaults to one derived from the parameters (an accidental second request
//!   for the same refund is a replay, not a second refund); pass a key to make two equal
//!   partial refunds. Claim mode.
//!
//! ## Entities
//!
//! | pk | sk | document |
//! |---|---|---|
//! | `payment#<paymentId>` | `payment` | [`process_payment::Payment`] (read and updated) |
//! | `refund#<refundId>` | `refund` | [`RefundRecord`]: `{refundId, paymentId, amount, currency, status, reason, idempotencyKey, createdAt}` |
//!
//! ## Configuration
//!
//! `PAYMENT_API_URL`, `PAYMENT_API_KEY`, `PAYMENT_API_TIMEOUT_MS`: see
//! [`process_payment::provider`].

use actiondo::{
    Action, ActionContext, ActionError, ActionOptions, Effects, EntityKey, Expect, FieldErrors,
};
use process_payment::provider::{NewRefund, PaymentProvider};
use process_payment::{Payment, payment_key};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The key of a refund: `refund#<refundId>` / `refund`.
pub fn refund_key(refund_id: &str) -> EntityKey {
    EntityKey::new(format!("refund#{refund_id}"), "refund")
}

/// Why the money goes back (the provider's reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RefundReason {
    /// The customer was charged twice.
    Duplicate,
    /// The charge was fraudulent.
    Fraudulent,
    /// The customer asked for it (and the compensation of a failed workflow).
    RequestedByCustomer,
}

impl RefundReason {
    /// The provider's name of the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            RefundReason::Duplicate => "duplicate",
            RefundReason::Fraudulent => "fraudulent",
            RefundReason::RequestedByCustomer => "requested_by_customer",
        }
    }
}

/// A refund: the document of `refund#<refundId>` / `refund`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefundRecord {
    /// The provider's refund id.
    pub refund_id: String,
    /// The payment refunded.
    pub payment_id: String,
    /// Minor units.
    pub amount: u64,
    /// Upper-case ISO 4217.
    pub currency: String,
    /// `succeeded`, `pending` or `requires_action`.
    pub status: String,
    /// Why.
    #[serde(default)]
    pub reason: Option<RefundReason>,
    /// The idempotency key of the refund (also the provider's).
    pub idempotency_key: String,
    /// When, RFC 3339 (UTC).
    pub created_at: String,
}

/// Parameters of `refund-payment`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefundPaymentInput {
    /// The `paymentId` returned by `process-payment`.
    #[schemars(length(min = 1, max = 255))]
    pub payment_id: String,
    /// Minor units to refund; everything not yet refunded when absent.
    #[serde(default)]
    #[schemars(range(min = 1, max = 99_999_999))]
    pub amount: Option<u64>,
    /// Why.
    #[serde(default)]
    pub reason: Option<RefundReason>,
}

/// Result of `refund-payment`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefundPaymentOutput {
    /// The provider's refund id.
    pub refund_id: String,
    /// `succeeded`, `pending` or `requires_action`.
    pub status: String,
    /// The payment refunded.
    pub payment_id: String,
    /// Minor units refunded.
    pub amount: u64,
    /// Upper-case ISO 4217.
    pub currency: String,
}

/// The `refund-payment` action. See the [crate docs](crate).
#[derive(Debug, Clone)]
pub struct RefundPayment {
    provider: Result<PaymentProvider, String>,
}

impl RefundPayment {
    /// The action refunding through `provider`.
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
            provider: process_payment::provider::provider_or_problem(<Self as Action>::NAME),
        }
    }

    /// The action with the provider the environment describes, or why it cannot be built.
    pub fn try_from_env() -> Result<Self, process_payment::provider::ConfigError> {
        PaymentProvider::from_env().map(Self::new)
    }

    /// The provider, or `ActionDo.Internal` if the action was built without one.
    pub fn provider(&self) -> Result<&PaymentProvider, ActionError> {
        self.provider
            .as_ref()
            .map_err(|e| actiondo::config::not_configured(<Self as Action>::NAME, e))
    }
}

/// The payment statuses that can be refunded.
const REFUNDABLE: [&str; 2] = ["succeeded", "partially_refunded"];
/// The refund statuses that complete the action.
const REFUND_OK: [&str; 3] = ["succeeded", "pending", "requires_action"];

impl Action for RefundPayment {
    type Input = RefundPaymentInput;
    type Output = RefundPaymentOutput;
    const NAME: &'static str = "refund-payment";
    const DESCRIPTION: &'static str = "Refunds (part of) a payment made by process-payment, through the same provider and with the idempotency key.";

    fn options(&self) -> ActionOptions {
        ActionOptions {
            // Pays money back through the provider (MCP openWorldHint), reversing a charge
            // (destructiveHint).
            effects: Effects {
                external: true,
                destructive: true,
            },
            ..ActionOptions::default()
        }
    }

    fn validate(&self, input: &RefundPaymentInput) -> Result<(), ActionError> {
        let mut errors = FieldErrors::new();
        if input.payment_id.trim().is_empty() {
            errors.add("/paymentId", "must not be blank");
        }
        errors.into_result(Self::NAME)
    }

    async fn execute(
        &self,
        input: RefundPaymentInput,
        cx: &mut ActionContext,
    ) -> Result<RefundPaymentOutput, ActionError> {
        let payment_id = input.payment_id.trim();
        let key = payment_key(payment_id);
        let (mut payment, version) = cx.get_as::<Payment>(&key).await?.ok_or_else(|| {
            ActionError::rejected(format!("no payment with id {payment_id:?}"))
                .with_details(json!({"reason": "unknown_payment", "paymentId": payment_id}))
        })?;
        if !REFUNDABLE.contains(&payment.status.as_str()) {
            return Err(ActionError::rejected(format!(
                "the payment {payment_id} cannot be refunded: its status is {}",
                payment.status
            ))
            .with_details(json!({
                "reason": "not_refundable",
                "paymentId": payment_id,
                "paymentStatus": payment.status,
            })));
        }
        let left = payment.amount.saturating_sub(payment.refunded_amount);
        let amount = input.amount.unwrap_or(left);
        if amount == 0 || amount > left {
            return Err(ActionError::rejected(format!(
                "cannot refund {amount} of payment {payment_id}: {left} {} is left to refund",
                payment.currency
            ))
            .with_details(json!({
                "reason": "exceeds_refundable",
                "paymentId": payment_id,
                "requested": amount,
                "refundable": left,
            })));
        }
        let refund = self
            .provider()?
            .create_refund(
                &NewRefund {
                    payment_intent: payment.payment_id.clone(),
                    amount: Some(amount),
                    reason: input.reason.map(|r| r.as_str().to_owned()),
                },
                cx.idempotency_key(),
            )
            .await?;
        tracing::info!(refund_id = %refund.id, status = %refund.status, "refund answered");
        if !REFUND_OK.contains(&refund.status.as_str()) {
            return Err(ActionError::rejected(format!(
                "the refund {} of payment {payment_id} {}",
                refund.id, refund.status
            ))
            .with_details(json!({
                "reason": "refund_failed",
                "refundId": refund.id,
                "providerStatus": refund.status,
            })));
        }
        let currency = refund.currency.to_uppercase();
        if !payment.refunds.contains(&refund.id) {
            payment.refunded_amount = payment.refunded_amount.saturating_add(refund.amount);
            payment.refunds.push(refund.id.clone());
            payment.status = if payment.refunded_amount >= payment.amount {
                "refunded".into()
            } else {
                "partially_refunded".into()
            };
            cx.put(key, &payment, Expect::Version(version))?;
            cx.put(
                refund_key(&refund.id),
                &RefundRecord {
                    refund_id: refund.id.clone(),
                    payment_id: payment.payment_id.clone(),
                    amount: refund.amount,
                    currency: currency.clone(),
                    status: refund.status.clone(),
                    reason: input.reason,
                    idempotency_key: cx.idempotency_key().to_owned(),
                    created_at: chrono::Utc::now()
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                },
                Expect::Absent,
            )?;
        }
        Ok(RefundPaymentOutput {
            refund_id: refund.id,
            status: refund.status,
            payment_id: payment.payment_id,
            amount: refund.amount,
            currency,
        })
    }
}

#[cfg(test)]
mod tests;
