"""Fetch published review PDFs from the web into a corpus folder, with provenance.

``fetch(urls, dest)`` reads each start page (by default the SSCP "Learning from Local Reviews"
page and the "7 Minute Briefings" page it links to), finds the links to PDFs on it and on the
pages it links to (one level deep), downloads each PDF into ``dest`` and records it in
``dest/manifest.json`` in the corpus manifest format of :mod:`sscp_rag.corpus`, plus provenance
(``source_url``, ``linked_from``, ``sha256``, ``fetched_at``, ``etag``, ``last_modified``).

A PDF link is a link whose path ends ``.pdf``, or a same-site link that looks like a document (its
text or path says report, review, briefing, download, summary, ...) and answers with a PDF
(``%PDF-`` in its first bytes): a download path or a redirect to the file.

Safety and politeness (the HTTP side lives in :mod:`sscp_rag.http`):

- only the start pages' hosts and the hosts the user allows are contacted; connections to loopback,
  private and link-local addresses are refused unless a start page is on one;
- robots.txt is read per host and honoured (RFC 9309: 4xx = allow all, 401/403 and 5xx =
  disallow all); its ``Crawl-delay`` raises the per-host delay between requests;
- timeouts, a total deadline per request, retries with exponential backoff (connection errors,
  429, 5xx), redirects followed by hand (at most 5 hops, each checked, http(s) only);
- size caps on decoded bytes (identity or gzip only), a ``%PDF-`` check of the body itself and a
  cap on the PDFs fetched in one run; failure reasons never quote a response body;
- file names are one sanitised path segment inside ``dest`` (``..%2F..%2Fx.pdf`` is saved as
  ``x.pdf``), and a name already used by a different document gets a short hash suffix instead of
  replacing it;
- downloads go to a hidden temporary file in ``dest``, are fsynced and then renamed over the
  target, so an interrupted run never leaves a half-written PDF; the manifest is written the
  same way;
- a second run revalidates every file it has with ``If-None-Match`` / ``If-Modified-Since`` and
  compares sha256, so unchanged files are neither rewritten nor counted as new.

If no start page can be fetched (no network), :class:`~sscp_rag.errors.FetchError` is raised
before anything in ``dest`` is touched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import logging
import os
import re
import tempfile
import time
import unicodedata
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

import httpx
from bs4 import BeautifulSoup
from tqdm import tqdm

from sscp_rag import __version__
from sscp_rag.corpus_manifest import MANIFEST_NAME, corpus_lock, fsync_dir, sha256_file, write_atomic
from sscp_rag.corpus_manifest import read_manifest as read_corpus_manifest
from sscp_rag.errors import ConfigError, CorpusError, FetchError
from sscp_rag.http import (
    HTML_TYPES,
    ROBOTS_AGENT,
    AddressPolicy,
    Disallowed,
    Http,
    Refused,
    Unreachable,
    content_type,
    hostname,
    make_client,
    normalise_host,
    status_reason,
)
from sscp_rag.settings import Settings
from sscp_rag.vocabulary import TYPE_PATTERNS, first_year, pseudonym, tag_text

DEFAULT_START_URL = "https://www.surreyscp.org.uk/case-reviews/learning-from-local-reviews/"
# Used only when the start page has no link whose text mentions "7 Minute Briefing"; the page is
# normally discovered from that link. (Not verified from this machine, which has no network.)
DEFAULT_BRIEFINGS_URL = "https://www.surreyscp.org.uk/resources/7-minute-briefings/"
DEFAULT_DEST = Path("corpus/sscp")

# pypdf logs recoverable oddities of real PDFs as warnings; they are not the user's concern.
logging.getLogger("pypdf").setLevel(logging.ERROR)

_BRIEFINGS_LINK_RE = re.compile(r"\b(?:7|seven)[\s-]*minute[\s-]*briefing", re.IGNORECASE)
_PDF_MAGIC = b"%PDF-"
_MAGIC_WINDOW = 1024  # the PDF header may follow a little junk, as readers allow
_TMP_PREFIX = ".fetch-"
_TMP_SUFFIX = ".part"
_PAGE_EXTS = ("", ".html", ".htm", ".php", ".asp", ".aspx", ".jsp")
# Links to these are never probed for a PDF.
_OTHER_EXTS = frozenset(
    ".doc .docx .odt .rtf .txt .xls .xlsx .ods .csv .ppt .pptx .odp .jpg .jpeg .png .gif .svg .webp "
    ".mp3 .mp4 .mov .zip .css .js .xml".split()
)
# A same-site link whose text or path says this may lead to a document without ending ".pdf".
_DOCUMENT_LINK_RE = re.compile(
    r"(?<![a-z])(?:report|review|briefing|download|summary|scr|lcspr|cspr|dhr|sudi|document|publication"
    r"|attachment|infographic|pdf|file)s?(?![a-z])",
    re.IGNORECASE,
)
_GENERIC_TEXT_RE = re.compile(
    r"^(?:download|click here|here|pdf|read more|more|view|open|link|document|full report)\b.{0,20}$",
    re.IGNORECASE,
)


_SETTINGS = Settings()  # the defaults of the settings the CLI passes on (fetch_max_files, ...)


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class FetchOptions:
    """How :func:`fetch` crawls and downloads. Field metadata ``help`` documents each one."""

    max_bytes: int = _opt(50 * 1024 * 1024, "Largest PDF downloaded, in bytes; larger files are refused.")
    max_page_bytes: int = _opt(5 * 1024 * 1024, "Largest HTML page read, in bytes.")
    delay: float = _opt(1.0, "Least seconds between two requests to one host (robots.txt Crawl-delay raises it).")
    timeout: float = _opt(30.0, "Seconds to wait to connect and between bytes of a response.")
    deadline: float = _opt(
        _SETTINGS.fetch_deadline,
        "Most seconds one request may take in all (connecting, headers and the whole body), however "
        "steadily the server drips bytes; each redirect hop and retry is a request of its own.",
    )
    retries: int = _opt(2, "Extra attempts after a connection error, timeout, 429 or 5xx.")
    backoff: float = _opt(1.0, "Seconds before the first retry; doubles for each further retry.")
    max_pages: int = _opt(60, "Most linked HTML pages followed (one level deep) in one run.")
    max_files: int = _opt(
        _SETTINGS.fetch_max_files, "Most PDFs fetched in one run; further PDF links are counted in the summary."
    )
    allow_hosts: tuple[str, ...] = _opt(
        (), "Hosts besides the start pages' own whose links and redirects are followed (e.g. a CDN)."
    )
    contact: str = _opt("", "URL or e-mail put in the User-Agent so site owners can reach you.")
    progress: bool = _opt(True, "Show a progress bar while downloading.")

    @property
    def user_agent(self) -> str:
        return f"{ROBOTS_AGENT}/{__version__} (+{self.contact or 'safeguarding review archive'})"

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.max_page_bytes < 1 or self.max_files < 1:
            raise ConfigError("the size caps and max_files must be positive")
        if self.delay < 0 or self.timeout <= 0 or self.deadline <= 0 or self.retries < 0 or self.backoff < 0:
            raise ConfigError("delay, retries and backoff must be >= 0, the timeout and deadline > 0")
        hosts = (self.allow_hosts,) if isinstance(self.allow_hosts, str) else self.allow_hosts
        try:
            object.__setattr__(self, "allow_hosts", tuple(dict.fromkeys(normalise_host(h) for h in hosts)))
        except ValueError as exc:
            raise ConfigError(f"allowed hosts: {exc}") from None

    @classmethod
    def describe(cls) -> list[tuple[str, str, Any]]:
        """(name, help, default) for every option."""
        return [(f.name, f.metadata["help"], f.default) for f in dataclasses.fields(cls)]


# --------------------------------------------------------------------------------------------
# summary


@dataclass(frozen=True)
class FetchedFile:
    file: str  # relative to dest
    title: str
    type: str
    source_url: str


@dataclass(frozen=True)
class Failure:
    url: str
    title: str
    reason: str


@dataclass
class FetchSummary:
    """What a fetch run did; printed by the CLI."""

    dest: str = ""
    manifest: str = ""
    start_pages: list[str] = field(default_factory=list)
    pages_read: list[str] = field(default_factory=list)
    start_failures: list[Failure] = field(default_factory=list)  # start pages that could not be read
    page_failures: list[Failure] = field(default_factory=list)  # other pages that could not be read
    new: list[FetchedFile] = field(default_factory=list)
    updated: list[FetchedFile] = field(default_factory=list)
    unchanged: list[FetchedFile] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    robots_skipped: list[str] = field(default_factory=list)
    duplicates: int = 0  # repeated links to a document already found
    pages_not_followed: int = 0  # linked pages beyond FetchOptions.max_pages
    max_files: int = 0  # the cap on PDFs a run (FetchOptions.max_files)
    files_not_fetched: int = 0  # PDF links beyond that cap
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every start page was read (file failures are listed, not fatal)."""
        return not self.start_failures

    def as_dict(self) -> dict[str, Any]:
        def files(items: list[FetchedFile]) -> list[dict[str, str]]:
            return [dataclasses.asdict(f) for f in items]

        def fails(items: list[Failure]) -> list[dict[str, str]]:
            return [dataclasses.asdict(f) for f in items]

        return {
            "version": 1,
            "dest": self.dest,
            "manifest": self.manifest,
            "start_pages": self.start_pages,
            "pages_read": self.pages_read,
            "start_failures": fails(self.start_failures),
            "page_failures": fails(self.page_failures),
            "new": files(self.new),
            "updated": files(self.updated),
            "unchanged": files(self.unchanged),
            "failed": fails(self.failed),
            "robots_skipped": self.robots_skipped,
            "duplicates": self.duplicates,
            "pages_not_followed": self.pages_not_followed,
            "files_not_fetched": self.files_not_fetched,
            "seconds": round(self.seconds, 3),
            "ok": self.ok,
        }


# --------------------------------------------------------------------------------------------
# metadata from a link title

_MONTHS = {
    m: i
    for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)
}
_MONTH_YEAR_RE = re.compile(
    r"\b(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+(19[89]\d|20[0-4]\d)\b", re.IGNORECASE
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


# --------------------------------------------------------------------------------------------
# links and file names


@dataclass(frozen=True)
class Link:
    url: str
    text: str


def _clean_text(text: str) -> str:
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip()


def _link_text(a: Any) -> str:
    text = _clean_text(a.get_text(" ", strip=True))
    if not text:
        img = a.find("img")
        text = _clean_text(a.get("title") or a.get("aria-label") or (img.get("alt") if img else "") or "")
    return text


def extract_links(html: str | bytes, base_url: str) -> tuple[list[Link], list[Link]]:
    """(content links, all links) of an HTML page, resolved against the page URL (or its
    ``<base href>``), without fragments, http(s) only.

    Content links leave out ``nav``, ``header``, ``footer`` and ``aside`` (site menus); they come
    from ``<main>`` (or ``role=main``, ``<article>``) when the page has one.
    """
    soup = BeautifulSoup(html, "html.parser")
    base = soup.find("base", href=True)
    if base is not None:
        base_url = urljoin(base_url, str(base["href"]))

    def links_in(root: Any) -> list[Link]:
        out = []
        for a in root.find_all("a", href=True):
            href = str(a["href"]).strip()
            if not href or href.startswith(("#", "mailto:", "tel:", "javascript:", "data:")):
                continue
            url = urldefrag(urljoin(base_url, href)).url
            if urlsplit(url).scheme in ("http", "https"):
                out.append(Link(url, _link_text(a)))
        return out

    everything = links_in(soup)
    for tag in soup.find_all(["nav", "header", "footer", "aside", "script", "style", "noscript"]):
        tag.decompose()
    root = soup.find("main") or soup.find(attrs={"role": "main"}) or soup.find("article") or soup
    return links_in(root), everything


def looks_like_pdf(url: str) -> bool:
    return urlsplit(url).path.lower().endswith(".pdf")


def _looks_like_page(url: str) -> bool:
    return Path(urlsplit(url).path).suffix.lower() in _PAGE_EXTS


def looks_like_document(link: Link) -> bool:
    """Whether a link that does not end ``.pdf`` may still lead to one: its text or path names a
    document ("Download", "Child E review", ``/download/123``) and it is not an office file,
    image or the like."""
    path = unquote(urlsplit(link.url).path)
    if Path(path).suffix.lower() in _OTHER_EXTS:
        return False
    return bool(_DOCUMENT_LINK_RE.search(link.text) or _DOCUMENT_LINK_RE.search(path))


class UnsafeNameError(ValueError):
    """A file name would leave the destination folder or is already taken."""


def safe_name(raw: str) -> str:
    """One safe path segment for a document called ``raw`` (a URL's decoded last segment or a
    Content-Disposition file name): only what follows its last ``/`` or ``\\`` (so
    ``../../x.pdf`` is ``x.pdf``), reduced to ``[a-z0-9._-]``, ending ``.pdf``."""
    base = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode("ascii").lower()
    name = re.sub(r"[^a-z0-9._-]+", "-", name)
    name = re.sub(r"-{2,}", "-", name).strip(".-_ ")
    stem = name[:-4] if name.endswith(".pdf") else name
    stem = stem.strip(".-_")[:100] or "document"
    return f"{stem}.pdf"


def safe_file_name(url: str) -> str:
    """The safe name (:func:`safe_name`) of the percent-decoded last path segment of ``url``: a
    segment that smuggles a path (``..%2F..%2Fevil.pdf``) keeps only its last part (``evil.pdf``)."""
    return safe_name(unquote(urlsplit(url).path.rsplit("/", 1)[-1]))


def disposition_file_name(header: str | None) -> str | None:
    """The file name a Content-Disposition header gives (``filename*`` or ``filename``), unsanitised."""
    if not header:
        return None
    msg = Message()
    msg["Content-Disposition"] = header
    try:
        name = msg.get_filename()
    except (ValueError, LookupError, TypeError):
        return None
    return (name.strip() or None) if isinstance(name, str) else None


def _suffixed(name: str, key: str) -> str:
    return f"{name[:-4]}-{hashlib.sha256(key.encode('utf-8')).hexdigest()[:8]}.pdf"


def _inside(dest: Path, name: str) -> Path:
    target = (dest / name).resolve()
    if target.parent != dest.resolve():
        raise UnsafeNameError(f"file name {name!r} resolves outside the destination; refused")
    return target


# --------------------------------------------------------------------------------------------
# manifest


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def read_manifest(dest: Path) -> list[dict[str, Any]]:
    """The entries of ``dest/manifest.json`` ([] when there is none)."""
    try:
        entries = read_corpus_manifest(dest / MANIFEST_NAME).documents
        if not all(isinstance(e, dict) and "file" in e for e in entries):
            raise CorpusError(f"{dest / MANIFEST_NAME}: not a valid manifest (an entry has no 'file')")
    except CorpusError as exc:
        raise FetchError(f"{exc}; fix or move it, nothing was fetched") from exc
    return entries


# --------------------------------------------------------------------------------------------
# the crawl


@dataclass
class _Candidate:
    url: str
    title: str
    linked_from: str
    name_hint: str | None = None  # for a link not ending .pdf: the server's file name, or the title


def _title_for(link: Link, fallback: str) -> str:
    text = link.text
    if not text or len(text) < 4 or _GENERIC_TEXT_RE.match(text):
        text = fallback
    if not text:
        text = re.sub(r"[_\-]+", " ", Path(unquote(urlsplit(link.url).path)).stem).strip() or "Untitled"
    return text


@dataclass
class _Opened:
    """What a same-site link that does not end ``.pdf`` turned out to be."""

    url: str  # after redirects
    pdf_name: str | None = None  # set when it is a PDF: the name to save it under (unsanitised)
    page: bytes | None = None  # the HTML, when it is a page and was read


def _open_link(http: Http, url: str, title: str, options: FetchOptions, read_page: bool) -> _Opened:
    """GET a link that may be a page or a PDF. A PDF is recognised by ``%PDF-`` in its first bytes
    (only those are read); an HTML page is read whole when ``read_page``, else only asked for its
    first bytes (a ranged GET). Raises Refused, Disallowed or Unreachable."""
    headers = {} if read_page else {"Range": f"bytes=0-{_MAGIC_WINDOW - 1}"}
    with http.get(url, headers) as resp:
        if resp.status_code not in (200, 206):
            raise Refused(status_reason(resp))
        final, ctype = str(resp.url), content_type(resp)
        if ctype in HTML_TYPES:
            if not read_page or resp.status_code != 200:
                return _Opened(final)
            return _Opened(final, page=b"".join(http.blocks(resp, options.max_page_bytes, "the page")))
        if _PDF_MAGIC in http.head(resp, _MAGIC_WINDOW):
            given = disposition_file_name(resp.headers.get("Content-Disposition"))
            last = unquote(urlsplit(final).path.rsplit("/", 1)[-1])
            return _Opened(final, pdf_name=given or (last if last.lower().endswith(".pdf") else title))
        if not ctype:
            return _Opened(final)  # perhaps a page without a Content-Type: read it again as one
        raise Refused(f"neither an HTML page nor a PDF (Content-Type {ctype})")


def _crawl(
    http: Http,
    start_urls: list[str],
    discover_briefings: bool,
    summary: FetchSummary,
    options: FetchOptions,
    known: Collection[str] = (),
) -> list[_Candidate]:
    """Read the start pages and the pages they link to; return the PDF links found, deduplicated.

    ``known`` are source URLs of files already in dest: they are PDFs without asking again (their
    download is a conditional request)."""
    found: dict[str, _Candidate] = {}
    over_cap: set[str] = set()
    seen_pages: set[str] = set()
    hubs: list[tuple[str, bool]] = [(u, True) for u in start_urls]  # (url, is a configured start page)
    deep: list[tuple[Link, str]] = []  # (link, page it is on)
    followed = 0  # linked pages read, or links probed that were not PDFs

    def full() -> bool:
        return len(found) >= options.max_files

    def add_pdf(url: str, title: str, page: str, name_hint: str | None = None) -> None:
        if url in found:
            summary.duplicates += 1
        elif full():
            if url not in over_cap:
                over_cap.add(url)
                summary.files_not_fetched += 1
        else:
            found[url] = _Candidate(url, title, page, name_hint)

    def read(url: str, is_start: bool = False, title: str = "") -> tuple[str, bytes] | None:
        """The page, or None after recording why not (a start page's failure is fatal to the
        run when every start page fails; other pages are listed)."""
        failures = summary.start_failures if is_start else summary.page_failures
        try:
            return http.page(url, options.max_page_bytes)
        except Disallowed:
            summary.robots_skipped.append(url)
            if is_start:
                failures.append(Failure(url, title, "disallowed by robots.txt"))
        except (Refused, Unreachable) as exc:
            failures.append(Failure(url, title, str(exc)))
        return None

    i = 0
    briefings_found = False
    while i < len(hubs):
        url, is_start = hubs[i]
        i += 1
        if url in seen_pages:
            continue
        seen_pages.add(url)
        got = read(url, is_start)
        if got is None:
            continue
        final, body = got
        summary.pages_read.append(url)
        seen_pages.add(final)
        content, everything = extract_links(body, final)
        if is_start:
            # The page a "7 Minute Briefings" link leads to is read like a start page.
            for link in everything:
                if (
                    _BRIEFINGS_LINK_RE.search(link.text)
                    and not looks_like_pdf(link.url)
                    and _looks_like_page(link.url)
                    and _host(link.url) == _host(final)
                    and link.url not in seen_pages
                    and all(link.url != u for u, _ in hubs)
                ):
                    briefings_found = True
                    hubs.append((link.url, False))
        hub_urls = {u for u, _ in hubs}
        for link in content:
            if looks_like_pdf(link.url):
                add_pdf(link.url, _title_for(link, ""), final)
            elif (
                _host(link.url) == _host(final)
                and (_looks_like_page(link.url) or looks_like_document(link))
                and link.url not in hub_urls
            ):
                deep.append((link, final))
        if discover_briefings and not briefings_found and i == len(hubs):
            # The start page no longer links to a "7 Minute Briefings" page: try the known one.
            briefings_found = True
            hubs.append((DEFAULT_BRIEFINGS_URL, False))

    hub_urls = {u for u, _ in hubs}
    for link, parent in deep:
        url = link.url
        if url in found or url in known:  # a PDF found before (this run or an earlier one)
            add_pdf(url, _title_for(link, ""), parent)
            continue
        if url in seen_pages or url in hub_urls or full():
            continue
        if followed >= options.max_pages:
            summary.pages_not_followed += 1
            continue
        seen_pages.add(url)
        try:
            opened = _open_link(http, url, _title_for(link, ""), options, read_page=True)
        except Disallowed:
            summary.robots_skipped.append(url)
            continue
        except (Refused, Unreachable) as exc:
            summary.page_failures.append(Failure(url, link.text, str(exc)))
            continue
        if opened.pdf_name is not None:
            add_pdf(url, _title_for(link, ""), parent, opened.pdf_name)
            continue
        followed += 1
        page = (opened.url, opened.page) if opened.page is not None else read(url, title=link.text)
        if page is None:
            continue
        final, body = page
        summary.pages_read.append(url)
        content, _ = extract_links(body, final)
        for sub in content:
            title = _title_for(sub, link.text)
            if looks_like_pdf(sub.url) or sub.url in found or sub.url in known:
                add_pdf(sub.url, title, final)
            elif _host(sub.url) == _host(final) and looks_like_document(sub) and sub.url not in seen_pages:
                # One level deep: a document-like link here is only asked whether it is a PDF.
                if full() or followed >= options.max_pages:
                    continue
                seen_pages.add(sub.url)
                try:
                    opened = _open_link(http, sub.url, title, options, read_page=False)
                except (Disallowed, Refused, Unreachable):
                    opened = None
                if opened is not None and opened.pdf_name is not None:
                    add_pdf(sub.url, title, final, opened.pdf_name)
                else:
                    followed += 1
    return list(found.values())


def _host(url: str) -> str:
    return urlsplit(url).netloc


class _Names:
    """File names in dest: stable per source URL, never reusing a different document's name."""

    def __init__(self, dest: Path, entries: dict[str, dict[str, Any]]):
        self.dest = dest
        self.by_url = {str(e["source_url"]): f for f, e in entries.items() if e.get("source_url")}
        self.claimed = set(entries)  # names the manifest describes or this run has used

    def plan(self, url: str, hint: str | None = None) -> str:
        """The file name for ``url``: the one it had before, else the safe name of ``hint`` (what
        the server called it) or of the URL, with a hash suffix when a different document already
        has that name. Raises UnsafeNameError."""
        if url in self.by_url:
            return self.by_url[url]
        name = safe_name(hint) if hint else safe_file_name(url)
        if name in self.claimed:
            name = _suffixed(name, url)
        if name in self.claimed:
            raise UnsafeNameError(f"file name {name!r} is already used by another document")
        _inside(self.dest, name)
        return name

    def claim(self, url: str, name: str) -> None:
        self.claimed.add(name)
        self.by_url[url] = name


@dataclass
class _Result:
    status: str  # new, updated, unchanged
    file: str
    sha256: str
    etag: str | None
    last_modified: str | None
    size: int
    downloaded: bool  # the file on disk was (re)written


class _NameTaken(Exception):
    """dest already holds a different file, not in the manifest, under the planned name."""


def _conditional_headers(prev: dict[str, Any]) -> dict[str, str]:
    """If-None-Match from the recorded ETag; If-Modified-Since from the recorded Last-Modified,
    else from when the file was fetched (a server without modification dates ignores it)."""
    headers: dict[str, str] = {}
    if prev.get("etag"):
        headers["If-None-Match"] = str(prev["etag"])
    if prev.get("last_modified"):
        headers["If-Modified-Since"] = str(prev["last_modified"])
    elif prev.get("fetched_at"):
        with contextlib.suppress(ValueError):
            when = datetime.fromisoformat(str(prev["fetched_at"]).replace("Z", "+00:00"))
            if when.tzinfo is not None:
                headers["If-Modified-Since"] = format_datetime(when.astimezone(UTC), usegmt=True)
    return headers


def _download(
    http: Http, cand: _Candidate, dest: Path, name: str, prev: dict[str, Any] | None, options: FetchOptions
) -> _Result:
    """Download one PDF to dest/name atomically. Raises Refused, Disallowed, Unreachable, or
    _NameTaken when an unlisted file with different bytes already has the name."""
    target = _inside(dest, name)
    headers: dict[str, str] = {}
    if prev and target.exists() and prev.get("sha256") and sha256_file(target) == prev["sha256"]:
        headers = _conditional_headers(prev)  # the file we have is the one recorded: revalidate it
    with http.get(cand.url, headers) as resp:
        etag = resp.headers.get("ETag")
        last_modified = resp.headers.get("Last-Modified")
        if resp.status_code == 304 and headers and prev:
            return _Result(
                "unchanged",
                name,
                str(prev["sha256"]),
                etag or prev.get("etag"),
                last_modified or prev.get("last_modified"),
                target.stat().st_size,
                False,
            )
        if resp.status_code != 200:
            raise Refused(status_reason(resp))
        blocks = http.blocks(resp, options.max_bytes)  # checks a declared length before any write
        first = next(blocks, b"")
        dest.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest, prefix=_TMP_PREFIX, suffix=_TMP_SUFFIX)
        tmp = Path(tmp_name)
        try:
            h = hashlib.sha256()
            size = 0
            head = b""
            with os.fdopen(fd, "wb") as fh, contextlib.closing(blocks):
                for block in itertools.chain([first], blocks):
                    size += len(block)
                    if len(head) < _MAGIC_WINDOW:
                        head += block[: _MAGIC_WINDOW - len(head)]
                        if len(head) >= _MAGIC_WINDOW and _PDF_MAGIC not in head:
                            raise Refused(_not_pdf_reason(resp))
                    h.update(block)
                    fh.write(block)
                fh.flush()
                os.fsync(fh.fileno())
            if _PDF_MAGIC not in head:
                raise Refused(_not_pdf_reason(resp))
            digest = h.hexdigest()
            existed = target.exists()
            if existed:
                same = sha256_file(target) == digest
                if prev is None and not same:
                    raise _NameTaken(name)
                if same:  # identical bytes: keep the file as it is
                    tmp.unlink()
                    return _Result("unchanged" if prev else "new", name, digest, etag, last_modified, size, False)
            os.replace(tmp, target)
            fsync_dir(dest)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
    return _Result("updated" if existed else "new", name, digest, etag, last_modified, size, True)


def _not_pdf_reason(resp: httpx.Response) -> str:
    """Why a body is not a PDF, without quoting it (it may be anything, a secret included)."""
    return f"not a PDF (no %PDF- header in its first bytes; Content-Type {content_type(resp) or '?'})"


def _entry(cand: _Candidate, res: _Result, prev: dict[str, Any] | None, path: Path) -> dict[str, Any]:
    """The manifest entry: provenance always updated; descriptive fields kept when the existing
    entry has them (a partnership may have corrected them by hand), else inferred from the link
    (and the year, failing that, from the PDF's first page)."""
    entry: dict[str, Any] = {"file": res.file}
    inferred = describe_link(cand.title, cand.url)
    if inferred["year"] is None and not (prev or {}).get("year"):
        inferred["year"] = first_page_year(path)
    prev = prev or {}
    for key, value in inferred.items():
        kept = prev.get(key)
        entry[key] = kept if isinstance(kept, bool) or kept not in (None, "", []) else value
    entry.update({k: v for k, v in prev.items() if k not in entry})
    fetched_at = _now() if res.downloaded or not prev.get("fetched_at") else prev["fetched_at"]
    entry.update(
        {
            "source_url": cand.url,
            "linked_from": cand.linked_from,
            "sha256": res.sha256,
            "bytes": res.size,
            "fetched_at": fetched_at,
            "etag": res.etag,
            "last_modified": res.last_modified,
        }
    )
    return entry


def _manifest_bytes(entries: dict[str, dict[str, Any]]) -> bytes:
    docs = [entries[f] for f in sorted(entries)]
    return (json.dumps({"documents": docs}, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


@contextlib.contextmanager
def _dest_lock(dest: Path) -> Iterator[None]:
    """One writer at a time per corpus folder (fetch or upload), so none loses another's manifest entries."""
    busy = FetchError(f"another sscp-rag fetch or upload is already writing to {dest}")
    with corpus_lock(dest, busy):
        yield


def _clean_leftovers(dest: Path) -> None:
    """Remove temporary files an interrupted earlier run left behind."""
    if dest.is_dir():
        for p in dest.glob(f"{_TMP_PREFIX}*{_TMP_SUFFIX}"):
            with contextlib.suppress(OSError):
                p.unlink()


def fetch(
    urls: Iterable[str] | None = None,
    dest: Path | str = DEFAULT_DEST,
    options: FetchOptions | None = None,
    client: httpx.Client | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> FetchSummary:
    """Download the PDFs linked from ``urls`` (default: the SSCP review pages) into ``dest``.

    Returns a :class:`FetchSummary`. Raises :class:`FetchError` when no start page could be read
    (nothing in ``dest`` is changed then), for a URL that is not http(s), or when the existing
    manifest is invalid. ``sleep`` is how the rate limit and backoff wait (tests record it).
    """
    t0 = time.monotonic()
    options = options or FetchOptions()
    dest = Path(dest)
    given = [u.strip() for u in urls or () if u.strip()]
    start_urls = list(dict.fromkeys(given)) or [DEFAULT_START_URL]
    for u in start_urls:
        parts = urlsplit(u)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise FetchError(f"not an http(s) URL: {u!r}")
    if dest.exists() and not dest.is_dir():
        raise FetchError(f"{dest} exists and is not a folder")
    previous = read_manifest(dest)  # an invalid manifest stops the run before any request
    known = {str(e["source_url"]) for e in previous if e.get("source_url") and (dest / str(e["file"])).is_file()}
    summary = FetchSummary(
        dest=str(dest), manifest=str(dest / MANIFEST_NAME), start_pages=start_urls, max_files=options.max_files
    )

    own_client = client is None
    if client is None:
        # Every connection is checked: no loopback, private or link-local address unless a start
        # page is on it (a client passed in, as tests do, brings its own transport).
        client = make_client(AddressPolicy.for_start_pages(start_urls), options.timeout)
    try:
        hosts = {hostname(u) for u in start_urls} | set(options.allow_hosts)
        http = Http(client, options, hosts, sleep)
        candidates = _crawl(http, start_urls, not given, summary, options, known)
        if len(summary.start_failures) == len(start_urls):
            reasons = [
                f.reason if f.reason.startswith("cannot reach") else f"cannot read {f.url}: {f.reason}"
                for f in summary.start_failures
            ]
            raise FetchError(reasons[0] if len(reasons) == 1 else "no start page could be read: " + "; ".join(reasons))
        if candidates:
            with _dest_lock(dest):
                entries = {str(e["file"]): e for e in read_manifest(dest)}  # again, under the lock
                _clean_leftovers(dest)
                _download_all(http, candidates, dest, entries, summary, options)
    finally:
        if own_client:
            client.close()
    summary.seconds = time.monotonic() - t0
    return summary


def _download_all(
    http: Http,
    candidates: list[_Candidate],
    dest: Path,
    entries: dict[str, dict[str, Any]],
    summary: FetchSummary,
    options: FetchOptions,
) -> None:
    names = _Names(dest, entries)
    before = _manifest_bytes(entries)
    try:
        for cand in tqdm(candidates, desc="fetch", unit="file", disable=not options.progress):
            name = ""
            try:
                name = names.plan(cand.url, cand.name_hint)
                prev = entries.get(name)
                try:
                    res = _download(http, cand, dest, name, prev, options)
                except _NameTaken:
                    name = _suffixed(name, cand.url)
                    if name in names.claimed:
                        raise UnsafeNameError(f"file name {name!r} is already used by another document") from None
                    prev = entries.get(name)
                    res = _download(http, cand, dest, name, prev, options)
            except UnsafeNameError as exc:
                summary.failed.append(Failure(cand.url, cand.title, str(exc)))
                continue
            except Disallowed:
                summary.robots_skipped.append(cand.url)
                continue
            except (Refused, Unreachable) as exc:
                summary.failed.append(Failure(cand.url, cand.title, str(exc)))
                continue
            except _NameTaken:
                summary.failed.append(
                    Failure(
                        cand.url,
                        cand.title,
                        f"{name} and its hashed variant are taken by other files not in the manifest",
                    )
                )
                continue
            except OSError as exc:
                summary.failed.append(Failure(cand.url, cand.title, f"cannot write {name}: {exc}"))
                continue
            names.claim(cand.url, name)
            entries[name] = _entry(cand, res, prev, dest / name)
            fetched = FetchedFile(name, entries[name]["title"], entries[name]["type"], cand.url)
            getattr(summary, res.status).append(fetched)
    finally:
        # Also on Ctrl-C: record what was downloaded so far, so the next run resumes from there.
        after = _manifest_bytes(entries)
        if after != before:
            dest.mkdir(parents=True, exist_ok=True)
            write_atomic(dest / MANIFEST_NAME, after, prefix=_TMP_PREFIX, suffix=_TMP_SUFFIX)


def summary_lines(summary: FetchSummary) -> list[str]:
    """The summary as readable lines (what ``sscp-rag fetch`` prints)."""
    lines = [
        f"Fetched into {summary.dest} ({summary.seconds:.1f} s): {len(summary.new)} new, "
        f"{len(summary.updated)} updated, {len(summary.unchanged)} unchanged, {len(summary.failed)} failed, "
        f"{len(summary.robots_skipped)} skipped by robots.txt"
        + (f", {summary.duplicates} duplicate link(s) ignored" if summary.duplicates else "")
    ]
    lines.append(f"  pages read: {len(summary.pages_read)}")
    for label, items in (("new", summary.new), ("updated", summary.updated)):
        for f in items:
            lines.append(f"  {label}: {f.file} [{f.type}] {f.title}")
    if summary.unchanged:
        lines.append(f"  unchanged: {', '.join(f.file for f in summary.unchanged)}")
    for f in summary.failed:
        lines.append(f"  failed: {f.title or f.url}: {f.reason}\n          {f.url}")
    for url in summary.robots_skipped:
        lines.append(f"  skipped (robots.txt): {url}")
    for f in summary.start_failures:
        lines.append(f"  start page failed: {f.url}: {f.reason}")
    for f in summary.page_failures:
        lines.append(f"  page failed: {f.url}: {f.reason}")
    if summary.pages_not_followed:
        lines.append(f"  {summary.pages_not_followed} linked page(s) not followed (page limit)")
    if summary.files_not_fetched:
        lines.append(
            f"  cap of {summary.max_files} PDFs a run reached: {summary.files_not_fetched} more PDF link(s) "
            "not fetched (raise it with --max-files)"
        )
    if summary.new or summary.updated:
        lines.append(f"Next: sscp-rag ingest --corpus {summary.dest}")
    return lines
