//! Lambda entry point of the `refund-payment` action.
#[tokio::main]
async fn main() -> Result<(), actiondo::BoxError> {
    actiondo::run(refund_payment::RefundPayment::from_env()).await
}
