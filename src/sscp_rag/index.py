"""Build and load the index: chunk store + FAISS vectors + BM25, fingerprinted by a manifest.

Layout of ``index_dir``::

    manifest.json      fingerprint, counts, per-file sha256, skipped files; names the data folder
    data-<id>/         chunks.sqlite, dense.faiss, bm25/

A build writes a new ``data-<id>`` folder beside the current one and only then replaces
``manifest.json`` (an atomic rename), so a crash, kill or Ctrl-C mid-build leaves the previous
index loadable; data folders that no manifest names (left by a build or a clean-up that was
killed) are removed by the next run. Unchanged files are copied from the previous build and
embeddings are cached by text, so only new or changed files are re-embedded. A file whose size and
modification time match the manifest's record keeps its recorded sha256 (it is not read to hash).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import time
import uuid
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
from sscp_rag.corpus import CorpusFile, folder_lock, infer_meta, known_files, list_pdfs, load_manifests
from sscp_rag.embedding import Embedder
from sscp_rag.errors import (
    ConfigError,
    CorpusError,
    IndexCorruptError,
    IndexMissingError,
    IndexStaleError,
    SscpRagError,
)
from sscp_rag.pdf import ExtractedPdf, read_pdfs
from sscp_rag.records import Chunk, DocumentMeta, content_id
from sscp_rag.settings import Settings
from sscp_rag.themes import THEME_IDS, lexicon_version, tag_text, theme_descriptions

# Bump when the stored data or the text pipeline (extraction, cleaning, chunking) changes, so
# older indexes are rebuilt rather than mixed with new chunks. 2: running lines of 2-page
# documents, page-spanning hyphenation, chunk offsets, heading rules. 3: control characters
# dropped from extracted text.
INDEX_SCHEMA = 3
MANIFEST = "manifest.json"


def fingerprint(settings: Settings) -> dict[str, Any]:
    """Everything that changes what the index holds. A mismatch means rebuild."""
    fp = {
        "model": settings.model_name,
        "embed_backend": settings.embed_backend,
        "chunk_tokens": settings.chunk_tokens,
        "chunk_overlap": settings.chunk_overlap,
        "index_schema": INDEX_SCHEMA,
        "code_version": __version__,
        "themes": lexicon_version(),
    }
    if settings.chunk_by_section:  # only when on: indexes built before the option stay valid
        fp["chunk_by_section"] = True
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


@dataclass
class IngestSummary:
    """What an ingest run did; printed by the CLI and kept in the index manifest."""

    files: int = 0
    ingested: int = 0  # files read from PDF in this run
    reused: int = 0  # unchanged files copied from the previous build
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
    splitter = make_splitter(tokenizer, settings.chunk_tokens, settings.chunk_overlap)
    docs: list[ChunkedDoc] = []
    skipped: list[tuple[str, str]] = []
    bar = tqdm(total=len(files), desc="Reading PDFs", unit="file", disable=not progress, leave=False)
    results = read_pdfs(
        [(f.path, f.rel) for f in files],
        settings.read_workers,
        [f.size for f in files],
        timeout=settings.read_timeout,
        max_pages=settings.max_pages,
    )
    for done, (f, result) in enumerate(zip(files, results), start=1):
        bar.set_postfix_str(f.rel[-40:])
        bar.update()
        if on_file:
            on_file(done, len(files))
        if isinstance(result, str):
            skipped.append((f.rel, result))
            continue
        meta = manifests.get(f.rel) or infer_meta(f.rel, result.first_page_raw)
        doc = join_pages(result.pages)
        chunks = tuple(c for c in chunk_document(meta, doc, splitter, settings.chunk_by_section) if c.text.strip())
        if not chunks:
            skipped.append((f.rel, "no text left after cleaning"))
            continue
        docs.append(ChunkedDoc(f, meta, result, doc, chunks))
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
    return chunk_files(settings, files, load_manifests(corpus), Embedder(settings).tokenizer, progress)


# --------------------------------------------------------------------------------------------
# build


def read_manifest(index_dir: Path) -> dict[str, Any] | None:
    path = index_dir / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexCorruptError(f"{path} is unreadable ({exc}); delete {index_dir} and re-run ingest") from exc


@contextlib.contextmanager
def _build_lock(index_dir: Path) -> Iterator[None]:
    with folder_lock(index_dir, ".lock", SscpRagError(f"another ingest is already writing {index_dir}")):
        yield


def build_index(
    settings: Settings,
    progress: bool = True,
    strict: bool = False,
    embedder: Embedder | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> IngestSummary:
    """Ingest ``settings.corpus_dir`` into ``settings.index_dir``, incrementally and atomically.

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
    if embedder is not None and (embedder.settings.model_name, embedder.settings.embed_backend) != (
        settings.model_name,
        settings.embed_backend,
    ):
        raise ConfigError("the embedder given to build_index uses another model or backend than the settings")

    with _build_lock(index_dir):
        old = read_manifest(index_dir)
        remove_orphans(index_dir, old)
        old_conn = _open_previous(index_dir, old, settings)
        if old_conn is not None and _unchanged(old, files, manifests):
            summary.up_to_date = True
            summary.reused = len(old["files"])
            summary.skipped = [(s["file"], s["reason"]) for s in old.get("skipped", [])]
            summary.pages, summary.chunks = old["counts"]["pages"], old["counts"]["chunks"]
            old_conn.close()
            _prepare_questions(embedder or Embedder(settings), progress)
            summary.seconds = time.perf_counter() - t0
            return summary
        if old:
            summary.removed = sorted(set(old.get("files", {})) - {f.rel for f in files})

        build_id = time.strftime("%Y%m%d%H%M%S") + "-" + uuid.uuid4().hex[:6]
        tmp_dir = index_dir / f"data-{build_id}.tmp"
        tmp_dir.mkdir(parents=True)
        try:
            embedder = embedder or Embedder(settings)
            dims = _build_into(
                tmp_dir, settings, files, manifests, old, old_conn, embedder, summary, progress, on_progress
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
        final_dir = index_dir / f"data-{build_id}"
        os.replace(tmp_dir, final_dir)
        summary.seconds = time.perf_counter() - t0
        manifest = {
            "fingerprint": fingerprint(settings),
            "data_dir": final_dir.name,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "corpus_dir": str(corpus),
            "model": settings.model_name,
            "dims": dims,
            "chunking": {"chunk_tokens": settings.chunk_tokens, "chunk_overlap": settings.chunk_overlap},
            "code_version": __version__,
            "files": {f: {**entry, **_stat(stat_of.get(f))} for f, entry in summary_files(final_dir).items()},
            "skipped": [
                {"file": f, "reason": r, "sha256": sha_of.get(f), **_stat(stat_of.get(f))} for f, r in summary.skipped
            ],
            "counts": {"documents": summary.documents, "pages": summary.pages, "chunks": summary.chunks},
            "last_run": summary.as_dict(),
        }
        tmp_manifest = index_dir / (MANIFEST + ".tmp")
        tmp_manifest.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp_manifest, index_dir / MANIFEST)
        remove_orphans(index_dir, manifest)
    return summary


def _stat(f: CorpusFile | None) -> dict[str, int]:
    """What lets the next listing trust a file's recorded sha256 without reading the file."""
    return {"size": f.size, "mtime_ns": f.mtime_ns} if f is not None else {}


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


def _prepare_questions(embedder: Embedder, progress: bool) -> None:
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


def _build_into(
    data_dir: Path,
    settings: Settings,
    files: list,
    manifests: dict[str, DocumentMeta],
    old: dict | None,
    old_conn: sqlite3.Connection | None,
    embedder: Embedder,
    summary: IngestSummary,
    progress: bool,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> int:
    """Write a complete build into ``data_dir``; returns the vectors' dimensions (0 if no document
    could be ingested, in which case nothing is written)."""
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
    t_read = time.perf_counter()
    fresh: dict[str, ChunkedDoc] = {}
    if to_read:
        read, skipped = chunk_files(
            settings,
            to_read,
            manifests,
            embedder.tokenizer,
            progress,
            on_file=lambda done, total: report("Reading PDFs", done, total),
        )
        fresh = {d.file.rel: d for d in read}
        summary.skipped.extend(skipped)
    report("Reading PDFs", len(to_read), len(to_read))
    summary.read_seconds = time.perf_counter() - t_read

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
        keys = [
            content_id("emb", settings.model_name, settings.embed_backend, embed_text(d.meta, c), length=32)
            for c in d.chunks
        ]
        st.insert_pages(conn, d.meta.doc_id, [(p.page, p.text) for p in d.pdf.pages])
        docs.append((d.meta, list(d.chunks), keys, True))
        doc_info[d.meta.doc_id] = (f.sha256, d.pdf.n_pages, d.doc)
        summary.ingested += 1
        summary.pages += d.pdf.n_pages
        summary.pages_read += d.pdf.n_pages
    if not docs:
        conn.close()
        return 0

    # Embeddings: from the previous build's cache where the text is unchanged, else computed.
    all_keys = [k for _, _, keys, _ in docs for k in keys]
    texts = {k: embed_text(m, c) for m, chunks, keys, _ in docs for c, k in zip(chunks, keys)}
    cached = st.get_embeddings(old_conn, all_keys) if old_conn is not None else {}
    missing = [k for k in dict.fromkeys(all_keys) if k not in cached]
    summary.embedded = len(missing)
    batch = max(1, settings.embed_batch_size) * 4
    t_embed = time.perf_counter()
    ebar = tqdm(
        total=len(missing), desc="Embedding chunks", unit="chunk", disable=not progress or not missing, leave=False
    )
    for i in range(0, len(missing), batch):
        keys = missing[i : i + batch]
        vecs = embedder.encode([texts[k] for k in keys])
        cached.update(zip(keys, vecs))
        ebar.update(len(keys))
        report("Embedding chunks", min(i + batch, len(missing)), len(missing))
    ebar.close()
    summary.embed_seconds = time.perf_counter() - t_embed
    st.put_embeddings(conn, ((k, cached[k]) for k in dict.fromkeys(all_keys)))

    # Only new documents are tagged (reused ones keep their themes): no model load without them.
    theme_vecs = embedder.encode(theme_descriptions()) if any(new for *_, new in docs) else None
    row = 0
    all_chunks: list[Chunk] = []
    bm25_texts: list[str] = []
    for meta, chunks, keys, is_new in docs:
        if is_new:
            chunks = [
                Chunk(**{**c.__dict__, "themes": tag_text(c.text, cached[k], theme_vecs)}) for c, k in zip(chunks, keys)
            ]
        st.insert_chunks(conn, row, chunks, keys)
        row += len(chunks)
        all_chunks.extend(chunks)
        bm25_texts.extend(bm25_text(meta, c) for c in chunks)
        counts = Counter(t for c in chunks for t in c.themes)
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

    matrix = np.vstack([cached[k] for _, _, keys, _ in docs for k in keys])
    _write_vectors(data_dir, matrix)
    _write_bm25(data_dir, bm25_texts)
    return int(matrix.shape[1])


def _write_vectors(data_dir: Path, matrix: np.ndarray) -> None:
    import faiss

    index = faiss.IndexFlatIP(matrix.shape[1])
    if len(matrix):
        index.add(np.ascontiguousarray(matrix, dtype=np.float32))
    faiss.write_index(index, str(data_dir / "dense.faiss"))


def bm25_tokenize(texts: list[str]) -> Any:
    import bm25s
    import Stemmer

    return bm25s.tokenize(texts, stopwords="en", stemmer=Stemmer.Stemmer("english"), show_progress=False)


def _write_bm25(data_dir: Path, texts: list[str]) -> None:
    import bm25s

    retriever = bm25s.BM25()
    retriever.index(bm25_tokenize(texts), show_progress=False)
    retriever.save(str(data_dir / "bm25"))


# --------------------------------------------------------------------------------------------
# load


@dataclass(frozen=True)
class DocInfo:
    """An indexed report: its metadata, pages and themes."""

    meta: DocumentMeta
    n_pages: int
    themes: tuple[str, ...]
    theme_counts: dict[str, int]
    text: DocText


class Index:
    """A loaded index. Load once per process (loading reads the model lazily, on first query)."""

    def __init__(self, settings: Settings, manifest: dict[str, Any], data_dir: Path):
        import bm25s
        import faiss

        self.settings = settings
        self.manifest = manifest
        self.data_dir = data_dir
        try:
            self.conn = st.connect(data_dir / "chunks.sqlite", readonly=True)
            self.docs: dict[str, DocInfo] = {}
            for r in self.conn.execute("SELECT * FROM docs ORDER BY file"):
                meta = st.meta_from_json(r["meta"])
                doc = DocText(
                    r["text"], tuple(json.loads(r["page_starts"])), tuple((o, h) for o, h in json.loads(r["headings"]))
                )
                self.docs[r["doc_id"]] = DocInfo(
                    meta, r["n_pages"], tuple(json.loads(r["themes"])), json.loads(r["theme_counts"]), doc
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
        self._embedder: Embedder | None = None
        self.by_file = {d.meta.file: d for d in self.docs.values()}
        self.row_of = {c.id: i for i, c in enumerate(self.chunks)}

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = Embedder(self.settings)
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
    settings: Settings, check: Callable[[dict], None] | None = None, embedder: Embedder | None = None
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
    index = Index(settings, manifest, data_dir)
    index._embedder = embedder
    return index


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
