"""Dense (FAISS) and BM25 (bm25s) candidates, their fusion and the optional sentence re-score.

Every function takes the :class:`~sscp_rag.retrieval.Retriever` of a loaded index and works on
chunk rows (the row order of the FAISS vectors, the BM25 corpus and ``index.chunks``).
"""

from __future__ import annotations

from collections import Counter
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


def maxsim(query_tokens: np.ndarray, passages: list[np.ndarray]) -> list[float]:
    """Late-interaction similarity of each passage: each query token's best cosine with one of the
    passage's tokens, averaged over the query tokens (0 for an empty query or passage). One matrix
    product for all passages: fifty small ones cost far more on a busy CPU."""
    sizes = [len(p) for p in passages]
    keep = [p for p in passages if len(p)]
    if not len(query_tokens) or not keep:
        return [0.0] * len(passages)
    sims = query_tokens.astype(np.float32) @ np.vstack(keep).astype(np.float32).T
    starts = np.cumsum([0] + [n for n in sizes if n][:-1])
    best = np.maximum.reduceat(sims, starts, axis=1).mean(axis=0)
    out, j = [], 0
    for n in sizes:
        out.append(float(best[j]) if n else 0.0)
        j += 1 if n else 0
    return out


def late_interaction(r: Retriever, query: str, fused: dict[int, float], s: Settings) -> dict[int, float]:
    """Optional re-score (``settings.late_interaction``): the top ``late_interaction_depth`` fused
    candidates get ``late_interaction`` x their MaxSim with the query (token vectors of the same
    model, min-max normalised over those candidates) added to their fused score."""
    top = sorted(fused, key=lambda i: (-fused[i], i))[: s.late_interaction_depth]
    if len(top) < 2:
        return fused
    q = r.encoder.encode_tokens([query])[0]
    sims = dict(zip(top, maxsim(q, r.token_vectors(top))))
    lo, hi = min(sims.values()), max(sims.values())
    out = dict(fused)
    for i, v in sims.items():
        out[i] += s.late_interaction * ((v - lo) / (hi - lo) if hi > lo else 1.0)
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


def bm25_feedback_scores(r: Retriever, query: str, n: int, mask: np.ndarray | None, s: Settings) -> dict[int, float]:
    """BM25 with RM3-style pseudo-relevance feedback (``settings.prf_terms`` > 0): the words that
    weigh most in the first ``prf_docs`` BM25 passages (term frequency in each passage, weighted by
    the passage's share of their BM25 score, times the word's IDF) are added to the query, and the
    candidates are scored again: BM25 of the query plus ``prf_weight`` x the question's word count x
    the weighted mean BM25 of the added words."""
    first = bm25_scores(r, query, n, mask)
    if s.prf_terms <= 0 or not first:
        return first
    bm25 = r.index.bm25
    vocab = bm25.vocab_dict
    query_words = bm25_tokenize_words(query)
    if not query_words:
        return first
    top = sorted(first, key=lambda i: (-first[i], i))[: s.prf_docs]
    total = sum(first[i] for i in top)
    indptr = bm25.scores["indptr"]
    n_docs = len(r.index.chunks)
    weights: Counter[str] = Counter()
    for i, words in zip(top, bm25_tokenize_many([r.index.chunks[i].text for i in top])):
        if not words:
            continue
        share = first[i] / total
        for w, c in Counter(words).items():
            weights[w] += share * c / len(words)
    asked = set(query_words)
    terms: list[tuple[str, float]] = []
    for w, v in weights.items():
        t = vocab.get(w)
        if w in asked or t is None:
            continue
        df = int(indptr[t + 1] - indptr[t])
        terms.append((w, v * float(np.log(1 + (n_docs - df + 0.5) / (df + 0.5)))))
    terms = sorted(terms, key=lambda x: (-x[1], x[0]))[: s.prf_terms]
    norm = sum(v for _, v in terms)
    if not terms or norm <= 0:
        return first
    scores = bm25.get_scores(query_words)
    extra = np.zeros_like(scores)
    for w, v in terms:
        extra += (v / norm) * bm25.get_scores([w])
    scores = scores + s.prf_weight * len(asked) * extra
    rows = np.flatnonzero(mask) if mask is not None else np.arange(n_docs)
    allowed = scores[rows]
    keep = np.argsort(-allowed, kind="stable")[:n]
    return {int(rows[j]): float(allowed[j]) for j in keep if allowed[j] > 0}


def bm25_tokenize_words(text: str) -> list[str]:
    """The stemmed, stop-worded words BM25 indexes, of one text."""
    return bm25_tokenize_many([text])[0]


def bm25_tokenize_many(texts: list[str]) -> list[list[str]]:
    import bm25s
    import Stemmer

    return bm25s.tokenize(
        texts, stopwords="en", stemmer=Stemmer.Stemmer("english"), return_ids=False, show_progress=False
    )


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
    rows = list(dict.fromkeys([*dense, *bm25]))
    for ranking, w in ((dense, s.dense_weight), (bm25, 1.0 - s.dense_weight)):
        if not ranking:
            continue
        norm, floor = normalise(ranking, s.fusion)
        for i in rows:
            fused[i] = fused.get(i, 0.0) + w * norm.get(i, floor)
    return fused


def normalise(ranking: dict[int, float], how: str) -> tuple[dict[int, float], float]:
    """One retriever's candidate scores on a common scale for score fusion, and the value a
    candidate it did not return gets.

    - ``score``: min-max, the best 1 and the weakest candidate 0 (so does a missing one);
    - ``zscore``: standard scores over the candidates; a missing one gets the weakest's;
    - ``dbsf``: distribution-based (mean +- 3 standard deviations mapped to 0..1, clipped); a
      missing one gets 0.
    """
    values = np.fromiter(ranking.values(), dtype=np.float64, count=len(ranking))
    if how == "score":
        lo, hi = float(values.min()), float(values.max())
        return {i: (v - lo) / (hi - lo) if hi > lo else 1.0 for i, v in ranking.items()}, 0.0
    mean, std = float(values.mean()), float(values.std())
    if std <= 1e-12:
        return {i: 1.0 for i in ranking}, 0.0
    if how == "zscore":
        norm = {i: (v - mean) / std for i, v in ranking.items()}
        return norm, min(norm.values())
    lo, span = mean - 3.0 * std, 6.0 * std
    return {i: min(1.0, max(0.0, (v - lo) / span)) for i, v in ranking.items()}, 0.0


def retrieve(
    r: Retriever, query: str, qvec: np.ndarray | None, mask: np.ndarray | None, s: Settings
) -> tuple[dict[int, float], dict[int, float], dict[int, float]]:
    """Fused, dense and BM25 scores (chunk row -> score) of the candidates among ``mask``."""
    dense = dense_scores(r, qvec, s.candidates, mask, s) if qvec is not None else {}
    bm25 = bm25_feedback_scores(r, bm25_query(query, s), s.candidates, mask, s) if s.retrieval_mode != "dense" else {}
    fused = fuse(dense, bm25, s)
    contents = r.contents
    for i in fused:
        if contents[i]:
            fused[i] *= CONTENTS_PENALTY
    return fused, dense, bm25
