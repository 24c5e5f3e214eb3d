"""BEIR collections: read ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``, index the
corpus as plain text and evaluate configurations on it at document level.

Each BEIR document becomes one single-page document (title + text, no PDF), chunked with the same
splitter and written with the same store, FAISS and BM25 writers as a PDF corpus, so
:func:`sscp_rag.index.load_index`, search and the evaluation run on it unchanged. The index lives in
``<index>/eval-beir/<folder name>-<hash>`` and is reused while ``corpus.jsonl`` and the index
settings are unchanged.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sscp_rag import __version__
from sscp_rag import store as st
from sscp_rag.chunking import chunk_document, join_pages, make_splitter
from sscp_rag.corpus_manifest import sha256_file
from sscp_rag.errors import EvalError
from sscp_rag.evaluation import EvalConfig, EvalQuestion, EvalRun, Judgement, run_evaluation
from sscp_rag.index import (
    bm25_text,
    build_lock,
    embed_text,
    fingerprint,
    load_index,
    new_data_dir,
    publish,
    read_manifest,
    write_bm25,
    write_vectors,
)
from sscp_rag.records import Chunk, DocumentMeta, Page, content_id
from sscp_rag.settings import Settings

TEXT_INDEX_KIND = "text"


@dataclass(frozen=True)
class TextDocument:
    """A plain-text document (one BEIR corpus entry)."""

    id: str
    title: str
    text: str

    @property
    def body(self) -> str:
        """What gets indexed: the title, a blank line, then the text."""
        return "\n\n".join(p for p in (self.title.strip(), self.text.strip()) if p)


@dataclass(frozen=True)
class BeirSet:
    """A loaded BEIR folder: its documents and its judged queries as eval questions."""

    root: Path
    documents: list[TextDocument]
    questions: list[EvalQuestion]
    corpus_sha256: str


def _jsonl(path: Path, what: str) -> list[tuple[int, dict[str, Any]]]:
    if not path.is_file():
        raise EvalError(f"BEIR folder has no {path.name} ({what}) at {path}")
    rows = []
    try:
        with path.open(encoding="utf-8") as fh:
            for n, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    d = json.loads(raw)
                except json.JSONDecodeError as exc:
                    raise EvalError(f"{path}, line {n}: not valid JSON ({exc.msg})") from exc
                if not isinstance(d, dict) or "_id" not in d or not isinstance(d.get("text"), str):
                    raise EvalError(f'{path}, line {n}: expected an object with "_id" and "text"')
                rows.append((n, d))
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalError(f"{path} is unreadable ({exc})") from exc
    return rows


def load_beir(root: Path, split: str = "test") -> BeirSet:
    """Read a BEIR folder; raise EvalError naming the file and line of anything malformed."""
    root = Path(root)
    if not root.is_dir():
        raise EvalError(f"BEIR folder {root} does not exist")
    corpus_path = root / "corpus.jsonl"
    docs: dict[str, TextDocument] = {}
    for n, d in _jsonl(corpus_path, "the documents"):
        did = str(d["_id"]).strip()
        if not did:
            raise EvalError(f'{corpus_path}, line {n}: empty "_id"')
        if did in docs:
            raise EvalError(f"{corpus_path}, line {n}: duplicate document id {did!r}")
        title = d.get("title") or ""
        if not isinstance(title, str):
            raise EvalError(f'{corpus_path}, line {n}: "title" must be a string')
        docs[did] = TextDocument(did, title, d["text"])
    if not docs:
        raise EvalError(f"{corpus_path} holds no documents")
    queries_path = root / "queries.jsonl"
    queries = {str(d["_id"]).strip(): d["text"].strip() for _, d in _jsonl(queries_path, "the queries")}

    qrels_path = root / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        raise EvalError(f"BEIR folder has no qrels/{split}.tsv at {qrels_path}")
    judged: dict[str, dict[str, int]] = {}
    first_line: dict[str, int] = {}
    try:
        lines = qrels_path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalError(f"{qrels_path} is unreadable ({exc})") from exc
    for n, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        parts = raw.split("\t") if "\t" in raw else raw.split()
        parts = [p.strip() for p in parts]
        if n == 1 and (len(parts) != 3 or not _is_int(parts[2])):
            continue  # the header line: query-id corpus-id score
        if len(parts) != 3 or not _is_int(parts[2]):
            raise EvalError(f"{qrels_path}, line {n}: expected 'query-id<TAB>corpus-id<TAB>score'")
        qid, did, score = parts[0], parts[1], int(parts[2])
        if qid not in queries:
            raise EvalError(f"{qrels_path}, line {n}: unknown query {qid!r} (not in queries.jsonl)")
        if did not in docs:
            raise EvalError(f"{qrels_path}, line {n}: unknown document {did!r} (not in corpus.jsonl)")
        if score <= 0:
            continue
        judged.setdefault(qid, {})[did] = max(score, judged.get(qid, {}).get(did, 0))
        first_line.setdefault(qid, n)
    if not judged:
        raise EvalError(f"{qrels_path} judges no document relevant (score > 0)")
    questions = []
    for qid, rel in judged.items():
        if not queries[qid]:
            raise EvalError(f"{queries_path}: query {qid!r} has empty text")
        questions.append(
            EvalQuestion(
                qid, queries[qid], tuple(Judgement(d, (1,), g) for d, g in rel.items()), True, line=first_line[qid]
            )
        )
    return BeirSet(root, list(docs.values()), questions, sha256_file(corpus_path))


def _is_int(s: str) -> bool:
    try:
        int(s)
    except ValueError:
        return False
    return True


def beir_index_dir(index_dir: Path, root: Path) -> Path:
    """Where the index of a BEIR folder lives, under the base index folder."""
    root = Path(root)
    return Path(index_dir) / "eval-beir" / f"{root.resolve().name}-{content_id(str(root.resolve()), length=8)}"


def build_text_index(
    settings: Settings, documents: Sequence[TextDocument], source_key: str, embedder: Any = None, progress: bool = False
) -> dict[str, Any]:
    """Index in-memory plain-text documents into ``settings.index_dir`` (atomically).

    Each document is one page; it is chunked with the corpus splitter and written with the same
    store, FAISS and BM25 writers as a PDF corpus. The build is skipped when the folder already
    holds an index of the same ``source_key`` built with the same settings. Returns a summary dict.
    """
    from tqdm import tqdm

    from sscp_rag.embedding import make_encoder

    t0 = time.perf_counter()
    index_dir = Path(settings.index_dir)
    with build_lock(index_dir):
        old = read_manifest(index_dir)
        if old is not None and old.get("kind") != TEXT_INDEX_KIND:
            raise EvalError(f"{index_dir} holds a PDF corpus index; choose another folder for a text index")
        if (
            old is not None
            and old.get("source_key") == source_key
            and old.get("fingerprint") == fingerprint(settings)
            and (index_dir / str(old.get("data_dir", ""))).is_dir()
        ):
            return {
                **old["counts"],
                "up_to_date": True,
                "seconds": round(time.perf_counter() - t0, 3),
                "index_dir": str(index_dir),
            }
        embedder = embedder or make_encoder(settings)
        splitter = make_splitter(embedder.tokenizer, settings.chunk_tokens, settings.chunk_overlap)
        tmp_dir = new_data_dir(index_dir)
        try:
            counts = _write_text_index(tmp_dir, settings, documents, embedder, splitter, progress, tqdm)
        except BaseException:
            shutil.rmtree(tmp_dir, ignore_errors=True)
            raise
        manifest = {
            "kind": TEXT_INDEX_KIND,
            "source_key": source_key,
            "fingerprint": fingerprint(settings),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "corpus_dir": str(settings.corpus_dir),
            "model": embedder.identity.model,
            "dims": embedder.dims,
            "chunking": {"chunk_tokens": settings.chunk_tokens, "chunk_overlap": settings.chunk_overlap},
            "code_version": __version__,
            "files": {},
            "skipped": counts.pop("skipped"),
            "counts": counts,
        }
        publish(index_dir, tmp_dir, manifest)
    return {
        **manifest["counts"],
        "up_to_date": False,
        "seconds": round(time.perf_counter() - t0, 3),
        "index_dir": str(index_dir),
    }


def _write_text_index(
    data_dir: Path,
    settings: Settings,
    documents: Sequence[TextDocument],
    embedder: Any,
    splitter: Any,
    progress: bool,
    tqdm: Callable[..., Any],
) -> dict[str, Any]:
    conn = st.create(data_dir / "chunks.sqlite")
    row = 0
    all_texts: list[str] = []
    bm25_texts: list[str] = []
    skipped: list[dict[str, str]] = []
    for d in tqdm(documents, desc="Chunking documents", unit="doc", disable=not progress, leave=False):
        meta = DocumentMeta(file=d.id, title=d.id, short_title=d.id, type="other")
        doc = join_pages([Page(d.id, 1, d.body)])
        pieces = chunk_document(meta, doc, splitter, settings.chunk_by_section) if d.body else []
        chunks: list[Chunk] = [c for c in pieces if c.text.strip()]
        if not chunks:
            skipped.append({"file": d.id, "reason": "no text"})
            continue
        texts = [embed_text(meta, c) for c in chunks]
        keys = [content_id("emb", settings.model_name, settings.embed_backend, t, length=32) for t in texts]
        st.insert_pages(conn, meta.doc_id, [(1, doc.text)])
        st.insert_chunks(conn, row, chunks, keys)
        st.insert_doc(
            conn,
            meta,
            content_id("text", d.body, length=64),
            1,
            doc.text,
            doc.page_starts,
            doc.headings,
            [],
            {},
            "text",
        )
        row += len(chunks)
        all_texts.extend(texts)
        bm25_texts.extend(bm25_text(meta, c) for c in chunks)
    conn.commit()
    conn.close()
    if not all_texts:
        raise EvalError("no document of the collection has any text to index")
    batch = max(1, settings.embed_batch_size) * 4
    parts = []
    bar = tqdm(total=len(all_texts), desc="Embedding chunks", unit="chunk", disable=not progress, leave=False)
    for i in range(0, len(all_texts), batch):
        parts.append(embedder.encode(all_texts[i : i + batch]))
        bar.update(len(all_texts[i : i + batch]))
    bar.close()
    write_vectors(data_dir, np.vstack(parts), settings)
    write_bm25(data_dir, bm25_texts)
    return {
        "documents": len(documents) - len(skipped),
        "pages": len(documents) - len(skipped),
        "chunks": len(all_texts),
        "skipped": skipped,
    }


def evaluate_beir(
    root: Path,
    settings: Settings,
    configs: Sequence[EvalConfig],
    k: int = 10,
    split: str = "test",
    progress: bool = False,
    embedder: Any = None,
) -> EvalRun:
    """Index a BEIR folder (or reuse its index) and report document-level metrics per configuration."""
    from sscp_rag.embedding import make_encoder

    beir = load_beir(root, split)
    base = settings.with_overrides(corpus_dir=Path(root), index_dir=beir_index_dir(settings.index_dir, root))
    cache: dict[str, Any] = {}
    shared: list[Any] = [embedder]

    def open_index(s: Settings) -> Any:
        key = str(Path(s.index_dir).resolve())
        if key not in cache:
            if shared[0] is None:
                shared[0] = make_encoder(s)
            build_text_index(s, beir.documents, beir.corpus_sha256, embedder=shared[0], progress=progress)
            cache[key] = load_index(s, embedder=shared[0])
        return cache[key]

    doc_ids = {d.id: 1 for d in beir.documents}
    return run_evaluation(
        beir.questions,
        configs,
        base,
        open_index,
        k=k,
        answers=False,
        page_level=False,
        kind="beir",
        source=str(root),
        progress=progress,
        pages_by_doc=lambda _index: doc_ids,
    )
