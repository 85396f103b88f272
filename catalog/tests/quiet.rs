//! Describing the actions configures none of them: the router's Lambda function, which
//! invokes each action's own function, logs no configuration problem of theirs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tracing_subscriber::layer::{Context, SubscriberExt};

/// Counts every event at WARN or above, and keeps its message.
#[derive(Clone, Default)]
struct Warnings(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if *event.metadata().level() <= tracing::Level::WARN {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[test]
fn describing_the_actions_logs_no_configuration_problem() {
    // No action's settings are in this test's environment (PAYMENT_API_URL, SES_…):
    // building them to run would log that each is not configured.
    assert!(std::env::var_os("PAYMENT_API_URL").is_none());
    let warnings = Warnings::default();
    let subscriber = tracing_subscriber::registry().with(warnings.clone());
    let built = tracing::subscriber::with_default(subscriber, || {
        let descriptors = actiondo_catalog::descriptors();
        let n = descriptors.len();
        (n, warnings.0.load(Ordering::SeqCst))
    });
    assert!(built.0 >= 15, "every action is described");
    assert_eq!(built.1, 0, "warnings logged while describing the actions");

    // Building the catalog (to run the actions) does say it, once per such action.
    let subscriber = tracing_subscriber::registry().with(warnings.clone());
    tracing::subscriber::with_default(subscriber, || {
        let _ = actiondo_catalog::catalog();
    });
    assert!(warnings.0.load(Ordering::SeqCst) > 0);
}
