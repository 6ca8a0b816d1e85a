#!/usr/bin/env bash
# The test command of the README: sets up .venv (CPU PyTorch, the train/export/dev extras), checks lint, format and
# types, then runs every test that is not marked slow. Complete on its own in a fresh clone.
# Exit status: pytest's, except that "no tests collected" (5) is a failure (1); 1 for a failed install or check.
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv || exit 1
fi
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --upgrade pip setuptools wheel || exit 1
# The CPU build of PyTorch first, so that no CUDA build is pulled in by the extras.
python -m pip install -q "torch==2.13.0" || python -m pip install -q "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu || exit 1
python -m pip install -q -e ".[train,export,dev]" || exit 1
# Headless Chromium for the HTML report test (best effort: that test skips with a reason without it).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get install -y -q chromium >/dev/null 2>&1 || true
fi

echo "== ruff check, ruff format --check, mypy runtime/"
ruff check . || exit 1
ruff format --check . || exit 1
mypy runtime/ || exit 1

echo "== pytest -m 'not slow'"
python -m pytest -m "not slow" "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: failing" >&2
    exit 1
fi
exit "$rc"
