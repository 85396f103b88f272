#!/usr/bin/env bash
# Start-up of a release action binary (BENCHMARKS.md, "Lambda binaries: Start-up"):
# process start to its first request for work from the Runtime API, and to its first answer.
#
#   benches/lambda-startup.sh [FUNCTION] [RUNS]     (default: create-user 100)
#
# 1. An event the binary refuses before touching the store: start-up alone.
# 2. A direct invocation on DynamoDB Local (started by ./tests/run.sh --servers-only, in its
#    network namespace), the same key every run, so every first answer is a replay: the
#    SDK client's first connection, a claim UpdateItem and the `replayed` audit PutItem.
set -euo pipefail
cd "$(dirname "$0")/.."

FUNCTION=${1:-create-user}
RUNS=${2:-100}
TABLES=(--env ACTIONDO_IDEMPOTENCY_TABLE=startup-idempotency
        --env ACTIONDO_AUDIT_TABLE=startup-audit
        --env ACTIONDO_ENTITIES_TABLE=startup-entities)

if [ "${ACTIONDO_STARTUP_INSIDE:-}" = 1 ]; then
    export AWS_ENDPOINT_URL_DYNAMODB=$ACTIONDO_TEST_DYNAMODB_LOCAL_URL
    export ACTIONDO_IDEMPOTENCY_TABLE=startup-idempotency ACTIONDO_AUDIT_TABLE=startup-audit \
        ACTIONDO_ENTITIES_TABLE=startup-entities
    target/debug/actiondo tables create
    target/release/lambda-startup --runs "$RUNS" "${TABLES[@]}" \
        --env "AWS_ENDPOINT_URL_DYNAMODB=$AWS_ENDPOINT_URL_DYNAMODB" \
        --event '{"params":{"email":"ada@example.com","name":"Ada"},"idempotencyKey":"startup-1"}' \
        "target/release/$FUNCTION"
    exit 0
fi

cargo build --release -p "$FUNCTION" --bin "$FUNCTION"
cargo build --release -p actiondo-e2e --bin lambda-startup
cargo build -p actiondo-cli --bin actiondo

echo "== $FUNCTION: an event refused before the store"
target/release/lambda-startup --runs "$RUNS" "${TABLES[@]}" \
    --event '{"Records":[{"eventSource":"aws:s3"}]}' "target/release/$FUNCTION"

echo "== $FUNCTION: a replay on DynamoDB Local"
ACTIONDO_STARTUP_INSIDE=1 ./tests/run.sh --servers-only -- "$0" "$FUNCTION" "$RUNS"
