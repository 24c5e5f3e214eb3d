"""The descriptive manifest fields of a fetched document, inferred from the title of the link
to it (and its URL, and failing those the PDF's first page): review type, year, date, subject,
themes. A partnership's hand corrections in the manifest win over these (see
:mod:`sscp_rag.fetch.archive`)."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sscp_rag.vocabulary import TYPE_PATTERNS, YEAR, first_year, pseudonym, tag_text

# pypdf logs recoverable oddities of real PDFs as warnings; they are not the user's concern.
logging.getLogger("pypdf").setLevel(logging.ERROR)


_MONTHS = {
    m: i
    for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)
}
# A month then a year ("Dec 2020"): the year is the vocabulary's one pattern.
_MONTH_YEAR_RE = re.compile(
    r"\b(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+" + YEAR.pattern, re.IGNORECASE
)
# Serious case reviews gave way to local child safeguarding practice reviews in 2018-2019.
_LCSPR_FROM_YEAR = 2019


def infer_review_type(title: str, url: str = "") -> str:
    """The review type (one of ``REVIEW_TYPES``) of a document, from its link title.

    The file name in ``url`` is tried when the title says nothing. A review named after a child
    or family ("Child B Final report Jan 2021") with no other clue is an LCSPR from 2019 on and an
    SCR before; without a year it stays "other".
    """
    name = re.sub(r"[_\-+]+|%20", " ", Path(urlsplit(url).path).stem) if url else ""
    for text in (title, name):
        low = text.lower()
        for pat, rtype in TYPE_PATTERNS:
            if re.search(pat, low):
                return rtype
    year = infer_year(title, url)
    named = pseudonym(title)
    # Only a child's or family's review is a practice review: "Adult B" names an adult review.
    if named and not named.startswith("Adult") and year is not None:
        return "LCSPR" if year >= _LCSPR_FROM_YEAR else "SCR"
    return "other"


def infer_year(title: str, url: str = "") -> int | None:
    """The year in the title, else in the file name (not the upload folder, which dates the
    upload rather than the report)."""
    for text in (title, Path(urlsplit(url).path).stem if url else ""):
        year = first_year(text)
        if year is not None:
            return year
    return None


def first_page_year(path: Path) -> int | None:
    """The first year on the first page of a PDF (as ingest infers it for unlisted files), or None
    when the page has no text or the file cannot be read."""
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        text = PdfReader(path).pages[0].extract_text() or ""
    except (PyPdfError, OSError, ValueError, IndexError, KeyError, TypeError):
        return None
    return first_year(text[:1500])


def infer_date(title: str) -> str | None:
    """``YYYY-MM`` when the title names a month and year ("Dec 2020")."""
    m = _MONTH_YEAR_RE.search(title)
    return f"{m.group(2)}-{_MONTHS[m.group(1).lower()[:3]]:02d}" if m else None


def short_title(title: str, limit: int = 60) -> str:
    """The title, cut at a word boundary when longer than ``limit``."""
    if len(title) <= limit:
        return title
    cut = title[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:-")
    return cut + "…"


def describe_link(title: str, url: str) -> dict[str, Any]:
    """The descriptive manifest fields for a document linked as ``title`` at ``url``."""
    rtype = infer_review_type(title, url)
    return {
        "title": title,
        "short_title": short_title(title),
        "type": rtype,
        "year": infer_year(title, url),
        "date": infer_date(title),
        "subject": pseudonym(title),
        "themes": list(tag_text(title)),
        "executive_summary": bool(re.search(r"executive summary", title, re.IGNORECASE)),
        "fictional": False,
    }
