"""The theme map: which themes recur across the indexed reviews, and whether they rise or fall.

- **Matrix** (:func:`theme_map`): for each theme and report, the number of the report's passages
  (chunks) tagged with the theme at ingest (:mod:`sscp_rag.themes`: the alias lexicon, plus
  embedding similarity to the theme's description), and the report's **strongest passage** for
  the theme. Strength is the number of the theme's alias occurrences in the passage
  (:func:`sscp_rag.themes.alias_hits`) plus the cosine similarity of the passage's vector (the
  one in the index) to the theme's description (0-1). Alias occurrences therefore decide, and the
  similarity breaks ties and ranks passages tagged by similarity alone (which have no alias).
- **Years** (:func:`themes_by_year`): by review date (the report's year), the number of reports
  published that year, how many of them have the theme, that share, and the tagged passages.
  A theme's **trend** is the least-squares slope of that share over the years that have reports:
  "rising" above +0.02 a year, "falling" below -0.02, else "steady"; with fewer than three
  years it is "too few years". Reports with no year are left out of the years.

Passages behind a cell (:func:`cell_passages`) carry page spans, so every one is cited by
report and page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sscp_rag.errors import QueryError
from sscp_rag.index import Index
from sscp_rag.records import Chunk, page_label
from sscp_rag.themes import THEME_IDS, THEMES_BY_ID, alias_hits, resolve_theme, theme_descriptions

TREND_SLOPE = 0.02


@dataclass(frozen=True)
class ReportColumn:
    """A report as a column of the map, in order of review date."""

    file: str
    short_title: str
    title: str
    type: str
    year: int | None
    date: str | None


@dataclass(frozen=True)
class ThemePassage:
    """A passage tagged with a theme, with its strength for the theme and its pages."""

    theme: str
    file: str
    short_title: str
    chunk_id: str
    page_start: int
    page_end: int
    heading: str
    text: str
    alias_hits: int
    similarity: float

    @property
    def strength(self) -> float:
        return self.alias_hits + self.similarity

    @property
    def citation(self) -> str:
        return f"{self.short_title}, {page_label(self.page_start, self.page_end)}"


@dataclass(frozen=True)
class ThemeCell:
    """One theme in one report: how many passages are tagged with it, and the strongest one."""

    theme: str
    file: str
    count: int
    best: ThemePassage


@dataclass(frozen=True)
class ThemeMap:
    """Themes (rows) by reports (columns, by review date) with the non-empty cells."""

    themes: tuple[str, ...]
    reports: tuple[ReportColumn, ...]
    cells: tuple[ThemeCell, ...]

    def cell(self, theme: str, file: str) -> ThemeCell | None:
        for c in self.cells:
            if c.theme == theme and c.file == file:
                return c
        return None

    def count(self, theme: str, file: str) -> int:
        c = self.cell(theme, file)
        return c.count if c else 0

    def total(self, theme: str) -> int:
        return sum(c.count for c in self.cells if c.theme == theme)

    def reports_with(self, theme: str) -> int:
        return sum(1 for c in self.cells if c.theme == theme)


@dataclass(frozen=True)
class YearRow:
    """One theme in one year of review dates."""

    year: int
    theme: str
    reports_in_year: int
    reports: int  # reports of that year with the theme
    passages: int

    @property
    def share(self) -> float:
        return self.reports / self.reports_in_year if self.reports_in_year else 0.0


def _theme_arg(theme: str | None) -> str | None:
    if theme is None or not theme.strip():
        return None
    tid = resolve_theme(theme)
    if tid is None:
        raise QueryError(f"unknown theme {theme!r}; use one of: {', '.join(THEME_IDS)}")
    return tid


def _columns(index: Index) -> list[ReportColumn]:
    docs = sorted(
        index.docs.values(), key=lambda d: (d.meta.date or (str(d.meta.year) if d.meta.year else "9999"), d.meta.file)
    )
    return [
        ReportColumn(d.meta.file, d.meta.short_title, d.meta.title, d.meta.type, d.meta.year, d.meta.date) for d in docs
    ]


def _similarities(index: Index, rows: Sequence[int], themes: Sequence[str]) -> np.ndarray:
    """Cosine of each chunk (by row) with each theme's description: rows x themes."""
    if not rows or not themes:
        return np.zeros((len(rows), len(themes)), dtype=np.float32)
    from sscp_rag.retrieval import sentence_vectors

    descriptions = theme_descriptions()
    tvecs = sentence_vectors(index, [descriptions[THEME_IDS.index(t)] for t in themes])
    cvecs = np.vstack([index.faiss.reconstruct(int(r)) for r in rows])
    return cvecs @ tvecs.T


def _passages(index: Index, theme: str | None, file: str | None = None) -> list[ThemePassage]:
    """Every tagged passage (of one theme and/or report), with alias hits and similarity."""
    picked: list[tuple[int, Chunk, str]] = []
    for row, c in enumerate(index.chunks):
        if file is not None and c.file != file:
            continue
        for t in c.themes:
            if theme is None or t == theme:
                picked.append((row, c, t))
    if not picked:
        return []
    themes = sorted({t for _, _, t in picked}, key=THEME_IDS.index)
    rows = sorted({r for r, _, _ in picked})
    sims = _similarities(index, rows, themes)
    row_at = {r: i for i, r in enumerate(rows)}
    col_at = {t: j for j, t in enumerate(themes)}
    out = []
    for r, c, t in picked:
        meta = index.docs[c.doc_id].meta
        out.append(
            ThemePassage(
                t,
                c.file,
                meta.short_title,
                c.id,
                c.page_start,
                c.page_end,
                c.heading,
                c.text,
                alias_hits(c.text).get(t, 0),
                float(sims[row_at[r], col_at[t]]),
            )
        )
    return out


def theme_map(index: Index, theme: str | None = None) -> ThemeMap:
    """The matrix of themes by reports: tagged-passage counts and each cell's strongest passage
    (see the module docstring). ``theme`` (an id, label or alias) keeps one row. Raises
    QueryError for an unknown theme or an index without reports."""
    if not index.docs:
        raise QueryError("the index holds no reports; add PDFs to the corpus and run: sscp-rag ingest")
    tid = _theme_arg(theme)
    best: dict[tuple[str, str], ThemePassage] = {}
    counts: dict[tuple[str, str], int] = {}
    for p in _passages(index, tid):
        key = (p.theme, p.file)
        counts[key] = counts.get(key, 0) + 1
        if key not in best or p.strength > best[key].strength:
            best[key] = p
    columns = _columns(index)
    order = {c.file: i for i, c in enumerate(columns)}
    themes = tuple(t for t in THEME_IDS if any(k[0] == t for k in counts)) if tid is None else (tid,)
    cells = tuple(
        ThemeCell(t, f, counts[(t, f)], best[(t, f)])
        for t, f in sorted(counts, key=lambda k: (THEME_IDS.index(k[0]), order[k[1]]))
    )
    return ThemeMap(themes, tuple(columns), cells)


def cell_passages(index: Index, theme: str, report: str, limit: int | None = None) -> list[ThemePassage]:
    """The passages of ``report`` (file, short title or pseudonym) tagged with ``theme``, strongest
    first. Raises QueryError for an unknown theme or report."""
    from sscp_rag.retrieval import resolve_report

    tid = _theme_arg(theme)
    if tid is None:
        raise QueryError("choose a theme")
    doc_id = resolve_report(index, report)
    if doc_id is None:
        names = ", ".join(sorted(d.meta.short_title for d in index.docs.values()))
        raise QueryError(f"unknown report {report!r}; indexed reports: {names}")
    found = sorted(_passages(index, tid, index.docs[doc_id].meta.file), key=lambda p: -p.strength)
    return found[:limit] if limit else found


def themes_by_year(index: Index, theme: str | None = None) -> list[YearRow]:
    """For each year of review dates and each theme: reports that year, how many have the theme,
    and the tagged passages (see the module docstring). Years with no report are left out."""
    if not index.docs:
        raise QueryError("the index holds no reports; add PDFs to the corpus and run: sscp-rag ingest")
    tid = _theme_arg(theme)
    by_year: dict[int, list[str]] = {}
    for d in index.docs.values():
        if d.meta.year:
            by_year.setdefault(d.meta.year, []).append(d.meta.file)
    passages: dict[tuple[int, str], int] = {}
    has: dict[tuple[int, str], set[str]] = {}
    year_of = {d.meta.file: d.meta.year for d in index.docs.values()}
    for c in index.chunks:
        y = year_of.get(c.file)
        if not y:
            continue
        for t in c.themes:
            if tid is None or t == tid:
                passages[(y, t)] = passages.get((y, t), 0) + 1
                has.setdefault((y, t), set()).add(c.file)
    themes = [t for t in THEME_IDS if any(k[1] == t for k in passages)] if tid is None else [tid]
    return [
        YearRow(y, t, len(by_year[y]), len(has.get((y, t), ())), passages.get((y, t), 0))
        for t in themes
        for y in sorted(by_year)
    ]


def trend(rows: Sequence[YearRow], theme: str) -> tuple[str, float]:
    """("rising" | "falling" | "steady" | "too few years", slope of the share a year)."""
    pts = [(r.year, r.share) for r in rows if r.theme == theme]
    if len(pts) < 3:
        return "too few years", 0.0
    x = np.array([p[0] for p in pts], dtype=float)
    y = np.array([p[1] for p in pts], dtype=float)
    slope = float(np.polyfit(x, y, 1)[0])
    if slope > TREND_SLOPE:
        return "rising", slope
    if slope < -TREND_SLOPE:
        return "falling", slope
    return "steady", slope


def passage_to_dict(p: ThemePassage) -> dict:
    return {
        "citation": p.citation,
        "file": p.file,
        "short_title": p.short_title,
        "page_start": p.page_start,
        "page_end": p.page_end,
        "heading": p.heading,
        "text": p.text,
        "alias_hits": p.alias_hits,
        "similarity": round(p.similarity, 4),
    }


def map_to_dict(m: ThemeMap) -> dict:
    """The stable JSON shape of ``sscp-rag themes --json`` (docs/json.md)."""
    return {
        "version": 1,
        "by": "review",
        "themes": [{"id": t, "label": THEMES_BY_ID[t].label, "passages": m.total(t)} for t in m.themes],
        "reports": [
            {"file": r.file, "short_title": r.short_title, "type": r.type, "year": r.year, "date": r.date}
            for r in m.reports
        ],
        "cells": [
            {"theme": c.theme, "file": c.file, "count": c.count, "strongest": passage_to_dict(c.best)} for c in m.cells
        ],
    }


def years_to_dict(rows: Sequence[YearRow]) -> dict:
    """The stable JSON shape of ``sscp-rag themes --by year --json`` (docs/json.md)."""
    themes = list(dict.fromkeys(r.theme for r in rows))
    return {
        "version": 1,
        "by": "year",
        "rows": [
            {
                "year": r.year,
                "theme": r.theme,
                "reports_in_year": r.reports_in_year,
                "reports": r.reports,
                "share": round(r.share, 4),
                "passages": r.passages,
            }
            for r in rows
        ],
        "trends": [{"theme": t, "trend": trend(rows, t)[0], "slope": round(trend(rows, t)[1], 4)} for t in themes],
    }


def map_csv(m: ThemeMap) -> str:
    """The matrix as CSV: one row per theme, one column per report (passage counts)."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["theme", *(r.short_title for r in m.reports), "total"])
    for t in m.themes:
        w.writerow([t, *(m.count(t, r.file) for r in m.reports), m.total(t)])
    return buf.getvalue()


def years_csv(rows: Sequence[YearRow]) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["year", "theme", "reports_in_year", "reports", "share", "passages"])
    for r in rows:
        w.writerow([r.year, r.theme, r.reports_in_year, r.reports, f"{r.share:.4f}", r.passages])
    return buf.getvalue()


__all__ = [
    "ReportColumn",
    "ThemePassage",
    "ThemeCell",
    "ThemeMap",
    "YearRow",
    "theme_map",
    "cell_passages",
    "themes_by_year",
    "trend",
    "map_to_dict",
    "years_to_dict",
    "map_csv",
    "years_csv",
]
