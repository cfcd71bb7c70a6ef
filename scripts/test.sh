#!/usr/bin/env bash
# Set up a virtualenv (first run only) and run every check CI runs: ruff, mypy --strict, cfn-lint, pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh dev
echo "== ruff"
.venv/bin/ruff check shared functions tests benchmarks
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
echo "== pytest"
# pytest exits 5 when it collected no test: that is a failure here, and `set -e` makes it one.
.venv/bin/python -m pytest -q "$@"
