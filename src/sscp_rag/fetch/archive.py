"""The archive: saving the PDFs a crawl found into the destination folder and recording each in
its manifest, with provenance. File names are safe and stable per source URL; downloads are
atomic; a second run revalidates what it has and never rewrites or recounts an unchanged file."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
import tempfile
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
from tqdm import tqdm

from sscp_rag.corpus_manifest import MANIFEST_NAME, corpus_lock, fsync_dir, sha256_file, write_atomic
from sscp_rag.corpus_manifest import read_manifest as read_corpus_manifest
from sscp_rag.errors import CorpusError, FetchError
from sscp_rag.fetch.crawl import MAGIC_WINDOW, PDF_MAGIC, Candidate
from sscp_rag.fetch.describe import describe_link, first_page_year
from sscp_rag.fetch.options import FetchOptions
from sscp_rag.fetch.summary import Failure, FetchedFile, FetchSummary
from sscp_rag.http import (
    Disallowed,
    Http,
    Refused,
    Unreachable,
    content_type,
    status_reason,
)

_TMP_PREFIX = ".fetch-"
_TMP_SUFFIX = ".part"


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
    http: Http, cand: Candidate, dest: Path, name: str, prev: dict[str, Any] | None, options: FetchOptions
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
                    if len(head) < MAGIC_WINDOW:
                        head += block[: MAGIC_WINDOW - len(head)]
                        if len(head) >= MAGIC_WINDOW and PDF_MAGIC not in head:
                            raise Refused(_not_pdf_reason(resp))
                    h.update(block)
                    fh.write(block)
                fh.flush()
                os.fsync(fh.fileno())
            if PDF_MAGIC not in head:
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


def _entry(cand: Candidate, res: _Result, prev: dict[str, Any] | None, path: Path) -> dict[str, Any]:
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
def dest_lock(dest: Path) -> Iterator[None]:
    """One writer at a time per corpus folder (fetch or upload), so none loses another's manifest entries."""
    busy = FetchError(f"another sscp-rag fetch or upload is already writing to {dest}")
    with corpus_lock(dest, busy):
        yield


def clean_leftovers(dest: Path) -> None:
    """Remove temporary files an interrupted earlier run left behind."""
    if dest.is_dir():
        for p in dest.glob(f"{_TMP_PREFIX}*{_TMP_SUFFIX}"):
            with contextlib.suppress(OSError):
                p.unlink()


def download_all(
    http: Http,
    candidates: list[Candidate],
    dest: Path,
    entries: dict[str, dict[str, Any]],
    summary: FetchSummary,
    options: FetchOptions,
) -> None:
    """Download each candidate into ``dest`` (under :func:`dest_lock`) and record it in ``entries``
    and the manifest; failures are listed in ``summary``, not raised."""
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
