#!/usr/bin/env bash
# Everything a reviewer checks, in one command (after ./setup.sh --test): lint, formatting, the web client's
# types against the protocol's generated declarations, and the whole test suite. Extra arguments go to pytest
# (e.g. ./check.sh -k bcf -x). Runs every check and exits non-zero if any failed, naming them.
set -uo pipefail
cd "$(dirname "$0")"
failed=()
run() {
  local name=$1; shift
  local start=$SECONDS
  echo "check: $name"
  if "$@"; then echo "check: $name passed ($((SECONDS - start)) s)"; else failed+=("$name"); echo "check: $name FAILED"; fi
}
run "ruff check" .venv/bin/ruff check .
run "ruff format --check" .venv/bin/ruff format --check .
run "web client types (tsc)" npm --prefix web_client run --silent typecheck
run "tests (pytest)" .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "check: FAILED: ${failed[*]}"
  exit 1
fi
echo "check: all passed"
