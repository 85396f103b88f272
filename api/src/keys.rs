//! API keys: `Authorization: Bearer <key>` on every route of the router.
//!
//! - A key reads `ado_<id>_<secret>`: `id` is 16 hex digits that name the key (shown by
//!   `actiondo keys list`, used to revoke it); `secret` is 256 random bits in hex. The key
//!   is shown once, when it is created.
//! - Only the SHA-256 of the whole key is stored, in the entity `apikey#<id>` / `key`
//!   ([`KeyRecord`]), with its scope: action-name patterns (`send-*`, `create-user`, `*`) and
//!   workflow patterns (`workflow:user-*`), see [`Scope`].
//!   Checking a key reads that one entity and compares the hashes in constant time
//!   ([`subtle`]), so neither a wrong secret nor a wrong id says how close it was.
//! - Keys are created and revoked by two internal actions ([`CreateApiKey`],
//!   [`RevokeApiKey`]) run by the executor like any other: each change commits atomically
//!   with its idempotency record and an audit record (the hash is redacted from it). They
//!   are not in the catalog and no scope matches them ([`INTERNAL_ACTIONS`]), so no HTTP
//!   route runs, lists or reads them.
//! - The entity `apikeys` / `index` lists the ids, for `actiondo keys list`; it is
//!   updated in the same transaction as the key (entity versions keep concurrent creations
//!   from losing each other).

use std::sync::Arc;

use actiondo::{
    Action, ActionContext, ActionError, ActionOptions, Clock as _, EntityKey, Executor, Expect,
    FieldErrors, Invocation, Mode, Source, Store, SystemClock,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// The prefix of every key.
pub const KEY_PREFIX: &str = "ado";
/// Hex digits of a key's id.
const ID_HEX: usize = 16;
/// Hex digits of a key's secret (256 bits).
const SECRET_HEX: usize = 64;
/// The most patterns one key may have.
const MAX_PATTERNS: usize = 32;
/// How many times a key change that lost the index (or the key) to a concurrent change
/// is run again, after the executor's own in-place re-runs.
const MAX_CONFLICT_RETRIES: u32 = 20;

/// The entity of a key: `apikey#<id>` / `key`.
pub fn key_entity(id: &str) -> EntityKey {
    EntityKey::new(format!("apikey#{id}"), "key")
}

/// The entity listing every key id: `apikeys` / `index`.
pub fn index_entity() -> EntityKey {
    EntityKey::new("apikeys", "index")
}

/// What is stored of a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyRecord {
    /// The key's id (16 hex digits).
    pub id: String,
    /// SHA-256 (hex) of the whole key.
    pub hash: String,
    /// Its patterns: action names (`send-*`) and workflows (`workflow:user-*`).
    pub scope: Vec<String>,
    /// What the key is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When it was revoked (RFC 3339); a revoked key is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

impl KeyRecord {
    /// The key's scope.
    pub fn scope(&self) -> Scope {
        Scope::parse(&self.scope).unwrap_or_else(|_| Scope::none())
    }
}

/// A key's id and scope as shown to people: everything but the hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyInfo {
    /// The key's id.
    pub id: String,
    /// Its patterns: action names (`send-*`) and workflows (`workflow:user-*`).
    pub scope: Vec<String>,
    /// What the key is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// When it was created.
    pub created_at: String,
    /// When it was revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

impl From<&KeyRecord> for KeyInfo {
    fn from(r: &KeyRecord) -> Self {
        Self {
            id: r.id.clone(),
            scope: r.scope.clone(),
            description: r.description.clone(),
            created_at: r.created_at.clone(),
            revoked_at: r.revoked_at.clone(),
        }
    }
}

/// The prefix of a workflow pattern in a scope: `workflow:user-*` opens the workflows whose
/// names match `user-*`.
pub const WORKFLOW_PREFIX: &str = "workflow:";

/// The internal actions (key management): run by the executor and audited like any
/// other, never reachable, listable or readable through the API, whatever the scope
/// (`*` included).
pub const INTERNAL_ACTIONS: [&str; 2] = [CreateApiKey::NAME, RevokeApiKey::NAME];

/// Whether `name` is an internal action ([`INTERNAL_ACTIONS`]).
pub fn is_internal(name: &str) -> bool {
    INTERNAL_ACTIONS.contains(&name)
}

/// What a key may call: glob patterns where `*` stands for any run of characters.
///
/// - Action patterns (`send-*`, `*-lead`, `*`) match action names, on the action routes
///   only; no pattern matches an internal action ([`INTERNAL_ACTIONS`]).
/// - Workflow patterns (`workflow:user-*`, `workflow:*`) match workflow names, on the
///   workflow routes only. An action pattern never opens a workflow, not even `*`: a
///   workflow runs actions of its own choosing, so opening one is a separate grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    actions: Vec<glob::Pattern>,
    workflows: Vec<glob::Pattern>,
}

impl Scope {
    /// Every action and every workflow (`*` and `workflow:*`: no auth).
    pub fn all() -> Self {
        let any = || vec![glob::Pattern::new("*").unwrap_or_default()];
        Self {
            actions: any(),
            workflows: any(),
        }
    }

    /// Nothing.
    pub fn none() -> Self {
        Self {
            actions: Vec::new(),
            workflows: Vec::new(),
        }
    }

    /// Parse patterns made of lower-case letters, digits, `-` and `*`, optionally after
    /// `workflow:`; every problem is named.
    pub fn parse(patterns: &[String]) -> Result<Self, FieldErrors> {
        let mut errors = FieldErrors::new();
        if patterns.is_empty() {
            errors.add(
                "/scope",
                "give at least one pattern (e.g. send-*, * or workflow:user-*)",
            );
        }
        if patterns.len() > MAX_PATTERNS {
            errors.add(
                "/scope",
                format!("at most {MAX_PATTERNS} patterns, got {}", patterns.len()),
            );
        }
        let mut scope = Self::none();
        for (i, p) in patterns.iter().enumerate() {
            let (glob, into) = match p.strip_prefix(WORKFLOW_PREFIX) {
                Some(glob) => (glob, &mut scope.workflows),
                None => (p.as_str(), &mut scope.actions),
            };
            let valid = !glob.is_empty()
                && glob.len() <= 64
                && glob
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '*');
            if !valid {
                errors.add(
                    format!("/scope/{i}"),
                    format!(
                        "{p:?} is not a pattern: use lower-case letters, digits, '-' and '*' (1 to 64 characters), after {WORKFLOW_PREFIX:?} for a workflow"
                    ),
                );
                continue;
            }
            match glob::Pattern::new(glob) {
                Ok(pattern) => into.push(pattern),
                Err(e) => errors.add(format!("/scope/{i}"), e.to_string()),
            }
        }
        if errors.is_empty() {
            Ok(scope)
        } else {
            Err(errors)
        }
    }

    /// Whether the key may call, list and read the action `action` (never an internal one).
    pub fn allows(&self, action: &str) -> bool {
        !is_internal(action) && self.actions.iter().any(|p| p.matches(action))
    }

    /// Whether the key may start and read the workflow `workflow`.
    pub fn allows_workflow(&self, workflow: &str) -> bool {
        self.workflows.iter().any(|p| p.matches(workflow))
    }
}

/// A key that was just created: the key itself (shown once, never stored) and its record.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// `ado_<id>_<secret>`: give it to the caller; it cannot be shown again.
    pub key: String,
    /// What was stored.
    pub info: KeyInfo,
}

/// SHA-256 (hex) of a key.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The id of a well-formed key; `None` for anything else.
fn key_id(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(KEY_PREFIX)?.strip_prefix('_')?;
    let (id, secret) = rest.split_once('_')?;
    (is_hex(id, ID_HEX) && is_hex(secret, SECRET_HEX)).then_some(id)
}

/// `s` is exactly `digits` hex digits.
fn is_hex(s: &str, digits: usize) -> bool {
    s.len() == digits && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Random bytes as hex.
fn random_hex(bytes: usize) -> Result<String, ActionError> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)
        .map_err(|e| ActionError::internal(format!("no randomness for a key: {e}")))?;
    Ok(hex::encode(buf))
}

/// Creates, lists, revokes and checks API keys in a [`Store`].
#[derive(Debug, Clone)]
pub struct KeyStore {
    executor: Executor,
}

impl KeyStore {
    /// Keys in `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            executor: Executor::from_arc(store),
        }
    }

    /// Create a key for `scope`; the key is in the answer and nowhere else.
    pub async fn create(
        &self,
        scope: Vec<String>,
        description: Option<String>,
    ) -> Result<NewKey, ActionError> {
        Scope::parse(&scope).map_err(|e| e.into_error("the key's scope is invalid"))?;
        let id = random_hex(ID_HEX / 2)?;
        let key = format!("{KEY_PREFIX}_{id}_{}", random_hex(SECRET_HEX / 2)?);
        let params = serde_json::to_value(CreateKeyInput {
            id,
            hash: hash_key(&key),
            scope,
            description,
        })
        .map_err(|e| ActionError::internal(e.to_string()))?;
        let info: KeyInfo = self.execute(&CreateApiKey, params).await?;
        Ok(NewKey { key, info })
    }

    /// Revoke the key `id`; revoking a revoked key changes nothing.
    pub async fn revoke(&self, id: &str) -> Result<KeyInfo, ActionError> {
        self.execute(&RevokeApiKey, serde_json::json!({"id": id}))
            .await
    }

    /// Run a key change; run it again while it loses its entity conditions to concurrent
    /// changes (`ActionDo.Conflict`: nothing was written), as a client would.
    async fn execute(
        &self,
        action: &dyn actiondo::DynAction,
        params: serde_json::Value,
    ) -> Result<KeyInfo, ActionError> {
        let mut conflicts = 0;
        loop {
            let execution = self
                .executor
                .execute(action, Invocation::new(params.clone(), Source::Cli))
                .await;
            match &execution.outcome {
                Err(e)
                    if e.kind() == actiondo::ErrorKind::Conflict
                        && conflicts < MAX_CONFLICT_RETRIES =>
                {
                    conflicts += 1;
                    tokio::task::yield_now().await;
                }
                _ => return execution.output(),
            }
        }
    }

    /// Every key, oldest first.
    pub async fn list(&self) -> Result<Vec<KeyInfo>, ActionError> {
        let store = self.executor.store();
        let Some(index) = store.get_entity(&index_entity()).await? else {
            return Ok(Vec::new());
        };
        let index: KeyIndex = serde_json::from_value(index.doc)
            .map_err(|e| ActionError::internal(format!("the key index is corrupt: {e}")))?;
        let mut keys = Vec::with_capacity(index.ids.len());
        for id in &index.ids {
            if let Some(entity) = store.get_entity(&key_entity(id)).await? {
                let record: KeyRecord = serde_json::from_value(entity.doc)
                    .map_err(|e| ActionError::internal(format!("the key {id} is corrupt: {e}")))?;
                keys.push(KeyInfo::from(&record));
            }
        }
        Ok(keys)
    }

    /// The record of a valid, unrevoked `key`; `ActionDo.Unauthorized` for anything else
    /// (malformed, unknown, wrong secret or revoked all read the same).
    pub async fn authenticate(&self, key: &str) -> Result<KeyRecord, ActionError> {
        let refused = || ActionError::unauthorized("the API key is not valid");
        let id = key_id(key).ok_or_else(refused)?;
        let entity = self
            .executor
            .store()
            .get_entity(&key_entity(id))
            .await?
            .ok_or_else(refused)?;
        let record: KeyRecord = serde_json::from_value(entity.doc)
            .map_err(|e| ActionError::internal(format!("the key {id} is corrupt: {e}")))?;
        let matches: bool = hash_key(key)
            .as_bytes()
            .ct_eq(record.hash.as_bytes())
            .into();
        if !matches || record.revoked_at.is_some() {
            return Err(refused());
        }
        Ok(record)
    }
}

/// The entity `apikeys` / `index`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct KeyIndex {
    ids: Vec<String>,
}

/// The input of [`CreateApiKey`].
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateKeyInput {
    /// The new key's id.
    pub id: String,
    /// SHA-256 (hex) of the key.
    pub hash: String,
    /// Its patterns (action names and `workflow:` names).
    pub scope: Vec<String>,
    /// What it is for.
    #[serde(default)]
    pub description: Option<String>,
}

/// Internal action: store a new key (its hash) and add it to the index.
#[derive(Debug, Clone, Copy, Default)]
pub struct CreateApiKey;

impl Action for CreateApiKey {
    type Input = CreateKeyInput;
    type Output = KeyInfo;
    const NAME: &'static str = "create-api-key";
    const DESCRIPTION: &'static str = "Store a new API key (its SHA-256 only) and its scope";

    fn options(&self) -> ActionOptions {
        ActionOptions {
            mode: Mode::Optimistic,
            redact: vec!["hash".to_owned()],
            ..ActionOptions::default()
        }
    }

    fn validate(&self, input: &CreateKeyInput) -> Result<(), ActionError> {
        let mut errors = match Scope::parse(&input.scope) {
            Ok(_) => FieldErrors::new(),
            Err(errors) => errors,
        };
        if !is_hex(&input.id, ID_HEX) {
            errors.add("/id", format!("must be {ID_HEX} hex digits"));
        }
        if !is_hex(&input.hash, 64) {
            errors.add("/hash", "must be a SHA-256 in hex (64 digits)");
        }
        if input.description.as_deref().is_some_and(|d| d.len() > 200) {
            errors.add("/description", "at most 200 characters");
        }
        errors.into_result(Self::NAME)
    }

    async fn execute(
        &self,
        input: CreateKeyInput,
        cx: &mut ActionContext,
    ) -> Result<KeyInfo, ActionError> {
        let record = KeyRecord {
            id: input.id,
            hash: input.hash,
            scope: input.scope,
            description: input.description,
            created_at: actiondo::audit::timestamp(SystemClock.now_ms()),
            revoked_at: None,
        };
        let (mut index, expect) = match cx.get(&index_entity()).await? {
            Some(entity) => (
                serde_json::from_value::<KeyIndex>(entity.doc)
                    .map_err(|e| ActionError::internal(format!("the key index is corrupt: {e}")))?,
                Expect::Version(entity.version),
            ),
            None => (KeyIndex::default(), Expect::Absent),
        };
        index.ids.push(record.id.clone());
        cx.put(key_entity(&record.id), &record, Expect::Absent)?;
        cx.put(index_entity(), &index, expect)?;
        Ok(KeyInfo::from(&record))
    }
}

/// The input of [`RevokeApiKey`].
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeKeyInput {
    /// The id of the key to revoke.
    pub id: String,
}

/// Internal action: mark a key revoked (kept, for the audit trail).
#[derive(Debug, Clone, Copy, Default)]
pub struct RevokeApiKey;

impl Action for RevokeApiKey {
    type Input = RevokeKeyInput;
    type Output = KeyInfo;
    const NAME: &'static str = "revoke-api-key";
    const DESCRIPTION: &'static str = "Revoke an API key";

    fn options(&self) -> ActionOptions {
        ActionOptions {
            mode: Mode::Optimistic,
            ..ActionOptions::default()
        }
    }

    async fn execute(
        &self,
        input: RevokeKeyInput,
        cx: &mut ActionContext,
    ) -> Result<KeyInfo, ActionError> {
        let Some(entity) = cx.get(&key_entity(&input.id)).await? else {
            return Err(
                ActionError::rejected(format!("there is no API key {}", input.id))
                    .with_details(serde_json::json!({"reason": "unknown_key", "id": input.id})),
            );
        };
        let mut record: KeyRecord = serde_json::from_value(entity.doc)
            .map_err(|e| ActionError::internal(format!("the key {} is corrupt: {e}", input.id)))?;
        if record.revoked_at.is_none() {
            record.revoked_at = Some(actiondo::audit::timestamp(SystemClock.now_ms()));
            cx.put(
                key_entity(&record.id),
                &record,
                Expect::Version(entity.version),
            )?;
        }
        Ok(KeyInfo::from(&record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_match_action_names() {
        let scope = Scope::parse(&["send-*".to_owned(), "create-user".to_owned()]).expect("ok");
        assert!(scope.allows("send-email"));
        assert!(scope.allows("send-welcome-email"));
        assert!(scope.allows("create-user"));
        assert!(!scope.allows("create-invoice"));
        assert!(!scope.allows_workflow("send-email"));
        assert!(Scope::all().allows("anything") && Scope::all().allows_workflow("anything"));
        assert!(Scope::parse(&["workflow:".to_owned()]).is_err());
        let bad = Scope::parse(&["Send_*".to_owned(), "[a]".to_owned()]).expect_err("bad");
        assert_eq!(bad.len(), 2);
        assert!(Scope::parse(&[]).is_err());
    }

    #[test]
    fn action_patterns_never_open_workflows_nor_internal_actions() {
        let star = Scope::parse(&["*".to_owned()]).expect("ok");
        assert!(star.allows("create-user"));
        assert!(
            !star.allows_workflow("crm-new-lead"),
            "* is an action pattern"
        );
        assert!(!star.allows("create-api-key") && !star.allows("revoke-api-key"));
        let flows = Scope::parse(&["workflow:user-*".to_owned()]).expect("ok");
        assert!(flows.allows_workflow("user-onboarding"));
        assert!(!flows.allows_workflow("crm-new-lead"));
        assert!(
            !flows.allows("user-onboarding"),
            "a workflow pattern opens no action"
        );
        let lead = Scope::parse(&["*-lead".to_owned()]).expect("ok");
        assert!(!lead.allows_workflow("crm-new-lead"));
        assert!(!Scope::all().allows("create-api-key"));
        assert!(Scope::parse(&["workflow:User".to_owned()]).is_err());
    }

    #[test]
    fn only_well_formed_keys_have_an_id() {
        let id = "0123456789abcdef";
        let secret = "f".repeat(SECRET_HEX);
        assert_eq!(key_id(&format!("ado_{id}_{secret}")), Some(id));
        assert_eq!(key_id(&format!("xyz_{id}_{secret}")), None);
        assert_eq!(key_id(&format!("ado_{id}_{}", &secret[1..])), None);
        assert_eq!(key_id(&format!("ado_{id}")), None);
        assert_eq!(key_id(""), None);
    }
}
