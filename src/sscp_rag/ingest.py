"""Ingest: read, chunk, embed and write a corpus of PDFs into an index, incrementally.

The index is written through :mod:`sscp_rag.index` (Store): a build writes a new data folder and
publishes it atomically, so a crash, kill or Ctrl-C mid-build leaves the previous index loadable.
Unchanged files are copied from the previous build and embeddings are cached by text, so only new
or changed files are re-embedded. A file whose size and modification time match the manifest's
record keeps its recorded sha256 (it is not read to hash).

Each PDF is read, chunked and embedded on its own (its chunks in length-sorted batches), and the
result is saved in ``index_dir/staging/<fingerprint hash>/`` as soon as the file is done. A build
that is killed (even with SIGKILL) therefore resumes from the files it finished: the next run takes
them from staging, keyed by file sha256 and metadata, and embeds only the rest. Embedding file by
file also makes a file's vectors independent of which other files are built with it, so a resumed
or distributed build (:mod:`sscp_rag.distributed`) writes the same index as a clean local one.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import time
import uuid
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from sscp_rag import __version__
from sscp_rag import store as st
from sscp_rag.chunking import DocText, chunk_document, join_pages, make_splitter
from sscp_rag.corpus import CorpusFile, infer_meta, known_files, list_pdfs
from sscp_rag.corpus_manifest import load_manifests
from sscp_rag.embedding import encoder_identity, make_encoder
from sscp_rag.encoder import Encoder
from sscp_rag.errors import ConfigError, CorpusError, IndexCorruptError
from sscp_rag.index import (
    bm25_text,
    build_lock,
    embed_text,
    fingerprint,
    new_data_dir,
    publish,
    read_manifest,
    remove_orphans,
    write_bm25,
    write_vectors,
)
from sscp_rag.pdf import ExtractedPdf, read_pdfs
from sscp_rag.records import Chunk, DocumentMeta, content_id
from sscp_rag.settings import Settings
from sscp_rag.vocabulary import THEME_IDS, tag_text, theme_descriptions

STAGING = "staging"


@dataclass
class IngestSummary:
    """What an ingest run did; printed by the CLI and kept in the index manifest."""

    files: int = 0
    ingested: int = 0  # files read from PDF in this run
    reused: int = 0  # unchanged files copied from the previous build
    resumed: int = 0  # files taken from the staging area of an interrupted build (not re-embedded)
    removed: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    pages: int = 0
    pages_read: int = 0
    chunks: int = 0
    embedded: int = 0  # chunk texts embedded in this run (the rest came from the cache)
    seconds: float = 0.0
    read_seconds: float = 0.0  # reading, cleaning and chunking the PDFs read in this run
    embed_seconds: float = 0.0  # embedding the chunks not in the cache
    up_to_date: bool = False
    index_dir: str = ""

    @property
    def documents(self) -> int:
        return self.files - len(self.skipped)

    @property
    def pages_per_second(self) -> float:
        return self.pages_read / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "documents": self.documents,
            "ingested": self.ingested,
            "reused": self.reused,
            "resumed": self.resumed,
            "removed": self.removed,
            "skipped": [{"file": f, "reason": r} for f, r in self.skipped],
            "pages": self.pages,
            "pages_read": self.pages_read,
            "chunks": self.chunks,
            "embedded": self.embedded,
            "seconds": round(self.seconds, 3),
            "read_seconds": round(self.read_seconds, 3),
            "embed_seconds": round(self.embed_seconds, 3),
            "pages_per_second": round(self.pages_per_second, 2),
            "up_to_date": self.up_to_date,
            "index_dir": self.index_dir,
        }


# --------------------------------------------------------------------------------------------
# read and chunk (no embedding)


@dataclass(frozen=True)
class ChunkedDoc:
    """One PDF read, cleaned and chunked as an ingest does it, not yet embedded."""

    file: CorpusFile
    meta: DocumentMeta
    pdf: ExtractedPdf
    doc: DocText
    chunks: tuple[Chunk, ...]


def iter_chunked(
    settings: Settings,
    files: Sequence[CorpusFile],
    manifests: dict[str, DocumentMeta],
    tokenizer: Any,
) -> Iterator[tuple[CorpusFile, ChunkedDoc | str]]:
    """Read, clean and chunk ``files`` (in parallel reader processes where worth it, each file
    under ``settings.read_timeout``), yielding ``(file, ChunkedDoc or skip reason)`` in the order
    of ``files`` as each is ready, so the caller can embed one file while the next are read."""
    splitter = make_splitter(tokenizer, settings.chunk_tokens, settings.chunk_overlap)
    results = read_pdfs(
        [(f.path, f.rel) for f in files],
        settings.read_workers,
        [f.size for f in files],
        timeout=settings.read_timeout,
        max_pages=settings.max_pages,
    )
    try:
        for f, result in zip(files, results):
            if isinstance(result, str):
                yield f, result
                continue
            meta = manifests.get(f.rel) or infer_meta(f.rel, result.first_page_raw)
            doc = join_pages(result.pages)
            chunks = tuple(c for c in chunk_document(meta, doc, splitter, settings.chunk_by_section) if c.text.strip())
            if not chunks:
                yield f, "no text left after cleaning"
                continue
            yield f, ChunkedDoc(f, meta, result, doc, chunks)
    finally:
        results.close()  # stops the readers at once when the caller stops early


def chunk_files(
    settings: Settings,
    files: Sequence[CorpusFile],
    manifests: dict[str, DocumentMeta],
    tokenizer: Any,
    progress: bool = False,
    on_file: Callable[[int, int], None] | None = None,
) -> tuple[list[ChunkedDoc], list[tuple[str, str]]]:
    """Read, clean and chunk ``files`` (in parallel processes where worth it).

    Returns the documents, in the order of ``files``, and the skipped files with their one-line
    reasons. Metadata comes from ``manifests`` or, for a file no manifest lists, is inferred from
    its name and first page. ``on_file(done, total)`` is called after each file.
    """
    docs: list[ChunkedDoc] = []
    skipped: list[tuple[str, str]] = []
    bar = tqdm(total=len(files), desc="Reading PDFs", unit="file", disable=not progress, leave=False)
    for done, (f, result) in enumerate(iter_chunked(settings, files, manifests, tokenizer), start=1):
        bar.set_postfix_str(f.rel[-40:])
        bar.update()
        if on_file:
            on_file(done, len(files))
        if isinstance(result, str):
            skipped.append((f.rel, result))
        else:
            docs.append(result)
    bar.close()
    return docs, skipped


def chunk_corpus(
    settings: Settings, files: Sequence[CorpusFile] | None = None, progress: bool = False
) -> tuple[list[ChunkedDoc], list[tuple[str, str]]]:
    """Read, clean and chunk the PDFs of ``settings.corpus_dir`` (or just ``files`` of it) exactly
    as ``build_index`` would, without embedding or writing anything: for checks of extraction,
    page spans and chunking, and for benchmarks. Loads only the tokenizer, not the model."""
    corpus = Path(settings.corpus_dir)
    if files is None:
        files = list_pdfs(corpus)
    return chunk_files(settings, files, load_manifests(corpus), make_encoder(settings).tokenizer, progress)


# --------------------------------------------------------------------------------------------
# embed one file, and the staging area that makes a build resumable


@dataclass
class EmbeddedFile:
    """One PDF read, chunked and embedded: everything a build stores for it (chunks not yet
    tagged with themes). Made by :func:`embed_file` here or on a Ray worker, and saved in the
    staging area as soon as it is done."""

    rel: str
    sha256: str
    meta: DocumentMeta
    n_pages: int
    pages: list[tuple[int, str]]
    doc: DocText
    chunks: list[Chunk]
    keys: list[str]  # embedding-cache keys of the chunks (model, backend and text)
    vectors: np.ndarray  # (len(chunks), dims) float32, L2-normalised
    embedded: int = 0  # chunk texts embedded to make it (the others came from the cache)

    def to_bytes(self) -> bytes:
        """A self-contained serialisation (npz: the vectors plus JSON), no pickle: staging files
        and Ray results are plain data."""
        record = {
            "rel": self.rel,
            "sha256": self.sha256,
            "meta": st.meta_to_json(self.meta),
            "n_pages": self.n_pages,
            "pages": self.pages,
            "doc": [self.doc.text, list(self.doc.page_starts), [list(h) for h in self.doc.headings]],
            "chunks": [{**c.__dict__, "themes": list(c.themes)} for c in self.chunks],
            "keys": self.keys,
            "embedded": self.embedded,
        }
        buf = io.BytesIO()
        np.savez(buf, vectors=self.vectors, record=np.frombuffer(json.dumps(record).encode(), dtype=np.uint8))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> EmbeddedFile:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            vectors = np.ascontiguousarray(z["vectors"], dtype=np.float32)
            record = json.loads(z["record"].tobytes().decode())
        text, starts, headings = record["doc"]
        return cls(
            rel=record["rel"],
            sha256=record["sha256"],
            meta=st.meta_from_json(record["meta"]),
            n_pages=int(record["n_pages"]),
            pages=[(int(p), t) for p, t in record["pages"]],
            doc=DocText(text, tuple(starts), tuple((int(o), h) for o, h in headings)),
            chunks=[Chunk(**{**c, "themes": tuple(c["themes"])}) for c in record["chunks"]],
            keys=list(record["keys"]),
            vectors=vectors,
            embedded=int(record.get("embedded", 0)),
        )


def embed_key(settings: Settings, meta: DocumentMeta, chunk: Chunk) -> str:
    """The embedding-cache key of a chunk: model, effective backend and the text embedded."""
    ident = encoder_identity(settings)
    return content_id("emb", ident.model, ident.backend, embed_text(meta, chunk), length=32)


def embed_file(
    settings: Settings, d: ChunkedDoc, embedder: Encoder, cached: dict[str, np.ndarray] | None = None
) -> EmbeddedFile:
    """Embed one chunked PDF. Its chunks are encoded together (the encoder batches them sorted by
    length and returns them in order), never mixed with another file's: int8 quantisation scales
    activations per batch, so this keeps a file's vectors the same whichever files are built
    with it, here, resumed or on a Ray worker. Chunks in ``cached`` (same text) are not encoded."""
    keys = [embed_key(settings, d.meta, c) for c in d.chunks]
    cached = cached or {}
    missing = [i for i, k in enumerate(keys) if k not in cached]
    vectors = np.zeros((len(keys), 0), dtype=np.float32)
    if missing:
        fresh = embedder.encode([embed_text(d.meta, d.chunks[i]) for i in missing])
        vectors = np.zeros((len(keys), fresh.shape[1]), dtype=np.float32)
        vectors[missing] = fresh
    for i, k in enumerate(keys):
        if k in cached:
            if vectors.shape[1] == 0:
                vectors = np.zeros((len(keys), len(cached[k])), dtype=np.float32)
            vectors[i] = cached[k]
    return EmbeddedFile(
        rel=d.file.rel,
        sha256=d.file.sha256,
        meta=d.meta,
        n_pages=d.pdf.n_pages,
        pages=[(p.page, p.text) for p in d.pdf.pages],
        doc=d.doc,
        chunks=list(d.chunks),
        keys=keys,
        vectors=vectors,
        embedded=len(missing),
    )


def fingerprint_hash(settings: Settings) -> str:
    """A short name for the fingerprint: staged files of other settings or code are not reused."""
    raw = json.dumps(fingerprint(settings), sort_keys=True).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


class Staging:
    """Per-file results of a build in progress, in ``index_dir/staging/<fingerprint hash>/``.

    Each finished file is written to a temporary name and renamed (atomic), keyed by the file's
    sha256 and its metadata, so a killed build leaves only whole entries, and an edited PDF or
    manifest entry is never taken from staging. Cleared once the build is published."""

    def __init__(self, index_dir: Path, settings: Settings):
        self.root = Path(index_dir) / STAGING
        self.dir = self.root / fingerprint_hash(settings)

    def clear_others(self) -> None:
        """Drop staged results of other fingerprints (settings or code changed since)."""
        if self.root.is_dir():
            for other in self.root.iterdir():
                if other != self.dir:
                    shutil.rmtree(other, ignore_errors=True) if other.is_dir() else other.unlink(missing_ok=True)

    def _path(self, rel: str, sha256: str, meta_key: str) -> Path:
        return self.dir / f"{sha256}-{meta_key}-{content_id('file', rel)}.npz"

    def get(self, f: CorpusFile, meta_key: str) -> EmbeddedFile | None:
        path = self._path(f.rel, f.sha256, meta_key)
        if not path.exists():
            return None
        try:
            done = EmbeddedFile.from_bytes(path.read_bytes())
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):
            return None  # damaged: read and embed it again
        if done.rel != f.rel or done.sha256 != f.sha256:
            return None
        done.embedded = 0
        return done

    def put(self, done: EmbeddedFile, meta_key: str) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self._path(done.rel, done.sha256, meta_key)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}.tmp")
        tmp.write_bytes(done.to_bytes())
        os.replace(tmp, path)

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def build_index(
    settings: Settings,
    progress: bool = True,
    strict: bool = False,
    embedder: Encoder | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
    producer: Producer | None = None,
) -> IngestSummary:
    """Ingest ``settings.corpus_dir`` into ``settings.index_dir``, incrementally, atomically and
    resumably (files finished by a killed run are not read or embedded again).

    ``producer`` makes the embedded files (default: :class:`LocalRun`, this machine;
    :func:`sscp_rag.distributed.ray_producer` runs them on a Ray cluster); the index is written
    here either way.

    ``on_progress(stage, done, total)``, if given, is called as files are read and chunks embedded
    (for a UI progress bar; ``progress`` drives the terminal's tqdm bars).

    Bad files are skipped with a one-line reason (in the summary and the manifest). Raises
    CorpusError when the corpus has no PDFs or nothing could be ingested, and, with ``strict``,
    when any file was skipped.
    """
    t0 = time.perf_counter()
    corpus, index_dir = Path(settings.corpus_dir), Path(settings.index_dir)
    try:
        previous = read_manifest(index_dir)
    except IndexCorruptError:
        previous = None
    files = list_pdfs(corpus, known_files(previous))
    if not files:
        raise CorpusError(f"no PDF files found in {corpus}")
    manifests = load_manifests(corpus)
    sha_of = {f.rel: f.sha256 for f in files}
    stat_of = {f.rel: f for f in files}
    summary = IngestSummary(files=len(files), index_dir=str(index_dir))
    if embedder is not None and embedder.identity != encoder_identity(settings):
        raise ConfigError(
            "the encoder given to build_index is not the one the settings ask for (encoder, model or backend)"
        )

    with build_lock(index_dir):
        old = read_manifest(index_dir)
        remove_orphans(index_dir, old)
        old_conn = _open_previous(index_dir, old, settings)
        if old_conn is not None and _unchanged(old, files, manifests):
            summary.up_to_date = True
            summary.reused = len(old["files"])
            summary.skipped = [(s["file"], s["reason"]) for s in old.get("skipped", [])]
            summary.pages, summary.chunks = old["counts"]["pages"], old["counts"]["chunks"]
            old_conn.close()
            Staging(index_dir, settings).clear()  # left by a run killed after it published
            _prepare_questions(embedder or make_encoder(settings), progress)
            summary.seconds = time.perf_counter() - t0
            return summary
        if old:
            summary.removed = sorted(set(old.get("files", {})) - {f.rel for f in files})

        staging = Staging(index_dir, settings)
        staging.clear_others()
        tmp_dir = new_data_dir(index_dir)
        try:
            embedder = embedder or make_encoder(settings)
            dims = _build_into(
                tmp_dir,
                settings,
                files,
                manifests,
                old,
                old_conn,
                embedder,
                summary,
                progress,
                on_progress,
                staging,
                producer,
            )
            _prepare_questions(embedder, progress)
        except BaseException:
            shutil.rmtree(tmp_dir, ignore_errors=True)
            raise
        finally:
            if old_conn is not None:
                old_conn.close()
        if summary.documents == 0 or (strict and summary.skipped):
            shutil.rmtree(tmp_dir, ignore_errors=True)
            reasons = "; ".join(f"{f}: {r}" for f, r in summary.skipped[:5])
            what = "nothing could be ingested" if summary.documents == 0 else "some files were skipped (--strict)"
            raise CorpusError(f"{what}: {reasons}")
        summary.seconds = time.perf_counter() - t0
        manifest = {
            "fingerprint": fingerprint(settings),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "corpus_dir": str(corpus),
            "model": encoder_identity(settings).model,
            "dims": dims,
            "chunking": {"chunk_tokens": settings.chunk_tokens, "chunk_overlap": settings.chunk_overlap},
            "code_version": __version__,
            "files": {f: {**entry, **_stat(stat_of.get(f))} for f, entry in summary_files(tmp_dir).items()},
            "skipped": [
                {"file": f, "reason": r, "sha256": sha_of.get(f), **_stat(stat_of.get(f))} for f, r in summary.skipped
            ],
            "counts": {"documents": summary.documents, "pages": summary.pages, "chunks": summary.chunks},
            "last_run": summary.as_dict(),
        }
        publish(index_dir, tmp_dir, manifest)
        staging.clear()  # published: the per-file results are in the index now
    return summary


def _stat(f: CorpusFile | None) -> dict[str, int]:
    """What lets the next listing trust a file's recorded sha256 without reading the file."""
    return {"size": f.size, "mtime_ns": f.mtime_ns} if f is not None else {}


def _prepare_questions(embedder: Encoder, progress: bool) -> None:
    """Make the question-time runtime ready, so that the app and CLI answer without importing
    torch: the one-time ONNX export costs least during an ingest (after a build, torch is
    loaded already). When nothing needs exporting this only checks the cache."""
    if embedder.live_needs_export():
        if progress:
            tqdm.write("Exporting the model to ONNX for fast questions (once per machine)…")
        embedder.prepare_live()


def summary_files(data_dir: Path) -> dict[str, dict[str, Any]]:
    conn = st.connect(data_dir / "chunks.sqlite", readonly=True)
    try:
        return {
            r["file"]: {
                "sha256": r["sha256"],
                "pages": r["n_pages"],
                "meta_key": r["meta_key"],
                "chunks": conn.execute("SELECT COUNT(*) FROM chunks WHERE doc_id=?", (r["doc_id"],)).fetchone()[0],
            }
            for r in conn.execute("SELECT file, sha256, n_pages, meta_key, doc_id FROM docs ORDER BY file")
        }
    finally:
        conn.close()


def _open_previous(index_dir: Path, old: dict | None, settings: Settings) -> sqlite3.Connection | None:
    """The previous build's store, if it was built compatibly (same model and chunking)."""
    if not old or old.get("fingerprint") != fingerprint(settings):
        return None
    path = index_dir / old.get("data_dir", "") / "chunks.sqlite"
    if not path.exists():
        return None
    try:
        return st.connect(path, readonly=True)
    except sqlite3.Error:
        return None


def _meta_key(meta: DocumentMeta | None) -> str:
    return content_id("meta", st.meta_to_json(meta)) if meta else "inferred"


def _unchanged(old: dict, files: list, manifests: dict[str, DocumentMeta]) -> bool:
    old_files = old.get("files", {})
    old_skipped = {s["file"]: s.get("sha256") for s in old.get("skipped", [])}
    for f in files:
        if f.rel in old_files:
            entry = old_files[f.rel]
            if entry["sha256"] != f.sha256 or entry["meta_key"] != _meta_key(manifests.get(f.rel)):
                return False
        elif old_skipped.get(f.rel) != f.sha256:
            return False
    return len(files) == len(old_files) + len(old_skipped)


FileResults = Iterator[tuple[CorpusFile, EmbeddedFile | str]]
# Makes the EmbeddedFile (or skip reason) of each file given, in any order: the local pipeline
# below, or sscp_rag.distributed on a Ray cluster.
Producer = Callable[
    [Settings, list[CorpusFile], dict[str, DocumentMeta], Encoder, sqlite3.Connection | None], FileResults
]


class LocalRun:
    """The local producer: PDFs are read in reader processes and each is embedded in this one as
    it arrives, so the readers work ahead on the next files while a file is embedded. Keeps the
    seconds spent waiting for reading and spent embedding (they overlap in wall-clock time)."""

    def __init__(
        self,
        settings: Settings,
        files: list[CorpusFile],
        manifests: dict[str, DocumentMeta],
        embedder: Encoder,
        old_conn: sqlite3.Connection | None,
    ):
        self.settings, self.embedder, self.old_conn = settings, embedder, old_conn
        self._chunked = iter_chunked(settings, files, manifests, embedder.tokenizer)
        self.read_seconds = 0.0
        self.embed_seconds = 0.0

    def __iter__(self) -> LocalRun:
        return self

    def __next__(self) -> tuple[CorpusFile, EmbeddedFile | str]:
        t = time.perf_counter()
        f, d = next(self._chunked)
        self.read_seconds += time.perf_counter() - t
        if isinstance(d, str):
            return f, d
        t = time.perf_counter()
        keys = [embed_key(self.settings, d.meta, c) for c in d.chunks]
        cached = st.get_embeddings(self.old_conn, keys) if self.old_conn is not None else {}
        done = embed_file(self.settings, d, self.embedder, cached)
        self.embed_seconds += time.perf_counter() - t
        return f, done

    def close(self) -> None:
        self._chunked.close()


local_producer: Producer = LocalRun


def _build_into(
    data_dir: Path,
    settings: Settings,
    files: list,
    manifests: dict[str, DocumentMeta],
    old: dict | None,
    old_conn: sqlite3.Connection | None,
    embedder: Encoder,
    summary: IngestSummary,
    progress: bool,
    on_progress: Callable[[str, int, int], None] | None = None,
    staging: Staging | None = None,
    producer: Producer | None = None,
) -> int:
    """Write a complete build into ``data_dir``; returns the vectors' dimensions (0 if no document
    could be ingested, in which case nothing is written). Files finished by ``producer`` are
    saved in ``staging`` as they come; files already there are not read or embedded again."""
    report = on_progress or (lambda stage, done, total: None)
    conn = st.create(data_dir / "chunks.sqlite")
    old_docs = st.doc_rows(old_conn) if old_conn is not None else {}
    docs: list[tuple[DocumentMeta, list[Chunk], list[str], bool]] = []  # meta, chunks, keys, is_new
    doc_info: dict[str, tuple[str, int, DocText]] = {}

    # Unchanged files (same bytes, same manifest entry) are copied from the previous build.
    reuse = {
        f.rel: old_docs[f.rel]
        for f in files
        if f.rel in old_docs
        and old_docs[f.rel]["sha256"] == f.sha256
        and old_docs[f.rel]["meta_key"] == _meta_key(manifests.get(f.rel))
    }
    to_read = [f for f in files if f.rel not in reuse]
    fresh: dict[str, EmbeddedFile] = {}
    for f in to_read:  # finished by an earlier, interrupted run of this build
        done = staging.get(f, _meta_key(manifests.get(f.rel))) if staging is not None else None
        if done is not None:
            fresh[f.rel] = done
            summary.resumed += 1
    to_do = [f for f in to_read if f.rel not in fresh]

    t0 = time.perf_counter()
    bar = tqdm(
        total=len(to_read),
        initial=len(fresh),
        desc="Ingesting PDFs",
        unit="file",
        disable=not progress or not to_do,
        leave=False,
    )
    pages = chunks = 0
    n_done = len(fresh)
    produce = producer or local_producer
    results = produce(settings, to_do, manifests, embedder, old_conn) if to_do else iter(())
    try:
        for f, done in results:
            n_done += 1
            if isinstance(done, str):
                summary.skipped.append((f.rel, done))
            else:
                if staging is not None:
                    staging.put(done, _meta_key(manifests.get(f.rel)))
                fresh[f.rel] = done
                summary.embedded += done.embedded
                pages += done.n_pages
                chunks += len(done.chunks)
            rate = chunks / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix_str(f"{pages} pages, {chunks} chunks, {rate:.1f} chunks/s")
            bar.update()
            # Reading and embedding now go together: one stage, whose total (chunks to embed) is
            # known only at the end, so it is estimated from the files done so far.
            estimate = round(summary.embedded * len(to_read) / max(n_done, 1))
            report("Embedding chunks", summary.embedded, max(estimate, summary.embedded))
    finally:
        close = getattr(results, "close", None)
        if close is not None:
            close()
        bar.close()
    report("Reading PDFs", len(to_read), len(to_read))
    report("Embedding chunks", summary.embedded, summary.embedded)
    elapsed = time.perf_counter() - t0
    # Reading and embedding overlap now; the split below is each stage's own time.
    summary.read_seconds = round(getattr(results, "read_seconds", elapsed), 3) if to_do else 0.0
    summary.embed_seconds = round(getattr(results, "embed_seconds", elapsed), 3) if to_do else 0.0

    vectors: dict[str, np.ndarray] = {}
    for f in files:
        prev = reuse.get(f.rel)
        if prev is not None:
            meta_prev = st.meta_from_json(prev["meta"])
            pairs = list(st.iter_chunks(old_conn, prev["doc_id"]))
            doc = DocText(
                prev["text"],
                tuple(json.loads(prev["page_starts"])),
                tuple((o, h) for o, h in json.loads(prev["headings"])),
            )
            st.insert_pages(conn, meta_prev.doc_id, st.page_rows(old_conn, prev["doc_id"]))
            docs.append((meta_prev, [c for c, _ in pairs], [k for _, k in pairs], False))
            doc_info[meta_prev.doc_id] = (f.sha256, prev["n_pages"], doc)
            summary.reused += 1
            summary.pages += prev["n_pages"]
            continue
        d = fresh.get(f.rel)
        if d is None:  # skipped
            continue
        st.insert_pages(conn, d.meta.doc_id, d.pages)
        docs.append((d.meta, list(d.chunks), list(d.keys), True))
        vectors.update(zip(d.keys, d.vectors))
        doc_info[d.meta.doc_id] = (f.sha256, d.n_pages, d.doc)
        summary.ingested += 1
        summary.pages += d.n_pages
        summary.pages_read += d.n_pages
    if not docs:
        conn.close()
        return 0

    # Reused documents keep their vectors from the previous build's store.
    reused_keys = [k for _, _, keys, is_new in docs if not is_new for k in keys]
    if reused_keys and old_conn is not None:
        vectors.update(st.get_embeddings(old_conn, reused_keys))
    all_keys = [k for _, _, keys, _ in docs for k in keys]
    st.put_embeddings(conn, ((k, vectors[k]) for k in dict.fromkeys(all_keys)))

    # Only new documents are tagged (reused ones keep their themes): no model load without them.
    theme_vecs = embedder.encode(theme_descriptions()) if any(new for *_, new in docs) else None
    row = 0
    all_chunks: list[Chunk] = []
    bm25_texts: list[str] = []
    for meta, chunks_, keys, is_new in docs:
        if is_new:
            chunks_ = [
                Chunk(**{**c.__dict__, "themes": tag_text(c.text, vectors[k], theme_vecs)})
                for c, k in zip(chunks_, keys)
            ]
        st.insert_chunks(conn, row, chunks_, keys)
        row += len(chunks_)
        all_chunks.extend(chunks_)
        bm25_texts.extend(bm25_text(meta, c) for c in chunks_)
        counts = Counter(t for c in chunks_ for t in c.themes)
        for t in meta.themes:
            counts.setdefault(t, 0)
        themes = [t for t in THEME_IDS if t in counts]
        sha, n_pages, doc = doc_info[meta.doc_id]
        st.insert_doc(
            conn,
            meta,
            sha,
            n_pages,
            doc.text,
            doc.page_starts,
            doc.headings,
            themes,
            {t: counts[t] for t in themes},
            _meta_key(manifests.get(meta.file)),
        )
    conn.commit()
    conn.close()
    summary.chunks = len(all_chunks)

    matrix = np.vstack([vectors[k] for _, _, keys, _ in docs for k in keys])
    write_vectors(data_dir, matrix, settings)
    write_bm25(data_dir, bm25_texts)
    return int(matrix.shape[1])


def corpus_changes(settings: Settings, manifest: dict[str, Any]) -> str:
    """A short description of how the corpus differs from what the index holds ('' if not)."""
    corpus = Path(settings.corpus_dir)
    if not corpus.is_dir() or Path(manifest.get("corpus_dir", "")).resolve() != corpus.resolve():
        return ""
    indexed = {
        **{f: v["sha256"] for f, v in manifest.get("files", {}).items()},
        **{s["file"]: s.get("sha256") for s in manifest.get("skipped", [])},
    }
    current = {f.rel: f.sha256 for f in list_pdfs(corpus, known_files(manifest))}
    added = len(set(current) - set(indexed))
    removed = len(set(indexed) - set(current))
    changed = sum(1 for f in set(current) & set(indexed) if indexed[f] and current[f] != indexed[f])
    parts = [f"{n} {w}" for n, w in ((added, "added"), (changed, "changed"), (removed, "removed")) if n]
    return ", ".join(parts)
