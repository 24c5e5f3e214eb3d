#!/usr/bin/env bash
# Install if needed, then lint and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/install.sh
. .venv/bin/activate
echo "==> ruff"
ruff check src tests scripts app.py
ruff format --check src tests scripts app.py
echo "==> pytest"
python -m pytest -q "$@"
