"""Typed, immutable records that carry provenance from PDF page to answer."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

REVIEW_TYPES: tuple[str, ...] = (
    "SCR",
    "LCSPR",
    "thematic",
    "SUDI",
    "DHR",
    "7-minute briefing",
    "good-practice",
    "infographic",
    "other",
)

REVIEW_TYPE_LABELS: dict[str, str] = {
    "SCR": "serious case review",
    "LCSPR": "local child safeguarding practice review",
    "thematic": "thematic review",
    "SUDI": "SUDI / child death thematic review",
    "DHR": "domestic homicide review",
    "7-minute briefing": "7 minute briefing",
    "good-practice": "good-practice report",
    "infographic": "infographic",
    "other": "other document",
}


def content_id(*parts: object, length: int = 16) -> str:
    """A short stable id hashed from the given parts."""
    h = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8"))
    return h.hexdigest()[:length]


def page_label(page_start: int, page_end: int) -> str:
    """``p. 4`` or ``p. 12–13`` (en dash), as citations print page spans."""
    if page_end <= page_start:
        return f"p. {page_start}"
    return f"pp. {page_start}–{page_end}"


@dataclass(frozen=True)
class DocumentMeta:
    """What the manifest (or inference) says about one PDF."""

    file: str  # path relative to the corpus root, with forward slashes
    title: str
    short_title: str
    type: str
    year: int | None = None
    date: str | None = None
    subject: str = ""
    source_url: str | None = None
    themes: tuple[str, ...] = ()
    fictional: bool = False
    executive_summary: bool = False
    inferred: bool = False  # True when not in the manifest: metadata guessed from name/first page

    @property
    def doc_id(self) -> str:
        return content_id("doc", self.file)


@dataclass(frozen=True)
class Page:
    """The cleaned text of one physical page (1-based index, as in the PDF file)."""

    file: str
    page: int
    text: str
    headings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Chunk:
    """A retrievable passage: a slice of one document's cleaned text with its page span."""

    id: str
    doc_id: str
    file: str
    seq: int  # position of the chunk within its document
    page_start: int
    page_end: int
    char_start: int  # offsets into the document's cleaned text
    char_end: int
    heading: str
    text: str
    themes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Hit:
    """One search result: a passage with its report, pages and scores."""

    chunk_id: str
    doc_id: str
    file: str
    title: str
    short_title: str
    type: str
    year: int | None
    page_start: int
    page_end: int
    heading: str
    text: str
    score: float
    dense_score: float | None = None
    bm25_score: float | None = None
    matched_terms: tuple[str, ...] = ()
    themes: tuple[str, ...] = ()
    chunk_ids: tuple[str, ...] = ()  # every chunk merged into this hit
    rank: int = 0
    char_start: int = 0  # offsets of ``text`` in the document's cleaned text
    char_end: int = 0

    @property
    def citation(self) -> str:
        """E.g. ``SCR Child D, pp. 12–13``."""
        return f"{self.short_title}, {page_label(self.page_start, self.page_end)}"


@dataclass(frozen=True)
class Source:
    """An entry of an answer's sources list: what [n] points to."""

    n: int
    file: str
    title: str
    short_title: str
    type: str
    year: int | None
    page_start: int
    page_end: int
    passage: str
    chunk_id: str = ""

    @property
    def citation(self) -> str:
        return f"{self.short_title}, {page_label(self.page_start, self.page_end)}"


@dataclass(frozen=True)
class Quote:
    """A sentence quoted verbatim from a report, with the source it cites."""

    text: str
    source: int  # the n of its Source
    score: float = 0.0


@dataclass(frozen=True)
class ReportSection:
    """The quotes of one report, grouped for display ("SCR Child D: ...")."""

    short_title: str
    file: str
    quotes: tuple[Quote, ...]


@dataclass(frozen=True)
class Answer:
    """A grounded answer: quotes grouped by report, a sources list and the evidence used."""

    question: str
    standalone_query: str
    abstained: bool
    message: str
    sections: tuple[ReportSection, ...]
    sources: tuple[Source, ...]
    related: tuple[Hit, ...] = ()  # closest passages when abstaining
    best_score: float = 0.0
    synthesis: str = ""  # optional LLM text, verified
    synthesis_notes: tuple[str, ...] = ()  # what verification dropped, or why the LLM was skipped
    hits: tuple[Hit, ...] = field(default=(), repr=False)
    decision: Any = None  # an answerability.Decision: answered, partial or declined, and why

    @property
    def partial_note(self) -> str:
        """What the reports do not cover, when they answer only part of the question ("" otherwise)."""
        d = self.decision
        return d.reason if d is not None and d.status == "partial" else ""

    @property
    def why(self) -> str:
        """The evidence behind a declined or partial answer, in one line ("" for a full answer)."""
        d = self.decision
        if d is None or d.status == "answered":
            return ""
        parts = []
        if d.missing:
            parts.append("in no indexed report: " + ", ".join(d.missing))
        if d.uncovered and d.uncovered != d.missing:
            parts.append("not in the passages found: " + ", ".join(d.uncovered))
        parts.append(f"best sentence similarity {d.best_similarity:.2f}")
        if d.basis == "model":
            parts.append(f"answerability {d.probability:.2f} (threshold {d.threshold:.2f})")
        return "; ".join(parts)

    @property
    def quotes(self) -> tuple[Quote, ...]:
        return tuple(q for s in self.sections for q in s.quotes)
