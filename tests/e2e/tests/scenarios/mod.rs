//! The scenarios of the seed workflows, shared by `workflows.rs` (moto's interpreter,
//! outcomes read back from the world) and `differential.rs` (moto against the local
//! engine): the inputs, the functions each workflow invokes, the settings the functions
//! get, and the outside services, which are test servers on `127.0.0.1` (crate
//! `wiremock`), not parts of the product:
//!
//! - a Stripe-shaped payment provider ([`Provider`]): `POST /v1/payment_intents` charges
//!   once per `Idempotency-Key` and answers a repeated key with the stored charge, as
//!   Stripe does; it can be told to decline every card (`402 card_error`) or to be down
//!   (`503`) for its next N requests, before it charges anything;
//! - a webhook receiver for `send-notification` ([`webhook_receiver`]).
//!
//! Email goes to the outbox transport (`EMAIL_TRANSPORT=outbox`) in a folder.
//!
//! (A module of the test crates rather than of `actiondo-e2e`'s library: the servers are
//! `wiremock`'s, a dev-dependency.)
#![allow(dead_code)] // each test crate uses its part

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use actiondo_e2e::states::percent_decode;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub(crate) const OWNERS: &str = "ann@sales.example,bo@sales.example";
pub(crate) const FIRST_OWNER: &str = "ann@sales.example";
pub(crate) const WEBHOOK_PATH: &str = "/hooks/actiondo";

pub(crate) const LEAD_FUNCTIONS: &[&str] = &[
    "validate-lead",
    "enrich-lead",
    "score-lead",
    "create-or-update-contact",
    "assign-owner",
    "send-email",
];
pub(crate) const ONBOARDING_FUNCTIONS: &[&str] = &[
    "create-user",
    "provision-resources",
    "process-payment",
    "send-welcome-email",
    "release-resources",
    "mark-user",
    "send-notification",
];
pub(crate) const CRM_FUNCTIONS: &[&str] = &[
    "create-or-update-contact",
    "assign-owner",
    "send-notification",
];

// ---------------------------------------------------------------- the payment provider
/// What the fake provider does with a charge request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Behaviour {
    /// Charge (once per Idempotency-Key).
    Charge,
    /// Decline every card: 402 `card_error` / `card_declined` / `insufficient_funds`.
    Decline,
}

/// One charge the provider made.
#[derive(Debug, Clone)]
pub(crate) struct Charge {
    pub(crate) idempotency_key: String,
    pub(crate) form: BTreeMap<String, String>,
    pub(crate) intent: Value,
}

/// A Stripe-shaped payment provider: `POST /v1/payment_intents` (form-encoded).
#[derive(Debug)]
pub(crate) struct ProviderState {
    behaviour: Mutex<Behaviour>,
    /// Requests still to be answered `503` (before anything is charged).
    outages: AtomicU32,
    charges: Mutex<Vec<Charge>>,
}

#[derive(Debug, Clone)]
pub(crate) struct Provider(Arc<ProviderState>);

impl Provider {
    pub(crate) fn new(behaviour: Behaviour, outages: u32) -> Self {
        Self(Arc::new(ProviderState {
            behaviour: Mutex::new(behaviour),
            outages: AtomicU32::new(outages),
            charges: Mutex::new(Vec::new()),
        }))
    }

    /// Behave as `behaviour` from now on, answering the next `outages` requests `503`
    /// (a server shared by scenarios run one after the other).
    pub(crate) fn set(&self, behaviour: Behaviour, outages: u32) {
        *self.0.behaviour.lock().expect("not poisoned") = behaviour;
        self.0.outages.store(outages, Ordering::SeqCst);
    }

    pub(crate) fn charges(&self) -> Vec<Charge> {
        self.0.charges.lock().expect("not poisoned").clone()
    }

    /// A server on 127.0.0.1 answering as this provider.
    pub(crate) async fn serve(&self) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/v1/payment_intents"))
            .respond_with(self.clone())
            .mount(&server)
            .await;
        server
    }
}

pub(crate) fn form_fields(body: &[u8]) -> BTreeMap<String, String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| percent_decode(&s.replace('+', " "));
            (decode(k), decode(v))
        })
        .collect()
}

pub(crate) fn stripe_error(status: u16, body: Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(body)
}

impl Respond for Provider {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let state = &self.0;
        let down = state
            .outages
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if down {
            return stripe_error(
                503,
                json!({"error": {"type": "api_error", "message": "The service is temporarily unavailable."}}),
            );
        }
        let Some(key) = request
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
        else {
            return stripe_error(
                400,
                json!({"error": {"type": "invalid_request_error", "message": "this test provider requires an Idempotency-Key"}}),
            );
        };
        let form = form_fields(&request.body);
        let mut charges = state.charges.lock().expect("not poisoned");
        if let Some(previous) = charges.iter().find(|c| c.idempotency_key == key) {
            // Stripe replays the first answer to a key (with the same parameters).
            return ResponseTemplate::new(200)
                .insert_header("Idempotent-Replayed", "true")
                .set_body_json(previous.intent.clone());
        }
        let number = charges.len() + 1;
        if *state.behaviour.lock().expect("not poisoned") == Behaviour::Decline {
            return stripe_error(
                402,
                json!({"error": {
                    "type": "card_error",
                    "code": "card_declined",
                    "decline_code": "insufficient_funds",
                    "message": "Your card has insufficient funds.",
                    "payment_intent": {"id": format!("pi_declined_{number}"), "status": "requires_payment_method"}
                }}),
            );
        }
        let amount: u64 = form
            .get("amount")
            .and_then(|a| a.parse().ok())
            .unwrap_or_default();
        let intent = json!({
            "id": format!("pi_test_{number}"),
            "object": "payment_intent",
            "status": "succeeded",
            "amount": amount,
            "currency": form.get("currency").cloned().unwrap_or_default(),
        });
        charges.push(Charge {
            idempotency_key: key,
            form,
            intent: intent.clone(),
        });
        ResponseTemplate::new(200).set_body_json(intent)
    }
}

// ---------------------------------------------------------------- the webhook receiver

/// A webhook receiver on 127.0.0.1: `POST /hooks/actiondo` answers `200 {"ok": true}`
/// and records the request.
pub(crate) async fn webhook_receiver() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(WEBHOOK_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
        .mount(&server)
        .await;
    server
}

// ---------------------------------------------------------------- the functions' settings

/// The settings the functions of a scenario get: the outbox folder, the sender, the
/// webhook, the owners, and the payment provider (when given).
pub(crate) fn function_env(
    outbox: &Path,
    webhook: &MockServer,
    provider: Option<&MockServer>,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("EMAIL_TRANSPORT", "outbox".to_owned()),
        ("EMAIL_OUTBOX_DIR", outbox.display().to_string()),
        ("EMAIL_FROM", "action.do <hello@example.com>".to_owned()),
        (
            "NOTIFY_WEBHOOK_URL",
            format!("{}{WEBHOOK_PATH}", webhook.uri()),
        ),
        ("OWNERS", OWNERS.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    if let Some(provider) = provider {
        env.push(("PAYMENT_API_URL".to_owned(), provider.uri()));
        env.push(("PAYMENT_API_KEY".to_owned(), "sk_test_actiondo".to_owned()));
    }
    env
}

// ---------------------------------------------------------------- the inputs

/// A qualified lead: business email, company, phone, full name, a demo request.
pub(crate) fn qualified_lead() -> Value {
    json!({"lead": {
        "email": "  Ann.Lee@Acme.COM ", "name": " Ann   Lee ", "company": "Acme ",
        "phone": "(201) 555-0123", "source": "demo request"
    }})
}

/// A lead that does not qualify: free mail, one name, no company, a newsletter.
pub(crate) fn nurture_lead() -> Value {
    json!({"lead": {"email": "kim.free@gmail.com", "name": "Kim", "source": "newsletter"}})
}

/// A new CRM contact.
pub(crate) fn crm_contact() -> Value {
    json!({"contact": {"email": "Lin.Park@Globex.example", "name": "Lin Park", "company": "Globex"}})
}

/// The onboarding of `email` on the pro plan, paying 19.99 EUR by card.
pub(crate) fn onboarding_input(email: &str) -> Value {
    json!({
        "user": {"email": email, "name": "Ada Lovelace", "plan": "pro"},
        "payment": {"amount": 1999, "currency": "EUR", "paymentMethod": "pm_card_visa"}
    })
}

// ---------------------------------------------------------------- reading what happened

/// The `.eml` files of an outbox folder: (file name, content), sorted.
pub(crate) fn eml_files(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .map(|p| {
                    let name = p
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let text = std::fs::read_to_string(&p).expect("an outbox file is text");
                    (name, text)
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// A header of an RFC 5322 message (first occurrence, unfolded).
pub(crate) fn header<'a>(eml: &'a str, name: &str) -> Option<&'a str> {
    eml.lines()
        .take_while(|line| !line.is_empty())
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
}

/// The JSON body of a request a test server received.
pub(crate) fn json_body(request: &Request) -> Value {
    serde_json::from_slice(&request.body).expect("a JSON body")
}

/// The `Idempotency-Key` header of a request a test server received.
pub(crate) fn idempotency_key(request: &Request) -> Option<String> {
    request
        .headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
