#!/usr/bin/env bash
# Load test of `actiondo serve` on the embedded SQLite store (issue 5):
# wrk, 64 connections on loopback, POST /actions/score-lead with an API key, first
# for replays of one stored outcome, then for first executions (a new key per request).
#
#   benches/serve.sh [DURATION]      (default 20s per run; needs wrk: apt-get install wrk)
#   ACTIONDO_BENCH_NO_AUTH=1 benches/serve.sh    the same with `serve --no-auth`
#   ACTIONDO_KEY_CACHE_TTL=0 benches/serve.sh    keys read from the store on every request
#                                                (no cache of verified keys; default 30s)
#   ACTIONDO_BENCH_BIN=path/to/actiondo benches/serve.sh
#                                                that binary, not built (paired runs of two
#                                                builds, BENCHMARKS.md)
#
# Builds the CLI with the bench profile (release, thin LTO), starts it in a temporary
# folder (its own store file), creates a key with scope *, and stops it at the end.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${1:-20s}
CONNECTIONS=${ACTIONDO_BENCH_CONNECTIONS:-64}
command -v wrk >/dev/null || { echo "wrk not found (apt-get install wrk)" >&2; exit 1; }

if [ -n "${ACTIONDO_BENCH_BIN:-}" ]; then
    BIN=$(realpath "$ACTIONDO_BENCH_BIN")
else
    cargo build --quiet --profile bench -p actiondo-cli --manifest-path "$ROOT/Cargo.toml"
    BIN="$ROOT/target/release/actiondo"
fi
WORK=$(mktemp -d)
SERVER=
cleanup() {
    [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"

KEY=$("$BIN" keys create --scope '*' --description bench 2>/dev/null)
AUTH=()
[ "${ACTIONDO_BENCH_NO_AUTH:-0}" = 1 ] && AUTH=(--no-auth)
"$BIN" serve --addr 127.0.0.1:0 "${AUTH[@]}" 2>serve.log &
SERVER=$!
for _ in $(seq 100); do grep -q 'listening on' serve.log && break; sleep 0.1; done
URL=$(grep -o 'http://127.0.0.1:[0-9]*' serve.log | head -1)
[ -n "$URL" ] || { cat serve.log >&2; exit 1; }

echo "actiondo serve ${AUTH[*]:-(API keys)} at $URL; wrk -t2 -c$CONNECTIONS -d$DURATION; $(nproc) cores"
echo
echo "== replays (one key, one stored outcome; each replay audited)"
wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$ROOT/benches/serve.lua" "$URL" -- replay "$KEY"
echo
echo "== first executions (a new Idempotency-Key per request: claim + commit)"
wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$ROOT/benches/serve.lua" "$URL" -- first "$KEY"
echo
echo "store after the runs: $(du -h .actiondo/actiondo.db | cut -f1) (+ WAL $(du -h .actiondo/actiondo.db-wal 2>/dev/null | cut -f1))"
