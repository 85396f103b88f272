//! Lambda entry point of the `process-payment` action.
#[tokio::main]
async fn main() -> Result<(), actiondo::BoxError> {
    actiondo::run(process_payment::ProcessPayment::from_env()).await
}
