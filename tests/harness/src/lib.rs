//! # actiondo-harness — the process management of the test command and the e2e harness
//!
//! What the test command (`cargo xtask test`, behind `./tests/run.sh`; docs/architecture.md
//! §9.1) and the end-to-end harness (`tests/e2e`, §9.3) both do with processes, in one
//! place and with std and `rustix` only (no async runtime, no AWS SDK), so that the xtask
//! builds in seconds:
//!
//! - [`process::Group`]: a child spawned in a process group of its own, output to a log
//!   file, stopped on drop — `SIGTERM` to the group, a grace period, then `SIGKILL` to
//!   whatever of its process tree (recorded from `/proc` before the stop) is left;
//!   readiness waits that fail early, with the log's tail, when the process ends;
//! - [`process::stop_tree`]: the same stop for a child that shares our process group (a
//!   command in the terminal's foreground);
//! - [`net`]: free loopback ports, "does it accept connections", "does it answer HTTP";
//! - [`pids`]: the pid files of `ACTIONDO_E2E_PID_DIR`, by which the test command stops
//!   the process groups a test binary killed outright left behind.

pub mod net;
pub mod pids;
pub mod process;

pub use pids::{PID_DIR_ENV, PidFile};
pub use process::Group;
