//! Lambda entry point of the `send-welcome-email` action.
#[tokio::main]
async fn main() -> Result<(), actiondo::BoxError> {
    actiondo::run(send_welcome_email::SendWelcomeEmail::from_env()).await
}
