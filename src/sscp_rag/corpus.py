"""The corpus: PDF files under a root folder, and the manifest(s) that describe them.

A manifest is a ``manifest.json`` file in the corpus root or any sub-folder, of the form
``{"documents": [{"file": "scr-child-d.pdf", "title": ..., "type": ..., ...}]}`` with ``file``
relative to the manifest's folder. A PDF that no manifest lists still ingests: its metadata is
inferred from its file name and first page.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sscp_rag.errors import CorpusError, SscpRagError
from sscp_rag.records import REVIEW_TYPES, DocumentMeta
from sscp_rag.vocabulary import THEME_IDS, resolve_theme

MANIFEST_NAME = "manifest.json"
# Held by whatever writes PDFs and manifest.json into a corpus folder (fetch, upload), so two
# writers cannot lose each other's manifest entries.
CORPUS_LOCK = ".corpus.lock"


@dataclass(frozen=True)
class CorpusFile:
    path: Path
    rel: str  # relative to the corpus root, forward slashes
    sha256: str
    size: int
    mtime_ns: int = 0


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def list_pdfs(root: Path, known: Mapping[str, Mapping[str, Any]] | None = None) -> list[CorpusFile]:
    """Every ``*.pdf`` under root (case-insensitive), sorted, with its hash.

    ``known`` (see :func:`known_files`) maps a file to what an earlier listing recorded of it
    (``sha256``, ``size``, ``mtime_ns``): a file whose size and modification time are unchanged
    keeps its recorded hash instead of being read again, as ``make`` and ``rsync`` judge files.
    """
    if not root.is_dir():
        raise CorpusError(f"corpus folder {root} does not exist")
    known = known or {}
    files = []
    for p in sorted(root.rglob("*")):
        if (
            p.is_file()
            and p.suffix.lower() == ".pdf"
            and not any(part.startswith(".") for part in p.relative_to(root).parts)
        ):
            rel = p.relative_to(root).as_posix()
            st = p.stat()
            seen = known.get(rel) or {}
            same = seen.get("sha256") and (seen.get("size"), seen.get("mtime_ns")) == (st.st_size, st.st_mtime_ns)
            sha = str(seen["sha256"]) if same else sha256_file(p)
            files.append(CorpusFile(p, rel, sha, st.st_size, st.st_mtime_ns))
    return files


def known_files(index_manifest: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any]]:
    """The files an index manifest records (ingested and skipped), for :func:`list_pdfs`."""
    if not isinstance(index_manifest, Mapping):
        return {}
    out: dict[str, Mapping[str, Any]] = {}
    files = index_manifest.get("files")
    if isinstance(files, Mapping):
        out.update((str(f), e) for f, e in files.items() if isinstance(e, Mapping))
    skipped = index_manifest.get("skipped")
    if isinstance(skipped, list):
        out.update((str(e["file"]), e) for e in skipped if isinstance(e, Mapping) and "file" in e)
    return out


def load_manifests(root: Path) -> dict[str, DocumentMeta]:
    """All manifest entries under root, keyed by file path relative to root."""
    out: dict[str, DocumentMeta] = {}
    for mpath in sorted(root.rglob(MANIFEST_NAME)):
        base = mpath.parent.relative_to(root)
        try:
            data = json.loads(mpath.read_text(encoding="utf-8"))
            entries = data["documents"] if isinstance(data, dict) else data
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CorpusError(f"{mpath}: not a valid manifest ({exc})") from exc
        for i, entry in enumerate(entries):
            try:
                rel = (base / entry["file"]).as_posix()
                out[rel] = meta_from_entry(rel, entry)
            except (KeyError, TypeError, ValueError) as exc:
                raise CorpusError(f"{mpath}: entry {i + 1} is invalid ({exc})") from exc
    return out


def meta_from_entry(rel: str, entry: dict) -> DocumentMeta:
    rtype = normalise_type(str(entry.get("type") or "other"))
    year = entry.get("year")
    date = entry.get("date")
    if year is None and date:
        m = re.search(r"(19|20)\d\d", str(date))
        year = int(m.group(0)) if m else None
    themes = []
    for t in entry.get("themes") or []:
        tid = t if t in THEME_IDS else resolve_theme(str(t))
        if tid and tid not in themes:
            themes.append(tid)
    title = str(entry.get("title") or Path(rel).stem)
    return DocumentMeta(
        file=rel,
        title=title,
        short_title=str(entry.get("short_title") or title),
        type=rtype,
        year=int(year) if year is not None else None,
        date=str(date) if date else None,
        subject=str(entry.get("subject") or ""),
        source_url=entry.get("source_url"),
        themes=tuple(themes),
        fictional=bool(entry.get("fictional", False)),
        executive_summary=bool(entry.get("executive_summary", False)),
    )


_TYPE_ALIASES = {t.lower(): t for t in REVIEW_TYPES} | {
    "cspr": "LCSPR",
    "lcspr": "LCSPR",
    "practice review": "LCSPR",
    "serious case review": "SCR",
    "thematic review": "thematic",
    "7mb": "7-minute briefing",
    "7 minute briefing": "7-minute briefing",
    "seven minute briefing": "7-minute briefing",
    "briefing": "7-minute briefing",
    "domestic homicide review": "DHR",
    "good practice": "good-practice",
}


def normalise_type(value: str) -> str:
    """Map a review type name or alias to the controlled list; raise on anything else."""
    key = value.strip().lower()
    if key in _TYPE_ALIASES:
        return _TYPE_ALIASES[key]
    raise ValueError(f"unknown review type {value!r} (use one of: {', '.join(REVIEW_TYPES)})")


# Order matters: the first pattern that matches the file name or first page wins.
_TYPE_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"7[\s_-]*minute|\b7mb\b|seven minute", "7-minute briefing"),
    (r"\bdhr\b|domestic homicide", "DHR"),
    (r"\bsudi\b|sudden unexpected death", "SUDI"),
    (r"infographic", "infographic"),
    (r"\blcspr\b|\bcspr\b|practice review", "LCSPR"),
    (r"\bscr\b|serious case review", "SCR"),
    (r"thematic", "thematic"),
    (r"good practice", "good-practice"),
)


# A page that merely mentions "good practice" is not a good-practice report: only a file name or
# title says so.
_PAGE_TYPE_PATTERNS = tuple(p for p in _TYPE_PATTERNS if p[1] != "good-practice")


def infer_type(text: str, patterns: tuple[tuple[str, str], ...] = _TYPE_PATTERNS) -> str:
    low = text.lower()
    for pat, rtype in patterns:
        if re.search(pat, low):
            return rtype
    return "other"


def infer_meta(rel: str, first_page_text: str) -> DocumentMeta:
    """Metadata for a PDF that no manifest lists, from its file name and first page (raw text,
    line by line: a running header there is usually the report's title, so it is kept)."""
    stem = Path(rel).stem
    name_words = re.sub(r"[_\-]+", " ", stem).strip()
    lines = [ln.strip() for ln in first_page_text.splitlines() if len(ln.strip()) > 3]
    title = name_words.title() if name_words else stem
    # The first substantial line of the first page is usually the title; lines that go on in
    # lower case continue a title wrapped over several lines.
    for i, ln in enumerate(lines[:6]):
        if 8 <= len(ln) <= 140 and not re.fullmatch(r"[\d\W]+", ln):
            title = ln
            for nxt in lines[i + 1 : i + 4]:
                if not nxt[:1].islower() or len(title) + len(nxt) > 140 or title.endswith((".", ":", ";")):
                    break
                title = f"{title} {nxt}"
            break
    rtype = infer_type(f"{name_words}\n{title}")
    if rtype == "other":
        rtype = infer_type(first_page_text[:1500], _PAGE_TYPE_PATTERNS)
    years = re.findall(r"\b(20[0-4]\d|19[89]\d)\b", f"{name_words} {first_page_text[:1500]}")
    year = int(years[0]) if years else None
    m = re.search(r"\b(Child|Baby|Family|Young Person)\s+([A-Z]{1,3})\b", f"{title} {name_words.title()}")
    subject = f"{m.group(1)} {m.group(2)}" if m else ""
    return DocumentMeta(
        file=rel,
        title=title,
        short_title=title if len(title) <= 60 else name_words.title(),
        type=rtype,
        year=year,
        subject=subject,
        inferred=True,
    )


# The descriptors of the locks this process holds. A forked child (a PDF reader) gets copies of
# them, and a flock lock lasts while any copy is open: a child that outlived a killed parent would
# keep the folder locked. Children therefore swap their copies for /dev/null as they start.
_HELD_LOCKS: set[int] = set()


def _drop_inherited_locks() -> None:
    if not _HELD_LOCKS:
        return
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        for fd in _HELD_LOCKS:
            with contextlib.suppress(OSError):
                os.dup2(null, fd)  # not close(): the number stays taken, so nothing reuses it
    finally:
        os.close(null)
    _HELD_LOCKS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_inherited_locks)


@contextlib.contextmanager
def folder_lock(folder: Path, lock_name: str, busy: SscpRagError) -> Iterator[None]:
    """Hold an exclusive, non-blocking lock on ``folder`` (created if missing) so that two runs
    cannot write it at once; raise ``busy`` if another process holds it. The lock is not passed
    on to child processes (``open`` sets close-on-exec, and forked children drop their copy)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / lock_name, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise busy from exc
        _HELD_LOCKS.add(fh.fileno())
        try:
            yield
        finally:
            _HELD_LOCKS.discard(fh.fileno())
