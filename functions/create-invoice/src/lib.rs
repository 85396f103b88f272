//! # create-invoice — gapless, per-account invoice numbers
//!
//! The seed's duplicate-invoice example as an atomic action:
//!
//! ```json
//! {"customerId": "cus_42", "currency": "EUR",
//!  "lines": [{"description": "Pro plan, May", "quantity": 3, "unitAmount": 1250}]}
//! ```
//!
//! returns
//!
//! ```json
//! {"invoiceId": "inv_5c0f…", "number": 7, "customerId": "cus_42", "currency": "EUR", "total": 3750}
//! ```
//!
//! ## What it guarantees
//!
//! Invoice numbers are **sequential and gapless per account** (`customerId`): the account's
//! counter entity (`account#<customerId>` / `invoice-counter`) and the invoice entity
//! (`account#<customerId>` / `invoice#<number, 10 digits>`) are staged together and commit
//! in the one completion transaction of the execution, with its idempotency record and its
//! audit record:
//!
//! - the counter is written with `Expect::Absent` (first invoice) or `Expect::Version(v)`
//!   of the version read, so two concurrent executions can never both take number `n`:
//!   the loser's transaction writes nothing and it is re-run in place (optimistic mode) or
//!   answered `ActionDo.Conflict` (retryable) when the retries run out;
//! - the invoice is written with `Expect::Absent`, so a number is never reused;
//! - a retry of the same idempotency key replays the stored output (the same number)
//!   and burns none, because nothing is written unless the whole execution commits.
//!
//! ## Input rules
//!
//! Checked before anything is claimed; every problem is listed in the
//! `ActionDo.Validation` error's `details.errors` (`[{"path": "/lines/0/quantity",
//! "message": "..."}]`):
//!
//! - `customerId`: 1–200 characters after trimming, no control characters;
//! - `currency`: an ISO 4217 code of three upper-case letters that has minor units
//!   (`EUR`, `USD`, `JPY`…; not `XAU` or `XXX`);
//! - `lines`: 1–[`MAX_LINES`] lines, each with a non-empty `description` (at most
//!   [`MAX_DESCRIPTION_CHARS`] characters), an integer `quantity` ≥ 1 and an integer
//!   `unitAmount` in minor units (a negative amount is a discount line);
//! - every line amount (`quantity × unitAmount`) and the total are computed with checked
//!   64-bit arithmetic (an overflow is a validation problem), and the total may not be
//!   negative (that would be a credit note, not an invoice).
//!
//! ## Configuration
//!
//! None: the action reads no environment variable of its own (the store comes from
//! `ACTIONDO_STORE` and the `ACTIONDO_*_TABLE` variables, as for every action).

use actiondo::{
    Action, ActionContext, ActionError, ActionOptions, EntityKey, Expect, FieldErrors, Mode,
};
use iso_currency::Currency;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The most lines one invoice may have (the invoice is one entity item, which must stay
/// well below DynamoDB's 400 KB item size).
pub const MAX_LINES: usize = 250;

/// The longest line description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 1000;

/// The longest customer id, in characters.
pub const MAX_CUSTOMER_ID_CHARS: usize = 200;

/// The input of `create-invoice`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateInvoiceInput {
    /// The account the invoice is for; numbers are sequential per account.
    pub customer_id: String,
    /// ISO 4217 currency code, three upper-case letters (e.g. `EUR`).
    pub currency: String,
    /// The invoice lines (at least one).
    pub lines: Vec<InvoiceLineInput>,
}

/// One line of the input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InvoiceLineInput {
    /// What is billed.
    pub description: String,
    /// How many units (at least 1).
    pub quantity: i64,
    /// The price of one unit in the currency's minor units (cents for EUR); negative
    /// for a discount line.
    pub unit_amount: i64,
}

/// The output of `create-invoice`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateInvoiceOutput {
    /// The invoice's id: `inv_` and 16 hex digits derived from the account and the number.
    pub invoice_id: String,
    /// The invoice number: 1 for the account's first invoice, then +1, with no gaps.
    pub number: u64,
    /// The account (trimmed).
    pub customer_id: String,
    /// The currency.
    pub currency: String,
    /// The total in minor units.
    pub total: i64,
}

/// A line as stored in the invoice entity: the input line and its amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceLine {
    /// What is billed (trimmed).
    pub description: String,
    /// How many units.
    pub quantity: i64,
    /// The price of one unit, minor units.
    pub unit_amount: i64,
    /// `quantity × unitAmount`, minor units.
    pub amount: i64,
}

/// The invoice entity's document (`account#<customerId>` / `invoice#<number:010>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceDoc {
    /// See [`CreateInvoiceOutput::invoice_id`].
    pub invoice_id: String,
    /// The invoice number.
    pub number: u64,
    /// The account.
    pub customer_id: String,
    /// The currency.
    pub currency: String,
    /// The lines with their amounts.
    pub lines: Vec<InvoiceLine>,
    /// The total, minor units.
    pub total: i64,
    /// When the invoice was issued (RFC 3339, UTC).
    pub issued_at: String,
    /// The idempotency key of the execution that created it.
    pub idempotency_key: String,
}

/// The account's counter entity's document (`account#<customerId>` / `invoice-counter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CounterDoc {
    /// The number of the account's latest invoice.
    pub last_number: u64,
}

/// The entity key of an account's invoice counter.
pub fn counter_key(customer_id: &str) -> EntityKey {
    EntityKey::new(format!("account#{customer_id}"), "invoice-counter")
}

/// The entity key of invoice `number` of an account (zero-padded, so the account's
/// invoices sort by number).
pub fn invoice_key(customer_id: &str, number: u64) -> EntityKey {
    EntityKey::new(
        format!("account#{customer_id}"),
        format!("invoice#{number:010}"),
    )
}

/// The invoice id of invoice `number` of an account: `inv_` + the first 16 hex digits of
/// SHA-256 of `<customerId>#<number>`.
pub fn invoice_id(customer_id: &str, number: u64) -> String {
    let digest = actiondo::hash::sha256_hex(format!("{customer_id}#{number}").as_bytes());
    format!("inv_{}", &digest[..16])
}

/// The `create-invoice` action.
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateInvoice;

impl CreateInvoice {
    /// The action; it has no configuration of its own.
    pub fn new() -> Self {
        Self
    }

    /// The action configured from the environment (it reads nothing of its own).
    pub fn from_env() -> Self {
        Self
    }
}

/// A validated, normalized invoice request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Checked {
    customer_id: String,
    currency: String,
    lines: Vec<InvoiceLine>,
    total: i64,
}

/// Check every rule of the input and compute the amounts; every problem is reported.
fn check(input: &CreateInvoiceInput) -> Result<Checked, ActionError> {
    let mut problems = FieldErrors::new();

    let customer_id = input.customer_id.trim();
    if customer_id.is_empty() {
        problems.add("/customerId", "must not be empty");
    } else if let Some(problem) =
        actiondo::validation::text_problem(customer_id, MAX_CUSTOMER_ID_CHARS)
    {
        problems.add("/customerId", problem);
    }

    let currency = input.currency.as_str();
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        problems.add(
            "/currency",
            format!("{currency:?} is not an ISO 4217 code (three upper-case letters, e.g. EUR)"),
        );
    } else {
        match Currency::from_code(currency) {
            None => problems.add(
                "/currency",
                format!("{currency:?} is not an ISO 4217 currency code"),
            ),
            Some(c) if c.exponent().is_none() => problems.add(
                "/currency",
                format!(
                    "{currency} ({}) has no minor unit and cannot be invoiced",
                    c.name()
                ),
            ),
            Some(_) => {}
        }
    }

    if input.lines.is_empty() {
        problems.add("/lines", "an invoice needs at least one line");
    } else if input.lines.len() > MAX_LINES {
        problems.add(
            "/lines",
            format!(
                "an invoice may have at most {MAX_LINES} lines, got {}",
                input.lines.len()
            ),
        );
    }

    let mut lines = Vec::with_capacity(input.lines.len());
    // None once any amount overflowed or is unknown: the total is then not computed.
    let mut total: Option<i64> = Some(0);
    for (i, line) in input.lines.iter().enumerate() {
        let description = line.description.trim();
        if description.is_empty() {
            problems.add(format!("/lines/{i}/description"), "must not be empty");
        } else if description.chars().count() > MAX_DESCRIPTION_CHARS {
            problems.add(
                format!("/lines/{i}/description"),
                format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
            );
        }
        if line.quantity < 1 {
            problems.add(
                format!("/lines/{i}/quantity"),
                format!("must be at least 1, got {}", line.quantity),
            );
            total = None;
            continue;
        }
        match line.quantity.checked_mul(line.unit_amount) {
            None => {
                problems.add(
                    format!("/lines/{i}/unitAmount"),
                    format!(
                        "quantity × unitAmount ({} × {}) overflows a 64-bit amount",
                        line.quantity, line.unit_amount
                    ),
                );
                total = None;
            }
            Some(amount) => {
                lines.push(InvoiceLine {
                    description: description.to_owned(),
                    quantity: line.quantity,
                    unit_amount: line.unit_amount,
                    amount,
                });
                if let Some(t) = total {
                    total = t.checked_add(amount);
                    if total.is_none() {
                        problems.add("/lines", "the invoice total overflows a 64-bit amount");
                    }
                }
            }
        }
    }
    let total = total.unwrap_or_default();
    if total < 0 {
        problems.add(
            "/lines",
            format!("the invoice total must not be negative, got {total}"),
        );
    }

    problems.into_result_with("invalid invoice")?;
    Ok(Checked {
        customer_id: customer_id.to_owned(),
        currency: currency.to_owned(),
        lines,
        total,
    })
}

impl Action for CreateInvoice {
    type Input = CreateInvoiceInput;
    type Output = CreateInvoiceOutput;
    const NAME: &'static str = "create-invoice";
    const DESCRIPTION: &'static str =
        "Creates an invoice with the account's next gapless, sequential number.";

    fn options(&self) -> ActionOptions {
        ActionOptions {
            mode: Mode::Optimistic,
            // Concurrent invoices of one account contend on its counter; re-running in
            // place is cheap (one read), so try a few more times before answering Conflict.
            optimistic_retries: 10,
            ..ActionOptions::default()
        }
    }

    fn validate(&self, input: &CreateInvoiceInput) -> Result<(), ActionError> {
        check(input).map(|_| ())
    }

    async fn execute(
        &self,
        input: CreateInvoiceInput,
        cx: &mut ActionContext,
    ) -> Result<CreateInvoiceOutput, ActionError> {
        let checked = check(&input)?;
        let customer_id = checked.customer_id;

        let counter = counter_key(&customer_id);
        let (last_number, expect) = match cx.get_as::<CounterDoc>(&counter).await? {
            None => (0, Expect::Absent),
            Some((doc, version)) => (doc.last_number, Expect::Version(version)),
        };
        let number = last_number.checked_add(1).ok_or_else(|| {
            ActionError::internal(format!("the invoice counter of {customer_id} is exhausted"))
        })?;
        let invoice_id = invoice_id(&customer_id, number);

        cx.put(
            counter,
            &CounterDoc {
                last_number: number,
            },
            expect,
        )?;
        cx.put(
            invoice_key(&customer_id, number),
            &InvoiceDoc {
                invoice_id: invoice_id.clone(),
                number,
                customer_id: customer_id.clone(),
                currency: checked.currency.clone(),
                lines: checked.lines,
                total: checked.total,
                issued_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                idempotency_key: cx.idempotency_key().to_owned(),
            },
            Expect::Absent,
        )?;

        Ok(CreateInvoiceOutput {
            invoice_id,
            number,
            customer_id,
            currency: checked.currency,
            total: checked.total,
        })
    }
}

#[cfg(test)]
mod tests;
