"""The chunk store: one SQLite file holding documents, cleaned pages, chunks and an embedding cache.

Chunk rows are numbered from 0 in the order of the FAISS vectors and the BM25 corpus, so a row
number is the id in all three.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np

from sscp_rag.records import Chunk, DocumentMeta

SCHEMA = """
CREATE TABLE docs (
    doc_id TEXT PRIMARY KEY, file TEXT UNIQUE, sha256 TEXT, meta TEXT, n_pages INTEGER,
    text TEXT, page_starts TEXT, headings TEXT, themes TEXT, theme_counts TEXT, meta_key TEXT
);
CREATE TABLE pages (doc_id TEXT, page INTEGER, text TEXT, PRIMARY KEY (doc_id, page));
CREATE TABLE chunks (
    row INTEGER PRIMARY KEY, id TEXT, doc_id TEXT, file TEXT, seq INTEGER, page_start INTEGER,
    page_end INTEGER, char_start INTEGER, char_end INTEGER, heading TEXT, text TEXT, themes TEXT,
    embed_key TEXT
);
CREATE INDEX chunks_doc ON chunks(doc_id);
CREATE TABLE embeddings (key TEXT PRIMARY KEY, vector BLOB);
"""


def connect(path: Path, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        conn = sqlite3.connect(str(path), check_same_thread=False)
    conn.row_factory = sqlite3.Row
    return conn


def create(path: Path) -> sqlite3.Connection:
    conn = connect(path)
    conn.executescript(SCHEMA)
    return conn


def meta_to_json(meta: DocumentMeta) -> str:
    return json.dumps(asdict(meta), sort_keys=True)


def meta_from_json(raw: str) -> DocumentMeta:
    d = json.loads(raw)
    d["themes"] = tuple(d.get("themes") or ())
    return DocumentMeta(**d)


def insert_doc(
    conn: sqlite3.Connection,
    meta: DocumentMeta,
    sha256: str,
    n_pages: int,
    text: str,
    page_starts: Iterable[int],
    headings: Iterable[tuple[int, str]],
    themes: list[str],
    theme_counts: dict[str, int],
    meta_key: str,
) -> None:
    conn.execute(
        "INSERT INTO docs VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (
            meta.doc_id,
            meta.file,
            sha256,
            meta_to_json(meta),
            n_pages,
            text,
            json.dumps(list(page_starts)),
            json.dumps(list(headings)),
            json.dumps(themes),
            json.dumps(theme_counts),
            meta_key,
        ),
    )


def insert_pages(conn: sqlite3.Connection, doc_id: str, pages: Iterable[tuple[int, str]]) -> None:
    conn.executemany("INSERT INTO pages VALUES (?,?,?)", [(doc_id, p, t) for p, t in pages])


def insert_chunks(conn: sqlite3.Connection, start_row: int, chunks: list[Chunk], embed_keys: list[str]) -> None:
    conn.executemany(
        "INSERT INTO chunks VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        [
            (
                start_row + i,
                c.id,
                c.doc_id,
                c.file,
                c.seq,
                c.page_start,
                c.page_end,
                c.char_start,
                c.char_end,
                c.heading,
                c.text,
                json.dumps(list(c.themes)),
                k,
            )
            for i, (c, k) in enumerate(zip(chunks, embed_keys))
        ],
    )


def put_embeddings(conn: sqlite3.Connection, items: Iterable[tuple[str, np.ndarray]]) -> None:
    conn.executemany(
        "INSERT OR REPLACE INTO embeddings VALUES (?,?)",
        [(k, np.asarray(v, dtype=np.float32).tobytes()) for k, v in items],
    )


def get_embeddings(conn: sqlite3.Connection, keys: list[str]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for i in range(0, len(keys), 500):
        part = keys[i : i + 500]
        q = f"SELECT key, vector FROM embeddings WHERE key IN ({','.join('?' * len(part))})"
        for row in conn.execute(q, part):
            out[row["key"]] = np.frombuffer(row["vector"], dtype=np.float32)
    return out


def _chunk(r: sqlite3.Row) -> tuple[Chunk, str]:
    return (
        Chunk(
            id=r["id"],
            doc_id=r["doc_id"],
            file=r["file"],
            seq=r["seq"],
            page_start=r["page_start"],
            page_end=r["page_end"],
            char_start=r["char_start"],
            char_end=r["char_end"],
            heading=r["heading"],
            text=r["text"],
            themes=tuple(json.loads(r["themes"])),
        ),
        r["embed_key"],
    )


def iter_chunks(conn: sqlite3.Connection, doc_id: str | None = None) -> Iterator[tuple[Chunk, str]]:
    """(chunk, embedding key) in row order; of one document when doc_id is given."""
    if doc_id is None:
        rows = conn.execute("SELECT * FROM chunks ORDER BY row")
    else:
        rows = conn.execute("SELECT * FROM chunks WHERE doc_id=? ORDER BY seq", (doc_id,))
    for r in rows:
        yield _chunk(r)


def doc_rows(conn: sqlite3.Connection) -> dict[str, sqlite3.Row]:
    """All docs rows keyed by file."""
    return {r["file"]: r for r in conn.execute("SELECT * FROM docs ORDER BY file")}


def page_rows(conn: sqlite3.Connection, doc_id: str) -> list[tuple[int, str]]:
    return [
        (r["page"], r["text"])
        for r in conn.execute("SELECT page, text FROM pages WHERE doc_id=? ORDER BY page", (doc_id,))
    ]
