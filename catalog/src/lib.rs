//! # actiondo-catalog — every action of action.do, in one place
//!
//! The one list of the action packages under `functions/`, used by the router's Lambda
//! function and by the `actiondo` CLI. It is a crate of its own so that the HTTP API
//! (`actiondo-api`) takes a [`Catalog`] as a value and depends on no action's code: the
//! programs that run the actions (the router's `main`, the CLI) build the catalog here
//! and pass it in.
//!
//! Adding an action is two lines: its path dependency in `catalog/Cargo.toml` and its
//! `.with(...)` here. Each action is built with `from_env()`, which never fails: a
//! missing setting (say `PAYMENT_API_URL`) surfaces as an error when that action runs.

use actiondo::Catalog;
use actiondo::config::FromSettings;

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
