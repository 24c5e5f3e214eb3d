#!/usr/bin/env bash
# Idempotent install into ./.venv: torch (CPU wheel on local disk) first, then the project with its
# test extras, then Debian's chromium + chromedriver for the browser test. Fast when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  python3 -m venv .venv
fi
PY=.venv/bin/python
stamp=.venv/.sscp-rag-installed
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "==> installing Python packages (first run takes a few minutes)"
  "$PY" -m pip install --quiet --upgrade pip
  # torch first and pinned: an open range would pull a multi-GB CUDA build.
  "$PY" -m pip install --quiet torch==2.13.0
  "$PY" -m pip install --quiet -e ".[test]"
  echo "$want" > "$stamp"
fi

if [ "${SSCP_RAG_SKIP_BROWSER:-0}" != "1" ] && { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; }; then
  echo "==> installing Debian chromium + chromium-driver (browser test)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi
