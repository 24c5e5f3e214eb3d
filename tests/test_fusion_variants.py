"""Issue 11's retrieval variants on the real demo index (all off by default): score normalisations
for fusion, report spreading, late-interaction (MaxSim) re-scoring with the model's token vectors
and RM3-style pseudo-relevance feedback in BM25."""

from __future__ import annotations

import numpy as np
import pytest
from test_retrieval import KNOWN_ANSWERS

from sscp_rag.evaluation import CONFIGS
from sscp_rag.fusion import bm25_feedback_scores, bm25_scores, maxsim, normalise
from sscp_rag.index import Index
from sscp_rag.retrieval import retriever_for, search, spread_reports

# --- fusion normalisations -------------------------------------------------------------------


def test_normalisations_keep_the_order_and_give_missing_candidates_the_floor():
    scores = {3: 12.0, 7: 9.0, 1: 4.0, 9: 1.0}
    for how in ("score", "zscore", "dbsf"):
        norm, floor = normalise(scores, how)
        assert sorted(norm, key=lambda i: -norm[i]) == [3, 7, 1, 9], how
        assert floor <= min(norm.values()), how
    minmax, _ = normalise(scores, "score")
    assert (minmax[3], minmax[9]) == (1.0, 0.0)
    z, floor = normalise(scores, "zscore")
    assert abs(sum(z.values())) < 1e-9 and floor == z[9]
    dbsf, floor = normalise(scores, "dbsf")
    assert floor == 0.0 and all(0.0 < v < 1.0 for v in dbsf.values())  # 4 values lie within 3 sd
    assert normalise({5: 2.0, 6: 2.0}, "zscore") == ({5: 1.0, 6: 1.0}, 0.0)  # no spread: all equal


@pytest.mark.parametrize("fusion", ["zscore", "dbsf"])
def test_other_normalisations_find_known_answers(demo_index: Index, fusion):
    settings = demo_index.settings.with_overrides(fusion=fusion)
    for question, file, _ in KNOWN_ANSWERS[:4]:
        assert search(demo_index, question, k=3, settings=settings)[0].file == file, question


# --- report spreading ------------------------------------------------------------------------


def test_spread_puts_one_passage_of_each_strong_report_first(demo_index: Index):
    question = "what did reviews say about neglect?"
    plain = search(demo_index, question, k=10)
    s = demo_index.settings.with_overrides(report_spread=0.3)
    spread = search(demo_index, question, k=10, settings=s)
    assert plain[0].file == spread[0].file  # the best passage stays first
    # the leading hits are distinct reports, and every report of the plain top 10 whose best passage
    # is strong appears among them before any report's second passage
    lead = []
    for h in spread:
        if h.file in lead:
            break
        lead.append(h.file)
    assert len(lead) > len({h.file for h in plain[: len(lead)]})
    assert len(lead) >= 3


def test_spread_leaves_questions_that_name_a_report_alone(demo_index: Index):
    question = "In the Child G review, how did the girl disclose the abuse?"
    s = demo_index.settings.with_overrides(report_spread=0.3, report_aggregate=1.0)
    assert [h.chunk_ids for h in search(demo_index, question, settings=s)] == [
        h.chunk_ids for h in search(demo_index, question)
    ]


def test_aggregate_orders_strong_reports_by_their_passages(demo_index: Index):
    r = retriever_for(demo_index)
    rows: dict[int, list[int]] = {}
    for i, rep in enumerate(r.report.tolist()):
        rows.setdefault(rep, []).append(i)
    a, b = [v for v in rows.values() if len(v) >= 3][:2]
    # report A has the single best passage; report B three nearly as good ones
    fused = {a[0]: 1.0, b[0]: 0.95, b[1]: 0.9, b[2]: 0.9, a[1]: 0.0}
    order = sorted(fused, key=lambda i: -fused[i])
    assert spread_reports(r, order, fused, ratio=0.5, aggregate=0.0)[:2] == [a[0], b[0]]
    assert spread_reports(r, order, fused, ratio=0.5, aggregate=1.0)[:2] == [b[0], a[0]]


# --- late interaction ------------------------------------------------------------------------


def test_maxsim_scores_each_passage_in_one_product():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(4, 8)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    p1 = np.vstack([q[:2], rng.normal(size=(3, 8)).astype(np.float32)])
    p2 = np.zeros((0, 8), dtype=np.float32)
    p3 = q.copy().astype(np.float16)
    got = maxsim(q, [p1, p2, p3])
    want1 = float((q @ p1.T).max(axis=1).mean())
    assert got[0] == pytest.approx(want1, abs=1e-5)
    assert got[1] == 0.0 and got[2] == pytest.approx(1.0, abs=1e-3)
    assert maxsim(q[:0], [p1]) == [0.0]


def test_token_vectors_are_the_models_and_cached(demo_index: Index, monkeypatch):
    r = retriever_for(demo_index)
    r.clear_caches(everything=True)
    calls: list[int] = []
    real = r.encoder.encode_tokens

    def counting(texts):
        calls.append(len(texts))
        return real(texts)

    monkeypatch.setattr(r.encoder, "encode_tokens", counting)
    first = r.token_vectors([0, 1, 2])
    again = r.token_vectors([2, 0])
    assert calls == [3]
    assert np.array_equal(again[0], first[2])
    text = demo_index.chunks[0].text
    vecs = first[0].astype(np.float32)
    pieces = demo_index.embedder.tokenizer(text, truncation=True, max_length=256)["input_ids"]
    assert vecs.shape == (len(pieces) - 2, demo_index.faiss.d)  # no [CLS] / [SEP]
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-2)
    # the pooled token vectors point where the passage's own embedding does
    pooled = vecs.mean(axis=0)
    assert float(pooled @ demo_index.embedder.encode_live([text])[0]) / np.linalg.norm(pooled) > 0.8
    r.clear_caches(everything=True)


def test_late_interaction_keeps_known_answers_first(demo_index: Index):
    settings = demo_index.settings.with_overrides(late_interaction=1.0)
    for question, file, answers in KNOWN_ANSWERS[:4]:
        hits = search(demo_index, question, k=3, settings=settings)
        assert hits[0].file == file, question
        assert any(h.page_start <= page <= h.page_end for h in hits[:2] for page, _ in answers), question


# --- pseudo-relevance feedback -----------------------------------------------------------------


def test_feedback_adds_words_from_the_first_passages(demo_index: Index):
    r = retriever_for(demo_index)
    question = "neglect of the children at home"
    off = demo_index.settings
    assert bm25_feedback_scores(r, question, 20, None, off) == bm25_scores(r, question, 20, None)
    on = off.with_overrides(prf_terms=10, prf_docs=5)
    plain = bm25_scores(r, question, 50, None)
    fed = bm25_feedback_scores(r, question, 50, None, on)
    assert fed and set(fed) != set(plain)  # the added words reach passages the question's words miss
    # filters still hold
    mask = r.reports_mask([r.report_ids[0]])
    assert all(mask[i] for i in bm25_feedback_scores(r, question, 50, mask, on))


def test_feedback_keeps_known_answers_first(demo_index: Index):
    settings = demo_index.settings.with_overrides(prf_terms=10)
    for question, file, _ in KNOWN_ANSWERS[:4]:
        assert search(demo_index, question, k=3, settings=settings)[0].file == file, question


def test_every_variant_has_an_eval_configuration():
    overrides = {name: dict(CONFIGS[name].overrides) for name in CONFIGS}
    assert overrides["hybrid-zscore"]["fusion"] == "zscore"
    assert overrides["hybrid-dbsf"]["fusion"] == "dbsf"
    assert overrides["hybrid-spread"]["report_spread"] > 0
    assert overrides["hybrid-maxsim"]["late_interaction"] > 0
    assert overrides["hybrid-rm3"]["prf_terms"] > 0
