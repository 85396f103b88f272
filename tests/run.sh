#!/usr/bin/env bash
# tests/run.sh — the one test command of action.do.
#
#   ./tests/run.sh                      install tools, fmt, clippy, template and
#                                       workflow checks, build, then
#                                       `cargo test --workspace` against real servers
#   ./tests/run.sh -- -p actiondo-e2e   same, but the tests of the packages named with -p
#                                       only (the end-to-end suites of tests/e2e)
#   ./tests/run.sh -- store::           same, extra args go to `cargo test`
#   ./tests/run.sh --checks-only        install sam/cfn-lint/asl-validator and run only
#                                       the template and workflow checks (seconds)
#   ./tests/run.sh --servers-only -- CMD [ARGS...]
#                                       install tools, start the servers and run CMD
#                                       with the test environment (no fmt/clippy/build);
#                                       without CMD (and with a terminal) opens a shell
#   ./tests/run.sh --help               the whole description: phases, tools,
#                                       environment, exit status
#
# The orchestration is the xtask (xtask/, `cargo xtask test`; docs/architecture.md §9.1):
# this script builds it (while the network is there) and runs it with the same
# arguments. The xtask re-runs its own binary inside the private network namespace,
# where cargo is only ever called with --offline.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec cargo run --quiet --package xtask -- test "$@"
