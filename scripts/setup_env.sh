#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv and install the project with
# every extra. Idempotent: re-runs only when setup.cfg, pyproject.toml or the constraints change.
# CPU machines use constraints-cpu.txt (CPU torch wheel, local triton); set LIT_CONSTRAINTS to
# another file (or to an empty string) on GPU machines that bring their own torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
CONSTRAINTS="${LIT_CONSTRAINTS-constraints-cpu.txt}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "error: Python 3.10+ is required ($("$PYTHON" --version 2>&1) found); set PYTHON=python3.11" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=".venv/.lit-installed"
want="$(cat setup.cfg pyproject.toml ${CONSTRAINTS:+"$CONSTRAINTS"} | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "Installing the project into .venv (first run takes a few minutes)..." >&2
  .venv/bin/python -m pip install --quiet --upgrade pip >&2 || true
  .venv/bin/python -m pip install --quiet ${CONSTRAINTS:+-c "$CONSTRAINTS"} -e '.[dev]' >&2
  echo "$want" > "$stamp"
fi
