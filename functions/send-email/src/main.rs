//! Lambda entry point of the `send-email` action.
#[tokio::main]
async fn main() -> Result<(), actiondo::BoxError> {
    actiondo::run(send_email::SendEmail::from_env()).await
}
