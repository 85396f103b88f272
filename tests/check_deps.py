#!/usr/bin/env python3
"""What goes into a Lambda binary: no function package may depend on the crates that keep
the binaries over the 8 MB goal of issue 3 (BENCHMARKS.md, "Lambda binaries").

Run by tests/run.sh (phase "templates"). For every package under functions/, the normal
and build dependencies that `cargo lambda build --release --arm64` compiles (what `cargo
tree -p <package> --target aarch64-unknown-linux-gnu` lists; dev-dependencies excluded)
must not contain (the router's tree includes the crates it is built from, catalog/ and
api/, so they are checked through it):

- rusqlite / libsqlite3-sys: the embedded store is the CLI's (actiondo feature `sqlite`);
- aws-config / aws-sdk-sts / aws-sdk-sso: Lambda functions read their configuration from
  the environment (`actiondo::aws`);
- aws-lc-rs / aws-lc-sys: TLS is rustls on ring (`actiondo::aws::http_client`,
  `actiondo::http_client::client_builder`);
- actiondo-workflow: the local Step Functions engine is the CLI's (`actiondo workflow`,
  `actiondo serve`); in AWS, Step Functions runs the workflows.
- aws-sdk-s3: results too large for a DynamoDB item go to S3 through signed requests
  (`actiondo::aws::signed`); the SDK would add 1.45 MB (BENCHMARKS.md, issue 13);
- aws-sdk-lambda / aws-sdk-sfn: the router invokes the actions' functions (Lambda
  `Invoke`) and calls Step Functions (five operations) with signed requests
  (`actiondo::aws::signed`); the two SDK crates stay in the CLI's and the tests' trees
  (creating state machines on moto, driving `cargo lambda watch`), never in a function's;
- actiondo-mcp / rmcp: the MCP server is served by the CLI (`actiondo mcp`, `/mcp` of
  `actiondo serve`), not by an action's function.

Exit status 1 and one line per offending package and crate.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = "aarch64-unknown-linux-gnu"
FORBIDDEN = {
    "rusqlite": "the embedded store (actiondo feature `sqlite`)",
    "libsqlite3-sys": "the embedded store (actiondo feature `sqlite`)",
    "aws-config": "aws-config (use actiondo::aws::sdk_config_from_env)",
    "aws-sdk-sts": "aws-config's credential chain",
    "aws-sdk-sso": "aws-config's credential chain",
    "aws-lc-rs": "rustls on aws-lc (an SDK crate's `default-https-client`, or reqwest's `rustls`)",
    "aws-lc-sys": "rustls on aws-lc (an SDK crate's `default-https-client`, or reqwest's `rustls`)",
    "aws-sdk-s3": "the S3 SDK (result objects use actiondo::aws::signed, 1.45 MB smaller)",
    "aws-sdk-lambda": "the Lambda SDK (the router's Invoke requests use actiondo::aws::signed)",
    "aws-sdk-sfn": "the Step Functions SDK (the router's workflow calls use actiondo::aws::signed)",
    "actiondo-workflow": "the local workflow engine (CLI only; Step Functions runs workflows in AWS)",
    "actiondo-mcp": "the MCP server (docs/architecture.md §7.6): the CLI's, not a function's",
    "rmcp": "the MCP SDK (actiondo-mcp): the CLI's, not a function's",
}


def dependencies(package: str) -> set[str]:
    tree = subprocess.run(
        ["cargo", "tree", "--quiet", "--locked", "-p", package, "--target", TARGET,
         "-e", "normal,build", "--prefix", "none", "--format", "{p}"],
        cwd=ROOT, capture_output=True, text=True,
    )
    if tree.returncode != 0:
        sys.exit(f"check_deps.py: cargo tree -p {package} failed:\n{tree.stderr}")
    return {line.split()[0] for line in tree.stdout.splitlines() if line.strip()}


def main() -> int:
    packages = sorted(p.parent.name for p in ROOT.glob("functions/*/Cargo.toml"))
    if not packages:
        print("check_deps.py: no packages under functions/", file=sys.stderr)
        return 1
    problems = [
        f"functions/{package}: depends on {crate}: {why}"
        for package in packages
        for crate in sorted(dependencies(package) & FORBIDDEN.keys())
        for why in [FORBIDDEN[crate]]
    ]
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
