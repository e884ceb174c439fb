#!/usr/bin/env bash
# Quickstart 2: set up .venv, lint (ruff, configured in pyproject.toml), then run the whole test suite
# (CPU; Triton kernels interpreted). Extra arguments go to pytest (e.g. -k router -x).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_env.sh
.venv/bin/ruff check --quiet .
export HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1
exec .venv/bin/python -m pytest "$@"
