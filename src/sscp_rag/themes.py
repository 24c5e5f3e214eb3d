"""The theme lexicon, for the callers that import it from here: it lives in
:mod:`sscp_rag.vocabulary`, the base module that ingest, fetch and retrieval all read.
"""

from __future__ import annotations

from sscp_rag.vocabulary import (
    EMBED_THRESHOLD,
    MIN_ALIAS_HITS,
    THEME_IDS,
    THEMES,
    THEMES_BY_ID,
    Theme,
    alias_hits,
    lexicon_version,
    resolve_theme,
    tag_text,
    theme_descriptions,
    themes_in,
)

__all__ = [
    "EMBED_THRESHOLD",
    "MIN_ALIAS_HITS",
    "THEMES",
    "THEMES_BY_ID",
    "THEME_IDS",
    "Theme",
    "alias_hits",
    "lexicon_version",
    "resolve_theme",
    "tag_text",
    "theme_descriptions",
    "themes_in",
]
