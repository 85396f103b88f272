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
//! - A key may expire (`expiresAt`, set at creation from a duration such as `30d`,
//!   [`parse_duration`]): from then on it answers 401 `ActionDo.Unauthorized` saying that it
//!   expired (only to whoever holds the whole key: the hash is checked first).
//! - When a key was last used is kept in its own entity, `apikey#<id>` / `used`, written
//!   at most once a minute per key ([`LAST_USED_EVERY`]): each process remembers when it
//!   last wrote it, and the write itself is conditional on the version it read
//!   ([`Store::put_entity`]), so processes that race write it once. It is bookkeeping, not
//!   a unit of work: no idempotency or audit record.
//! - Verified keys are cached in the process for [`DEFAULT_CACHE_TTL`] (configurable,
//!   [`KeyStore::with_cache_ttl`]): a key revoked by another process (`actiondo keys revoke`
//!   while `actiondo serve` runs, or the router's other Lambda instances) still works
//!   until its entry is that old; revoked through the same [`KeyStore`] (or a clone), it is
//!   refused at once. Expiry is checked on every request, cached or not.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use actiondo::{
    Action, ActionContext, ActionError, ActionOptions, Clock, EntityKey, Executor, Expect,
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

/// The entity recording when the key `id` was last used: `apikey#<id>` / `used`.
pub fn used_entity(id: &str) -> EntityKey {
    EntityKey::new(format!("apikey#{id}"), "used")
}

/// How long a verified key is trusted without reading its record again, unless
/// configured ([`KeyStore::with_cache_ttl`], `ACTIONDO_KEY_CACHE_TTL`): the longest a key
/// revoked by another process still works.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(30);

/// The environment variable that sets the key cache's TTL (`30s`, `2m`, `0` for none).
pub const CACHE_TTL_ENV: &str = "ACTIONDO_KEY_CACHE_TTL";

/// A key's last use is written at most this often.
pub const LAST_USED_EVERY: Duration = Duration::from_secs(60);

/// The longest expiry a key may be given (about ten years).
pub const MAX_EXPIRES_IN: Duration = Duration::from_secs(3650 * 86_400);

/// Parse a humane duration: a whole number and a unit, `s`, `m`, `h` or `d` (`90s`,
/// `15m`, `12h`, `30d`); `0` alone is zero. The error says what is expected.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let bad = || {
        format!(
            "{text:?} is not a duration: write a whole number and a unit, s, m, h or d (90s, 15m, 12h, 30d)"
        )
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    number
        .checked_mul(seconds)
        .map(Duration::from_secs)
        .ok_or_else(bad)
}

/// Parse the expiry of a new key ([`parse_duration`]): more than zero, at most
/// [`MAX_EXPIRES_IN`].
pub fn parse_expires_in(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text)?;
    if duration.is_zero() {
        return Err(format!("{text:?}: a key must live longer than that"));
    }
    if duration > MAX_EXPIRES_IN {
        return Err(format!(
            "{text:?}: at most {}d",
            MAX_EXPIRES_IN.as_secs() / 86_400
        ));
    }
    Ok(duration)
}

/// The key cache's TTL from `ACTIONDO_KEY_CACHE_TTL` in `settings`, [`DEFAULT_CACHE_TTL`]
/// when unset.
pub fn cache_ttl(settings: &actiondo::config::Settings) -> Result<Duration, String> {
    match settings.get_str(CACHE_TTL_ENV) {
        Some(value) => parse_duration(value).map_err(|e| format!("{CACHE_TTL_ENV}: {e}")),
        None => Ok(DEFAULT_CACHE_TTL),
    }
}

/// Milliseconds of a duration, saturating.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Unix milliseconds of an RFC 3339 time.
fn parse_time(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
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
    /// When it expires (RFC 3339); from then on it is refused. `None`: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
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
    /// When it expires (`None`: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Whether it had expired when it was listed (`actiondo keys list`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expired: bool,
    /// When it was last used, to the minute ([`LAST_USED_EVERY`]); `None`: never, or not
    /// listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
}

impl From<&KeyRecord> for KeyInfo {
    fn from(r: &KeyRecord) -> Self {
        Self {
            id: r.id.clone(),
            scope: r.scope.clone(),
            description: r.description.clone(),
            created_at: r.created_at.clone(),
            revoked_at: r.revoked_at.clone(),
            expires_at: r.expires_at.clone(),
            expired: false,
            last_used_at: None,
        }
    }
}

/// A key that passed [`KeyStore::authenticate`]: its record, its parsed scope and the
/// caller it is recorded as.
#[derive(Debug, Clone)]
pub struct VerifiedKey {
    /// What is stored of it.
    pub record: KeyRecord,
    /// Its scope, parsed once.
    pub scope: Scope,
    /// `apikey:<id>`: the invocation's caller.
    pub caller: String,
    /// When it expires, Unix milliseconds.
    expires_at_ms: Option<i64>,
}

impl VerifiedKey {
    fn new(record: KeyRecord) -> Result<Self, ActionError> {
        let expires_at_ms = match &record.expires_at {
            Some(text) => Some(parse_time(text).ok_or_else(|| {
                ActionError::internal(format!(
                    "the key {} has an unreadable expiry {text:?}",
                    record.id
                ))
            })?),
            None => None,
        };
        Ok(Self {
            scope: record.scope(),
            caller: format!("apikey:{}", record.id),
            record,
            expires_at_ms,
        })
    }

    /// Whether the key has expired at `now_ms`.
    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.expires_at_ms.is_some_and(|at| now_ms >= at)
    }
}

/// A verified key and when its record was read.
#[derive(Debug)]
struct Cached {
    key: Arc<VerifiedKey>,
    read_at_ms: i64,
}

/// What a [`KeyStore`] and its clones share in the process.
#[derive(Debug, Default)]
struct KeyCache {
    /// Verified keys by id (only keys whose hash matched: at most one entry per valid
    /// key, so the map needs no other bound).
    verified: RwLock<HashMap<String, Cached>>,
    /// When this process last wrote each key's last use, Unix milliseconds.
    touched: Mutex<HashMap<String, i64>>,
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

/// The API key of a request: the token of its `Authorization: Bearer <key>` header, or
/// `ActionDo.Unauthorized` saying how to send one. Every front end that takes keys (the
/// routes, `/mcp`) reads it here.
pub fn bearer_token(headers: &http::HeaderMap) -> Result<&str, ActionError> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .ok_or_else(|| ActionError::unauthorized("send an API key: Authorization: Bearer <key>"))
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

/// Creates, lists, revokes and checks API keys in a [`Store`]. Clones share the cache of
/// verified keys.
#[derive(Debug, Clone)]
pub struct KeyStore {
    executor: Executor,
    clock: Arc<dyn Clock>,
    cache_ttl_ms: i64,
    cache: Arc<KeyCache>,
}

impl KeyStore {
    /// Keys in `store`, verified keys cached for [`DEFAULT_CACHE_TTL`].
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            executor: Executor::from_arc(store),
            clock: Arc::new(SystemClock),
            cache_ttl_ms: millis(DEFAULT_CACHE_TTL),
            cache: Arc::default(),
        }
    }

    /// Trust a verified key for `ttl` before reading its record again (zero: read it on
    /// every request). This bounds how long a key revoked by another process still works.
    pub fn with_cache_ttl(mut self, ttl: Duration) -> Self {
        self.cache_ttl_ms = millis(ttl);
        self
    }

    /// Tell time with `clock` (expiry, the cache's TTL, last use), for tests.
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Create a key for `scope` that never expires; the key is in the answer and nowhere
    /// else.
    pub async fn create(
        &self,
        scope: Vec<String>,
        description: Option<String>,
    ) -> Result<NewKey, ActionError> {
        self.create_expiring(scope, description, None).await
    }

    /// Create a key for `scope`, expiring `expires_in` from now when given (at most
    /// [`MAX_EXPIRES_IN`]).
    pub async fn create_expiring(
        &self,
        scope: Vec<String>,
        description: Option<String>,
        expires_in: Option<Duration>,
    ) -> Result<NewKey, ActionError> {
        Scope::parse(&scope).map_err(|e| e.into_error("the key's scope is invalid"))?;
        let expires_at = match expires_in {
            Some(d) if d.is_zero() || d > MAX_EXPIRES_IN => {
                let mut errors = FieldErrors::new();
                errors.add(
                    "/expiresIn",
                    format!(
                        "more than zero and at most {}d",
                        MAX_EXPIRES_IN.as_secs() / 86_400
                    ),
                );
                return Err(errors.into_error("the key's expiry is invalid"));
            }
            Some(d) => Some(actiondo::audit::timestamp(
                self.clock.now_ms().saturating_add(millis(d)),
            )),
            None => None,
        };
        let id = random_hex(ID_HEX / 2)?;
        let key = format!("{KEY_PREFIX}_{id}_{}", random_hex(SECRET_HEX / 2)?);
        let params = serde_json::to_value(CreateKeyInput {
            id,
            hash: hash_key(&key),
            scope,
            description,
            expires_at,
        })
        .map_err(|e| ActionError::internal(e.to_string()))?;
        let info: KeyInfo = self.execute(&CreateApiKey, params).await?;
        Ok(NewKey { key, info })
    }

    /// Revoke the key `id`; revoking a revoked key changes nothing. Requests through this
    /// store (and its clones) refuse the key at once.
    pub async fn revoke(&self, id: &str) -> Result<KeyInfo, ActionError> {
        let revoked = self
            .execute(&RevokeApiKey, serde_json::json!({"id": id}))
            .await;
        self.forget(id);
        revoked
    }

    /// Drop the cached verification of the key `id`.
    fn forget(&self, id: &str) {
        self.cache
            .verified
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
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
                let mut info = KeyInfo::from(&record);
                info.expired = VerifiedKey::new(record)?.is_expired(self.clock.now_ms());
                info.last_used_at = store
                    .get_entity(&used_entity(id))
                    .await?
                    .and_then(|used| serde_json::from_value::<LastUsed>(used.doc).ok())
                    .map(|used| used.last_used_at);
                keys.push(info);
            }
        }
        Ok(keys)
    }

    /// The verified key of a valid, unrevoked, unexpired `key`; `ActionDo.Unauthorized`
    /// for anything else (malformed, unknown, wrong secret or revoked all read the same;
    /// an expired key says so). A key verified less than the cache's TTL ago is not read
    /// again; its last use is recorded at most once a minute.
    pub async fn authenticate(&self, key: &str) -> Result<Arc<VerifiedKey>, ActionError> {
        let refused = || ActionError::unauthorized("the API key is not valid");
        let id = key_id(key).ok_or_else(refused)?;
        let now = self.clock.now_ms();
        let verified = match self.cached(id, now) {
            Some(verified) => verified,
            None => {
                let entity = self
                    .executor
                    .store()
                    .get_entity(&key_entity(id))
                    .await?
                    .ok_or_else(refused)?;
                let record: KeyRecord = serde_json::from_value(entity.doc)
                    .map_err(|e| ActionError::internal(format!("the key {id} is corrupt: {e}")))?;
                if record.revoked_at.is_some() || !same_hash(key, &record.hash) {
                    return Err(refused());
                }
                let verified = Arc::new(VerifiedKey::new(record)?);
                if self.cache_ttl_ms > 0 {
                    self.cache
                        .verified
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(
                            id.to_owned(),
                            Cached {
                                key: Arc::clone(&verified),
                                read_at_ms: now,
                            },
                        );
                }
                verified
            }
        };
        // The hash again for a cached entry: it was verified for the key that filled it.
        if !same_hash(key, &verified.record.hash) {
            return Err(refused());
        }
        if verified.is_expired(now) {
            let at = verified.record.expires_at.clone().unwrap_or_default();
            return Err(ActionError::unauthorized(format!(
                "the API key expired at {at}; ask for a new one"
            ))
            .with_details(serde_json::json!({"reason": "expired", "expiredAt": at})));
        }
        self.touch(id, now).await;
        Ok(verified)
    }

    /// The cached verification of `id`, if younger than the TTL.
    fn cached(&self, id: &str, now_ms: i64) -> Option<Arc<VerifiedKey>> {
        let cache = self
            .cache
            .verified
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let entry = cache.get(id)?;
        (now_ms.saturating_sub(entry.read_at_ms) < self.cache_ttl_ms)
            .then(|| Arc::clone(&entry.key))
    }

    /// Record that `id` was used at `now_ms`, unless this process did within
    /// [`LAST_USED_EVERY`]; the write is conditional on the version read, and skipped when
    /// another process wrote it within the minute. Failures are logged, never answered:
    /// the request goes on.
    async fn touch(&self, id: &str, now_ms: i64) {
        let every = millis(LAST_USED_EVERY);
        {
            let mut touched = self.cache.touched.lock().unwrap_or_else(|p| p.into_inner());
            if touched
                .get(id)
                .is_some_and(|at| now_ms.saturating_sub(*at) < every)
            {
                return;
            }
            // Taken before the write: concurrent requests of this process skip it.
            touched.insert(id.to_owned(), now_ms);
        }
        let store = self.executor.store();
        let key = used_entity(id);
        let result = async {
            let expect = match store.get_entity(&key).await? {
                Some(entity) => {
                    let recent = serde_json::from_value::<LastUsed>(entity.doc)
                        .ok()
                        .and_then(|used| parse_time(&used.last_used_at))
                        .is_some_and(|at| now_ms.saturating_sub(at) < every);
                    if recent {
                        return Ok(false);
                    }
                    Expect::Version(entity.version)
                }
                None => Expect::Absent,
            };
            let doc = serde_json::json!({"lastUsedAt": actiondo::audit::timestamp(now_ms)});
            store.put_entity(&key, &doc, expect).await
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(key = id, error = %e, "the key's last use was not recorded");
        }
    }
}

/// The document of `apikey#<id>` / `used`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LastUsed {
    last_used_at: String,
}

/// Whether `key` hashes to `hash`, compared in constant time.
fn same_hash(key: &str, hash: &str) -> bool {
    hash_key(key).as_bytes().ct_eq(hash.as_bytes()).into()
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
    /// When it expires (RFC 3339), if ever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
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
        if input
            .expires_at
            .as_deref()
            .is_some_and(|t| parse_time(t).is_none())
        {
            errors.add("/expiresAt", "must be an RFC 3339 time");
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
            expires_at: input.expires_at,
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
    fn durations_are_a_number_and_a_unit() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration(" 12h "), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(2_592_000)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in [
            "",
            "30",
            "d",
            "1.5h",
            "-1d",
            "30 d",
            "30D",
            "1w",
            "3dd",
            "99999999999999999999d",
        ] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(err.contains("s, m, h or d"), "{bad}: {err}");
        }
        assert!(parse_expires_in("0s").is_err());
        assert!(parse_expires_in("3651d").is_err());
        assert_eq!(parse_expires_in("3650d"), Ok(MAX_EXPIRES_IN));
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
