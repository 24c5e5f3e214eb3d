"""The briefing builder: a one- to two-page "7 minute briefing"-style document on a theme or a
question, made only of headings and verbatim quotes, each cited by report and page.

Method. Each section is the extractive answer (:func:`sscp_rag.answer.answer`: the same search,
sentence selection, MMR and page verification) to one question about the topic:

- **What happened**: "What happened in the cases reviewed where <theme> was an issue?" (for a
  question: the question itself);
- **Why it matters**: "Why does <theme> matter for children?";
- **What to do**: "What should practitioners do about <theme>?", then up to
  ``REGISTER_QUOTES`` recommendations of the register (:mod:`sscp_rag.recommendations`) on the
  theme (for a question: on each theme it names), quoted whole, latest reports first.
- **Further reading**: the reports quoted (title, type, year, pages quoted), then the indexed 7
  minute briefings on the theme. These are references, not sentences.

A topic that names a theme (an id, label or alias of at most four words: "professional
curiosity", "co-sleeping") restricts every search to passages tagged with it; any other topic
is taken as a question and searched as it is. A sentence already quoted in an earlier section is
not quoted again, a quote less similar than ``QUOTE_FLOOR`` to its question is left out, and
each section keeps at most ``QUOTES_PER_SECTION`` quotes, which keeps the
briefing to one or two printed pages. Before the briefing is returned every quote is checked
again, whitespace aside, to appear on the pages it cites (:func:`sscp_rag.answer.verify_quote`);
one that fails is dropped. A topic the reviews do not address raises QueryError.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from sscp_rag.answer import answer, verify_quote
from sscp_rag.errors import QueryError
from sscp_rag.index import Index
from sscp_rag.records import REVIEW_TYPE_LABELS, page_label
from sscp_rag.retrieval import Filters
from sscp_rag.settings import Settings
from sscp_rag.themes import THEMES_BY_ID, resolve_theme, themes_in

HEADINGS = ("What happened", "Why it matters", "What to do", "Further reading")
QUOTES_PER_SECTION = 4
REGISTER_QUOTES = 2
# A briefing is selective: a quote less similar than this to its section's question (a sentence
# about the document itself, "This briefing was produced after ...") is left out.
QUOTE_FLOOR = 0.45
MAX_TOPIC_CHARS = 300


@dataclass(frozen=True)
class BriefingQuote:
    """A verbatim quote with the report and pages it is printed on."""

    text: str
    file: str
    short_title: str
    page_start: int
    page_end: int
    kind: str = "sentence"  # or "recommendation"

    @property
    def citation(self) -> str:
        """E.g. ``SCR Child D, p. 12``."""
        return f"{self.short_title}, {page_label(self.page_start, self.page_end)}"


@dataclass(frozen=True)
class BriefingSection:
    heading: str
    quotes: tuple[BriefingQuote, ...]


@dataclass(frozen=True)
class Reading:
    """A Further reading entry: a report, and the pages the briefing quotes from it."""

    file: str
    short_title: str
    title: str
    type: str
    year: int | None
    pages: tuple[int, ...]

    @property
    def line(self) -> str:
        kind = REVIEW_TYPE_LABELS.get(self.type, self.type)
        year = f", {self.year}" if self.year else ""
        where = f"; quoted from p. {', '.join(map(str, self.pages))}" if self.pages else ""
        return f"{self.short_title} ({kind}{year}): {self.title}{where}"


@dataclass(frozen=True)
class Briefing:
    """A briefing: a title, three sections of cited quotes and a reading list."""

    topic: str
    theme: str | None  # the theme id when the topic names one
    title: str
    sections: tuple[BriefingSection, ...]
    reading: tuple[Reading, ...]

    @property
    def quotes(self) -> tuple[BriefingQuote, ...]:
        return tuple(q for s in self.sections for q in s.quotes)


def topic_theme(topic: str) -> str | None:
    """The theme a short topic names ("professional curiosity" -> professional-curiosity)."""
    if len(topic.split()) > 4 or "?" in topic:
        return None
    return resolve_theme(topic)


def _questions(topic: str, theme: str | None) -> tuple[str, str, str]:
    t = topic.strip().rstrip("?.! ")
    if not theme:  # a question: asked as it is, then for why it matters and what to do
        return (f"{t}?", f"Why does this matter for children: {t}?", f"What should practitioners do: {t}?")
    return (
        f"What happened in the cases reviewed where {t} was an issue?",
        f"Why does {t} matter for children?",
        f"What should practitioners do about {t}?",
    )


def build_briefing(index: Index, topic: str, settings: Settings | None = None) -> Briefing:
    """A briefing on ``topic`` (a theme or a question); see the module docstring. Raises
    QueryError for an empty or over-long topic, an index without reports, or a topic no indexed
    report addresses."""
    topic = " ".join((topic or "").split())
    if not topic:
        raise QueryError("the topic is empty; give a theme (e.g. 'professional curiosity') or a question")
    if len(topic) > MAX_TOPIC_CHARS:
        raise QueryError(f"the topic is {len(topic)} characters long; use at most {MAX_TOPIC_CHARS}")
    if not index.docs:
        raise QueryError("the index holds no reports; add PDFs to the corpus and run: sscp-rag ingest")
    s = settings or index.settings
    theme = topic_theme(topic)
    filters = Filters(themes=(theme,)) if theme else None
    label = THEMES_BY_ID[theme].label if theme else topic
    seen: set[str] = set()
    sections: list[BriefingSection] = []
    for heading, question in zip(HEADINGS[:3], _questions(label if theme else topic, theme)):
        a = answer(index, question, filters=filters, settings=s)
        quotes: list[BriefingQuote] = []
        if not a.abstained:
            by_n = {src.n: src for src in a.sources}
            for q in a.quotes:
                key = " ".join(q.text.lower().split())
                if key in seen or len(quotes) >= QUOTES_PER_SECTION or q.score < QUOTE_FLOOR:
                    continue
                src = by_n[q.source]
                seen.add(key)
                quotes.append(BriefingQuote(q.text, src.file, src.short_title, src.page_start, src.page_end))
        if heading == "What to do":
            for t in (theme,) if theme else themes_in(topic):
                quotes += _register_quotes(index, t, seen)
        sections.append(BriefingSection(heading, tuple(_verified(index, quotes))))
    if not any(sec.quotes for sec in sections):
        raise QueryError(f"the indexed reviews do not appear to address {topic!r}; try another theme or question")
    return Briefing(topic, theme, f"7 minute briefing: {label}", tuple(sections), _reading(index, sections, theme))


def _register_quotes(index: Index, theme: str, seen: set[str]) -> list[BriefingQuote]:
    from sscp_rag.recommendations import register

    out = []
    for r in sorted(register(index), key=lambda r: -(r.year or 0)):
        key = " ".join(r.text.lower().split())
        if theme not in r.themes or key in seen or len(out) >= REGISTER_QUOTES:
            continue
        seen.add(key)
        out.append(BriefingQuote(r.text, r.file, r.short_title, r.page_start, r.page_end, "recommendation"))
    return out


def _verified(index: Index, quotes: Sequence[BriefingQuote]) -> list[BriefingQuote]:
    return [q for q in quotes if verify_quote(index, q.file, q.page_start, q.page_end, q.text)]


def _reading(index: Index, sections: Sequence[BriefingSection], theme: str | None) -> tuple[Reading, ...]:
    pages: dict[str, set[int]] = {}
    for sec in sections:
        for q in sec.quotes:
            pages.setdefault(q.file, set()).update(range(q.page_start, q.page_end + 1))
    files = list(pages)
    if theme:  # the partnership's own briefings on the theme, even where not quoted
        files += [
            d.meta.file
            for d in index.docs.values()
            if d.meta.type == "7-minute briefing" and theme in d.themes and d.meta.file not in pages
        ]
    out = []
    for f in files:
        m = index.by_file[f].meta
        out.append(Reading(f, m.short_title, m.title, m.type, m.year, tuple(sorted(pages.get(f, ())))))
    return tuple(out)


def verify_briefing(index: Index, b: Briefing) -> list[str]:
    """The quotes of ``b`` that are not verbatim on their cited pages (empty when all are)."""
    return [
        q.citation + ": " + q.text
        for q in b.quotes
        if not verify_quote(index, q.file, q.page_start, q.page_end, q.text)
    ]


def briefing_to_markdown(b: Briefing) -> str:
    """The briefing as Markdown: headings, quotes as block quotes with their citations, and the
    reading list. Report text is escaped, so nothing in a PDF becomes a link or markup."""
    from sscp_rag.export import _md_escape

    lines = [f"# {_md_escape(b.title)}", ""]
    for sec in b.sections:
        lines += [f"## {sec.heading}", ""]
        for q in sec.quotes:
            lines += [f"> \u201c{_md_escape(q.text)}\u201d ({_md_escape(q.citation)})", ""]
    lines += [f"## {HEADINGS[3]}", ""]
    for r in b.reading:
        lines.append(f"- {_md_escape(r.line)}")
    return "\n".join(lines).rstrip() + "\n"


def briefing_to_docx(b: Briefing) -> bytes:
    """The briefing as a Word document (python-docx)."""
    from docx import Document
    from docx.shared import Pt

    from sscp_rag.export import xml_safe

    b = xml_safe(b)
    doc = Document()
    doc.styles["Normal"].font.size = Pt(10)
    doc.add_heading(b.title, level=1)
    for sec in b.sections:
        doc.add_heading(sec.heading, level=2)
        for q in sec.quotes:
            p = doc.add_paragraph(style="Quote")
            p.add_run(f"\u201c{q.text}\u201d ")
            p.add_run(f"({q.citation})").bold = True
    doc.add_heading(HEADINGS[3], level=2)
    for r in b.reading:
        doc.add_paragraph(r.line, style="List Bullet")
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


def briefing_to_dict(b: Briefing) -> dict:
    """The stable JSON shape of ``sscp-rag brief --json`` (docs/json.md)."""
    return {
        "version": 1,
        "topic": b.topic,
        "theme": b.theme,
        "title": b.title,
        "sections": [
            {
                "heading": sec.heading,
                "quotes": [
                    {
                        "text": q.text,
                        "citation": q.citation,
                        "file": q.file,
                        "short_title": q.short_title,
                        "page_start": q.page_start,
                        "page_end": q.page_end,
                        "kind": q.kind,
                    }
                    for q in sec.quotes
                ],
            }
            for sec in b.sections
        ],
        "further_reading": [
            {
                "file": r.file,
                "short_title": r.short_title,
                "title": r.title,
                "type": r.type,
                "year": r.year,
                "pages": list(r.pages),
            }
            for r in b.reading
        ],
    }


__all__ = [
    "Briefing",
    "BriefingQuote",
    "BriefingSection",
    "Reading",
    "HEADINGS",
    "build_briefing",
    "verify_briefing",
    "briefing_to_markdown",
    "briefing_to_docx",
    "briefing_to_dict",
    "topic_theme",
]
