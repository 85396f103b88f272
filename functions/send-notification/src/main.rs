//! Lambda entry point of the `send-notification` action.
use actiondo::config::FromSettings;

#[tokio::main]
async fn main() -> Result<(), actiondo::BoxError> {
    actiondo::run(send_notification::SendNotification::from_env()).await
}
