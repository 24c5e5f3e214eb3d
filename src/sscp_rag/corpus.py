"""The corpus: PDF files under a root folder, and the metadata of each.

A PDF's metadata comes from the manifest(s) that list it (:mod:`sscp_rag.corpus_manifest`); a
PDF that no manifest lists still ingests: its metadata is inferred from its file name and first
page (:func:`infer_meta`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The manifest names are kept importable from here for the callers that know them as the corpus's.
from sscp_rag.corpus_manifest import CORPUS_LOCK as CORPUS_LOCK
from sscp_rag.corpus_manifest import MANIFEST_NAME as MANIFEST_NAME
from sscp_rag.corpus_manifest import folder_lock as folder_lock
from sscp_rag.corpus_manifest import load_manifests as load_manifests
from sscp_rag.corpus_manifest import meta_from_entry as meta_from_entry
from sscp_rag.corpus_manifest import sha256_file
from sscp_rag.errors import CorpusError
from sscp_rag.records import DocumentMeta
from sscp_rag.vocabulary import PAGE_TYPE_PATTERNS, first_year, infer_type, pseudonym


@dataclass(frozen=True)
class CorpusFile:
    path: Path
    rel: str  # relative to the corpus root, forward slashes
    sha256: str
    size: int
    mtime_ns: int = 0


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
        rtype = infer_type(first_page_text[:1500], PAGE_TYPE_PATTERNS)
    year = first_year(f"{name_words} {first_page_text[:1500]}")
    subject = pseudonym(f"{title} {name_words.title()}")
    return DocumentMeta(
        file=rel,
        title=title,
        short_title=title if len(title) <= 60 else name_words.title(),
        type=rtype,
        year=year,
        subject=subject,
        inferred=True,
    )
