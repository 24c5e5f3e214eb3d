"""Fetch published review PDFs from the web into a corpus folder, with provenance.

``fetch(urls, dest)`` reads each start page (by default the SSCP "Learning from Local Reviews"
page and the "7 Minute Briefings" page it links to), finds the links to PDFs on it and on the
pages it links to (one level deep), downloads each PDF into ``dest`` and records it in
``dest/manifest.json`` in the format of :mod:`sscp_rag.corpus_manifest`, plus provenance
(``source_url``, ``linked_from``, ``sha256``, ``fetched_at``, ``etag``, ``last_modified``).

The parts: :mod:`sscp_rag.http` is the HTTP client (robots.txt, politeness, caps),
:mod:`~sscp_rag.fetch.crawl` walks the pages and finds the PDF links, :mod:`~sscp_rag.fetch.archive`
saves the PDFs and their manifest entries (:mod:`~sscp_rag.fetch.describe` infers the descriptive
fields); :func:`fetch` here runs them in turn.

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

import time
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from sscp_rag.corpus_manifest import MANIFEST_NAME
from sscp_rag.errors import FetchError
from sscp_rag.fetch.archive import (
    UnsafeNameError,
    clean_leftovers,
    dest_lock,
    download_all,
    read_manifest,
    safe_file_name,
    safe_name,
)
from sscp_rag.fetch.crawl import (
    DEFAULT_BRIEFINGS_URL,
    DEFAULT_START_URL,
    Link,
    crawl,
    disposition_file_name,
    extract_links,
    looks_like_document,
    looks_like_pdf,
)
from sscp_rag.fetch.describe import (
    describe_link,
    first_page_year,
    infer_date,
    infer_review_type,
    infer_year,
    short_title,
)
from sscp_rag.fetch.options import FetchOptions
from sscp_rag.fetch.summary import Failure, FetchedFile, FetchSummary, summary_lines
from sscp_rag.http import AddressPolicy, Http, hostname, make_client

__all__ = [
    "DEFAULT_BRIEFINGS_URL",
    "DEFAULT_DEST",
    "DEFAULT_START_URL",
    "Failure",
    "FetchOptions",
    "FetchSummary",
    "FetchedFile",
    "Link",
    "UnsafeNameError",
    "describe_link",
    "disposition_file_name",
    "extract_links",
    "fetch",
    "first_page_year",
    "infer_date",
    "infer_review_type",
    "infer_year",
    "looks_like_document",
    "looks_like_pdf",
    "read_manifest",
    "safe_file_name",
    "safe_name",
    "short_title",
    "summary_lines",
]

DEFAULT_DEST = Path("corpus/sscp")


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
        candidates = crawl(http, start_urls, not given, summary, options, known)
        if len(summary.start_failures) == len(start_urls):
            reasons = [
                f.reason if f.reason.startswith("cannot reach") else f"cannot read {f.url}: {f.reason}"
                for f in summary.start_failures
            ]
            raise FetchError(reasons[0] if len(reasons) == 1 else "no start page could be read: " + "; ".join(reasons))
        if candidates:
            with dest_lock(dest):
                entries = {str(e["file"]): e for e in read_manifest(dest)}  # again, under the lock
                clean_leftovers(dest)
                download_all(http, candidates, dest, entries, summary, options)
    finally:
        if own_client:
            client.close()
    summary.seconds = time.monotonic() - t0
    return summary
