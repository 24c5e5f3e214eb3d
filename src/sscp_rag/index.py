"""The index on disk (Store): its manifest and fingerprint, publishing a build, and loading it.

Layout of ``index_dir``::

    manifest.json      fingerprint, counts, per-file sha256, skipped files; names the data folder
    data-<id>/         chunks.sqlite (:mod:`sscp_rag.store`), dense.faiss, bm25/

A build (:mod:`sscp_rag.ingest` for a PDF corpus, :mod:`sscp_rag.beir` for plain text) holds
:func:`build_lock`, writes a new data folder from :func:`new_data_dir` beside the current one and
hands it to :func:`publish`, which renames it and only then replaces ``manifest.json`` (an atomic
rename), so a crash, kill or Ctrl-C mid-build leaves the previous index loadable. Data folders that
no manifest names (left by a build or a clean-up that was killed) are removed by the next publish
or build. :func:`load_index` refuses an index whose fingerprint differs from the settings'.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sscp_rag import __version__, dense
from sscp_rag import store as st
from sscp_rag.chunking import DocText
from sscp_rag.corpus_manifest import folder_lock
from sscp_rag.embedding import encoder_identity, make_encoder
from sscp_rag.encoder import Encoder
from sscp_rag.errors import IndexCorruptError, IndexMissingError, IndexStaleError, SscpRagError
from sscp_rag.records import Chunk, DocumentMeta
from sscp_rag.settings import Settings
from sscp_rag.vocabulary import lexicon_version

# Bump when the stored data or the text pipeline (extraction, cleaning, chunking) changes, so
# older indexes are rebuilt rather than mixed with new chunks. 2: running lines of 2-page
# documents, page-spanning hyphenation, chunk offsets, heading rules. 3: control characters
# dropped from extracted text.
INDEX_SCHEMA = 3
MANIFEST = "manifest.json"


def fingerprint(settings: Settings) -> dict[str, Any]:
    """Everything that changes what the index holds. A mismatch means rebuild."""
    fp = {
        # The encoder's identity under the keys indexes had before encoders were pluggable.
        "model": encoder_identity(settings).model,
        "embed_backend": encoder_identity(settings).backend,
        "chunk_tokens": settings.chunk_tokens,
        "chunk_overlap": settings.chunk_overlap,
        "index_schema": INDEX_SCHEMA,
        "code_version": __version__,
        "themes": lexicon_version(),
    }
    if settings.chunk_by_section:  # only when on: indexes built before the option stay valid
        fp["chunk_by_section"] = True
    fp.update(dense.fingerprint(settings))
    return fp


def embed_text(meta: DocumentMeta, chunk: Chunk) -> str:
    """What the dense model reads: the report's short title and section, then the passage, so a
    passage knows which report it belongs to."""
    head = f"{meta.short_title}. {chunk.heading}" if chunk.heading else meta.short_title
    return f"{head}\n{chunk.text}"


def bm25_text(meta: DocumentMeta, chunk: Chunk) -> str:
    """What BM25 reads: the passage plus the report title once (not the heading, which would
    repeat in every chunk of a section and drown rarer terms)."""
    return f"{meta.title} {meta.subject}\n{chunk.text}"


# --------------------------------------------------------------------------------------------
# manifest and publishing


def read_manifest(index_dir: Path) -> dict[str, Any] | None:
    """The manifest of the index in ``index_dir`` (None if there is none); IndexCorruptError if it
    cannot be read."""
    path = index_dir / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexCorruptError(f"{path} is unreadable ({exc}); delete {index_dir} and re-run ingest") from exc


@contextlib.contextmanager
def build_lock(index_dir: Path) -> Iterator[None]:
    """Hold the write lock of ``index_dir`` (created if missing): one build at a time per index;
    SscpRagError if another holds it."""
    with folder_lock(index_dir, ".lock", SscpRagError(f"another ingest is already writing {index_dir}")):
        yield


def new_data_dir(index_dir: Path) -> Path:
    """A new, empty data folder for a build (``data-<time>-<id>.tmp``: no manifest names it, so no
    loader reads it). The builder removes it if the build fails; :func:`publish` renames it."""
    build_id = time.strftime("%Y%m%d%H%M%S") + "-" + uuid.uuid4().hex[:6]
    data_dir = index_dir / f"data-{build_id}.tmp"
    data_dir.mkdir(parents=True)
    return data_dir


def publish(index_dir: Path, data_dir: Path, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Make the complete build in ``data_dir`` (from :func:`new_data_dir`) the index of
    ``index_dir``; call with :func:`build_lock` held.

    The folder is renamed to its final name, then ``manifest.json`` is replaced by ``manifest``
    with ``data_dir`` naming that folder (written to a temporary file and renamed, so a reader
    sees the old index or the new, never a mix), and every data folder it does not name is
    removed. Returns the manifest written.
    """
    final_dir = data_dir.with_name(data_dir.name.removesuffix(".tmp"))
    os.replace(data_dir, final_dir)
    written = {**manifest, "data_dir": final_dir.name}
    tmp_manifest = index_dir / (MANIFEST + ".tmp")
    tmp_manifest.write_text(json.dumps(written, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp_manifest, index_dir / MANIFEST)
    remove_orphans(index_dir, written)
    return written


def remove_orphans(index_dir: Path, manifest: dict[str, Any] | None) -> list[str]:
    """Delete every data folder that ``manifest`` does not name: earlier builds, half-built ones
    (``.tmp``) and half-deleted ones (a kill during clean-up). Run with the build lock held, so no
    build is writing one of them. Returns the names removed."""
    keep = str((manifest or {}).get("data_dir", ""))
    removed = []
    for stale in sorted(index_dir.glob("data-*")):
        if stale.name != keep and stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
            removed.append(stale.name)
    return removed


# --------------------------------------------------------------------------------------------
# the dense and BM25 indexes of a data folder


def write_vectors(data_dir: Path, matrix: np.ndarray, settings: Settings) -> None:
    """Write the dense index of ``data_dir``: one vector per chunk row, in row order, in the
    FAISS index ``settings.dense_index`` names (:mod:`sscp_rag.dense`)."""
    import faiss

    faiss.write_index(dense.build(matrix, settings), str(data_dir / "dense.faiss"))


def bm25_tokenize(texts: list[str]) -> Any:
    import bm25s
    import Stemmer

    return bm25s.tokenize(texts, stopwords="en", stemmer=Stemmer.Stemmer("english"), show_progress=False)


def write_bm25(data_dir: Path, texts: list[str]) -> None:
    """Write the BM25 index of ``data_dir``: one text per chunk row, in row order."""
    import bm25s

    retriever = bm25s.BM25()
    retriever.index(bm25_tokenize(texts), show_progress=False)
    retriever.save(str(data_dir / "bm25"))


# --------------------------------------------------------------------------------------------
# load


DOC_TEXT_CACHE = 64  # report texts kept in memory (an answer cites a handful)


@dataclass(frozen=True)
class DocInfo:
    """An indexed report: its metadata, pages and themes. Its text (``text``) is read from the
    chunk store when asked for, a few recently used reports kept: an archive's full texts would
    otherwise sit in memory beside its passages (1 GB of the 3.7 GB at a million passages)."""

    meta: DocumentMeta
    n_pages: int
    themes: tuple[str, ...]
    theme_counts: dict[str, int]
    read_text: Callable[[], DocText] = field(repr=False, compare=False)

    @property
    def text(self) -> DocText:
        return self.read_text()


class _DocTexts:
    """Report texts read from the chunk store on demand, the last ``DOC_TEXT_CACHE`` kept. Its own
    object, not the Index's, so that a report does not hold its index alive."""

    def __init__(self, conn: sqlite3.Connection, data_dir: Path):
        self.conn, self.data_dir = conn, data_dir
        self.cache: OrderedDict[str, DocText] = OrderedDict()
        self.lock = threading.Lock()  # the app answers on several threads over one connection

    def get(self, doc_id: str) -> DocText:
        with self.lock:
            doc = self.cache.get(doc_id)
            if doc is not None:
                self.cache.move_to_end(doc_id)
                return doc
            try:
                r = self.conn.execute(
                    "SELECT text, page_starts, headings FROM docs WHERE doc_id = ?", (doc_id,)
                ).fetchone()
            except sqlite3.Error as exc:
                raise IndexCorruptError(
                    f"the index in {self.data_dir.parent} is damaged ({exc}); re-run: sscp-rag ingest"
                ) from exc
            doc = DocText(
                r["text"], tuple(json.loads(r["page_starts"])), tuple((o, h) for o, h in json.loads(r["headings"]))
            )
            self.cache[doc_id] = doc
            if len(self.cache) > DOC_TEXT_CACHE:
                self.cache.popitem(last=False)
            return doc


class Index:
    """A loaded index. Load once per process (loading reads the model lazily, on first query)."""

    def __init__(self, settings: Settings, manifest: dict[str, Any], data_dir: Path, embedder: Encoder | None = None):
        import bm25s
        import faiss

        self.settings = settings
        self.manifest = manifest
        self.data_dir = data_dir
        try:
            self.conn = st.connect(data_dir / "chunks.sqlite", readonly=True)
            self.docs: dict[str, DocInfo] = {}
            texts = _DocTexts(self.conn, data_dir)
            rows = self.conn.execute("SELECT doc_id, meta, n_pages, themes, theme_counts FROM docs ORDER BY file")
            for r in rows:
                meta = st.meta_from_json(r["meta"])
                self.docs[r["doc_id"]] = DocInfo(
                    meta,
                    r["n_pages"],
                    tuple(json.loads(r["themes"])),
                    json.loads(r["theme_counts"]),
                    functools.partial(texts.get, r["doc_id"]),
                )
            self.chunks: list[Chunk] = [c for c, _ in st.iter_chunks(self.conn)]
            self.faiss = faiss.read_index(str(data_dir / "dense.faiss"))
            self.bm25 = bm25s.BM25.load(str(data_dir / "bm25"))
        except (sqlite3.Error, RuntimeError, OSError, ValueError, KeyError) as exc:
            raise IndexCorruptError(
                f"the index in {data_dir.parent} is damaged ({exc}); re-run: sscp-rag ingest"
            ) from exc
        if self.faiss.ntotal != len(self.chunks):
            raise IndexCorruptError(
                f"the index in {data_dir.parent} is inconsistent ({self.faiss.ntotal} vectors, "
                f"{len(self.chunks)} chunks); re-run: sscp-rag ingest"
            )
        self._embedder = embedder  # made on first use when not given
        self.by_file = {d.meta.file: d for d in self.docs.values()}
        self.row_of = {c.id: i for i, c in enumerate(self.chunks)}

    @property
    def embedder(self) -> Encoder:
        if self._embedder is None:
            self._embedder = make_encoder(self.settings)
        return self._embedder

    def doc(self, doc_id: str) -> DocInfo:
        return self.docs[doc_id]

    def page_text(self, file: str, page: int) -> str:
        """The cleaned text of one page, as quotes are checked against."""
        info = self.by_file[file]
        return info.text.page_text(page)

    def span_text(self, file: str, page_start: int, page_end: int) -> str:
        info = self.by_file[file]
        start = info.text.page_starts[page_start - 1]
        end = info.text.page_starts[page_end] if page_end < len(info.text.page_starts) else len(info.text.text)
        return info.text.text[start:end]

    @property
    def skipped(self) -> list[dict[str, str]]:
        return list(self.manifest.get("skipped", []))

    def close(self) -> None:
        self.conn.close()


def load_index(
    settings: Settings, check: Callable[[dict], None] | None = None, embedder: Encoder | None = None
) -> Index:
    """Load the index in ``settings.index_dir``; refuse, with a clear message, if it is missing or
    was built with other settings or code. An already loaded ``embedder`` may be shared."""
    index_dir = Path(settings.index_dir)
    manifest = read_manifest(index_dir)
    if manifest is None:
        raise IndexMissingError(
            f"no index in {index_dir}; build one with: sscp-rag ingest --corpus {settings.corpus_dir} "
            f"--index {index_dir}"
        )
    want, have = fingerprint(settings), manifest.get("fingerprint", {})
    if have != want:
        keys = [*want, *(k for k in have if k not in want)]
        diffs = ", ".join(f"{k} {have.get(k)!r} -> {want.get(k)!r}" for k in keys if have.get(k) != want.get(k))
        raise IndexStaleError(
            f"the index in {index_dir} was built with other settings or code ({diffs}); "
            f"rebuild it with: sscp-rag ingest --index {index_dir}"
        )
    data_dir = index_dir / str(manifest.get("data_dir", ""))
    if not data_dir.is_dir():
        raise IndexCorruptError(f"the index in {index_dir} has no data folder; re-run: sscp-rag ingest")
    if check:
        check(manifest)
    return Index(settings, manifest, data_dir, embedder)
