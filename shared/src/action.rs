//! The [`Action`] trait, its [`ActionOptions`], the type-erased [`DynAction`] that
//! catalogs (the CLI, `actiondo serve`) hold, and the [`Describe`] of an action without
//! its code that the router's Lambda function holds.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::context::ActionContext;
use crate::error::ActionError;

/// One atomic unit of business work.
///
/// An action declares its input and output types (with JSON Schemas), a stable name and
/// its [`ActionOptions`]; the [`Executor`](crate::Executor) gives every execution
/// idempotency, an audit record and atomic completion.
///
/// # Example
///
/// ```
/// use actiondo::{Action, ActionContext, ActionError, EntityKey, Expect};
/// use schemars::JsonSchema;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Deserialize, JsonSchema)]
/// struct Input { name: String }
///
/// #[derive(Serialize, Deserialize, JsonSchema)]
/// struct Output { greeting: String }
///
/// struct Greet;
///
/// impl Action for Greet {
///     type Input = Input;
///     type Output = Output;
///     const NAME: &'static str = "greet";
///     const DESCRIPTION: &'static str = "Greets someone and remembers it.";
///
///     async fn execute(&self, input: Input, cx: &mut ActionContext) -> Result<Output, ActionError> {
///         // Staged: written only if the whole execution commits.
///         cx.put(EntityKey::new("greeting", &input.name), &serde_json::json!({"n": 1}), Expect::Any)?;
///         Ok(Output { greeting: format!("Hello, {}!", input.name) })
///     }
/// }
/// ```
pub trait Action: Send + Sync + 'static {
    /// The parameters; validated against its JSON Schema before anything is claimed.
    type Input: DeserializeOwned + JsonSchema + Send;
    /// The result; stored as JSON and replayed byte for byte.
    type Output: Serialize + DeserializeOwned + JsonSchema + Send;
    /// The action's name (kebab-case): the namespace of its idempotency records, the
    /// package and the binary name. Never rename it casually: the records are keyed by it.
    const NAME: &'static str;
    /// A one-line description for the catalog.
    const DESCRIPTION: &'static str;

    /// How executions of this action are keyed, leased, retained and audited.
    fn options(&self) -> ActionOptions {
        ActionOptions::default()
    }

    /// Business validation beyond the schema, run before the claim: an error here is a
    /// rejected request (audited, nothing else written).
    fn validate(&self, input: &Self::Input) -> Result<(), ActionError> {
        let _ = input;
        Ok(())
    }

    /// Do the work. Entity writes go through `cx` and commit atomically with the outcome;
    /// external calls should pass [`ActionContext::idempotency_key`] downstream.
    fn execute(
        &self,
        input: Self::Input,
        cx: &mut ActionContext,
    ) -> impl Future<Output = Result<Self::Output, ActionError>> + Send;
}

/// How the idempotency key of an execution is chosen when the caller gives none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyPolicy {
    /// The key is the SHA-256 of the canonical JSON of the input (the default): the
    /// same parameters are the same execution.
    #[default]
    Derived,
    /// The caller must give a key; a request without one is a validation error.
    Required,
}

/// How an execution is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Claim a lease first (one conditional write), run, then commit: safe for actions
    /// with external effects (email, payment). Two store round trips.
    #[default]
    Claim,
    /// Run first, then commit everything in one transaction that fails if the record
    /// exists. Only for actions whose sole effects are staged entity writes. One round trip.
    Optimistic,
}

/// How long an execution may hold its key before another attempt may take it over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    /// The time left before the invocation's deadline (the Lambda's remaining time),
    /// capped at `cap`; `cap` itself when there is no deadline (CLI, tests).
    RemainingTime {
        /// The upper bound, and the lease when there is no deadline.
        cap: Duration,
    },
    /// Always this long.
    Fixed(Duration),
}

impl Default for Lease {
    fn default() -> Self {
        Lease::RemainingTime {
            cap: Duration::from_secs(5 * 60),
        }
    }
}

/// Per-action settings. Build with struct update syntax from the default:
///
/// ```
/// use actiondo::{ActionOptions, KeyPolicy};
/// use std::time::Duration;
/// let opts = ActionOptions {
///     key_policy: KeyPolicy::Required,
///     retention: Duration::from_secs(7 * 24 * 3600),
///     redact: vec!["cardNumber".into()],
///     ..ActionOptions::default()
/// };
/// assert!(opts.audit_replays);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionOptions {
    /// How the key is chosen when the caller gives none.
    pub key_policy: KeyPolicy,
    /// How long a completed or failed outcome is kept and replayed (default 24 h).
    pub retention: Duration,
    /// How long an attempt holds the key.
    pub lease: Lease,
    /// Claim (default) or optimistic.
    pub mode: Mode,
    /// Whether a replay writes a `replayed` audit record (default true; one more write).
    pub audit_replays: bool,
    /// Field names whose values are replaced by `"[REDACTED]"` in audit details, at any depth.
    pub redact: Vec<String>,
    /// How many times an optimistic execution is re-run in place after an entity conflict
    /// (default 3).
    pub optimistic_retries: u32,
    /// What the action does beyond its own records, for callers that choose whether to
    /// run it (agents: the MCP tool annotations, docs/architecture.md §7.6). Default: no
    /// external effect, additive only.
    pub effects: Effects,
}

/// What an execution does to the world, as the action declares it: hints for callers
/// that decide whether to run it, never enforced. The MCP server (`actiondo-mcp`) shows
/// them as a tool's `openWorldHint` and `destructiveHint`.
///
/// ```
/// use actiondo::{ActionOptions, Effects};
/// let opts = ActionOptions {
///     effects: Effects { external: true, ..Effects::default() },
///     ..ActionOptions::default()
/// };
/// assert!(!opts.effects.destructive);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Effects {
    /// It reaches a system outside this deployment's own records — an email provider, a
    /// payment provider, a webhook — whose effect the store cannot take back
    /// (`openWorldHint`). False: its only effects are its staged entity writes.
    pub external: bool,
    /// It may overwrite, remove or reverse existing state (a status change, a release, a
    /// refund), rather than only add new state (`destructiveHint`). Idempotency still
    /// holds: a repeat with the same key changes nothing more.
    pub destructive: bool,
}

impl Default for ActionOptions {
    fn default() -> Self {
        Self {
            key_policy: KeyPolicy::Derived,
            retention: Duration::from_secs(24 * 3600),
            lease: Lease::default(),
            mode: Mode::Claim,
            audit_replays: true,
            redact: Vec::new(),
            optimistic_retries: 3,
            effects: Effects::default(),
        }
    }
}

/// What an action is, without the code that runs it: its name, description, options and
/// JSON Schemas, and the check of params against its input schema.
///
/// Every [`Action`] is a `Describe`. A program that only describes, validates and
/// forwards actions (the router's Lambda function, which invokes each action's own
/// function) holds its actions as `Arc<dyn Describe>` ([`Descriptors`]): its binary then
/// links neither the actions' `execute` nor their business validation, nor what those
/// depend on (docs/architecture.md §8.3).
pub trait Describe: Send + Sync + 'static {
    /// [`Action::NAME`].
    fn name(&self) -> &'static str;
    /// [`Action::DESCRIPTION`].
    fn description(&self) -> &'static str;
    /// [`Action::options`].
    fn options(&self) -> ActionOptions;
    /// The JSON Schema of the input.
    fn input_schema(&self) -> Value;
    /// The JSON Schema of the output.
    fn output_schema(&self) -> Value;
    /// Check `params` against the input JSON Schema only; every violation is listed in the
    /// error's details. [`DynAction::check`] adds deserialization and [`Action::validate`].
    fn check_schema(&self, params: &Value) -> Result<(), ActionError>;
}

/// An [`Action`] with its types erased, so that catalogs can hold many of them: a
/// [`Describe`] that can also run.
///
/// Every `Action` is a `DynAction`; hold them as `Arc<dyn DynAction>` (a [`Catalog`]).
pub trait DynAction: Describe {
    /// Check `params` against the input schema and [`Action::validate`]; every schema
    /// violation is listed in the error's details.
    fn check(&self, params: &Value) -> Result<(), ActionError>;
    /// Deserialize `params`, run the action and serialize its output.
    fn call<'a>(
        &'a self,
        params: &'a Value,
        cx: &'a mut ActionContext,
    ) -> BoxFuture<'a, Result<Box<RawValue>, ActionError>>;
}

/// The compiled input schema of an action type, built once per process.
fn validator<A: Action>() -> &'static Result<jsonschema::Validator, String> {
    // One static per monomorphization is not possible in Rust, so the cache is keyed by
    // the action's name in a process-wide map.
    use std::collections::HashMap;
    use std::sync::Mutex;
    type Cache = Mutex<HashMap<&'static str, &'static Result<jsonschema::Validator, String>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut map = cache.lock().unwrap_or_else(|p| p.into_inner());
    map.entry(A::NAME).or_insert_with(|| {
        let schema = serde_json::to_value(schemars::schema_for!(A::Input))
            .map_err(|e| format!("input schema of {} does not serialize: {e}", A::NAME));
        let compiled =
            schema.and_then(|s| jsonschema::validator_for(&s).map_err(|e| e.to_string()));
        Box::leak(Box::new(compiled))
    })
}

fn parse_input<A: Action>(params: &Value) -> Result<A::Input, ActionError> {
    A::Input::deserialize(params).map_err(|e| {
        ActionError::validation(format!("invalid params for {}: {e}", A::NAME))
            .with_details(serde_json::json!({"errors": [{"path": "", "message": e.to_string()}]}))
    })
}

use serde::Deserialize as _;

impl<A: Action> Describe for A {
    fn name(&self) -> &'static str {
        A::NAME
    }

    fn description(&self) -> &'static str {
        A::DESCRIPTION
    }

    fn options(&self) -> ActionOptions {
        Action::options(self)
    }

    fn input_schema(&self) -> Value {
        serde_json::to_value(schemars::schema_for!(A::Input)).unwrap_or(Value::Null)
    }

    fn output_schema(&self) -> Value {
        serde_json::to_value(schemars::schema_for!(A::Output)).unwrap_or(Value::Null)
    }

    fn check_schema(&self, params: &Value) -> Result<(), ActionError> {
        let validator = validator::<A>()
            .as_ref()
            .map_err(|e| ActionError::internal(e.clone()))?;
        // The common case, valid input, takes the fast path; the errors are collected only
        // when there are some.
        if !validator.is_valid(params) {
            let errors: crate::validation::FieldErrors = validator
                .iter_errors(params)
                .map(|e| (e.instance_path().to_string(), e.to_string()))
                .collect();
            errors.into_result(A::NAME)?;
        }
        Ok(())
    }
}

impl<A: Action> DynAction for A {
    fn check(&self, params: &Value) -> Result<(), ActionError> {
        self.check_schema(params)?;
        let input = parse_input::<A>(params)?;
        Action::validate(self, &input)
    }

    fn call<'a>(
        &'a self,
        params: &'a Value,
        cx: &'a mut ActionContext,
    ) -> BoxFuture<'a, Result<Box<RawValue>, ActionError>> {
        Box::pin(async move {
            let input = parse_input::<A>(params)?;
            let output = Action::execute(self, input, cx).await?;
            // serde_json's own text: JSON by construction, not parsed again to check it.
            serde_json::value::to_raw_value(&output).map_err(|e| {
                ActionError::internal(format!("output of {} does not serialize: {e}", A::NAME))
            })
        })
    }
}

/// A set of actions by name, in one of two forms: a [`Catalog`] of actions that run (the
/// CLI, `actiondo serve`), or the [`Descriptors`] of actions that run elsewhere (the
/// router's Lambda function describes, checks and forwards them).
pub struct ActionSet<A: ?Sized + Describe> {
    actions: std::collections::BTreeMap<&'static str, Arc<A>>,
}

/// A set of actions that run, by name.
pub type Catalog = ActionSet<dyn DynAction>;

/// The descriptions of a set of actions, without the code that runs them (see
/// [`Describe`]); [`Catalog::descriptors`] makes one of a catalog.
pub type Descriptors = ActionSet<dyn Describe>;

impl<A: ?Sized + Describe> Clone for ActionSet<A> {
    fn clone(&self) -> Self {
        Self {
            actions: self.actions.clone(),
        }
    }
}

impl<A: ?Sized + Describe> Default for ActionSet<A> {
    fn default() -> Self {
        Self {
            actions: std::collections::BTreeMap::new(),
        }
    }
}

impl<A: ?Sized + Describe> std::fmt::Debug for ActionSet<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.actions.keys()).finish()
    }
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add an action (replacing one of the same name).
    #[must_use]
    pub fn with(mut self, action: impl DynAction) -> Self {
        self.insert(Arc::new(action));
        self
    }

    /// The descriptions of these actions (the same `Arc`s, seen as [`Describe`]).
    pub fn descriptors(&self) -> Descriptors {
        Descriptors {
            actions: self
                .actions
                .iter()
                .map(|(name, action)| (*name, Arc::clone(action) as Arc<dyn Describe>))
                .collect(),
        }
    }
}

impl Descriptors {
    /// An empty set of descriptions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add an action's description (replacing one of the same name).
    #[must_use]
    pub fn with(mut self, action: impl Describe) -> Self {
        self.insert(Arc::new(action));
        self
    }
}

impl From<Catalog> for Descriptors {
    fn from(catalog: Catalog) -> Self {
        catalog.descriptors()
    }
}

impl<A: ?Sized + Describe> ActionSet<A> {
    /// Add a shared action (replacing one of the same name).
    pub fn insert(&mut self, action: Arc<A>) {
        self.actions.insert(action.name(), action);
    }

    /// The action of that name.
    pub fn get(&self, name: &str) -> Option<&Arc<A>> {
        self.actions.get(name)
    }

    /// The action of that name, or `ActionDo.NotFound` naming the closest known names.
    pub fn resolve(&self, name: &str) -> Result<&Arc<A>, ActionError> {
        self.get(name).ok_or_else(|| {
            let mut near: Vec<(usize, &str)> = self
                .actions
                .keys()
                .map(|k| (edit_distance(name, k), *k))
                .filter(|(d, k)| *d <= k.len().max(name.len()) / 2 || k.contains(name))
                .collect();
            near.sort();
            let suggestions: Vec<&str> = near.into_iter().take(3).map(|(_, k)| k).collect();
            let hint = if suggestions.is_empty() {
                String::new()
            } else {
                format!("; did you mean {}?", suggestions.join(", "))
            };
            ActionError::not_found(format!("no action named {name:?}{hint}"))
                .with_details(serde_json::json!({ "suggestions": suggestions }))
        })
    }

    /// All actions, ordered by name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<A>> {
        self.actions.values()
    }

    /// The number of actions.
    pub fn len(&self) -> usize {
        self.actions.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }
}

/// Levenshtein distance, for "did you mean" hints.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::edit_distance;

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("send-emial", "send-email"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
