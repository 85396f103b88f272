#!/usr/bin/env bash
# tests/mutants.sh — mutation testing of the protocol files (docs/testing.md).
#
#   ./tests/mutants.sh                         every protocol file (~475 mutants; about
#                                              an hour and a half on 2 cores)
#   ./tests/mutants.sh -f shared/src/hash.rs   one file (any cargo-mutants options pass on)
#   ./tests/mutants.sh --iterate               only the mutants not caught by the last run
#   ./tests/mutants.sh --list                  list the mutants, run nothing
#
# 1. Installs cargo-mutants idempotently under .tools/cargo-mutants (git-ignored) and
#    links it as .tools/bin/cargo-mutants.
# 2. Runs it on the protocol files below, with the settings of .cargo/mutants.toml (the
#    actiondo crate's own tests on the embedded store), in place (one mutant at a time, built in the work
#    tree's target/: its files are mutated and restored, do not edit them meanwhile),
#    into target/mutants/.
#    Results: target/mutants/mutants.out/{caught,missed,timeout,unviable}.txt.
#
# Exit status: cargo-mutants' (0: every viable mutant caught; 2: some missed; 3: some
# timed out; 4: the unmutated tree fails its tests).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS="$ROOT/.tools"
VERSION=27.1.0
BIN="$TOOLS/cargo-mutants/bin/cargo-mutants"

if ! { [ -x "$BIN" ] && "$BIN" mutants --version 2>/dev/null | grep -qx "cargo-mutants $VERSION"; }; then
    echo "==> installing cargo-mutants $VERSION into $TOOLS/cargo-mutants"
    cargo install --locked --version "$VERSION" --root "$TOOLS/cargo-mutants" cargo-mutants
fi
mkdir -p "$TOOLS/bin"
ln -sfn ../cargo-mutants/bin/cargo-mutants "$TOOLS/bin/cargo-mutants"
export PATH="$TOOLS/bin:$PATH"

# The protocol files (docs/architecture.md §4–§5), unless the arguments name files.
FILES=(
    shared/src/executor/mod.rs
    shared/src/executor/claim.rs
    shared/src/executor/optimistic.rs
    shared/src/executor/handler.rs
    shared/src/store/mod.rs
    shared/src/store/sqlite.rs
    shared/src/audit.rs
    shared/src/hash.rs
    shared/src/limits.rs
)
file_args=()
if [[ " $* " != *" -f "* && " $* " != *" --file "* ]]; then
    for f in "${FILES[@]}"; do file_args+=(--file "$f"); done
fi

cd "$ROOT"
echo "==> cargo mutants at $(git rev-parse --short HEAD 2>/dev/null || echo '?') ($(date -u +%F))"
status=0
cargo mutants --in-place --output target/mutants "${file_args[@]}" "$@" || status=$?
out=target/mutants/mutants.out
if [ -f "$out/outcomes.json" ] && [[ " $* " != *" --list "* ]]; then
    echo "==> per file: viable caught missed timeout unviable"
    for f in "${FILES[@]}"; do
        c=$(grep -c "^$f:" "$out/caught.txt" || true)
        m=$(grep -c "^$f:" "$out/missed.txt" || true)
        t=$(grep -c "^$f:" "$out/timeout.txt" || true)
        u=$(grep -c "^$f:" "$out/unviable.txt" || true)
        printf '%-36s %4d %4d %4d %4d %4d\n' "$f" $((c + m + t)) "$c" "$m" "$t" "$u"
    done
fi
exit "$status"
