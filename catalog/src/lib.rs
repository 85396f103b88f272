//! # actiondo-catalog — every action of action.do, in one place
//!
//! The one list of the action packages under `functions/`, used by the router's Lambda
//! function and by the `actiondo` CLI. It is a crate of its own so that the HTTP API
//! (`actiondo-api`) takes a [`Catalog`] as a value and depends on no action's code: the
//! programs that run the actions (the router's `main`, the CLI) build the catalog here
//! and pass it in.
//!
//! The list is derived, not kept by hand: `build.rs` registers every package under
//! `functions/` but the router, each action by its type, the package name in
//! UpperCamelCase (`accept-order` → `accept_order::AcceptOrder`), built with
//!
//! - its `from_env()` when its `src/lib.rs` defines one — its own, or
//!   [`FromSettings::from_env`] (`impl FromSettings`), which never fails: a missing
//!   setting (say `PAYMENT_API_URL`) surfaces as an error when that action runs;
//! - else `Default::default()`: a settings-free action is a unit struct that derives
//!   `Default`, with no `from_env` to write.
//!
//! Cargo takes dependencies from `Cargo.toml` only, so each action also has its path
//! dependency there; `actiondo new` writes it, and the build stops, naming the line,
//! when the two disagree. Adding an action is `actiondo new <name>` (docs/architecture.md
//! §2).

#[allow(unused_imports)] // used when an action implements FromSettings
use actiondo::config::FromSettings;
use actiondo::{Catalog, Descriptors};

include!(concat!(env!("OUT_DIR"), "/actions.rs"));

/// Every action of action.do: one per package under `functions/` but the router.
// A settings-free action is often a unit struct, built with `Default` like the others.
#[allow(clippy::default_constructed_unit_structs)]
pub fn catalog() -> Catalog {
    register!(Catalog::new())
}

/// The descriptions of every action of [`catalog`], without the code that runs them:
/// what the router's Lambda function, which invokes each action's own function, serves.
/// A program that calls only this links no action's `execute` (docs/architecture.md §8.3).
///
/// The actions are built as [`catalog`] builds them, but what that logs is dropped: an
/// action whose settings are missing here (the router has no `PAYMENT_API_URL`) is not
/// run here, and its own function says so where it runs.
#[allow(clippy::default_constructed_unit_structs)]
pub fn descriptors() -> Descriptors {
    tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
        register!(Descriptors::new())
    })
}
