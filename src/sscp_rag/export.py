"""Stable JSON shapes and exports (Markdown, Word) of hits and answers.

The JSON shapes are documented in docs/json.md; the CLI's ``--json``, the evaluation and the app
all use these functions, so they cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import io
import re
from collections.abc import Sequence
from typing import Any

from sscp_rag.records import REVIEW_TYPE_LABELS, Answer, Hit, Source

JSON_VERSION = 1


def hit_to_dict(h: Hit) -> dict[str, Any]:
    return {
        "rank": h.rank,
        "citation": h.citation,
        "file": h.file,
        "title": h.title,
        "short_title": h.short_title,
        "type": h.type,
        "year": h.year,
        "page_start": h.page_start,
        "page_end": h.page_end,
        "heading": h.heading,
        "text": h.text,
        "score": round(h.score, 6),
        "dense_score": None if h.dense_score is None else round(h.dense_score, 6),
        "bm25_score": None if h.bm25_score is None else round(h.bm25_score, 6),
        "matched_terms": list(h.matched_terms),
        "themes": list(h.themes),
    }


def source_to_dict(s: Source) -> dict[str, Any]:
    return {
        "n": s.n,
        "citation": s.citation,
        "file": s.file,
        "title": s.title,
        "short_title": s.short_title,
        "type": s.type,
        "year": s.year,
        "page_start": s.page_start,
        "page_end": s.page_end,
        "passage": s.passage,
    }


def answer_to_dict(a: Answer) -> dict[str, Any]:
    return {
        "version": JSON_VERSION,
        "question": a.question,
        "standalone_query": a.standalone_query,
        "abstained": a.abstained,
        "message": a.message,
        "best_score": round(a.best_score, 6),
        "decision": a.decision.as_dict() if a.decision is not None else None,
        "sections": [
            {
                "report": s.short_title,
                "file": s.file,
                "quotes": [{"text": q.text, "source": q.source} for q in s.quotes],
            }
            for s in a.sections
        ],
        "sources": [source_to_dict(s) for s in a.sources],
        "related": [hit_to_dict(h) for h in a.related],
        "synthesis": a.synthesis,
        "synthesis_notes": list(a.synthesis_notes),
    }


def search_to_dict(query: str, filters: dict[str, Any], hits: Sequence[Hit]) -> dict[str, Any]:
    return {"version": JSON_VERSION, "query": query, "filters": filters, "hits": [hit_to_dict(h) for h in hits]}


def _md_escape(text: str) -> str:
    """Escape Markdown so report text is shown as text (no links, emphasis or HTML)."""
    out = []
    for ch in text:
        if ch in "\\`*_{}[]()#+-.!|<>~":
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def source_line(s: Source) -> str:
    kind = REVIEW_TYPE_LABELS.get(s.type, s.type)
    year = f", {s.year}" if s.year else ""
    return f"[{s.n}] {s.citation} ({kind}{year}): {s.title}"


def answer_to_markdown(a: Answer) -> str:
    """The answer with its quotes and sources, ready to paste into slides or notes."""
    lines = [f"## {_md_escape(a.question)}", ""]
    if a.abstained:
        lines += [a.message, "", "### Possibly related passages", ""]
        for h in a.related:
            lines.append(f"- **{_md_escape(h.citation)}**: {_md_escape(_clip(h.text, 400))}")
        return "\n".join(lines) + "\n"
    if a.synthesis:
        lines += ["### Summary (generated, verified against the sources)", "", _md_escape(a.synthesis), ""]
    if a.partial_note:
        lines += [f"*{_md_escape(a.partial_note)}*", ""]
    lines += [a.message, ""]
    for sec in a.sections:
        lines.append(f"### {_md_escape(sec.short_title)}")
        lines.append("")
        for q in sec.quotes:
            lines.append(f"> \u201c{_md_escape(q.text)}\u201d [{q.source}]")
            lines.append("")
    lines += ["### Sources", ""]
    for s in a.sources:
        lines.append(f"- {_md_escape(source_line(s))}")
    return "\n".join(lines) + "\n"


# Characters XML 1.0 (and so Word) cannot hold: C0 controls other than tab, newline and carriage
# return, lone surrogates, and the two non-characters U+FFFE and U+FFFF.
_NOT_XML_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(value: Any) -> Any:
    """``value`` with the characters XML cannot hold removed from every string in it (strings,
    tuples, lists and dataclasses such as an Answer, at any depth)."""
    if isinstance(value, str):
        return _NOT_XML_RE.sub("", value)
    if isinstance(value, tuple | list):
        return type(value)(xml_safe(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: xml_safe(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
        return dataclasses.replace(value, **fields)
    return value


def answer_to_docx(a: Answer) -> bytes:
    """The answer as a Word document (python-docx). Characters that Word files cannot hold (control
    characters typed in a question or left in a PDF's text) are dropped."""
    from docx import Document

    a = xml_safe(a)
    doc = Document()
    doc.add_heading(a.question, level=1)
    if a.abstained:
        doc.add_paragraph(a.message)
        doc.add_heading("Possibly related passages", level=2)
        for h in a.related:
            p = doc.add_paragraph(style="List Bullet")
            p.add_run(h.citation + ": ").bold = True
            p.add_run(_clip(h.text, 400))
    else:
        if a.synthesis:
            doc.add_heading("Summary (generated, verified against the sources)", level=2)
            doc.add_paragraph(a.synthesis)
        if a.partial_note:
            doc.add_paragraph().add_run(a.partial_note).italic = True
        doc.add_paragraph(a.message)
        for sec in a.sections:
            doc.add_heading(sec.short_title, level=2)
            for q in sec.quotes:
                p = doc.add_paragraph(style="Quote")
                p.add_run(f"\u201c{q.text}\u201d ")
                p.add_run(f"[{q.source}]").bold = True
        doc.add_heading("Sources", level=2)
        for s in a.sources:
            doc.add_paragraph(source_line(s), style="List Number")
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


def _clip(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1].rsplit(" ", 1)[0] + "\u2026"


def clip(text: str, n: int) -> str:
    """Whitespace-folded text cut at a word boundary to at most ``n`` characters."""
    return _clip(text, n)
