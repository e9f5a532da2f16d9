#!/usr/bin/env bash
# Rebuild ci/constraints.txt: the exact versions of hfc-edu[book,dev]'s dependency closure (plus the
# CPU torch CI installs first and the test-only peer torchattacks), resolved in a fresh virtual
# environment so that nothing else installed on this machine leaks in.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(mktemp -d)/venv
python -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check torch==2.13.0
"$venv/bin/pip" install -q --disable-pip-version-check ".[book,dev]"
"$venv/bin/pip" install -q --disable-pip-version-check --no-deps torchattacks==3.5.1
{
  echo "# Exact versions CI installs: the closure of hfc-edu[book,dev] (+ torch==2.13.0 CPU and the"
  echo "# test-only peer torchattacks), from a fresh virtual environment. Regenerate with"
  echo "# scripts/freeze_constraints.sh after changing pyproject.toml's dependencies."
  "$venv/bin/pip" freeze --exclude hfc-edu
} > ci/constraints.txt
rm -rf "$(dirname "$venv")"
echo "ci/constraints.txt: $(grep -c == ci/constraints.txt) pins"
