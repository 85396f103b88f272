//! The protocol pinned to the millisecond and the byte on the embedded store
//! (docs/testing.md): the executor's times and its answers to each store outcome, the
//! stored forms of records, the limits of docs/architecture.md §4.6, the SQLite file.
//!
//! One test binary for all four, so that a mutation run links one binary, not four.

mod executor;
mod limits;
mod records;
mod sqlite;
