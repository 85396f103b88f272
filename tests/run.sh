#!/usr/bin/env bash
# tests/run.sh — the one test command of action.do.
#
#   ./tests/run.sh                      install tools, fmt, clippy, template and
#                                       workflow checks, build, then
#                                       `cargo test --workspace` against real servers
#   ./tests/run.sh -- -p actiondo-e2e   same, but the tests of the packages named with -p
#                                       only (here the end-to-end suites of tests/e2e: the
#                                       function binaries under `cargo lambda watch`)
#   ./tests/run.sh -- store::           same, extra args go to `cargo test`
#   ./tests/run.sh --checks-only        install sam/cfn-lint/asl-validator and run only
#                                       the template and workflow checks (seconds)
#   ./tests/run.sh --servers-only -- CMD [ARGS...]
#                                       install tools, start the servers and run CMD
#                                       with the test environment (no fmt/clippy/build);
#                                       without CMD (and with a terminal) opens a shell
#
# What it does (design: docs/architecture.md §9, "Local and test infrastructure"):
#   1. Installs test tools idempotently under .tools/ (git-ignored):
#        .tools/dynamodb-local/  DynamoDBLocal.jar + DynamoDBLocal_lib (from the npm
#                                package amplify-dynamodb-simulator)
#        .tools/venv/            Python venv with moto[server], cfn-lint, cargo-lambda
#                                (and the zig it cross-compiles with)
#        .tools/venv-sam/        Python venv with aws-sam-cli (own venv: it pins its deps)
#        .tools/node/            npm prefix with asl-validator
#        .tools/mcp-venv/        Python venv with the official MCP SDK (MCP client tests)
#        .tools/bin/             symlinks to every installed tool (put on PATH for tests)
#        chromium, chromium-driver  Debian packages (apt-get), for the console's
#                                browser test (cli/tests/console_browser.rs)
#        .tools/logs/            server logs and the last cargo test output
#   2. cargo fmt --check, cargo clippy -D warnings, then the template and workflow
#      checks, all offline (dummy credentials, region us-east-1, no telemetry):
#        sam validate --lint                    template.yaml (SAM transform + cfn-lint)
#        cfn-lint --include-checks I            template.yaml, informational rules too
#        asl-validator --json-path F            every workflows/*.asl.json
#        tests/check_stack.py                   template.yaml, workflows/ and functions/
#                                               agree (every package deployed, ASL
#                                               substitutions = DefinitionSubstitutions =
#                                               invoke policies, the Task envelope, Retry)
#        tests/check_deps.py                    no function package depends on SQLite,
#                                               aws-config or aws-lc (binary size)
#      then cargo test --no-run and cargo build --workspace --bins (the binaries
#      `cargo lambda watch` runs in the e2e tests; it starts each one with
#      `cargo run --bin NAME`, which resolves features for the whole workspace, so this
#      is the build it finds fresh). Both need the registry, so they run before we lose
#      the network. Then the TypeScript client: npm ci (into clients/typescript/
#      node_modules) and npm test (node --test against its own actiondo serve).
#   3. Re-runs itself inside a private network (and PID) namespace — DynamoDB Local
#      binds every interface, and the namespace has its own loopback and nothing
#      else — starts DynamoDB Local and moto there on free ports, exports the
#      test environment and runs `cargo test --workspace --offline`. When the
#      namespace's first process exits, the kernel kills whatever is left in it.
#      Each e2e test stops its own `cargo lambda watch` (and the functions) when it
#      ends, even by a panic; a test binary killed outright leaves its watch's pid in
#      $ACTIONDO_E2E_PID_DIR (a fresh temporary folder per run), and the script stops
#      those process groups on its way out (what matters without a PID namespace).
#
# Environment:
#   ACTIONDO_TOOLS   extra tools to install, space/comma separated, from:
#                    dynamodb-local moto cargo-lambda sam cfn-lint asl-validator | all
#                    (all of them are installed anyway: the e2e tests need
#                    cargo-lambda; the names are still checked)
#   ACTIONDO_NETNS   set to 0 to run the servers on 127.0.0.1 without a namespace
#   ACTIONDO_SERVER_WAIT_SECS  how long to wait for each server to answer (60)
#   CI=true          no fallbacks: no namespace (unless ACTIONDO_NETNS=0) is an error
#
# Exported to the tests (and to --servers-only commands):
#   ACTIONDO_TEST_DYNAMODB_LOCAL_URL  ACTIONDO_TEST_MOTO_URL  ACTIONDO_TEST_REQUIRE_INFRA=1
#   ACTIONDO_TOOLS_DIR  ACTIONDO_E2E_PID_DIR  AWS_ACCESS_KEY_ID  AWS_SECRET_ACCESS_KEY  AWS_REGION
#   AWS_DEFAULT_REGION  AWS_EC2_METADATA_DISABLED  CARGO_NET_OFFLINE, PATH += .tools/bin
#
# Exit status: cargo test's (or CMD's with --servers-only); non-zero if any
# earlier phase, install or server start fails. Nothing is ever skipped silently.

# Functions reached only via traps or "install_${name}" look unreachable to
# ShellCheck 0.9 (SC2317), hence, for the whole file:
# shellcheck disable=SC2317
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$ROOT/tests/run.sh"
TOOLS="$ROOT/.tools"
VENV="$TOOLS/venv"
LOGS="$TOOLS/logs"
cd "$ROOT"

# Pinned versions of the servers the suites run against (bump deliberately;
# a changed pin re-installs on the next run).
DDB_SIM_PKG="amplify-dynamodb-simulator@2.9.30"
MOTO_PKG="moto[server]==5.2.5"
# The template and workflow checkers gate every run: pinned too, so that a new
# release's new rules show up in a deliberate bump, not as a red CI run.
SAM_PKG="aws-sam-cli==1.170.0"
CFN_LINT_PKG="cfn-lint==1.58.0"
ASL_VALIDATOR_PKG="asl-validator@4.0.0"
# The Lambda emulator of the e2e tests (its pip package brings zig along).
CARGO_LAMBDA_PKG="cargo-lambda==1.9.2"

SERVER_WAIT_SECS=${ACTIONDO_SERVER_WAIT_SECS:-60}
export DEBIAN_FRONTEND=noninteractive PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1
export npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
# No pip cache: every package is installed once into a venv, a cache only doubles
# the disk it takes.
export PIP_NO_CACHE_DIR=1
# Free disk (GiB) the run needs: the tools (~1.5 GiB) and a dev build of the
# workspace (~8 GiB). Checked up front so that a full disk fails with a clear message
# instead of in the middle of an install.
MIN_FREE_GIB=${ACTIONDO_MIN_FREE_GIB:-10}

# ---------------------------------------------------------------- helpers

section() { printf '\n==> %s\n' "$*"; }
info()    { printf '    %s\n' "$*"; }
warn()    { printf 'WARNING: %s\n' "$*" >&2; }
die()     { printf 'ERROR: %s\n' "$*" >&2; exit 1; }
is_ci()   { [ "${CI:-}" = true ] || [ "${CI:-}" = 1 ]; }
is_root() { [ "$(id -u)" = 0 ]; }
need()    { command -v "$1" >/dev/null 2>&1 || die "'$1' not found: $2"; }

# stamp_ok FILE SPEC: the install recorded in FILE was made from SPEC.
stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

# link_tool PATH NAME: expose an installed executable as .tools/bin/NAME.
link_tool() {
    [ -x "$1" ] || die "expected executable $1 after install"
    mkdir -p "$TOOLS/bin"
    ln -sfn "$1" "$TOOLS/bin/$2"
}

apt_install() {
    if is_root && command -v apt-get >/dev/null 2>&1; then
        info "apt-get install $*"
        { apt-get update -qq && apt-get install -y -qq "$@" >/dev/null; } \
            || die "apt-get install $* failed"
    else
        die "need $* (not root or no apt-get: install it yourself)"
    fi
}

# ---------------------------------------------------------------- installs

# check_disk: enough free space for the tools and the build, or a clear failure.
check_disk() {
    local free_kib
    free_kib=$(df -Pk "$ROOT" | awk 'NR==2 {print $4}')
    info "disk: $((free_kib / 1024 / 1024)) GiB free under $ROOT (need ${MIN_FREE_GIB} GiB)"
    if [ "$free_kib" -lt $((MIN_FREE_GIB * 1024 * 1024)) ]; then
        die "only $((free_kib / 1024)) MiB free under $ROOT; the tools and the build need ${MIN_FREE_GIB} GiB (set ACTIONDO_MIN_FREE_GIB to change)"
    fi
}

ensure_java() {
    if ! command -v java >/dev/null 2>&1; then
        apt_install openjdk-17-jre-headless
    fi
    java -version >/dev/null 2>&1 || die "java is installed but does not run"
}

# DynamoDB Local ships inside the npm package amplify-dynamodb-simulator
# (package/emulator/DynamoDBLocal.jar); we keep only the jar and its native libs.
install_dynamodb_local() {
    local dest="$TOOLS/dynamodb-local" tmp="$TOOLS/.tmp-dynamodb-local" tgz jar
    ensure_java
    if [ -f "$dest/DynamoDBLocal.jar" ] && [ -d "$dest/DynamoDBLocal_lib" ] \
        && stamp_ok "$dest/.installed" "$DDB_SIM_PKG"; then
        info "dynamodb-local: present ($DDB_SIM_PKG)"
        return
    fi
    need npm "install node/npm (needed to fetch DynamoDB Local)"
    info "dynamodb-local: npm pack $DDB_SIM_PKG"
    rm -rf "$tmp" && mkdir -p "$tmp"
    (cd "$tmp" && npm pack "$DDB_SIM_PKG" --silent --loglevel=error >/dev/null) \
        || die "npm pack $DDB_SIM_PKG failed"
    tgz=$(find "$tmp" -maxdepth 1 -name '*.tgz' | head -n 1)
    [ -n "$tgz" ] || die "npm pack $DDB_SIM_PKG produced no tarball"
    tar -xzf "$tgz" -C "$tmp" || die "cannot extract $tgz"
    jar=$(find "$tmp" -name DynamoDBLocal.jar -type f | head -n 1)
    [ -n "$jar" ] || die "DynamoDBLocal.jar not found in $DDB_SIM_PKG"
    [ -d "$(dirname "$jar")/DynamoDBLocal_lib" ] || die "DynamoDBLocal_lib not found next to $jar"
    # Stage, then swap in, so an interrupted install never looks complete.
    mkdir -p "$tmp/out"
    cp "$jar" "$tmp/out/"
    cp -R "$(dirname "$jar")/DynamoDBLocal_lib" "$tmp/out/"
    echo "$DDB_SIM_PKG" >"$tmp/out/.installed"
    rm -rf "$dest" && mv "$tmp/out" "$dest" && rm -rf "$tmp"
    info "dynamodb-local: installed into ${dest#"$ROOT"/}"
}

# venv_pip VENV NAME SPEC BIN: pip-install SPEC into VENV unless BIN is already
# there from the same SPEC, then expose BIN in .tools/bin.
venv_pip() {
    local venv=$1 name=$2 spec=$3 bin=$4
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c '' 2>/dev/null; then
        need python3 "install python3 (needed for the test tool venvs)"
        info "creating venv ${venv#"$ROOT"/}"
        rm -rf "$venv"
        python3 -m venv "$venv" || die "python3 -m venv failed (apt-get install python3-venv?)"
    fi
    if [ -x "$venv/bin/$bin" ] && stamp_ok "$venv/.installed-$name" "$spec"; then
        info "$name: present ($spec)"
    else
        info "$name: pip install $spec"
        "$venv/bin/python" -m pip install -q "$spec" || die "pip install $spec failed"
        echo "$spec" >"$venv/.installed-$name"
    fi
    link_tool "$venv/bin/$bin" "$bin"
}

install_moto()         { venv_pip "$VENV" moto "$MOTO_PKG" moto_server; }
install_cargo_lambda() { venv_pip "$VENV" cargo-lambda "$CARGO_LAMBDA_PKG" cargo-lambda; }
install_cfn_lint()     { venv_pip "$VENV" cfn-lint "$CFN_LINT_PKG" cfn-lint; }
install_sam()          { venv_pip "$TOOLS/venv-sam" sam "$SAM_PKG" sam; }

install_asl_validator() {
    local prefix="$TOOLS/node" bin="$TOOLS/node/node_modules/.bin/asl-validator"
    if [ -x "$bin" ] && stamp_ok "$prefix/.installed" "$ASL_VALIDATOR_PKG"; then
        info "asl-validator: present ($ASL_VALIDATOR_PKG)"
    else
        need npm "install node/npm (needed for asl-validator)"
        info "asl-validator: npm install $ASL_VALIDATOR_PKG"
        mkdir -p "$prefix"
        npm install --prefix "$prefix" --silent --loglevel=error --no-save "$ASL_VALIDATOR_PKG" >/dev/null \
            || die "npm install $ASL_VALIDATOR_PKG failed"
        echo "$ASL_VALIDATOR_PKG" >"$prefix/.installed"
    fi
    link_tool "$bin" asl-validator
}

# --- console browser test (issue 14): Debian's chromium and chromium-driver, which
# cli/tests/console_browser.rs drives over WebDriver. Installed once with apt-get (it
# needs root); the test fails under this script (ACTIONDO_TEST_REQUIRE_INFRA=1) when
# they are missing, it never skips.
install_chromium() {
    if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
        info "chromium: present ($(/usr/bin/chromedriver --version 2>/dev/null | cut -d' ' -f1-2))"
        return
    fi
    apt_install chromium chromium-driver
}
# --- end of the console block

CHECK_TOOLS=(sam cfn-lint asl-validator)

# install_tools [--checks-only]: the servers, the checkers and what ACTIONDO_TOOLS adds;
# with --checks-only, only the checkers.
install_tools() {
    local requested wanted=() t t0=$SECONDS
    if [ "${1:-}" = --checks-only ]; then
        wanted=("${CHECK_TOOLS[@]}")
    else
        wanted=(dynamodb-local moto cargo-lambda chromium "${CHECK_TOOLS[@]}")
        requested=${ACTIONDO_TOOLS:-}
        [ "$requested" = all ] && requested=""
        for t in ${requested//,/ }; do
            case $t in
                dynamodb-local|moto|cargo-lambda|chromium|sam|cfn-lint|asl-validator) ;;   # always installed
                *) die "unknown tool '$t' in ACTIONDO_TOOLS" ;;
            esac
        done
    fi
    mkdir -p "$TOOLS" "$LOGS"
    for t in "${wanted[@]}"; do
        "install_${t//-/_}"
    done
    info "tools ready in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------- template and workflow checks

# now_ms: wall clock in milliseconds (for the per-check timings).
now_ms() { date +%s%3N; }

# run_check NAME CMD...: run one check; print its time; a failure ends the run.
run_check() {
    local name=$1 t0 rc=0; shift
    t0=$(now_ms)
    "$@" || rc=$?
    if [ "$rc" -ne 0 ]; then
        printf 'ERROR: check "%s" failed (exit %s): %s\n' "$name" "$rc" "$*" >&2
        exit "$rc"
    fi
    info "$name: ok ($(( $(now_ms) - t0 )) ms)"
}

# Offline: the SAM CLI and cfn-lint need a region and credentials to exist (any will
# do; nothing is sent), and no telemetry. A profile from the caller's environment
# could point at a missing file, so it is dropped.
check_env() {
    env -u AWS_PROFILE -u AWS_DEFAULT_PROFILE -u AWS_SESSION_TOKEN \
        AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 \
        AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
        AWS_EC2_METADATA_DISABLED=true SAM_CLI_TELEMETRY=0 "$@"
}

check_templates() {
    local f asl_args=()
    [ -f "$ROOT/template.yaml" ] || die "template.yaml is missing"
    for f in "$ROOT"/workflows/*.asl.json; do
        [ -e "$f" ] && asl_args+=(--json-path "${f#"$ROOT"/}")
    done
    [ ${#asl_args[@]} -gt 0 ] || die "no workflows/*.asl.json to check"
    run_check "sam validate --lint" check_env "$TOOLS/bin/sam" validate --lint --template-file "$ROOT/template.yaml"
    run_check "cfn-lint" check_env "$TOOLS/bin/cfn-lint" --include-checks I -- "$ROOT/template.yaml"
    # One process for every file (node starts once); it fails if any file is invalid.
    run_check "asl-validator ($((${#asl_args[@]} / 2)) workflows)" "$TOOLS/bin/asl-validator" "${asl_args[@]}"
    run_check "check_stack.py" "$VENV/bin/python" "$ROOT/tests/check_stack.py"
    run_check "check_deps.py" "$VENV/bin/python" "$ROOT/tests/check_deps.py"
}

# ---------------------------------------------------------------- servers (inside)

SERVER_PIDS=()

stop_servers() {
    local pid
    for pid in "${SERVER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${SERVER_PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    SERVER_PIDS=()
}

# start_server DIR LOG CMD...: run CMD in DIR in the background, output to LOG.
start_server() {
    local dir=$1 log=$2; shift 2
    (cd "$dir" && exec "$@") >"$log" 2>&1 </dev/null &
    SERVER_PIDS+=($!)
}

# wait_http NAME URL PID LOG: wait until URL gives any HTTP answer.
wait_http() {
    local name=$1 url=$2 pid=$3 log=$4 code deadline=$((SECONDS + SERVER_WAIT_SECS))
    while :; do
        code=$(curl -s --noproxy '*' --max-time 2 -o /dev/null -w '%{http_code}' "$url" || true)
        [ -n "$code" ] && [ "$code" != 000 ] && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            printf 'ERROR: %s exited before answering on %s; last lines of %s:\n' "$name" "$url" "$log" >&2
            tail -n 40 "$log" >&2
            exit 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            printf 'ERROR: %s did not answer on %s within %ss; last lines of %s:\n' \
                "$name" "$url" "$SERVER_WAIT_SECS" "$log" >&2
            tail -n 40 "$log" >&2
            exit 1
        fi
        sleep 0.2
    done
}

start_servers() {
    local ddb="$TOOLS/dynamodb-local" p q t0=$SECONDS
    [ -f "$ddb/DynamoDBLocal.jar" ] || die "DynamoDB Local is not installed (run without --inside)"
    [ -x "$VENV/bin/moto_server" ] || die "moto_server is not installed (run without --inside)"
    [ -x "$TOOLS/bin/cargo-lambda" ] || die "cargo-lambda is not installed (run without --inside)"
    need curl "install curl (used to wait for the servers)"
    mkdir -p "$LOGS"
    # Two distinct free ports on loopback (both sockets held open while choosing).
    read -r p q < <(python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*(x.getsockname()[1] for x in s))') || die "could not pick free loopback ports"
    # sqlite4java's native libraries live in DynamoDBLocal_lib. DynamoDB Local
    # writes dynamodb-local-metadata.json into its working directory and would
    # try to send telemetry: run it from its own folder, telemetry off.
    start_server "$ddb" "$LOGS/dynamodb-local.log" \
        java -Djava.library.path=DynamoDBLocal_lib -jar DynamoDBLocal.jar \
        -inMemory -disableTelemetry -port "$p"
    local ddb_pid=${SERVER_PIDS[-1]}
    start_server "$TOOLS" "$LOGS/moto.log" "$VENV/bin/moto_server" -H 127.0.0.1 -p "$q"
    local moto_pid=${SERVER_PIDS[-1]}
    wait_http "DynamoDB Local" "http://127.0.0.1:$p/" "$ddb_pid" "$LOGS/dynamodb-local.log"
    wait_http "moto" "http://127.0.0.1:$q/moto-api/" "$moto_pid" "$LOGS/moto.log"
    info "DynamoDB Local on 127.0.0.1:$p (pid $ddb_pid), moto on 127.0.0.1:$q (pid $moto_pid), up in $((SECONDS - t0))s"

    export ACTIONDO_TEST_DYNAMODB_LOCAL_URL="http://127.0.0.1:$p"
    export ACTIONDO_TEST_MOTO_URL="http://127.0.0.1:$q"
    export ACTIONDO_TEST_REQUIRE_INFRA=1
    export ACTIONDO_TOOLS_DIR="$TOOLS"
    export ACTIONDO_E2E_PID_DIR="$E2E_PIDS"
    export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
    export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
    export AWS_EC2_METADATA_DISABLED=true
    export CARGO_NET_OFFLINE=true
    export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}" no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"
    export PATH="$TOOLS/bin:$PATH"
}

# Runs in the namespace (or directly, as the fallback): servers + tests/CMD.
# The command runs in the background and we `wait` for it, so that a signal
# is handled at once rather than when the command finishes.
CMD_PID=
inside_main() {
    local servers_only=$1; shift
    trap 'rc=$?; stop_cmd; stop_e2e_leftovers; stop_servers; exit $rc' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP

    if [ "${ACTIONDO_IN_NETNS:-0}" = 1 ]; then
        local ip
        ip=$(command -v ip || echo /usr/sbin/ip)
        "$ip" link set lo up || die "cannot bring up loopback in the network namespace"
    fi
    section "starting servers"
    # Per run (pids mean nothing in another run's namespace).
    E2E_PIDS=$(mktemp -d "${TMPDIR:-/tmp}/actiondo-e2e-pids.XXXXXX") \
        || die "cannot create a temporary folder"
    start_servers

    local rc=0
    if [ "$servers_only" = 1 ]; then
        if [ $# -eq 0 ]; then
            # Interactive debugging shell: keep it in the foreground (terminal).
            section "shell with servers up (exit to stop them)"
            bash || rc=$?
        else
            section "running: $*"
            "$@" <&0 &
            CMD_PID=$!
            wait "$CMD_PID" || rc=$?
        fi
    else
        # `--workspace` would win over a `-p` of the caller's: leave it out then.
        local scope=(--workspace) a
        for a in "$@"; do
            case $a in
                --) break ;;
                -p|-p?*|--package|--package=*) scope=(); break ;;
            esac
        done
        section "cargo test${scope[*]:+ ${scope[*]}} --offline --no-fail-fast${*:+ $*}"
        # pipefail: the status is cargo's (tee does not fail).
        { cargo test "${scope[@]}" --offline --no-fail-fast "$@" 2>&1 | tee "$LOGS/cargo-test.log"; } <&0 &
        CMD_PID=$!
        wait "$CMD_PID" || rc=$?
    fi
    CMD_PID=
    exit "$rc"
}

stop_cmd() {
    [ -n "$CMD_PID" ] || return 0
    kill -TERM "$CMD_PID" 2>/dev/null || true
    wait "$CMD_PID" 2>/dev/null || true
    CMD_PID=
}

# The e2e harness (tests/e2e) names each running `cargo lambda watch` by a file
# $ACTIONDO_E2E_PID_DIR/<pid> and deletes it when the watch is stopped; a file left over
# means a test binary was killed outright. Stop those process groups (the watch's
# functions end when its Runtime API goes away), then remove the folder.
E2E_PIDS=
stop_e2e_leftovers() {
    local f pid
    [ -n "$E2E_PIDS" ] && [ -d "$E2E_PIDS" ] || return 0
    for f in "$E2E_PIDS"/*; do
        [ -e "$f" ] || continue
        pid=${f##*/}
        case $pid in ''|*[!0-9]*) rm -f "$f"; continue ;; esac
        if kill -0 "$pid" 2>/dev/null; then
            warn "stopping cargo lambda watch (process group $pid) left by a killed test"
            kill -TERM -- "-$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL -- "-$pid" 2>/dev/null || true
        fi
        rm -f "$f"
    done
    rmdir "$E2E_PIDS" 2>/dev/null || true
}

# ---------------------------------------------------------------- namespace

# Sets NS_CMD to the unshare prefix to use, or to () for no namespace, and
# NS_PID=1 when that includes a PID namespace whose first process is killed
# with unshare (--kill-child): then killing unshare kills everything inside.
NS_CMD=()
NS_PID=0
choose_namespace() {
    local ip flags candidates
    if [ "${ACTIONDO_NETNS:-1}" = 0 ]; then
        warn "ACTIONDO_NETNS=0: servers run on the host loopback (DynamoDB Local listens on all interfaces)"
        return
    fi
    ip=$(command -v ip || echo /usr/sbin/ip)
    if is_root; then
        candidates=("--net --pid --fork --kill-child" "--net")
    else
        candidates=("--net --pid --fork --kill-child --map-root-user" "--net --map-root-user")
    fi
    if command -v unshare >/dev/null 2>&1 && [ -x "$ip" ]; then
        for flags in "${candidates[@]}"; do
            # shellcheck disable=SC2086 # flags are meant to split
            if unshare $flags -- "$ip" link set lo up >/dev/null 2>&1; then
                read -r -a NS_CMD <<<"unshare $flags --"
                case $flags in *--pid*) NS_PID=1 ;; esac
                info "network namespace: unshare $flags"
                return
            fi
        done
    fi
    if is_ci; then
        die "cannot create a network namespace (unshare/ip missing or not permitted); set ACTIONDO_NETNS=0 to run on the host loopback"
    fi
    warn "cannot create a network namespace; servers run on the host loopback (DynamoDB Local listens on all interfaces)"
}

# ---------------------------------------------------------------- main

usage() { sed -n '2,/^$/{/^$/d; s/^# \{0,1\}//; p}' "$SELF"; }

SERVERS_ONLY=0
INSIDE=0
CHECKS_ONLY=0
while [ $# -gt 0 ]; do
    case $1 in
        --servers-only) SERVERS_ONLY=1; shift ;;
        --checks-only) CHECKS_ONLY=1; shift ;;
        --inside) INSIDE=1; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; break ;;
        *) die "unknown option '$1' (arguments for cargo test go after --; see --help)" ;;
    esac
done

if [ "$INSIDE" = 1 ]; then
    inside_main "$SERVERS_ONLY" "$@"
fi

START=$SECONDS
PHASE=setup
trap 'rc=$?; if [ "$rc" -ne 0 ] && [ "$PHASE" != tests ]; then
        printf "\n==> FAILED in phase %s (exit %s) after %ss\n" "$PHASE" "$rc" "$((SECONDS - START))" >&2
      fi' EXIT
[ -t 1 ] && export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-always}"

[ "$CHECKS_ONLY" = 1 ] && [ "$SERVERS_ONLY" = 1 ] && die "--checks-only and --servers-only exclude each other"

PHASE=install
section "installing tools into .tools/"
check_disk
if [ "$CHECKS_ONLY" = 1 ]; then
    [ $# -eq 0 ] || die "--checks-only takes no arguments for cargo test"
    install_tools --checks-only
    PHASE=templates; section "templates and workflows"; check_templates
    section "summary: templates and workflows ok after $((SECONDS - START))s"
    exit 0
fi
install_tools

# ---- MCP client tests (issue 17; docs/architecture.md §7.6): the official MCP Python
# SDK, pinned, in a venv of its own (.tools/mcp-venv), where cli/tests/mcp.rs finds it.
# Idempotent (a stamp names the installed pin); not linked into .tools/bin.
MCP_CLIENT_PKG="mcp==2.3.0"
if [ -x "$TOOLS/mcp-venv/bin/python" ] && stamp_ok "$TOOLS/mcp-venv/.installed-mcp" "$MCP_CLIENT_PKG"; then
    info "mcp client: present ($MCP_CLIENT_PKG)"
else
    need python3 "install python3 (needed for the MCP client tests)"
    info "mcp client: pip install $MCP_CLIENT_PKG"
    [ -x "$TOOLS/mcp-venv/bin/python" ] || python3 -m venv "$TOOLS/mcp-venv" || die "python3 -m venv failed"
    "$TOOLS/mcp-venv/bin/python" -m pip install -q "$MCP_CLIENT_PKG" || die "pip install $MCP_CLIENT_PKG failed"
    echo "$MCP_CLIENT_PKG" >"$TOOLS/mcp-venv/.installed-mcp"
fi
# ---- end of the MCP client block

if [ "$SERVERS_ONLY" = 0 ]; then
    # A clean CI build gains nothing from incremental artifacts, which double the
    # size of target/.
    is_ci && export CARGO_INCREMENTAL=0
    PHASE=toolchain
    need cargo "install the Rust toolchain"
    cargo fmt --version >/dev/null 2>&1 || die "cargo fmt (rustfmt) is not installed"
    cargo clippy --version >/dev/null 2>&1 || die "cargo clippy is not installed"

    PHASE=fmt;    section "fmt";    cargo fmt --all --check
    PHASE=clippy; section "clippy"; cargo clippy --workspace --all-targets -- -D warnings
    PHASE=templates; section "templates and workflows"; check_templates
    PHASE=build;  section "build (cargo test --workspace --no-run; cargo build --workspace --bins)"
    cargo test --workspace --no-run
    # What `cargo lambda watch` runs in the e2e tests (cargo run --bin NAME, offline).
    cargo build --workspace --bins

    # ---- TypeScript client (clients/typescript, docs/architecture.md §12) ----------
    # `npm ci` puts its devDependency (typescript, pinned by package-lock.json) in
    # clients/typescript/node_modules (git-ignored) while the network is here; `npm test`
    # regenerates the action types from target/debug/actiondo, builds with tsc and runs
    # `node --test`, which starts its own `actiondo serve` on 127.0.0.1 (temp store, free
    # port) and stops it. No node: a warning; under CI=true, an error.
    PHASE=typescript; section "TypeScript client (npm ci, npm test)"
    if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
        (cd "$ROOT/clients/typescript" \
            && npm ci --silent --loglevel=error \
            && ACTIONDO_BIN="$ROOT/target/debug/actiondo" npm test --silent)
    elif is_ci; then
        die "node/npm not found: the TypeScript client's tests need Node 18 or later"
    else
        warn "node/npm not found: the TypeScript client's tests (clients/typescript) NOT RUN"
    fi
fi

PHASE=tests
section "test phase"
choose_namespace
inside_args=(--inside)
[ "$SERVERS_ONLY" = 1 ] && inside_args+=(--servers-only)
rm -f "$LOGS/cargo-test.log"
export ACTIONDO_IN_NETNS=0
[ ${#NS_CMD[@]} -gt 0 ] && ACTIONDO_IN_NETNS=1
rc=0
if [ "$SERVERS_ONLY" = 1 ] && [ $# -eq 0 ]; then
    # Interactive shell: stay in the foreground so the terminal works as usual.
    "${NS_CMD[@]}" bash "$SELF" "${inside_args[@]}" || rc=$?
else
    # In the background + wait, so that SIGINT/SIGTERM/SIGHUP reach our trap at
    # once: with a PID namespace, SIGKILL to unshare takes the whole namespace
    # (servers, cargo, test binaries) down; without one, the inner script's own
    # trap stops its servers.
    "${NS_CMD[@]}" bash "$SELF" "${inside_args[@]}" -- "$@" <&0 &
    inner=$!
    on_signal() {
        trap - INT TERM HUP
        if [ "$NS_PID" = 1 ]; then kill -KILL "$inner" 2>/dev/null || true
        else kill -TERM "$inner" 2>/dev/null || true; fi
        wait "$inner" 2>/dev/null || true
        printf '\n==> interrupted (signal %s); servers stopped\n' "$1" >&2
        exit "$2"
    }
    trap 'on_signal INT 130' INT
    trap 'on_signal TERM 143' TERM
    trap 'on_signal HUP 129' HUP
    wait "$inner" || rc=$?
    trap - INT TERM HUP
fi

if [ "$SERVERS_ONLY" = 1 ]; then
    section "summary: --servers-only run exited $rc after $((SECONDS - START))s"
    exit "$rc"
fi
status=ok; [ "$rc" = 0 ] || status="FAILED (exit $rc)"
section "summary: fmt ok, clippy ok, templates ok, build ok, tests $status after $((SECONDS - START))s"
# The last line, in the plain 'N passed, N failed, N skipped' form, summed over
# every test binary (cargo prints one 'test result:' line per binary).
if [ -f "$LOGS/cargo-test.log" ]; then
    sed 's/\x1b\[[0-9;]*m//g' "$LOGS/cargo-test.log" | awk '
        /^test result:/ {
            n++
            if (match($0, /[0-9]+ passed/))  p += substr($0, RSTART, RLENGTH) + 0
            if (match($0, /[0-9]+ failed/))  f += substr($0, RSTART, RLENGTH) + 0
            if (match($0, /[0-9]+ ignored/)) s += substr($0, RSTART, RLENGTH) + 0
        }
        END { if (n) printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }'
fi
exit "$rc"
