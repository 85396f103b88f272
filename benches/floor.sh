#!/usr/bin/env bash
# The executor at the wire's floor (issue 13 item 2; BENCHMARKS.md, "At the floor"):
# actiondo's executor on DynamoDB Local against the raw SDK sending the same requests,
# paired in one run (shared/benches/floor.rs). Builds the bench profile (opt-level 3) first,
# outside the servers' network namespace, then runs it with DynamoDB Local started.
#
#   benches/floor.sh
#   ACTIONDO_FLOOR_N=500 ACTIONDO_FLOOR_ROUNDS=3 ACTIONDO_FLOOR_WARMUP=300 benches/floor.sh
set -euo pipefail
cd "$(dirname "$0")/.."

cargo bench --offline -p actiondo --bench floor --no-run
uptime
./tests/run.sh --servers-only -- cargo bench --offline -p actiondo --bench floor
uptime
