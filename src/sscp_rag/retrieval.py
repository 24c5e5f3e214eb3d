"""Hybrid retrieval: dense (FAISS) and BM25 (bm25s), fused, filtered and made report-aware.

Questions often name a report ("in the Child G review", "the 2019 thematic review"). Chunk text
alone rarely says which report it is in, so the query is matched against each report's metadata
(short title, subject pseudonym, type + year); the named reports' own best passages are retrieved
separately and ranked first. Overlapping or adjacent chunks of one report are merged into one hit.

This module holds :class:`Retriever` (the query-time state of a loaded index: per-chunk columns
for filters, caches), :func:`search` and the filters. The parts, each used through a Retriever:
:mod:`sscp_rag.fusion` (dense and BM25 candidates, fusion, re-score), :mod:`sscp_rag.report_names`
(reports named in a question) and :mod:`sscp_rag.text` (sentences and stems, shared with answers).
The functions here that take an :class:`~sscp_rag.index.Index` use its default Retriever
(:func:`retriever_for`).
"""

from __future__ import annotations

import re
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from sscp_rag import fusion, report_names
from sscp_rag.encoder import Encoder
from sscp_rag.errors import QueryError
from sscp_rag.index import Index
from sscp_rag.records import REVIEW_TYPES, Chunk, Hit
from sscp_rag.settings import Settings
from sscp_rag.text import clear_sentence_cache, matched_terms, query_terms, sentence_spans, strip_paragraph_number
from sscp_rag.themes import THEME_IDS, resolve_theme

T = TypeVar("T")
MAX_MERGE_CHUNKS = 3
MERGE_WINDOW_FACTOR = 2
_CONTENTS_HEADING = re.compile(r"^\s*(?:table\s+of\s+)?contents\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Filters:
    """Search filters. Empty fields do not filter."""

    types: tuple[str, ...] = ()
    year_from: int | None = None
    year_to: int | None = None
    themes: tuple[str, ...] = ()
    reports: tuple[str, ...] = ()  # file, short title or subject of a report

    def is_empty(self) -> bool:
        return not (self.types or self.themes or self.reports or self.year_from or self.year_to)


def validate_filters(index: Index | Retriever, filters: Filters | None) -> Filters:
    """Resolve aliases and reject unknown values with a message that lists the valid ones."""
    if filters is None:
        return Filters()
    rv = retriever_for(index)
    types = []
    lower_types = {t.lower(): t for t in REVIEW_TYPES}
    for t in filters.types:
        if t.lower() not in lower_types:
            raise QueryError(f"unknown review type {t!r}; use one of: {', '.join(REVIEW_TYPES)}")
        types.append(lower_types[t.lower()])
    themes = []
    for t in filters.themes:
        tid = resolve_theme(t)
        if tid is None:
            raise QueryError(f"unknown theme {t!r}; use one of: {', '.join(THEME_IDS)}")
        themes.append(tid)
    reports = []
    for r in filters.reports:
        doc_id = rv.resolve_report(r)
        if doc_id is None:
            names = ", ".join(sorted(rv.index.docs[d].meta.short_title for d in rv.report_ids))
            raise QueryError(f"unknown report {r!r}; indexed reports: {names}")
        reports.append(doc_id)
    if filters.year_from and filters.year_to and filters.year_from > filters.year_to:
        raise QueryError(f"year range {filters.year_from}-{filters.year_to} is empty")
    return Filters(tuple(types), filters.year_from, filters.year_to, tuple(themes), tuple(reports))


def resolve_report(index: Index, name: str) -> str | None:
    """A report's doc id from its file name, short title, title or subject (case-insensitive)."""
    return retriever_for(index).resolve_report(name)


QUERY_CACHE_SIZE = 256
SENTENCE_CACHE_SIZE = 20000
TOKEN_CACHE_SIZE = 4000  # chunks; about 100 KB each (130 word pieces x 384 float16)
NO_YEAR = -1
_TYPE_CODE = {t: i for i, t in enumerate(REVIEW_TYPES)}
_THEME_BIT = {t: np.uint64(1) << np.uint64(i) for i, t in enumerate(THEME_IDS)}


def _cached(cache: OrderedDict, keys: Sequence, compute: Callable[[list], Sequence], limit: int) -> list:
    """The values of ``keys`` from a least-recently-used ``cache`` of at most ``limit`` entries,
    ``compute`` giving those it lacks (each key once, in one call)."""
    missing = list(dict.fromkeys(k for k in keys if k not in cache))
    fresh = dict(zip(missing, compute(missing))) if missing else {}
    # The result is taken before anything is evicted: with more new keys than the cache holds,
    # eviction would otherwise drop values this very call still has to return.
    out = [fresh[k] if k in fresh else cache[k] for k in keys]
    for k in keys:
        if k in cache:
            cache.move_to_end(k)
    cache.update(fresh)
    while len(cache) > limit:
        cache.popitem(last=False)
    return out


class Retriever:
    """Query-time view of a loaded :class:`~sscp_rag.index.Index`: per-chunk columns built once at
    load, so that filters and named-report restrictions are numpy operations rather than loops
    over chunks, and every per-index cache a query fills, declared here.

    Per chunk (in the row order of the FAISS vectors, the BM25 corpus and ``index.chunks``):
    ``report`` (its report's position in ``report_ids``), ``year`` (``NO_YEAR`` if unknown),
    ``type_code`` (position in ``REVIEW_TYPES``, -1 if other), ``theme_bits`` (bit ``i`` set for
    ``THEME_IDS[i]``) and ``contents`` (starts under a 'Contents' heading).
    """

    def __init__(self, index: Index, encoder: Encoder | None = None, settings: Settings | None = None):
        self.index = index
        self.settings = settings or index.settings
        # Looked up on first use when not given: a BM25-only query never loads the model.
        self._encoder = encoder
        self.report_ids: tuple[str, ...] = tuple(index.docs)
        self.report_number = {doc_id: i for i, doc_id in enumerate(self.report_ids)}
        metas = [index.docs[d].meta for d in self.report_ids]
        report_year = np.array([NO_YEAR if m.year is None else m.year for m in metas], dtype=np.int32)
        report_type = np.array([_TYPE_CODE.get(m.type, -1) for m in metas], dtype=np.int8)
        chunks = index.chunks
        n = len(chunks)
        self.report = np.fromiter((self.report_number[c.doc_id] for c in chunks), dtype=np.int32, count=n)
        self.year = report_year[self.report] if n else np.zeros(0, dtype=np.int32)
        self.type_code = report_type[self.report] if n else np.zeros(0, dtype=np.int8)
        self.theme_bits = np.fromiter(
            (sum((_THEME_BIT[t] for t in c.themes if t in _THEME_BIT), np.uint64(0)) for c in chunks),
            dtype=np.uint64,
            count=n,
        )
        self.contents = np.fromiter(
            (bool(_CONTENTS_HEADING.match(c.heading or "")) for c in chunks), dtype=bool, count=n
        )
        # Exact names of each report, for filters; the first report holding a name keeps it, as a
        # scan of the reports in order finds it.
        self._names: dict[str, str] = {}
        for doc_id, m in zip(self.report_ids, metas):
            file = m.file.lower()
            keys = [doc_id, file, m.short_title.lower(), m.title.lower(), m.subject.lower()]
            base = file.rsplit("/", 1)[-1].removesuffix(".pdf")
            for key in [*keys, base] if base else keys:
                self._names.setdefault(key, doc_id)
        # Caches that queries fill (least recently used first), and what is derived on first need.
        self._query_vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._sentence_vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._token_vectors: OrderedDict[int, np.ndarray] = OrderedDict()
        self._aliases: report_names.NameIndex | None = None
        self._topics: report_names.NameIndex | None = None
        # What other modules derive from this index once (answerability's CorpusStats), by name.
        self._derived: dict[str, Any] = {}

    @property
    def encoder(self) -> Encoder:
        """The query encoder (the index's own model unless one was given)."""
        return self._encoder if self._encoder is not None else self.index.embedder

    def derived(self, name: str, build: Callable[[Index], T]) -> T:
        """State another module derives from this index once (``build(index)`` on first use, then
        kept with this Retriever): answerability's corpus statistics. The builder comes from the
        caller, so retrieval need not import the modules that build on it."""
        if name not in self._derived:
            self._derived[name] = build(self.index)
        return self._derived[name]

    def search(
        self, query: str, k: int | None = None, filters: Filters | None = None, settings: Settings | None = None
    ) -> list[Hit]:
        """The ``k`` best passages for ``query`` (see :func:`search`), under this Retriever's settings
        unless others are given."""
        return search(self, query, k, filters, settings)

    def resolve_report(self, name: str) -> str | None:
        """A report's doc id from its file name, short title, title or subject (case-insensitive)."""
        key = name.strip().lower()
        if key in self._names:
            return self._names[key]
        matches = [d for d in self.report_ids if key and key in self.index.docs[d].meta.short_title.lower()]
        return matches[0] if len(matches) == 1 else None

    def allowed(self, f: Filters) -> np.ndarray | None:
        """Row mask of the chunks that validated filters ``f`` let through (None: no filter)."""
        if f.is_empty():
            return None
        mask = np.ones(len(self.report), dtype=bool)
        if f.types:
            mask &= np.isin(self.type_code, [_TYPE_CODE.get(t, -2) for t in f.types])
        if f.year_from:
            mask &= (self.year != NO_YEAR) & (self.year >= f.year_from)
        if f.year_to:
            mask &= (self.year != NO_YEAR) & (self.year <= f.year_to)
        if f.reports:
            mask &= self.reports_mask(f.reports)
        if f.themes:
            bits = sum((_THEME_BIT[t] for t in f.themes if t in _THEME_BIT), np.uint64(0))
            mask &= (self.theme_bits & bits) != 0
        return mask

    def reports_mask(self, doc_ids: Iterable[str]) -> np.ndarray:
        """Row mask of the chunks of the reports ``doc_ids``."""
        return np.isin(self.report, [self.report_number[d] for d in doc_ids if d in self.report_number])

    def clear_caches(self, everything: bool = False) -> None:
        """Forget the cached query embeddings (and, with ``everything``, the sentence embeddings
        and sentence splits), so that latency is measured as a user asking a new question sees it."""
        self._query_vectors.clear()
        if everything:
            self._sentence_vectors.clear()
            self._token_vectors.clear()
            clear_sentence_cache()

    def query_vector(self, query: str) -> np.ndarray:
        """The query's embedding, cached: an answer, its follow-ups and the app's reruns embed the
        same query text more than once."""
        cache = self._query_vectors
        vec = cache.get(query)
        if vec is None:
            vec = cache[query] = self.encoder.encode_query(query)
            while len(cache) > QUERY_CACHE_SIZE:
                cache.popitem(last=False)
        else:
            cache.move_to_end(query)
        return vec

    def sentence_vectors(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings of sentences, cached (the same report sentences come back for related
        questions, follow-ups and re-scoring)."""
        cache = self._sentence_vectors
        if not texts:
            return np.zeros((0, self.index.faiss.d), dtype=np.float32)
        return np.vstack(_cached(cache, texts, self.encoder.encode_live, SENTENCE_CACHE_SIZE))

    def token_vectors(self, rows: Sequence[int]) -> list[np.ndarray]:
        """The word-piece vectors of chunk rows (for late-interaction re-scoring), cached as
        float16, the least recently used dropped past ``TOKEN_CACHE_SIZE`` chunks."""

        def compute(missing: list[int]) -> list[np.ndarray]:
            vecs = self.encoder.encode_tokens([self.index.chunks[i].text for i in missing])
            return [v.astype(np.float16) for v in vecs]

        return _cached(self._token_vectors, rows, compute, TOKEN_CACHE_SIZE)

    def aliases(self) -> report_names.NameIndex:
        """Per report, the patterns of the names a question calls it by (built on first use)."""
        if self._aliases is None:
            self._aliases = report_names.NameIndex(report_names.alias_patterns(self.index))
        return self._aliases

    def topic_patterns(self) -> report_names.NameIndex:
        """Per report named by topic, the pattern of "the <topic> review" (built on first use)."""
        if self._topics is None:
            self._topics = report_names.NameIndex(report_names.topic_patterns(self.index))
        return self._topics


# The default Retriever of each loaded index, for the functions here that take an Index. It holds
# the index through a weak proxy: a strong reference from the value would keep its key, and so
# the whole loaded index, alive for ever.
_RETRIEVERS: weakref.WeakKeyDictionary[Index, Retriever] = weakref.WeakKeyDictionary()


def retriever_for(index: Index | Retriever) -> Retriever:
    """The :class:`Retriever` of a loaded index (built on first use, freed with the index)."""
    if isinstance(index, Retriever):
        return index
    r = _RETRIEVERS.get(index)
    if r is None:
        r = _RETRIEVERS[index] = Retriever(weakref.proxy(index))
    return r


def _allowed(index: Index, f: Filters) -> np.ndarray | None:
    return retriever_for(index).allowed(f)


def report_mentions(index: Index, query: str) -> tuple[list[str], list[tuple[int, int]]]:
    """The reports a query names and the character spans that name them (see
    :func:`sscp_rag.report_names.report_mentions`)."""
    return report_names.report_mentions(retriever_for(index), query)


def detect_reports(index: Index, query: str) -> list[str]:
    """Doc ids of the reports a query names (see :func:`report_mentions`)."""
    return report_mentions(index, query)[0]


def remove_report_mentions(index: Index, query: str) -> str:
    """The query with the words that name reports taken out."""
    _, spans = report_mentions(index, query)
    out = query
    for a, b in sorted(spans, reverse=True):
        out = out[:a] + " " + out[b:]
    return re.sub(r"\s+", " ", out).strip()


RESCORE_DEPTH_FACTOR = 3


def clear_caches(index: Index, everything: bool = False) -> None:
    """Forget the query embeddings cached for ``index`` (see :meth:`Retriever.clear_caches`)."""
    retriever_for(index).clear_caches(everything)


def query_vector(index: Index, query: str) -> np.ndarray:
    """The query's embedding, cached per index (see :meth:`Retriever.query_vector`)."""
    return retriever_for(index).query_vector(query)


def sentence_vectors(index: Index, texts: Sequence[str]) -> np.ndarray:
    """Embeddings of sentences, cached per index (see :meth:`Retriever.sentence_vectors`)."""
    return retriever_for(index).sentence_vectors(texts)


def rankings(
    index: Index | Retriever, query: str, filters: Filters | None = None, settings: Settings | None = None
) -> tuple[dict[int, float], dict[int, float]]:
    """The dense and the BM25 candidate scores (chunk row -> score) of ``query`` under
    ``filters``, before fusion: how far the two retrievers agree is evidence of answerability."""
    r = retriever_for(index)
    s = settings or r.settings
    mask = r.allowed(validate_filters(r, filters))
    dense = fusion.dense_scores(r, r.query_vector(query), s.candidates, mask, s)
    return dense, fusion.bm25_scores(r, fusion.bm25_query(query, s), s.candidates, mask)


def search(
    index: Index | Retriever,
    query: str,
    k: int | None = None,
    filters: Filters | None = None,
    settings: Settings | None = None,
) -> list[Hit]:
    """The ``k`` best passages for ``query`` under ``filters``, best first, from a loaded index
    (through its default Retriever) or a given Retriever (its encoder, settings and caches).

    Raises QueryError for an empty query or an unknown filter value.
    """
    r = retriever_for(index)
    index = r.index if isinstance(index, Retriever) else index
    s = settings or r.settings
    k = k or s.top_k
    query = (query or "").strip()
    if not query:
        raise QueryError("the query is empty; type a question or some words to search for")
    if len(query) > s.max_question_chars:
        raise QueryError(
            f"the query is {len(query):,} characters long; search with at most {s.max_question_chars:,} characters"
        )
    f = validate_filters(r, filters)
    mask = r.allowed(f)
    qvec = r.query_vector(query) if s.retrieval_mode != "bm25" else None
    fused, dense, bm25 = fusion.retrieve(r, query, qvec, mask, s)
    depth = max(RESCORE_DEPTH_FACTOR * k, 20)
    if s.rescore and qvec is not None:
        fused = fusion.rescore(r, qvec, fused, s, depth)
    if s.late_interaction > 0 and s.retrieval_mode != "bm25":
        fused = fusion.late_interaction(r, query, fused, s)

    order = sorted(fused, key=lambda i: (-fused[i], i))
    named = report_names.report_mentions(r, query)[0] if s.named_report_boost and not f.reports else []
    if named:
        nmask = r.reports_mask(named)
        if mask is not None:
            nmask &= mask
        if nmask.any():
            nfused, ndense, nbm25 = fusion.retrieve(r, query, qvec, nmask, s)
            if s.rescore and qvec is not None:
                nfused = fusion.rescore(r, qvec, nfused, s, depth)
            if s.late_interaction > 0 and s.retrieval_mode != "bm25":
                nfused = fusion.late_interaction(r, query, nfused, s)
            dense = {**dense, **ndense}
            bm25 = {**bm25, **nbm25}
            first = sorted(nfused, key=lambda i: (-nfused[i], i))
            top = max(fused.values(), default=0.0) + max(nfused.values(), default=0.0)
            fused = {**fused, **{i: top + nfused[i] for i in first}}
            order = first + [i for i in order if i not in nfused]

    if s.report_spread > 0 and not named and not f.reports:
        order = spread_reports(r, order, fused, s.report_spread, s.report_aggregate)
    hits = _to_hits(index, query, order, fused, dense, bm25, s, k)
    if s.max_hits_per_report > 0:
        per: dict[str, int] = {}
        capped = []
        for h in hits:
            per[h.doc_id] = per.get(h.doc_id, 0) + 1
            if per[h.doc_id] <= s.max_hits_per_report:
                capped.append(h)
        hits = capped
    return [_with_rank(h, rank) for rank, h in enumerate(hits[:k], start=1)]


REPORT_AGGREGATE_DEPTH = 3  # passages of a report whose scores make its aggregate


def spread_reports(
    r: Retriever, order: Sequence[int], fused: dict[int, float], ratio: float, aggregate: float
) -> list[int]:
    """Chunk rows reordered so that the strong reports come first, one passage each (settings
    ``report_spread`` and ``report_aggregate``): a broad question's first hits then span the
    reports that address it instead of several passages of the best one.

    Scores are taken relative to the candidates' range (the weakest 0, the best 1). A report is
    strong when its best passage scores at least ``ratio``; the strong reports' best passages lead,
    ordered by the report's aggregate (best passage + ``aggregate`` x the mean of its next
    ``REPORT_AGGREGATE_DEPTH - 1`` passages, missing ones 0), then every other row in its order."""
    if not order:
        return list(order)
    top, low = fused[order[0]], min(fused[i] for i in order)
    span = top - low
    if span <= 0:
        return list(order)
    per: dict[int, list[int]] = {}
    position: dict[int, int] = {}
    for pos, i in enumerate(order):
        per.setdefault(int(r.report[i]), []).append(i)
        position[i] = pos
    lead: list[tuple[float, int, int]] = []
    for rows in per.values():
        best = (fused[rows[0]] - low) / span
        if best < ratio:
            continue
        rest = [(fused[i] - low) / span for i in rows[1:REPORT_AGGREGATE_DEPTH]]
        rest += [0.0] * (REPORT_AGGREGATE_DEPTH - 1 - len(rest))
        score = best + aggregate * (sum(rest) / len(rest) if rest else 0.0)
        lead.append((-score, position[rows[0]], rows[0]))
    first = [i for *_, i in sorted(lead)]
    chosen = set(first)
    return first + [i for i in order if i not in chosen]


def _with_rank(h: Hit, rank: int) -> Hit:
    return Hit(**{**h.__dict__, "rank": rank})


def _to_hits(
    index: Index,
    query: str,
    order: Sequence[int],
    fused: dict[int, float],
    dense: dict[int, float],
    bm25: dict[int, float],
    s: Settings,
    k: int,
) -> list[Hit]:
    """Chunks in rank order -> hits. A chunk next to (or overlapping) a better-ranked chunk of the
    same report, on the same page(s) as it, is merged into it when it ranks among the first
    ``MERGE_WINDOW_FACTOR * k`` candidates (at most ``MAX_MERGE_CHUNKS`` chunks per hit), so a
    hit never cites more pages than its best chunk. A neighbour on other pages stays a hit of its
    own; a neighbour ranked below the window is dropped as a near-duplicate."""
    merge_window = max(MERGE_WINDOW_FACTOR * k, 10)
    groups: list[list[int]] = []  # chunk rows merged into one hit, in rank order of the best
    for pos, i in enumerate(order):
        c = index.chunks[i]
        placed = False
        if s.merge_adjacent:
            for g in groups:
                if index.chunks[g[0]].doc_id != c.doc_id:
                    continue
                seqs = [index.chunks[j].seq for j in g]
                if not min(seqs) - 1 <= c.seq <= max(seqs) + 1:
                    continue
                lead = index.chunks[g[0]]
                same_pages = lead.page_start <= c.page_start and c.page_end <= lead.page_end
                if pos < merge_window and len(g) < MAX_MERGE_CHUNKS and same_pages:
                    g.append(i)  # a strong neighbour: one passage across both chunks
                    placed = True
                    break
                if pos >= merge_window:
                    placed = True  # a weak neighbour of a shown passage: de-duplicated, not shown
                    break
        if not placed:
            groups.append([i])
    # Only the groups search returns become hits (its cap per report applied here as there): the
    # text and highlighted words of every candidate would cost more than the search itself.
    shown: list[list[int]] = []
    per: dict[str, int] = {}
    for g in groups:
        doc_id = index.chunks[g[0]].doc_id
        per[doc_id] = per.get(doc_id, 0) + 1
        if s.max_hits_per_report <= 0 or per[doc_id] <= s.max_hits_per_report:
            shown.append(g)
            if len(shown) == k:
                break
    hits = []
    for g in shown:
        chunks: list[Chunk] = [index.chunks[j] for j in sorted(g, key=lambda j: index.chunks[j].seq)]
        info = index.docs[chunks[0].doc_id]
        start, end = chunks[0].char_start, max(c.char_end for c in chunks)
        text = info.text.text[start:end]
        p0, p1 = info.text.span(start, end)
        best = g[0]
        meta = info.meta
        hits.append(
            Hit(
                chunk_id=index.chunks[best].id,
                doc_id=meta.doc_id,
                file=meta.file,
                title=meta.title,
                short_title=meta.short_title,
                type=meta.type,
                year=meta.year,
                page_start=p0,
                page_end=p1,
                heading=index.chunks[best].heading,
                text=text,
                score=float(fused[best]),
                dense_score=max((dense[j] for j in g if j in dense), default=None),
                bm25_score=max((bm25[j] for j in g if j in bm25), default=None),
                matched_terms=matched_terms(query, text),
                themes=tuple(t for t in THEME_IDS if any(t in c.themes for c in chunks)),
                chunk_ids=tuple(c.id for c in chunks),
                char_start=start,
                char_end=end,
            )
        )
    return hits


def reports(index: Index, theme: str | None = None, rtype: str | None = None) -> list[dict]:
    """The indexed reports with metadata and theme counts, optionally by theme and type; by
    theme, the reports with most tagged passages come first."""
    f = validate_filters(index, Filters(types=(rtype,) if rtype else (), themes=(theme,) if theme else ()))
    rows = []
    for d in index.docs.values():
        if f.types and d.meta.type not in f.types:
            continue
        if f.themes and f.themes[0] not in d.themes:
            continue
        rows.append(
            {
                "file": d.meta.file,
                "title": d.meta.title,
                "short_title": d.meta.short_title,
                "type": d.meta.type,
                "year": d.meta.year,
                "subject": d.meta.subject,
                "pages": d.n_pages,
                "themes": list(d.themes),
                "theme_counts": d.theme_counts,
                "fictional": d.meta.fictional,
                "inferred": d.meta.inferred,
                "source_url": d.meta.source_url,
            }
        )
    if f.themes:
        rows.sort(key=lambda r: (-r["theme_counts"].get(f.themes[0], 0), r["file"]))
    return rows


def iter_hit_pages(hits: Iterable[Hit]) -> Iterable[tuple[str, int]]:
    for h in hits:
        for p in range(h.page_start, h.page_end + 1):
            yield h.file, p


__all__ = [
    "Filters",
    "Retriever",
    "retriever_for",
    "search",
    "reports",
    "detect_reports",
    "report_mentions",
    "remove_report_mentions",
    "validate_filters",
    "matched_terms",
    "query_terms",
    "query_vector",
    "rankings",
    "sentence_spans",
    "sentence_vectors",
    "strip_paragraph_number",
    "iter_hit_pages",
    "field",
]
