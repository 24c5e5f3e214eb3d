"""PDF → cleaned page texts, with bad input turned into one-line reasons.

Cleaning, per document:
- ligatures and compatibility characters are normalised (NFKC), soft hyphens dropped;
- running headers and footers (lines that repeat at the top or bottom of many pages, digits
  ignored) and page-number lines are dropped;
- words hyphenated across a line break are rejoined (the hyphen is kept only when the document
  spells the word with a hyphen elsewhere);
- wrapped lines are reflowed into paragraphs, and section headings are detected.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pypdf import PdfReader
from pypdf.errors import FileNotDecryptedError, PdfReadError, PyPdfError

from sscp_rag.errors import PdfError
from sscp_rag.records import Page

# pypdf logs recoverable oddities of real PDFs as warnings; they are not the user's concern.
logging.getLogger("pypdf").setLevel(logging.ERROR)

MIN_DOC_CHARS = 40  # fewer extracted characters than this in the whole file = no text layer
EDGE_LINES = 3  # lines at the top and bottom of a page that may be running headers/footers

_PAGE_NUM_RE = re.compile(
    r"^\s*(?:page\s*)?\d{1,4}\s*(?:(?:of|/)\s*\d{1,4})?\s*$|^\s*-\s*\d{1,4}\s*-\s*$", re.IGNORECASE
)
_NUMBERED_RE = re.compile(r"^\(?\d{1,3}(?:\.\d{1,2}){0,3}[.)]\s+\S|^\d{1,2}(?:\.\d{1,2}){1,3}\s+\S")
_BULLET_RE = re.compile(r"^\s*(?:[•●▪◦·\-–*]|\(?[a-z]\)|\(?[ivx]{1,4}\))\s+")
_HEADING_NUM_RE = re.compile(r"^(?:\d{1,2}(?:\.\d{1,2}){0,2}\.?|[A-Z]\.|Part \w+:?|Section \w+:?)\s+(?=[A-Z])")
_END_PUNCT = tuple(".?!:;")


@dataclass(frozen=True)
class ExtractedPdf:
    """The cleaned pages of one PDF; ``empty_pages`` lists pages that had no text."""

    pages: tuple[Page, ...]
    n_pages: int
    empty_pages: tuple[int, ...]
    first_page_raw: str


def check_pdf_bytes(path: Path) -> None:
    """Raise PdfError for files that cannot be a PDF, before pypdf sees them."""
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(1024)
            fh.seek(max(0, size - 4096))
            tail = fh.read()
    except OSError as exc:
        raise PdfError(f"cannot read file ({exc.strerror or exc})") from exc
    if size == 0:
        raise PdfError("empty file (0 bytes)")
    if b"%PDF-" not in head:
        raise PdfError("not a PDF (no %PDF- header; another file type renamed to .pdf?)")
    if b"%%EOF" not in tail:
        raise PdfError("truncated PDF (no end-of-file marker; re-download or re-save it)")


def read_pdf(path: Path, file: str) -> ExtractedPdf:
    """Extract and clean every page of a PDF. Raises PdfError with a one-line reason."""
    check_pdf_bytes(path)
    try:
        reader = PdfReader(str(path), strict=False)
        if reader.is_encrypted:
            try:
                ok = reader.decrypt("")
            except (NotImplementedError, PyPdfError) as exc:
                raise PdfError(f"encrypted PDF that cannot be decrypted ({exc})") from exc
            if not ok:
                raise PdfError("encrypted PDF (password required; save an unprotected copy)")
        raw_pages = [page.extract_text() or "" for page in reader.pages]
    except PdfError:
        raise
    except FileNotDecryptedError as exc:
        raise PdfError("encrypted PDF (password required; save an unprotected copy)") from exc
    except (PdfReadError, PyPdfError, ValueError, KeyError, TypeError, AttributeError,
            IndexError, AssertionError, RecursionError, OSError, ZeroDivisionError) as exc:
        raise PdfError(f"corrupt PDF ({type(exc).__name__}: {str(exc)[:120]})") from exc
    if not raw_pages:
        raise PdfError("PDF has no pages")
    if sum(len(t.strip()) for t in raw_pages) < MIN_DOC_CHARS:
        raise PdfError(
            f"no text layer in {len(raw_pages)} page(s) (scanned or image-only PDF; run OCR first)"
        )
    texts = clean_pages(raw_pages)
    pages = []
    empty = []
    for i, (text, heads) in enumerate(texts, start=1):
        if not text.strip():
            empty.append(i)
        pages.append(Page(file=file, page=i, text=text, headings=tuple(heads)))
    return ExtractedPdf(tuple(pages), len(raw_pages), tuple(empty), raw_pages[0])


def normalise_chars(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("\u00ad", "").replace("\u00a0", " ").replace("\t", " ")
    text = text.replace("\u2010", "-").replace("\u2011", "-")
    return re.sub(r"[ \f\v\r]+", " ", text)


def _edge_key(line: str) -> str:
    return re.sub(r"\d+", "#", re.sub(r"\s+", " ", line.strip().lower()))


def strip_running_lines(pages: list[list[str]]) -> list[list[str]]:
    """Drop page-number lines and header/footer lines repeated across pages."""
    pages = [[ln for ln in lines if ln.strip()] for lines in pages]
    n = len(pages)
    counts: Counter[str] = Counter()
    for lines in pages:
        counts.update({_edge_key(ln) for ln in lines[:EDGE_LINES] + lines[-EDGE_LINES:]})
    threshold = max(2, int(0.4 * n + 0.5)) if n >= 3 else 99
    repeated = {k for k, c in counts.items() if c >= threshold and len(k) > 1}

    def running(line: str) -> bool:
        return bool(_PAGE_NUM_RE.match(line)) or _edge_key(line) in repeated

    out = []
    for lines in pages:
        top = 0
        while top < min(EDGE_LINES, len(lines)) and running(lines[top]):
            top += 1
        bottom = len(lines)
        while bottom > max(top, len(lines) - EDGE_LINES) and running(lines[bottom - 1]):
            bottom -= 1
        out.append(lines[top:bottom])
    return out


def dehyphenate(pages: list[list[str]]) -> list[list[str]]:
    """Rejoin words split by a hyphen at a line end ("safe-" + "guarding")."""
    whole = " ".join(" ".join(p) for p in pages)
    vocab = Counter(w.lower() for w in re.findall(r"[A-Za-z]+(?:-[A-Za-z]+)*", whole))
    out = []
    for lines in pages:
        merged: list[str] = []
        for ln in lines:
            if merged and re.search(r"[A-Za-z]-$", merged[-1]) and re.match(r"^[a-z]", ln.lstrip()):
                left = re.search(r"([A-Za-z]+)-$", merged[-1]).group(1)
                right_m = re.match(r"^([a-z]+)(.*)$", ln.lstrip())
                right, rest = right_m.group(1), right_m.group(2)
                keep_hyphen = vocab[f"{left}-{right}".lower()] > 0 and vocab[f"{left}{right}".lower()] == 0
                joined = f"{left}-{right}" if keep_hyphen else f"{left}{right}"
                merged[-1] = merged[-1][: -len(left) - 1] + joined + rest
            else:
                merged.append(ln)
        out.append(merged)
    return out


def is_heading(line: str, prev: str | None, typical_len: float) -> bool:
    s = line.strip()
    if not s or len(s) > 90 or len(s) < 3:
        return False
    words = s.split()
    if len(words) > 12 or s.endswith((".", ",", ";", ":")) and not _HEADING_NUM_RE.match(s):
        return False
    if s.endswith((",", ";")) or re.search(r"(\.{3,}|\s)\d{1,3}$", s):  # contents lines end in page refs
        return False
    if _BULLET_RE.match(s) or _PAGE_NUM_RE.match(s):
        return False
    body = _HEADING_NUM_RE.sub("", s)
    if not body or not body[0].isupper() or len(body.split()) > 10:
        return False
    if typical_len and len(s) > 0.75 * typical_len:
        return False
    if sum(c.isalpha() for c in body) < 0.6 * len(body):
        return False
    numbered = bool(_HEADING_NUM_RE.match(s))
    after_break = prev is None or not prev.strip() or prev.rstrip().endswith(_END_PUNCT)
    if numbered:
        return not s.endswith(".")
    return after_break and not s.endswith(_END_PUNCT)


def reflow(lines: list[str], typical_len: float) -> tuple[str, list[str]]:
    """Join wrapped lines into paragraphs; headings get their own paragraph."""
    paras: list[str] = []
    headings: list[str] = []
    cur: list[str] = []
    prev: str | None = None

    def flush() -> None:
        if cur:
            paras.append(" ".join(cur))
            cur.clear()

    for raw in lines:
        ln = raw.strip()
        if not ln:
            flush()
            prev = ""
            continue
        if is_heading(ln, prev, typical_len):
            flush()
            paras.append(ln)
            headings.append(ln)
            prev = ""  # a heading ends a paragraph
            continue
        starts_new = bool(_NUMBERED_RE.match(ln) or _BULLET_RE.match(ln))
        prev_ended = prev is not None and prev.endswith(_END_PUNCT) and len(prev) < 0.85 * typical_len
        if cur and (starts_new or prev_ended):
            flush()
        cur.append(ln)
        prev = ln
    flush()
    return "\n\n".join(paras), headings


def clean_pages(raw_pages: list[str]) -> list[tuple[str, list[str]]]:
    """Cleaned text and detected headings for each page of one document."""
    pages = [[ln.rstrip() for ln in normalise_chars(t).split("\n")] for t in raw_pages]
    pages = strip_running_lines(pages)
    pages = dehyphenate(pages)
    lengths = sorted(len(ln.strip()) for p in pages for ln in p if len(ln.strip()) > 20)
    typical = float(lengths[int(len(lengths) * 0.75)]) if lengths else 80.0
    return [reflow(p, typical) for p in pages]
