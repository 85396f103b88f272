//! The catalog: every action package under `functions/`, in one place (used by the router
//! and by the `actiondo` CLI).
//!
//! Adding an action is two lines: its path dependency in `functions/router/Cargo.toml` and
//! its `.with(...)` here. Each action is built with `from_env()`, which never fails: a
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
