"""Hybrid retrieval: dense (FAISS) and BM25 (bm25s), fused, filtered and made report-aware.

Questions often name a report ("in the Child G review", "the 2019 thematic review"). Chunk text
alone rarely says which report it is in, so the query is matched against each report's metadata
(short title, subject pseudonym, type + year); the named reports' own best passages are retrieved
separately and ranked first. Overlapping or adjacent chunks of one report are merged into one hit.
"""

from __future__ import annotations

import functools
import re
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from sscp_rag.errors import QueryError
from sscp_rag.index import Index, bm25_tokenize
from sscp_rag.records import REVIEW_TYPES, Chunk, Hit
from sscp_rag.settings import Settings
from sscp_rag.themes import THEME_IDS, resolve_theme

MAX_MERGE_CHUNKS = 3
MERGE_WINDOW_FACTOR = 2
# A chunk that starts in a table of contents lists every section title, so it matches many
# questions on words alone while holding no learning: its fused score is scaled by this.
CONTENTS_PENALTY = 0.5
_CONTENTS_HEADING = re.compile(r"^\s*(?:table\s+of\s+)?contents\s*$", re.IGNORECASE)
_STOP = set(
    "a an and are as at be by can did do does for from had has have how i in into is it its me my "
    "of on or our say said says should that the their them there these they this those to was "
    "were what when where which who why will with would you your about any reviews review report "
    "reports tell show find".split()
)


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


def validate_filters(index: Index, filters: Filters | None) -> Filters:
    """Resolve aliases and reject unknown values with a message that lists the valid ones."""
    if filters is None:
        return Filters()
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
        doc_id = resolve_report(index, r)
        if doc_id is None:
            names = ", ".join(sorted(d.meta.short_title for d in index.docs.values()))
            raise QueryError(f"unknown report {r!r}; indexed reports: {names}")
        reports.append(doc_id)
    if filters.year_from and filters.year_to and filters.year_from > filters.year_to:
        raise QueryError(f"year range {filters.year_from}-{filters.year_to} is empty")
    return Filters(tuple(types), filters.year_from, filters.year_to, tuple(themes), tuple(reports))


def resolve_report(index: Index, name: str) -> str | None:
    """A report's doc id from its file name, short title, title or subject (case-insensitive)."""
    key = name.strip().lower()
    for doc_id, d in index.docs.items():
        m = d.meta
        if key in (doc_id, m.file.lower(), m.short_title.lower(), m.title.lower(), m.subject.lower()) or (
            key and key == m.file.lower().rsplit("/", 1)[-1].removesuffix(".pdf")
        ):
            return doc_id
    matches = [doc_id for doc_id, d in index.docs.items() if key and key in d.meta.short_title.lower()]
    return matches[0] if len(matches) == 1 else None


def _allowed(index: Index, f: Filters) -> np.ndarray | None:
    if f.is_empty():
        return None
    mask = np.ones(len(index.chunks), dtype=bool)
    for i, c in enumerate(index.chunks):
        meta = index.docs[c.doc_id].meta
        if f.types and meta.type not in f.types:
            mask[i] = False
        elif f.year_from and (meta.year is None or meta.year < f.year_from):
            mask[i] = False
        elif f.year_to and (meta.year is None or meta.year > f.year_to):
            mask[i] = False
        elif f.reports and c.doc_id not in f.reports:
            mask[i] = False
        elif f.themes and not set(f.themes) & set(c.themes):
            mask[i] = False
    return mask


def _aliases(index: Index) -> dict[str, list[re.Pattern[str]]]:
    cached = getattr(index, "_report_aliases", None)
    if cached is not None:
        return cached
    out: dict[str, list[re.Pattern[str]]] = {}
    distinctive = _distinctive_title_words(index)
    for doc_id, d in index.docs.items():
        names = {d.meta.short_title, *distinctive.get(doc_id, ())}
        if d.meta.subject:
            names.add(d.meta.subject)
            names.add(d.meta.subject.replace(" and ", " & "))
        pats = []
        for n in names:
            n = n.strip()
            if len(n) < 4:
                continue
            words = [re.escape(w) for w in re.split(r"[\s,]+", n) if w]
            pats.append(re.compile(r"\b" + r"[\s,]+".join(words) + r"(?![\w])", re.IGNORECASE))
        out[doc_id] = pats
    index._report_aliases = out  # type: ignore[attr-defined]
    return out


def _distinctive_title_words(index: Index) -> dict[str, list[str]]:
    """Per report, the capitalised words and word pairs of a report title that no other report's
    title has, that at most two reports' texts use, and that are written with their capitals nearly
    everywhere: a place or a name ("Kent", "Bracknell Forest"), by which a question names the
    report. A topic word ("Neglect", "Suicide") is lower case mid-sentence."""
    from collections import Counter

    cap = re.compile(r"[A-Z][a-z]{3,}")
    months = set("January February March April May June July August September October November December".split())
    counts: dict[str, Counter[str]] = {}
    for doc_id, d in index.docs.items():
        words = re.findall(r"[A-Za-z]+", d.text.text)
        counts[doc_id] = Counter(words) + Counter(f"{a} {b}" for a, b in zip(words, words[1:]))
    cands: dict[str, set[str]] = {}
    for doc_id, d in index.docs.items():
        words = re.findall(r"[A-Za-z]+", f"{d.meta.title} {d.meta.short_title}")
        grams = {w for w in words if cap.fullmatch(w) and w not in months}
        cands[doc_id] = grams | {f"{a} {b}" for a, b in zip(words, words[1:]) if {a, b} <= grams}
    owners = Counter(g for grams in cands.values() for g in grams)

    def proper(g: str) -> bool:
        cased = sum(c[g] for c in counts.values())
        lower = sum(c[g.lower()] + c[g.upper()] for c in counts.values())
        return cased > 0 and cased >= 0.9 * (cased + lower)

    out: dict[str, list[str]] = {}
    for doc_id, grams in cands.items():
        for g in sorted(grams):
            users = [k for k, c in counts.items() if c[g] or c[g.lower()]]
            if owners[g] == 1 and doc_id in users and len(users) <= 2 and all(proper(w) for w in g.split()):
                # The place's other report (its SEND inspection beside its children's services
                # one) is named by it too, when it is about that place (three mentions or more).
                for k in users:
                    if k == doc_id or counts[k][g] >= 3:
                        out.setdefault(k, []).append(g)
    return out


_TYPE_WORDS = {
    "thematic": r"thematic",
    "SCR": r"\bscrs?\b|serious case reviews?",
    "LCSPR": r"\b(?:l?cspr)s?\b|practice reviews?",
    "SUDI": r"\bsudi\b|sudden unexpected death",
    "DHR": r"\bdhrs?\b|domestic homicide",
    "7-minute briefing": r"7[\s-]*minute|\b7mbs?\b|briefing",
}
_YEAR = re.compile(r"\b(19[89]\d|20[0-4]\d)\b")
# "the SUDI review", "the domestic homicide review", "the DHR": one report named by its type alone.
_SINGULAR_TYPE = {
    "thematic": r"the\s+thematic\s+review",
    "SCR": r"the\s+(?:scr|serious\s+case\s+review)",
    "LCSPR": r"the\s+(?:l?cspr|(?:local\s+)?(?:child\s+safeguarding\s+)?practice\s+review)",
    "SUDI": r"the\s+sudi(?:\s+thematic)?(?:\s+review)?",
    "DHR": r"the\s+(?:dhr|domestic\s+homicide\s+review)",
    "7-minute briefing": r"the\s+(?:7[\s-]*minute\s+briefing|7mb)",
}
_GENERIC_TITLE_WORDS = {
    "thematic",
    "review",
    "reviews",
    "report",
    "7mb",
    "sudi",
    "scr",
    "lcspr",
    "dhr",
    "the",
    "of",
    "and",
    "on",
    "in",
    "serious",
    "case",
    "briefing",
    "minute",
    "7",
    "learning",
    "from",
}
_BRIEFING_NOUN = r"(?:7[\s-]*minute\s+briefing|7mb|briefing)"
_REVIEW_NOUN = r"(?:thematic\s+)?(?:review|report)"


def _topic_patterns(index: Index) -> dict[str, re.Pattern[str]]:
    """Per report, a pattern for "the <topic> review" / "the review of <topic>", where <topic> is
    what its short title says beyond the type ("Thematic Review Adolescent Suicide" ->
    "the adolescent suicide review", "7MB Neglect" -> "the 7 minute briefing on neglect")."""
    cached = getattr(index, "_report_topics", None)
    if cached is not None:
        return cached
    out: dict[str, re.Pattern[str]] = {}
    for doc_id, d in index.docs.items():
        if d.meta.subject:
            continue  # named by its subject instead
        words = [
            w
            for w in re.findall(r"[a-z0-9']+", d.meta.short_title.lower())
            if w not in _GENERIC_TITLE_WORDS and not _YEAR.fullmatch(w)
        ]
        if not words:
            continue
        topic = r"\s+".join(re.escape(w) for w in words)
        noun = _BRIEFING_NOUN if d.meta.type == "7-minute briefing" else _REVIEW_NOUN
        out[doc_id] = re.compile(
            rf"\bthe\s+(?:{topic})\s+{noun}\b|\bthe\s+{noun}\s+(?:on|of|about|into)\s+(?:{topic})\b",
            re.IGNORECASE,
        )
    index._report_topics = out  # type: ignore[attr-defined]
    return out


def report_mentions(index: Index, query: str) -> tuple[list[str], list[tuple[int, int]]]:
    """The reports a query names and the character spans that name them.

    In order of preference: a pseudonym or short title ("Child G", "Baby LL", "SCR Family M");
    a type with a year ("the 2019 thematic review"); a topic title ("the adolescent suicide
    review", "the 7 minute briefing on neglect"); or a singular type held by only one report
    ("the SUDI review", "the domestic homicide review").
    """
    found: list[str] = []
    spans: list[tuple[int, int]] = []

    def collect(patterns: dict[str, list[re.Pattern[str]]]) -> None:
        for doc_id, pats in patterns.items():
            for p in pats:
                for m in p.finditer(query):
                    spans.append(m.span())
                    if doc_id not in found:
                        found.append(doc_id)

    collect(_aliases(index))
    if found:
        return found, spans
    low = query.lower()
    years = {int(m.group(1)) for m in _YEAR.finditer(query)}
    if years:
        types = {t for t, pat in _TYPE_WORDS.items() if re.search(pat, low)}
        if types:
            found = [
                doc_id
                for doc_id, d in index.docs.items()
                if d.meta.year in years and (d.meta.type in types or (d.meta.type == "SUDI" and "thematic" in types))
            ]
            if found:
                spans = [m.span() for m in _YEAR.finditer(query)]
                spans += [m.span() for t in types for m in re.finditer(_TYPE_WORDS[t], low)]
                spans += [m.span() for m in re.finditer(r"\b(?:review|report)s?\b", low)]
                return found, spans
    collect({doc_id: [pat] for doc_id, pat in _topic_patterns(index).items()})
    if found:
        return found, spans
    for t, pat in _SINGULAR_TYPE.items():
        m = re.search(rf"\b{pat}\b(?!s)", low)
        if m:
            of_type = [doc_id for doc_id, d in index.docs.items() if d.meta.type == t]
            if len(of_type) == 1:
                return of_type, [m.span()]
    return [], []


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


def query_terms(query: str) -> list[str]:
    return [w for w in re.findall(r"[a-z0-9][a-z0-9'\-]*[a-z0-9]|[a-z0-9]", query.lower()) if w not in _STOP]


@functools.lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


def matched_terms(query: str, text: str) -> tuple[str, ...]:
    """The words of ``text`` that match a query term (by stem), for highlighting."""
    stem = _stemmer()
    qstems = {stem.stemWord(t) for t in query_terms(query) if len(t) > 1}
    seen: dict[str, None] = {}
    for w in re.findall(r"[A-Za-z0-9][A-Za-z0-9'\-]*", text):
        if stem.stemWord(w.lower()) in qstems:
            seen.setdefault(w, None)
    return tuple(seen)


QUERY_CACHE_SIZE = 256
SENTENCE_CACHE_SIZE = 20000
RESCORE_DEPTH_FACTOR = 3


def clear_caches(index: Index, everything: bool = False) -> None:
    """Forget the query embeddings cached for ``index`` (and, with ``everything``, its cached
    sentence embeddings and the sentence splits), so that latency is measured as a user asking a
    new question would see it."""
    index._query_vectors = None  # type: ignore[attr-defined]
    if everything:
        index._sentence_vectors = None  # type: ignore[attr-defined]
        _sentence_spans.cache_clear()


def query_vector(index: Index, query: str) -> np.ndarray:
    """The query's embedding, cached per index: an answer, its follow-ups and the app's reruns
    embed the same query text more than once."""
    cache: OrderedDict[str, np.ndarray] | None = getattr(index, "_query_vectors", None)
    if cache is None:
        cache = OrderedDict()
        index._query_vectors = cache  # type: ignore[attr-defined]
    vec = cache.get(query)
    if vec is None:
        vec = cache[query] = index.embedder.encode_query(query)
        while len(cache) > QUERY_CACHE_SIZE:
            cache.popitem(last=False)
    else:
        cache.move_to_end(query)
    return vec


_PARA_NUMBER = re.compile(r"^(?:\d{1,2}(?:\.\d{1,2}){1,3}\.?|\d{1,2}\.|[a-z]\)|\(?[ivx]{1,4}\)|[•▪●◦\-–])\s+")


def strip_paragraph_number(sentence: str) -> int:
    """How many leading characters of ``sentence`` are a paragraph number or bullet ("5.2 ",
    "3. ", "a) ", "• "), which a shown quote leaves out."""
    m = _PARA_NUMBER.match(sentence)
    return m.end() if m else 0


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of the sentences of ``text`` (pysbd; a paragraph break inside a
    "sentence" splits it again, because a heading or list item ran into it)."""
    return list(_sentence_spans(text))


@functools.lru_cache(maxsize=4096)
def _sentence_spans(text: str) -> tuple[tuple[int, int], ...]:
    import pysbd

    seg = pysbd.Segmenter(language="en", clean=False, char_span=True)
    spans = []
    for s in seg.segment(text):
        start, end = s.start, s.end
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        pos = start
        for part in re.split(r"\n\n+", text[start:end]):
            at = text.find(part, pos)
            if part.strip():
                spans.append((at, at + len(part)))
            pos = at + len(part)
    return tuple(spans)


def sentence_vectors(index: Index, texts: Sequence[str]) -> np.ndarray:
    """Embeddings of sentences, cached on the loaded index (the same report sentences come back
    for related questions, follow-ups and re-scoring)."""
    cache: OrderedDict[str, np.ndarray] | None = getattr(index, "_sentence_vectors", None)
    if cache is None:
        cache = OrderedDict()
        index._sentence_vectors = cache  # type: ignore[attr-defined]
    if not texts:
        return np.zeros((0, index.faiss.d), dtype=np.float32)
    missing = list(dict.fromkeys(t for t in texts if t not in cache))
    fresh = dict(zip(missing, index.embedder.encode_live(missing))) if missing else {}
    # The result is taken before anything is evicted: with more new sentences than the cache
    # holds, eviction would otherwise drop vectors this very call still has to return.
    out = np.vstack([fresh[t] if t in fresh else cache[t] for t in texts])
    for t in texts:
        if t in cache:
            cache.move_to_end(t)
    cache.update(fresh)
    while len(cache) > SENTENCE_CACHE_SIZE:
        cache.popitem(last=False)
    return out


def _rescore(index: Index, qvec: np.ndarray, fused: dict[int, float], s: Settings, depth: int) -> dict[int, float]:
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
        text = index.chunks[i].text
        for a, b in sentence_spans(text):
            a += strip_paragraph_number(text[a:b])
            sent = " ".join(text[a:b].split())
            if len(sent.split()) >= 4:
                texts.append(sent)
                owner.append(i)
    if not texts:
        return fused
    sims = sentence_vectors(index, texts) @ qvec
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


def _dense(index: Index, qvec: np.ndarray, n: int, mask: np.ndarray | None) -> dict[int, float]:
    import faiss

    total = index.faiss.ntotal
    if total == 0:
        return {}
    params = None
    if mask is not None:
        ids = np.flatnonzero(mask).astype(np.int64)
        if len(ids) == 0:
            return {}
        params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(ids))
    scores, idx = index.faiss.search(qvec.reshape(1, -1), min(n, total), params=params)
    return {int(i): float(s) for i, s in zip(idx[0], scores[0]) if i >= 0}


def _bm25(index: Index, query: str, n: int, mask: np.ndarray | None) -> dict[int, float]:
    tokens = bm25_tokenize([query])
    if not tokens.ids or not tokens.ids[0]:
        return {}
    total = len(index.chunks)
    wm = None if mask is None else mask.astype(np.float32)
    if wm is not None and not wm.any():
        return {}
    docs, scores = index.bm25.retrieve(tokens, k=min(n, total), show_progress=False, weight_mask=wm, n_threads=1)
    return {int(i): float(s) for i, s in zip(docs[0], scores[0]) if s > 0}


def _fuse(dense: dict[int, float], bm25: dict[int, float], s: Settings) -> dict[int, float]:
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


def _contents_rows(index: Index) -> frozenset[int]:
    """Rows of the chunks that start under a 'Contents' heading (computed once per index)."""
    cached = getattr(index, "_contents_rows", None)
    if cached is None:
        cached = frozenset(i for i, c in enumerate(index.chunks) if _CONTENTS_HEADING.match(c.heading or ""))
        index._contents_rows = cached  # type: ignore[attr-defined]
    return cached


def _retrieve(
    index: Index, query: str, qvec: np.ndarray | None, mask: np.ndarray | None, s: Settings
) -> tuple[dict[int, float], dict[int, float], dict[int, float]]:
    dense = _dense(index, qvec, s.candidates, mask) if qvec is not None else {}
    bm25 = _bm25(index, query, s.candidates, mask) if s.retrieval_mode != "dense" else {}
    fused = _fuse(dense, bm25, s)
    for i in _contents_rows(index).intersection(fused):
        fused[i] *= CONTENTS_PENALTY
    return fused, dense, bm25


def rankings(
    index: Index, query: str, filters: Filters | None = None, settings: Settings | None = None
) -> tuple[dict[int, float], dict[int, float]]:
    """The dense and the BM25 candidate scores (chunk row -> score) of ``query`` under
    ``filters``, before fusion: how far the two retrievers agree is evidence of answerability."""
    s = settings or index.settings
    mask = _allowed(index, validate_filters(index, filters))
    dense = _dense(index, query_vector(index, query), s.candidates, mask)
    return dense, _bm25(index, query, s.candidates, mask)


def search(
    index: Index, query: str, k: int | None = None, filters: Filters | None = None, settings: Settings | None = None
) -> list[Hit]:
    """The ``k`` best passages for ``query`` under ``filters``, best first.

    Raises QueryError for an empty query or an unknown filter value.
    """
    s = settings or index.settings
    k = k or s.top_k
    query = (query or "").strip()
    if not query:
        raise QueryError("the query is empty; type a question or some words to search for")
    if len(query) > s.max_question_chars:
        raise QueryError(
            f"the query is {len(query):,} characters long; search with at most {s.max_question_chars:,} characters"
        )
    f = validate_filters(index, filters)
    mask = _allowed(index, f)
    qvec = query_vector(index, query) if s.retrieval_mode != "bm25" else None
    fused, dense, bm25 = _retrieve(index, query, qvec, mask, s)
    depth = max(RESCORE_DEPTH_FACTOR * k, 20)
    if s.rescore and qvec is not None:
        fused = _rescore(index, qvec, fused, s, depth)

    order = sorted(fused, key=lambda i: (-fused[i], i))
    named = detect_reports(index, query) if s.named_report_boost and not f.reports else []
    if named:
        nmask = np.array([c.doc_id in named for c in index.chunks])
        if mask is not None:
            nmask &= mask
        if nmask.any():
            nfused, ndense, nbm25 = _retrieve(index, query, qvec, nmask, s)
            if s.rescore and qvec is not None:
                nfused = _rescore(index, qvec, nfused, s, depth)
            dense = {**dense, **ndense}
            bm25 = {**bm25, **nbm25}
            first = sorted(nfused, key=lambda i: (-nfused[i], i))
            top = max(fused.values(), default=0.0) + max(nfused.values(), default=0.0)
            fused = {**fused, **{i: top + nfused[i] for i in first}}
            order = first + [i for i in order if i not in nfused]

    hits = _to_hits(index, query, order, fused, dense, bm25, s, k)
    if s.max_hits_per_report > 0:
        per: dict[str, int] = {}
        capped = []
        for h in hits:
            per[h.doc_id] = per.get(h.doc_id, 0) + 1
            if per[h.doc_id] <= s.max_hits_per_report:
                capped.append(h)
        hits = capped
    return [_with_rank(h, r) for r, h in enumerate(hits[:k], start=1)]


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
    hits = []
    for g in groups:
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
    "search",
    "reports",
    "detect_reports",
    "report_mentions",
    "remove_report_mentions",
    "validate_filters",
    "matched_terms",
    "query_vector",
    "rankings",
    "sentence_spans",
    "sentence_vectors",
    "strip_paragraph_number",
    "iter_hit_pages",
    "field",
]
