"""The corpus manifest: the ``manifest.json`` files that describe a corpus folder's PDFs, read,
locked and written here and nowhere else (ingest reads them, upload and fetch write the root one).

A manifest is a ``manifest.json`` file in the corpus root or any sub-folder, of the form
``{"documents": [{"file": "scr-child-d.pdf", "title": ..., "type": ..., ...}]}`` (or just the
list) with ``file`` relative to the manifest's folder. Writers hold the corpus lock
(:func:`corpus_lock`) and replace the file atomically (:func:`write_atomic`), so two writers
cannot lose each other's entries and a crash never leaves half a manifest.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sscp_rag.errors import CorpusError, SscpRagError
from sscp_rag.records import DocumentMeta
from sscp_rag.vocabulary import THEME_IDS, YEAR, normalise_type, resolve_theme

MANIFEST_NAME = "manifest.json"
# Held by whatever writes PDFs and manifest.json into a corpus folder (fetch, upload), so two
# writers cannot lose each other's manifest entries.
CORPUS_LOCK = ".corpus.lock"


def sha256_file(path: Path) -> str:
    """The sha256 of a file's bytes, as manifests and the index record it."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------------------------
# read


@dataclass(frozen=True)
class Manifest:
    """One manifest file as read: the whole JSON value and its documents list (the same list
    object, so editing ``documents`` in place edits what :meth:`to_bytes` writes)."""

    path: Path
    data: Any = None
    documents: list[Any] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        return (json.dumps(self.data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def read_manifest(path: Path) -> Manifest:
    """The manifest at ``path``; an empty one (``{"documents": []}``) when the file does not exist.
    Raises CorpusError (``<path>: not a valid manifest (<why>)``) when it is not JSON or has no
    documents list."""
    if not path.exists():
        data: dict[str, Any] = {"documents": []}
        return Manifest(path, data, data["documents"])
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        docs = data["documents"] if isinstance(data, dict) else data
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CorpusError(f"{path}: not a valid manifest ({exc})") from exc
    if not isinstance(docs, list):
        raise CorpusError(f"{path}: not a valid manifest (no documents list)")
    return Manifest(path, data, docs)


def load_manifests(root: Path) -> dict[str, DocumentMeta]:
    """All manifest entries under root, keyed by file path relative to root."""
    out: dict[str, DocumentMeta] = {}
    for mpath in sorted(root.rglob(MANIFEST_NAME)):
        base = mpath.parent.relative_to(root)
        for i, entry in enumerate(read_manifest(mpath).documents):
            try:
                rel = (base / entry["file"]).as_posix()
                out[rel] = meta_from_entry(rel, entry)
            except (KeyError, TypeError, ValueError) as exc:
                raise CorpusError(f"{mpath}: entry {i + 1} is invalid ({exc})") from exc
    return out


def meta_from_entry(rel: str, entry: dict) -> DocumentMeta:
    """The metadata of one manifest entry; ValueError or TypeError when a field is invalid."""
    rtype = normalise_type(str(entry.get("type") or "other"))
    year = entry.get("year")
    date = entry.get("date")
    if year is None and date:
        m = YEAR.search(str(date))
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


# --------------------------------------------------------------------------------------------
# write


def write_atomic(path: Path, data: bytes, prefix: str = ".sscp-", suffix: str = ".part") -> None:
    """Replace ``path`` by ``data`` atomically: written to a hidden temporary file beside it,
    fsynced, renamed over it, and the folder fsynced, so a crash leaves the old file or the new,
    never part of one. The temporary name is ``<prefix>...<suffix>`` (removed on failure)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename in folder ``path`` durable (best effort: not every file system allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --------------------------------------------------------------------------------------------
# lock

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


def corpus_lock(folder: Path, busy: SscpRagError) -> contextlib.AbstractContextManager[None]:
    """The lock every writer of a corpus folder's PDFs and manifest holds (fetch, upload)."""
    return folder_lock(folder, CORPUS_LOCK, busy)
