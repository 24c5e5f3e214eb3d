"""sscp-rag: search and cited answers over child safeguarding review documents.

The public API is imported lazily so that ``import sscp_rag`` (and ``sscp-rag --help``) stays
fast; torch and the model load only when a function that needs them runs.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "build_index": "sscp_rag.ingest",
    "load_index": "sscp_rag.index",
    "Index": "sscp_rag.index",
    "search": "sscp_rag.retrieval",
    "Filters": "sscp_rag.retrieval",
    "answer": "sscp_rag.answer",
    "Settings": "sscp_rag.settings",
    "SscpRagError": "sscp_rag.errors",
}

__all__ = [*_API, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(name)
