"""Dense (FAISS) and BM25 (bm25s) candidates, their fusion and the optional sentence re-score.

Every function takes the :class:`~sscp_rag.retrieval.Retriever` of a loaded index and works on
chunk rows (the row order of the FAISS vectors, the BM25 corpus and ``index.chunks``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sscp_rag import dense
from sscp_rag.index import bm25_tokenize
from sscp_rag.settings import Settings
from sscp_rag.text import expand_abbreviations, sentence_spans, strip_paragraph_number

if TYPE_CHECKING:
    from sscp_rag.retrieval import Retriever

# A chunk that starts in a table of contents lists every section title, so it matches many
# questions on words alone while holding no learning: its fused score is scaled by this.
CONTENTS_PENALTY = 0.5


def rescore(r: Retriever, qvec: np.ndarray, fused: dict[int, float], s: Settings, depth: int) -> dict[int, float]:
    """Optional re-score (``settings.rescore``): the best-matching sentence of each of the top
    ``depth`` fused chunks is compared with the query (bi-encoder), and that ranking is added to
    the fusion as one more vote. It is added, not substituted, so a passage that only BM25 found
    keeps its lexical vote and is not pushed out."""
    top = sorted(fused, key=lambda i: (-fused[i], i))[:depth]
    if len(top) < 2:
        return fused
    texts: list[str] = []
    owner: list[int] = []
    for i in top:
        text = r.index.chunks[i].text
        for a, b in sentence_spans(text):
            a += strip_paragraph_number(text[a:b])
            sent = " ".join(text[a:b].split())
            if len(sent.split()) >= 4:
                texts.append(sent)
                owner.append(i)
    if not texts:
        return fused
    sims = r.sentence_vectors(texts) @ qvec
    best: dict[int, float] = {}
    for i, sim in zip(owner, sims):
        best[i] = max(best.get(i, -1.0), float(sim))
    out = dict(fused)
    ranked = sorted(best, key=lambda i: -best[i])
    if s.fusion == "rrf" or s.retrieval_mode != "hybrid":
        for rank, i in enumerate(ranked):
            out[i] += 1.0 / (s.rrf_k + rank + 1)
    else:
        lo, hi = min(best.values()), max(best.values())
        for i in ranked:
            out[i] += s.dense_weight * ((best[i] - lo) / (hi - lo) if hi > lo else 1.0)
    return out


def dense_scores(r: Retriever, qvec: np.ndarray, n: int, mask: np.ndarray | None, s: Settings) -> dict[int, float]:
    index = r.index
    total = index.faiss.ntotal
    if total == 0 or (mask is not None and not mask.any()):
        return {}
    scores, idx = dense.search(index.faiss, qvec, min(n, total), mask, s)
    return {int(i): float(v) for i, v in zip(idx, scores) if i >= 0}


def bm25_query(query: str, s: Settings) -> str:
    """The text BM25 scores: the query, with the field's abbreviations expanded if asked."""
    return expand_abbreviations(query) if s.query_expansion else query


def bm25_scores(r: Retriever, query: str, n: int, mask: np.ndarray | None) -> dict[int, float]:
    tokens = bm25_tokenize([query])
    if not tokens.ids or not tokens.ids[0]:
        return {}
    index = r.index
    total = len(index.chunks)
    if mask is None:
        docs, scores = index.bm25.retrieve(tokens, k=min(n, total), show_progress=False, n_threads=1)
        return {int(i): float(s) for i, s in zip(docs[0], scores[0]) if s > 0}
    rows = np.flatnonzero(mask)
    if not len(rows):
        return {}
    # The best among the allowed rows only. bm25s's weight_mask zeroes the others and selects
    # from the whole corpus, and numpy's argpartition slows tenfold on an array of mostly equal
    # values (66 ms at 1M chunks with 1% allowed).
    from bm25s.selection import topk
    from bm25s.tokenization import convert_tokenized_to_string_list

    allowed = index.bm25.get_scores(convert_tokenized_to_string_list(tokens)[0])[rows]
    scores, at = topk(allowed, k=min(n, len(rows)), backend="numpy", sorted=True)
    return {int(rows[i]): float(s) for i, s in zip(at, scores) if s > 0}


def fuse(dense: dict[int, float], bm25: dict[int, float], s: Settings) -> dict[int, float]:
    if s.retrieval_mode == "dense":
        return dict(dense)
    if s.retrieval_mode == "bm25":
        return dict(bm25)
    fused: dict[int, float] = {}
    if s.fusion == "rrf":
        for ranking in (dense, bm25):
            for rank, i in enumerate(sorted(ranking, key=ranking.get, reverse=True)):
                fused[i] = fused.get(i, 0.0) + 1.0 / (s.rrf_k + rank + 1)
        return fused
    for ranking, w in ((dense, s.dense_weight), (bm25, 1.0 - s.dense_weight)):
        if not ranking:
            continue
        lo, hi = min(ranking.values()), max(ranking.values())
        for i, v in ranking.items():
            fused[i] = fused.get(i, 0.0) + w * ((v - lo) / (hi - lo) if hi > lo else 1.0)
    return fused


def retrieve(
    r: Retriever, query: str, qvec: np.ndarray | None, mask: np.ndarray | None, s: Settings
) -> tuple[dict[int, float], dict[int, float], dict[int, float]]:
    """Fused, dense and BM25 scores (chunk row -> score) of the candidates among ``mask``."""
    dense = dense_scores(r, qvec, s.candidates, mask, s) if qvec is not None else {}
    bm25 = bm25_scores(r, bm25_query(query, s), s.candidates, mask) if s.retrieval_mode != "dense" else {}
    fused = fuse(dense, bm25, s)
    contents = r.contents
    for i in fused:
        if contents[i]:
            fused[i] *= CONTENTS_PENALTY
    return fused, dense, bm25
