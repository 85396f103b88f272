#!/usr/bin/env bash
# Executions per second of one Lambda process at concurrency 1, 8 and 64 (Lambda Managed
# Instances' AWS_LAMBDA_MAX_CONCURRENCY), on DynamoDB Local (BENCHMARKS.md, "Concurrent
# invocations per process"). The process runs `actiondo::run`, i.e. lambda_runtime's
# run_concurrent; tests/e2e/src/bin/lambda-throughput.rs is the Runtime API.
#
#   benches/lambda-throughput.sh [FUNCTION] [INVOCATIONS]   (default: create-user 2000)
set -euo pipefail
cd "$(dirname "$0")/.."

FUNCTION=${1:-create-user}
INVOCATIONS=${2:-2000}

if [ "${ACTIONDO_THROUGHPUT_INSIDE:-}" = 1 ]; then
    export AWS_ENDPOINT_URL_DYNAMODB=$ACTIONDO_TEST_DYNAMODB_LOCAL_URL
    export ACTIONDO_IDEMPOTENCY_TABLE=throughput-idempotency ACTIONDO_AUDIT_TABLE=throughput-audit \
        ACTIONDO_ENTITIES_TABLE=throughput-entities
    target/debug/actiondo tables create
    target/release/lambda-throughput --invocations "$INVOCATIONS" \
        --env "AWS_ENDPOINT_URL_DYNAMODB=$AWS_ENDPOINT_URL_DYNAMODB" \
        --env ACTIONDO_IDEMPOTENCY_TABLE=throughput-idempotency \
        --env ACTIONDO_AUDIT_TABLE=throughput-audit \
        --env ACTIONDO_ENTITIES_TABLE=throughput-entities \
        "target/release/$FUNCTION"
    exit 0
fi

cargo build --release -p "$FUNCTION" --bin "$FUNCTION"
cargo build --release -p actiondo-e2e --bin lambda-throughput
cargo build -p actiondo-cli --bin actiondo
ACTIONDO_THROUGHPUT_INSIDE=1 ./tests/run.sh --servers-only -- "$0" "$FUNCTION" "$INVOCATIONS"
