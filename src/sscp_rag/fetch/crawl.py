"""The crawl: read the start pages and the pages they link to (one level deep) and find the links
to PDFs on them, deduplicated. A PDF link is a link whose path ends ``.pdf``, or a same-site link
that looks like a document and answers with a PDF (``%PDF-`` in its first bytes)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

from bs4 import BeautifulSoup

from sscp_rag.fetch.options import FetchOptions
from sscp_rag.fetch.summary import Failure, FetchSummary
from sscp_rag.http import (
    HTML_TYPES,
    Disallowed,
    Http,
    Refused,
    Unreachable,
    content_type,
    status_reason,
)

DEFAULT_START_URL = "https://www.surreyscp.org.uk/case-reviews/learning-from-local-reviews/"
# Used only when the start page has no link whose text mentions "7 Minute Briefing"; the page is
# normally discovered from that link. (Not verified from this machine, which has no network.)
DEFAULT_BRIEFINGS_URL = "https://www.surreyscp.org.uk/resources/7-minute-briefings/"

_BRIEFINGS_LINK_RE = re.compile(r"\b(?:7|seven)[\s-]*minute[\s-]*briefing", re.IGNORECASE)
# A PDF is known by this in its first bytes (crawl probes and archive downloads check it).
PDF_MAGIC = b"%PDF-"
MAGIC_WINDOW = 1024  # the PDF header may follow a little junk, as readers allow
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


# --------------------------------------------------------------------------------------------
# the crawl


@dataclass
class Candidate:
    """A PDF link the crawl found: what the archive downloads."""

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
    headers = {} if read_page else {"Range": f"bytes=0-{MAGIC_WINDOW - 1}"}
    with http.get(url, headers) as resp:
        if resp.status_code not in (200, 206):
            raise Refused(status_reason(resp))
        final, ctype = str(resp.url), content_type(resp)
        if ctype in HTML_TYPES:
            if not read_page or resp.status_code != 200:
                return _Opened(final)
            return _Opened(final, page=b"".join(http.blocks(resp, options.max_page_bytes, "the page")))
        if PDF_MAGIC in http.head(resp, MAGIC_WINDOW):
            given = disposition_file_name(resp.headers.get("Content-Disposition"))
            last = unquote(urlsplit(final).path.rsplit("/", 1)[-1])
            return _Opened(final, pdf_name=given or (last if last.lower().endswith(".pdf") else title))
        if not ctype:
            return _Opened(final)  # perhaps a page without a Content-Type: read it again as one
        raise Refused(f"neither an HTML page nor a PDF (Content-Type {ctype})")


def crawl(
    http: Http,
    start_urls: list[str],
    discover_briefings: bool,
    summary: FetchSummary,
    options: FetchOptions,
    known: Collection[str] = (),
) -> list[Candidate]:
    """Read the start pages and the pages they link to; return the PDF links found, deduplicated.

    ``known`` are source URLs of files already in dest: they are PDFs without asking again (their
    download is a conditional request)."""
    found: dict[str, Candidate] = {}
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
            found[url] = Candidate(url, title, page, name_hint)

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
