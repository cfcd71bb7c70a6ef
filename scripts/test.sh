#!/usr/bin/env bash
# Set up a virtualenv (first run only) and run every check CI runs: ruff, mypy --strict, cfn-lint, pytest, and every
# function run as Lambda runs it (scripts/lambda-local.sh: podman, SAM CLI; as root it installs what it needs).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh dev
echo "== ruff"
.venv/bin/ruff check shared functions tests benchmarks scripts
echo "== mypy --strict"
.venv/bin/mypy
# Each function's handler.py/bootstrap.py on its own (they share module names, as on Lambda's sys.path).
for fn in functions/*/; do
  (cd "$fn" && MYPYPATH=../../shared ../../.venv/bin/mypy --config-file ../../pyproject.toml \
    --cache-dir "../../.mypy_cache/$(basename "$fn")" handler.py bootstrap.py)
done
echo "== cfn-lint"
.venv/bin/cfn-lint template.yaml
echo "== promtool"
# `promtool check metrics` runs in the tests; Debian's prometheus package carries it (installed once, as root).
# Required in CI; on a laptop without root or apt the promtool checks are skipped (the tests say so).
if [ "${CI:-}" = "true" ]; then
  bash scripts/promtool-check.sh --install
else
  bash scripts/promtool-check.sh --install || echo "promtool unavailable here: its checks will be skipped"
fi
echo "== chromium"
# The page's browser tests (tests/integration/test_page.py) drive Debian's chromium with Playwright (no browser
# download). Required in CI; elsewhere installed as root, or those tests are skipped (they say so).
if ! command -v chromium > /dev/null && [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
  apt-get update -qq > /dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null
fi
if command -v chromium > /dev/null; then
  chromium --version 2>/dev/null | head -1 || true
elif [ "${CI:-}" = "true" ]; then
  echo "chromium is missing and could not be installed (needs root and apt-get)" >&2
  exit 1
else
  echo "chromium unavailable here: the browser tests will be skipped"
fi
echo "== lambda-local"
# The deployed artifacts built and run as Lambda runs them; before pytest, whose summary stays the last line. Required
# in CI (a machine that cannot install podman fails here, saying why). Elsewhere it runs where podman is installed or
# installable (root) unless VIDEO_AI_SKIP_LAMBDA_LOCAL=1, and otherwise says why it skipped.
if [ "${CI:-}" = "true" ]; then
  bash scripts/lambda-local.sh
elif [ "${VIDEO_AI_SKIP_LAMBDA_LOCAL:-}" = 1 ]; then
  echo "lambda-local skipped: VIDEO_AI_SKIP_LAMBDA_LOCAL=1"
elif [ "$(id -u)" = 0 ] || command -v podman > /dev/null; then
  bash scripts/lambda-local.sh
else
  echo "lambda-local skipped: podman is not installed and installing it needs root (README: 'Run the functions as Lambda runs them')"
fi
echo "== pytest"
# pytest exits 5 when it collected no test: that is a failure here, and `set -e` makes it one.
.venv/bin/python -m pytest -q "$@"
