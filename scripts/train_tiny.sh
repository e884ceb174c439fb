#!/usr/bin/env bash
# Quickstart 1: set up .venv, then train the default MoE config on the built-in corpus (CPU).
# Extra arguments go to `cli.py fit` (e.g. --trainer.max_steps=50).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_env.sh
export HF_DATASETS_OFFLINE="${HF_DATASETS_OFFLINE:-1}" HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
exec .venv/bin/python cli.py fit --config configs/moe/tiny.yaml "$@"
