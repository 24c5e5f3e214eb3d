"""The Retriever's per-chunk columns give the same filters, named-report masks and report names as
the per-chunk loops they replaced, on the real demo index."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

from sscp_rag.index import Index
from sscp_rag.records import REVIEW_TYPES
from sscp_rag.retrieval import Filters, Retriever, retriever_for, search, validate_filters
from sscp_rag.themes import THEME_IDS

_CONTENTS = re.compile(r"^\s*(?:table\s+of\s+)?contents\s*$", re.IGNORECASE)


def _loop_mask(index: Index, f: Filters) -> np.ndarray | None:
    """The filter as it was computed before the columns: one Python test per chunk."""
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


def _loop_resolve(index: Index, name: str) -> str | None:
    key = name.strip().lower()
    for doc_id, d in index.docs.items():
        m = d.meta
        if key in (doc_id, m.file.lower(), m.short_title.lower(), m.title.lower(), m.subject.lower()) or (
            key and key == m.file.lower().rsplit("/", 1)[-1].removesuffix(".pdf")
        ):
            return doc_id
    matches = [doc_id for doc_id, d in index.docs.items() if key and key in d.meta.short_title.lower()]
    return matches[0] if len(matches) == 1 else None


def _filters(index: Index) -> list[Filters]:
    years = sorted({d.meta.year for d in index.docs.values() if d.meta.year})
    types = sorted({d.meta.type for d in index.docs.values()})
    docs = list(index.docs)
    out = [Filters()]
    out += [Filters(types=(t,)) for t in REVIEW_TYPES]
    out += [Filters(types=tuple(types[:2]))]
    out += [Filters(themes=(t,)) for t in THEME_IDS]
    out += [Filters(themes=THEME_IDS[:3]), Filters(reports=tuple(docs[:2])), Filters(reports=(docs[-1],))]
    for y in years:
        out += [Filters(year_from=y), Filters(year_to=y), Filters(year_from=y, year_to=y)]
    out += [
        Filters(types=(t,), year_from=years[0], themes=(th,))
        for t, th in itertools.product(types[:3], ("neglect", "domestic-abuse", THEME_IDS[-1]))
    ]
    return out


def test_column_filters_equal_the_per_chunk_loop(demo_index):
    r = retriever_for(demo_index)
    filters = _filters(demo_index)
    assert len(filters) > 40
    for f in filters:
        want = _loop_mask(demo_index, f)
        got = r.allowed(f)
        if want is None:
            assert got is None
        else:
            assert got is not None and got.dtype == bool
            assert np.array_equal(got, want), f
    # the filters do select something, and not everything, for most of these
    assert sum(0 < _loop_mask(demo_index, f).sum() < len(demo_index.chunks) for f in filters[1:]) > 20


def test_named_report_mask_contents_and_names_equal_the_loops(demo_index):
    r = retriever_for(demo_index)
    docs = list(demo_index.docs)
    for named in ([docs[0]], docs[1:4], docs):
        want = np.array([c.doc_id in named for c in demo_index.chunks])
        assert np.array_equal(r.reports_mask(named), want)
    contents = np.array([bool(_CONTENTS.match(c.heading or "")) for c in demo_index.chunks])
    assert np.array_equal(r.contents, contents)
    names = ["", " ", "child", "Baby LL", "Child Q", "scr-baby-ll", "scr-baby-ll.pdf", "neglect", "SCR"]
    for d in demo_index.docs.values():
        m = d.meta
        names += [m.file, m.file.upper(), m.short_title, m.title, m.subject, m.short_title[:6], m.doc_id]
    for name in names:
        assert r.resolve_report(name) == _loop_resolve(demo_index, name), name


def test_the_index_carries_no_state_of_other_modules(demo_index):
    """Queries, answers' statistics and caches live on the Retriever, not as attributes on the Index."""
    before = set(vars(demo_index))
    search(demo_index, "neglect in the Child G review", filters=Filters(themes=("neglect",)))
    r = retriever_for(demo_index)
    from sscp_rag.answerability import corpus_stats

    assert corpus_stats(demo_index) is corpus_stats(r)  # built once, kept by the Retriever
    assert set(vars(demo_index)) == before
    assert retriever_for(r) is r


def test_a_retriever_of_its_own_searches_like_the_default(demo_index, embedder):
    mine = Retriever(demo_index, embedder, demo_index.settings)
    assert np.array_equal(mine.report, retriever_for(demo_index).report)
    f = validate_filters(demo_index, Filters(types=("SCR",)))
    assert np.array_equal(mine.allowed(f), retriever_for(demo_index).allowed(f))
    assert np.allclose(mine.query_vector("neglect"), retriever_for(demo_index).query_vector("neglect"), atol=1e-6)


@pytest.mark.parametrize("f", [Filters(types=("SCR",)), Filters(themes=("neglect",)), Filters(year_to=2019)])
def test_filtered_search_keeps_to_the_filter(demo_index, f):
    allowed = _loop_mask(demo_index, validate_filters(demo_index, f))
    rows = {c.id: i for i, c in enumerate(demo_index.chunks)}
    for h in search(demo_index, "information sharing between agencies", filters=f):
        assert all(allowed[rows[c]] for c in h.chunk_ids)


def _loop_distinctive_title_words(index: Index) -> dict[str, list[str]]:
    """The title words that name a report, as computed before (every word and pair counted)."""
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
                for k in users:
                    if k == doc_id or counts[k][g] >= 3:
                        out.setdefault(k, []).append(g)
    return out


def test_distinctive_title_words_equal_the_full_count(demo_index):
    """Counting only the candidates' forms finds the same report names as counting every word
    (checked on the real eval index too, where 16 reports have such names)."""
    from sscp_rag.report_names import distinctive_title_words

    assert distinctive_title_words(demo_index) == _loop_distinctive_title_words(demo_index)


def test_report_names_tried_by_needle_find_what_every_pattern_finds(demo_index, monkeypatch):
    """Only the name patterns whose needle a question contains are run; running all of them
    names the same reports with the same spans."""
    import json
    from pathlib import Path

    from sscp_rag import report_names

    r = retriever_for(demo_index)
    lines = (Path(__file__).resolve().parent.parent / "eval" / "demo.jsonl").read_text().splitlines()
    questions = [json.loads(line)["question"] for line in lines if line]
    metas = [d.meta for d in demo_index.docs.values()]
    questions += [f"What did the {t} review find?" for m in metas for t in (m.short_title, m.subject) if t]
    questions += ["What did the ſcr Child G review say about Zoë?", "the 2019 thematic review", "the SUDI review"]
    fast = [report_names.report_mentions(r, q) for q in questions]

    def every(self, query):
        return [(doc_id, p.pattern) for doc_id, pats in self.patterns.items() for p in pats]

    monkeypatch.setattr(report_names.NameIndex, "candidates", every)
    slow = [report_names.report_mentions(r, q) for q in questions]
    assert [(f, sorted(s)) for f, s in fast] == [(f, sorted(s)) for f, s in slow]
    assert sum(bool(f) for f, _ in fast) > 20


def test_search_through_a_given_retriever_uses_its_settings_and_caches(demo_index, embedder):
    mine = Retriever(demo_index, embedder, demo_index.settings.with_overrides(top_k=3))
    query = "information sharing between agencies"
    f = Filters(types=("SCR",))
    got = mine.search(query, filters=f)
    want = search(demo_index, query, k=3, filters=f)
    assert [h.chunk_id for h in got] == [h.chunk_id for h in want] and len(got) == 3
    assert query in mine._query_vectors  # its own cache, not the default Retriever's
    assert search(mine, query, k=5) == search(demo_index, query, k=5)


class _CountingEncoder:
    """The real model encoder, counting the texts it embeds live (not a fake: every vector is
    the model's own)."""

    def __init__(self, inner):
        self.inner, self.live = inner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode_live(self, texts):
        self.live += len(texts)
        return self.inner.encode_live(texts)

    def encode_query(self, text):
        self.live += 1
        return self.inner.encode_query(text)


@pytest.mark.slow
def test_answers_take_a_retriever_and_use_its_encoder(demo_index, embedder):
    from sscp_rag.answer import answer

    question = "What did the Baby LL review say about the bruise on a non-mobile baby?"
    by_index = answer(demo_index, question)
    counting = _CountingEncoder(embedder)
    r = Retriever(demo_index, encoder=counting)
    by_retriever = answer(r, question)
    assert counting.live > 0  # the question, the candidate sentences and the decision's words
    assert by_retriever.decision.status == by_index.decision.status
    assert [q.text for q in by_retriever.quotes] == [q.text for q in by_index.quotes]
    assert by_retriever.decision.probability == pytest.approx(by_index.decision.probability, abs=1e-6)
