#!/usr/bin/env bash
# Install everything, build (or update) the index of the bundled demo corpus, start the app.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/install.sh
. .venv/bin/activate
sscp-rag ingest            # incremental: seconds when the index is up to date
echo "==> starting the app on http://127.0.0.1:${SSCP_RAG_PORT:-8501}"
exec streamlit run app.py --server.address 127.0.0.1 --server.port "${SSCP_RAG_PORT:-8501}" \
  --server.headless true --browser.gatherUsageStats false
