"""PDF → cleaned page texts, with bad input turned into one-line reasons.

Cleaning, per document:
- control characters are dropped as the text is extracted (a PDF can hold any bytes in its text,
  and C0 controls break Word exports and terminal escape sequences reach terminals);
- ligatures and compatibility characters are normalised (NFKC), soft hyphens dropped;
- running headers and footers (lines that repeat at the top or bottom of many pages, digits
  ignored) and page-number lines are dropped;
- words hyphenated across a line break are rejoined (the hyphen is kept only when the document
  spells the word with a hyphen elsewhere);
- wrapped lines are reflowed into paragraphs, and section headings are detected.

Each file is read within a budget (``max_pages``, ``read_timeout``): a PDF of a few kilobytes can
declare tens of thousands of pages or draw one form thousands of times, so files are read in
worker processes (:mod:`sscp_rag.workers`) that are killed when a file goes over its time, and
the file is skipped with the reason.
"""

from __future__ import annotations

import logging
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pypdf import PdfReader
from pypdf.errors import FileNotDecryptedError, PdfReadError, PyPdfError

from sscp_rag.errors import PdfError
from sscp_rag.records import Page
from sscp_rag.workers import JobFailed, run_jobs

# pypdf logs recoverable oddities of real PDFs as warnings; they are not the user's concern.
logging.getLogger("pypdf").setLevel(logging.ERROR)

PARALLEL_MIN_BYTES = 256 * 1024  # below this much PDF, a second reader process costs more than it saves
MIN_DOC_CHARS = 40  # fewer extracted characters than this in the whole file = no text layer
EDGE_LINES = 3  # lines at the top and bottom of a page that may be running headers/footers

_PAGE_NUM_RE = re.compile(
    r"^\s*(?:page\s*)?\d{1,4}\s*(?:(?:of|/)\s*\d{1,4})?\s*$|^\s*-\s*\d{1,4}\s*-\s*$", re.IGNORECASE
)
_NUMBERED_RE = re.compile(r"^\(?\d{1,3}(?:\.\d{1,2}){0,3}[.)]\s+\S|^\d{1,2}(?:\.\d{1,2}){1,3}\s+\S")
_BULLET_RE = re.compile(r"^\s*(?:[•●▪◦·\-–*]|\(?[a-z]\)|\(?[ivx]{1,4}\))\s+")
_HEADING_NUM_RE = re.compile(r"^(?:\d{1,2}(?:\.\d{1,2}){0,2}\.?|[A-Z]\.|Part \w+:?|Section \w+:?)\s+(?=[A-Z])")
_END_PUNCT = tuple(".?!:;")


# C0 controls other than tab and newline, and DEL: never text. Vertical tab, form feed and carriage
# return separate words, so they become spaces (as cleaning made them before); the rest go.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_CONTROL_SPACE_RE = re.compile(r"[\x0b\x0c\r]")


def strip_controls(text: str) -> str:
    """``text`` without C0 control characters (tab and newline kept; vertical tab, form feed and
    carriage return become spaces) and without DEL."""
    return _CONTROL_RE.sub("", _CONTROL_SPACE_RE.sub(" ", text))


@dataclass(frozen=True)
class ExtractedPdf:
    """The cleaned pages of one PDF; ``empty_pages`` lists pages that had no text, and
    ``raw_pages`` holds pypdf's text of each page (control characters dropped) before cleaning."""

    pages: tuple[Page, ...]
    n_pages: int
    empty_pages: tuple[int, ...]
    first_page_raw: str
    raw_pages: tuple[str, ...] = ()


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


_PYPDF_FAILURES = (
    PdfReadError,
    PyPdfError,
    ValueError,
    KeyError,
    TypeError,
    AttributeError,
    IndexError,
    AssertionError,
    RecursionError,
    OSError,
    ZeroDivisionError,
)


def _one_line(exc: BaseException, limit: int = 120) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:limit]}"


def read_pdf(path: Path, file: str, max_pages: int = 0, need_text: bool = True) -> ExtractedPdf:
    """Extract and clean every page of a PDF. Raises PdfError with a one-line reason.

    A page whose text cannot be extracted counts as empty (the others still ingest); a file none
    of whose pages can be read is corrupt. A file of more than ``max_pages`` pages (0 = no limit)
    is refused before any page is read. With ``need_text`` false, a file with (almost) no text
    is not an error (an upload is checked so: ingest then skips it with its reason).
    """
    check_pdf_bytes(path)
    try:
        reader = PdfReader(str(path), strict=False)
        if reader.is_encrypted:
            try:
                ok = reader.decrypt("")
            except (NotImplementedError, PyPdfError) as exc:
                raise PdfError(f"encrypted PDF that cannot be decrypted ({_one_line(exc)})") from exc
            if not ok:
                raise PdfError("encrypted PDF (password required; save an unprotected copy)")
        n_pages = len(reader.pages)
        if max_pages and n_pages > max_pages:
            raise PdfError(f"too many pages ({n_pages}; at most {max_pages} are read, setting max_pages)")
        page_objs = list(reader.pages)
    except PdfError:
        raise
    except FileNotDecryptedError as exc:
        raise PdfError("encrypted PDF (password required; save an unprotected copy)") from exc
    except _PYPDF_FAILURES as exc:
        raise PdfError(f"corrupt PDF ({_one_line(exc)})") from exc
    if not page_objs:
        raise PdfError("corrupt PDF (no pages found)")
    raw_pages: list[str] = []
    failures: list[BaseException] = []
    for page in page_objs:
        try:
            raw_pages.append(strip_controls(page.extract_text() or ""))
        except FileNotDecryptedError as exc:
            raise PdfError("encrypted PDF (password required; save an unprotected copy)") from exc
        except _PYPDF_FAILURES as exc:
            failures.append(exc)
            raw_pages.append("")
    if len(failures) == len(page_objs):
        raise PdfError(f"corrupt PDF (no page could be read; {_one_line(failures[0])})") from failures[0]
    if need_text and sum(len(t.strip()) for t in raw_pages) < MIN_DOC_CHARS:
        raise PdfError(f"no text layer in {len(raw_pages)} page(s) (scanned or image-only PDF; run OCR first)")
    texts = clean_pages(raw_pages)
    pages = []
    empty = []
    for i, (text, heads) in enumerate(texts, start=1):
        if not text.strip():
            empty.append(i)
        pages.append(Page(file=file, page=i, text=text, headings=tuple(heads)))
    return ExtractedPdf(tuple(pages), len(raw_pages), tuple(empty), raw_pages[0], tuple(raw_pages))


def read_pdf_or_reason(path: Path, file: str, max_pages: int = 0) -> ExtractedPdf | str:
    """``read_pdf``, with any failure turned into its one-line reason (a file the reader chokes on
    in a way we do not know is skipped, not fatal to the ingest)."""
    try:
        return read_pdf(path, file, max_pages)
    except PdfError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - an unknown pypdf failure on one file must not stop the rest
        return f"unreadable PDF ({_one_line(exc)})"


def budget_reason(failure: JobFailed, timeout: float) -> str:
    """The one-line skip reason of a file whose reading did not finish."""
    if failure.timed_out:
        return f"over the time budget: reading took longer than {timeout:g} s (setting read_timeout)"
    return f"unreadable PDF ({failure.reason})"


def read_pdfs(
    jobs: Sequence[tuple[Path, str]],
    workers: int = 0,
    sizes: Sequence[int] | None = None,
    timeout: float = 0.0,
    max_pages: int = 0,
) -> Iterator[ExtractedPdf | str]:
    """Read ``(path, file)`` jobs, yielding an ExtractedPdf or a skip reason for each, in order.

    Each file gets ``timeout`` seconds (0 = no limit) and at most ``max_pages`` pages (0 = no
    limit); a file over either is skipped with its reason. With a time limit, files are read in
    worker processes (a runaway one is killed); pypdf is pure Python, so there are several
    (``workers``, 0 = one per core) when there is enough to read to pay for them (``sizes`` in
    bytes). Without one, a little is read in this process.
    """
    n = min(workers or os.cpu_count() or 1, len(jobs))
    total = sum(sizes) if sizes is not None else sum(p.stat().st_size for p, _ in jobs if p.exists())
    parallel = n >= 2 and total >= PARALLEL_MIN_BYTES
    if timeout <= 0 and not parallel:
        for path, file in jobs:
            yield read_pdf_or_reason(path, file, max_pages)
        return
    results = run_jobs(
        read_pdf_or_reason, [(p, f, max_pages) for p, f in jobs], workers=n if parallel else 1, timeout=timeout
    )
    try:
        for result in results:
            yield budget_reason(result, timeout) if isinstance(result, JobFailed) else result
    finally:
        results.close()  # stops the readers at once, also when the caller stops early


def normalise_chars(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)
    text = text.replace("\u00ad", "").replace("\u00a0", " ").replace("\t", " ")
    text = text.replace("\u2010", "-").replace("\u2011", "-")
    return re.sub(r"[ \f\v\r]+", " ", text)


def _edge_key(line: str) -> str:
    return re.sub(r"\d+", "#", re.sub(r"\s+", " ", line.strip().lower()))


def strip_running_lines(pages: list[list[str]]) -> list[list[str]]:
    """Drop page-number lines and header/footer lines repeated across pages.

    Lines are dropped from the top and the bottom of a page inwards (at most ``EDGE_LINES`` at
    each end) while they are running lines: a line whose text (digits ignored) recurs in the edge
    lines of at least 40% of the pages (of both pages of a two-page document), or a bare
    page-number line ("7", "Page 7 of 12", "- 7 -").
    """
    pages = [[ln for ln in lines if ln.strip()] for lines in pages]
    n = len(pages)
    counts: Counter[str] = Counter()
    for lines in pages:
        counts.update({_edge_key(ln) for ln in lines[:EDGE_LINES] + lines[-EDGE_LINES:]})
    threshold = max(2, int(0.4 * n + 0.5)) if n >= 2 else 99
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


_HYPHEN_END_RE = re.compile(r"([A-Za-z]+)-$")
_LOWER_START_RE = re.compile(r"^([a-z]+)(.*)$")


def dehyphenate(pages: list[list[str]]) -> list[list[str]]:
    """Rejoin words split by a hyphen at a line end ("safe-" + "guarding"), also across a page
    break (the whole word then stays on the earlier page).

    The hyphen is kept when the document spells the word with a hyphen elsewhere and never
    without one ("multi-" + "agency" stays "multi-agency").
    """
    whole = " ".join(" ".join(p) for p in pages)
    vocab = Counter(w.lower() for w in re.findall(r"[A-Za-z]+(?:-[A-Za-z]+)*", whole))

    def join(line: str, nxt: str) -> tuple[str, str] | None:
        """(line with the word completed, rest of the next line), or None if not a split word."""
        left_m = _HYPHEN_END_RE.search(line)
        right_m = _LOWER_START_RE.match(nxt.lstrip())
        if not left_m or not right_m:
            return None
        left, right, rest = left_m.group(1), right_m.group(1), right_m.group(2)
        keep_hyphen = vocab[f"{left}-{right}".lower()] > 0 and vocab[f"{left}{right}".lower()] == 0
        joined = f"{left}-{right}" if keep_hyphen else f"{left}{right}"
        return line[: left_m.start()] + joined, rest

    out: list[list[str]] = []
    for lines in pages:
        merged: list[str] = []
        for ln in lines:
            if merged:
                j = join(merged[-1], ln)
                if j is not None:
                    merged[-1] = j[0] + j[1]
                    continue
            elif out and out[-1]:
                j = join(out[-1][-1], ln)
                if j is not None:  # a word split over a page break: keep it on the earlier page
                    out[-1][-1] = j[0]
                    ln = j[1].lstrip()
                    if not ln:
                        continue
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
            # A heading ends a paragraph; an unnumbered short line right after it is not another
            # heading (cells of a table, lines of a list or a title block look like headings).
            prev = ln
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
