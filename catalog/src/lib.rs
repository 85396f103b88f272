//! # actiondo-catalog — every action of action.do, in one place
//!
//! The one list of the action packages under `functions/`, used by the router's Lambda
//! function and by the `actiondo` CLI.
//!
//! Adding an action is two lines: its path dependency in `catalog/Cargo.toml` and its
//! `.with(...)` here. Each action is built with `from_env()`, which never fails: a
//! missing setting (say `PAYMENT_API_URL`) surfaces as an error when that action runs.

use actiondo::config::FromSettings;
use actiondo::{Catalog, DynAction, KeyPolicy};
use serde::Serialize;
use serde_json::Value;

/// Every action of action.do.
pub fn catalog() -> Catalog {
    Catalog::new()
        .with(assign_owner::AssignOwner::from_env())
        .with(create_invoice::CreateInvoice::from_env())
        .with(create_or_update_contact::CreateOrUpdateContact::from_env())
        .with(create_user::CreateUser::from_env())
        .with(enrich_lead::EnrichLead::from_env())
        .with(mark_user::MarkUser::from_env())
        .with(process_payment::ProcessPayment::from_env())
        .with(provision_resources::ProvisionResources::from_env())
        .with(refund_payment::RefundPayment::from_env())
        .with(release_resources::ReleaseResources::from_env())
        .with(score_lead::ScoreLead::from_env())
        .with(send_email::SendEmail::from_env())
        .with(send_notification::SendNotification::from_env())
        .with(send_welcome_email::SendWelcomeEmail::from_env())
        .with(validate_lead::ValidateLead::from_env())
}

/// One action as the router's `GET /actions` and `actiondo actions --json` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionInfo {
    /// The action's name.
    pub name: &'static str,
    /// Its one-line description.
    pub description: &'static str,
    /// `derived` (the key defaults to the SHA-256 of the params) or `required`.
    pub key_policy: &'static str,
    /// The JSON Schema of its params.
    pub input_schema: Value,
    /// The JSON Schema of its result.
    pub output_schema: Value,
}

/// One action as JSON: name, description, key policy, input and output schemas.
pub fn describe(action: &dyn DynAction) -> ActionInfo {
    ActionInfo {
        name: action.name(),
        description: action.description(),
        key_policy: match action.options().key_policy {
            KeyPolicy::Derived => "derived",
            KeyPolicy::Required => "required",
        },
        input_schema: action.input_schema(),
        output_schema: action.output_schema(),
    }
}
