//! # assign-owner — round-robin owner assignment for CRM contacts
//!
//! ```json
//! {"contactId": "c_6f1d0c8e2b7a4a10"}
//! ```
//!
//! returns
//!
//! ```json
//! {"contactId": "c_6f1d0c8e2b7a4a10", "owner": "bo@sales.example", "turn": 7, "alreadyAssigned": false}
//! ```
//!
//! ## How turns are taken
//!
//! The round-robin list is one entity, `owners` / `round-robin`:
//! `{"owners": ["ann@…", "bo@…", "cy@…"], "next": 7}`. An assignment takes turn `next`,
//! gives the contact `owners[next % owners.len()]` and stages `next + 1` with
//! `Expect::Version(v)` of the version it read (`Expect::Absent` when it seeds the list).
//! The contact's assignment is staged as its own entity, `assignment#<contactId>` /
//! `owner` (`{"contactId", "owner", "turn", "assignedAt"}`), with `Expect::Absent`. Both
//! commit in the completion transaction, so:
//!
//! - two concurrent assignments can never take the same turn: the loser's transaction
//!   writes nothing and it is re-run in place (optimistic mode) or answered
//!   `ActionDo.Conflict` (retryable) when the in-place retries run out;
//! - a contact is assigned once: assigning an already-assigned contact (under any
//!   idempotency key) returns its existing owner and turn with `alreadyAssigned: true`,
//!   and takes no turn.
//!
//! ## Configuration
//!
//! - `OWNERS`: the owners, comma-separated (`ann@sales.example,bo@sales.example`); blanks
//!   are dropped, order is kept, and a name listed twice gets two turns per round. Only
//!   used to **seed** the list the first time: once the `owners` / `round-robin` entity
//!   exists it is the source of truth (edit it to change the rotation). Required until
//!   then: without it and without the entity, an assignment fails with
//!   `ActionDo.Internal` (a deployment error; retryable once it is fixed).

use actiondo::{
    Action, ActionContext, ActionError, ActionOptions, EntityKey, Expect, FieldErrors, Mode,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The environment variable that seeds the owner list.
pub const OWNERS_ENV: &str = "OWNERS";

/// The longest contact id, in characters.
pub const MAX_CONTACT_ID_CHARS: usize = 200;

/// The input of `assign-owner`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AssignOwnerInput {
    /// The contact to assign (e.g. the `contactId` of `create-or-update-contact`).
    pub contact_id: String,
}

/// The output of `assign-owner`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AssignOwnerOutput {
    /// The contact (trimmed).
    pub contact_id: String,
    /// Its owner.
    pub owner: String,
    /// The round-robin turn that gave it this owner (0 for the first assignment ever).
    pub turn: u64,
    /// Whether the contact already had this owner before this execution.
    pub already_assigned: bool,
}

/// The round-robin entity's document (`owners` / `round-robin`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoundRobinDoc {
    /// The owners, in rotation order.
    pub owners: Vec<String>,
    /// The next turn number.
    pub next: u64,
}

/// A contact's assignment entity's document (`assignment#<contactId>` / `owner`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignmentDoc {
    /// The contact.
    pub contact_id: String,
    /// Its owner.
    pub owner: String,
    /// The turn taken.
    pub turn: u64,
    /// When it was assigned (RFC 3339, UTC).
    pub assigned_at: String,
}

/// The key of the round-robin entity.
pub fn round_robin_key() -> EntityKey {
    EntityKey::new("owners", "round-robin")
}

/// The key of a contact's assignment entity.
pub fn assignment_key(contact_id: &str) -> EntityKey {
    EntityKey::new(format!("assignment#{contact_id}"), "owner")
}

/// Parse an `OWNERS` value: comma-separated, trimmed, blanks dropped, order kept.
pub fn parse_owners(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The `assign-owner` action.
#[derive(Debug, Clone, Default)]
pub struct AssignOwner {
    /// The list that seeds the round-robin entity when it does not exist yet.
    seed: Option<Vec<String>>,
}

impl AssignOwner {
    /// The action with these owners as the seed of the rotation (an empty list is no seed).
    pub fn new<I, S>(owners: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let owners: Vec<String> = owners
            .into_iter()
            .map(Into::into)
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        Self {
            seed: (!owners.is_empty()).then_some(owners),
        }
    }

    /// The action without a seed: it works only once the round-robin entity exists.
    pub fn without_seed() -> Self {
        Self { seed: None }
    }

    /// The action configured from `OWNERS` (see the crate docs).
    pub fn from_env() -> Self {
        match std::env::var(OWNERS_ENV) {
            Ok(value) => Self::new(parse_owners(&value)),
            Err(_) => Self::without_seed(),
        }
    }

    /// The seed list, if any.
    pub fn seed(&self) -> Option<&[String]> {
        self.seed.as_deref()
    }
}

fn check(input: &AssignOwnerInput) -> Result<String, ActionError> {
    let contact_id = input.contact_id.trim();
    let problem = if contact_id.is_empty() {
        Some("must not be empty".to_owned())
    } else {
        actiondo::validation::text_problem(contact_id, MAX_CONTACT_ID_CHARS)
    };
    match problem {
        None => Ok(contact_id.to_owned()),
        Some(message) => Err(FieldErrors::new()
            .with("/contactId", message)
            .into_error("invalid assignment")),
    }
}

impl Action for AssignOwner {
    type Input = AssignOwnerInput;
    type Output = AssignOwnerOutput;
    const NAME: &'static str = "assign-owner";
    const DESCRIPTION: &'static str =
        "Assigns a contact to the next owner of the round-robin list (once per contact).";

    fn options(&self) -> ActionOptions {
        ActionOptions {
            mode: Mode::Optimistic,
            // Every assignment contends on the one round-robin entity.
            optimistic_retries: 10,
            ..ActionOptions::default()
        }
    }

    fn validate(&self, input: &AssignOwnerInput) -> Result<(), ActionError> {
        check(input).map(|_| ())
    }

    async fn execute(
        &self,
        input: AssignOwnerInput,
        cx: &mut ActionContext,
    ) -> Result<AssignOwnerOutput, ActionError> {
        let contact_id = check(&input)?;
        let assignment = assignment_key(&contact_id);
        if let Some((existing, _)) = cx.get_as::<AssignmentDoc>(&assignment).await? {
            return Ok(AssignOwnerOutput {
                contact_id,
                owner: existing.owner,
                turn: existing.turn,
                already_assigned: true,
            });
        }

        let rr_key = round_robin_key();
        let (rotation, expect) = match cx.get_as::<RoundRobinDoc>(&rr_key).await? {
            Some((doc, version)) => (doc, Expect::Version(version)),
            None => match &self.seed {
                Some(owners) => (
                    RoundRobinDoc {
                        owners: owners.clone(),
                        next: 0,
                    },
                    Expect::Absent,
                ),
                None => {
                    return Err(ActionError::internal(format!(
                        "no owners to assign to: set {OWNERS_ENV} (comma-separated) to seed the round-robin list {rr_key}"
                    )));
                }
            },
        };
        let count = u64::try_from(rotation.owners.len()).unwrap_or(u64::MAX);
        let turn = rotation.next;
        let owner = usize::try_from(turn % count.max(1))
            .ok()
            .and_then(|i| rotation.owners.get(i))
            .cloned()
            .ok_or_else(|| {
                ActionError::internal(format!("the round-robin list {rr_key} has no owners"))
            })?;
        let next = turn.checked_add(1).ok_or_else(|| {
            ActionError::internal(format!(
                "the round-robin turn counter {rr_key} is exhausted"
            ))
        })?;

        cx.put(
            rr_key,
            &RoundRobinDoc {
                owners: rotation.owners,
                next,
            },
            expect,
        )?;
        cx.put(
            assignment,
            &AssignmentDoc {
                contact_id: contact_id.clone(),
                owner: owner.clone(),
                turn,
                assigned_at: chrono::Utc::now()
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            },
            Expect::Absent,
        )?;
        Ok(AssignOwnerOutput {
            contact_id,
            owner,
            turn,
            already_assigned: false,
        })
    }
}

#[cfg(test)]
mod tests;
