#!/usr/bin/env bash
# Install (if needed), then run everything CI runs: generated-code check, ruff, mypy, pytest.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not integration"`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
PY=.venv/bin/python

echo "==> generated protobuf code is fresh"
$PY scripts/gen_protos.py --check
echo "==> ruff"
.venv/bin/ruff check src tests scripts bench examples
.venv/bin/ruff format --check src tests scripts bench examples
echo "==> mypy"
.venv/bin/mypy
echo "==> pytest"
rc=0
$PY -m pytest -p no:cacheprovider "$@" || rc=$?
# pytest exits 5 when a marker selects no test: that is not a failure of the suite.
if [[ $rc -eq 5 ]]; then
  echo "no tests selected"
  rc=0
fi
exit $rc
