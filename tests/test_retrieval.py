"""Hybrid search on the real demo index: known answers rank first (report and page), named reports
are found, filters and the per-report cap work, merged chunks are not repeated, themes tag
planted text (aliases included) and reports can be listed by theme."""

from __future__ import annotations

import re

import numpy as np
import pytest

from sscp_rag.errors import QueryError
from sscp_rag.index import Index
from sscp_rag.retrieval import (
    Filters,
    detect_reports,
    matched_terms,
    remove_report_mentions,
    reports,
    resolve_report,
    search,
)
from sscp_rag.themes import THEME_IDS, resolve_theme, tag_text


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


# Paraphrased questions whose answer is stated on a definite page: (question, report file,
# [(page, phrase that states the answer on that page), ...]). Where the corpus states the fact
# twice (case summary and finding), either page is right.
KNOWN_ANSWERS = [
    ("What did Child D weigh when she was taken into hospital?", "scr-child-d.pdf", [(3, "weighed 17.1 kg")]),
    (
        "In the Child G review, how did the girl disclose the abuse?",
        "scr-child-g.pdf",
        [
            (3, "used the symbol-based communication app on her school tablet"),
            (7, 'selected the symbols "grandad", "bed", "hurt" and "secret"'),
            (7, "she told them in other ways"),  # 4.1, the next paragraph: with 128-token chunks it leads
        ],
    ),
    (
        "How many people answered the practitioner survey for the 2019 thematic review?",
        "thematic-review-2019.pdf",
        [(3, "which received 312 responses")],
    ),
    (
        "Why was the grandmother in the domestic homicide review never assessed as a carer?",
        "dhr-doris-exec-summary.pdf",
        [(4, "Doris was not offered a carer's assessment")],
    ),
    (
        "Did taking the three children out of school to be taught at home hide them from professionals?",
        "scr-hh-ii-jj-exec-summary.pdf",
        [(4, "Elective home education removed the children from sight")],
    ),
    (
        "Relatives and a ten year old boy were asked to translate for the mother",
        "scr-family-m-exec-summary.pdf",
        [(3, "used a family member to interpret for Mother"), (4, "Using family members and children as interpreters")],
    ),
    (
        "Was the protocol for bruises on babies who cannot yet crawl followed?",
        "scr-baby-ll.pdf",
        [(8, "The bruising protocol was not followed on two occasions")],
    ),
    (
        "A Black teenager being treated as the man of the house and older than his age",
        "scr-child-a-exec-summary.pdf",
        [(3, "adultification")],
    ),
    (
        "What happens to teenagers' mental health support when they reach 18?",
        "thematic-adolescent-suicide.pdf",
        [(7, '"cliff edge"'), (9, '"cliff edge"'), (8, "no agreed transition protocol between CAMHS and adult")],
    ),
    (
        "Was the referral to the national referral mechanism seen as the end of the matter for the boy?",
        "lcspr-child-b.pdf",
        [(11, "The NRM referral was treated as an end point")],
    ),
]


@pytest.mark.parametrize(("question", "file", "answers"), KNOWN_ANSWERS, ids=[q[1] for q in KNOWN_ANSWERS])
def test_known_answer_ranks_first_with_its_page(demo_index: Index, question, file, answers):
    for page, phrase in answers:  # the expected pages really hold the answer
        assert _norm(phrase) in _norm(demo_index.page_text(file, page)), (file, page, phrase)
    top = search(demo_index, question, k=5)[0]
    assert top.file == file, [(h.file, h.page_start) for h in search(demo_index, question, k=5)]
    assert any(
        top.page_start <= page <= top.page_end and _norm(phrase) in _norm(top.text) for page, phrase in answers
    ), (top.citation, top.text[:300])
    assert top.rank == 1 and top.score > 0 and top.matched_terms


def test_hits_carry_report_pages_scores_and_terms(demo_index):
    hits = search(demo_index, "disguised compliance and home visits by appointment", k=8)
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert len(hits) == 8
    for h in hits:
        meta = demo_index.by_file[h.file].meta
        assert (h.title, h.short_title, h.type, h.year) == (meta.title, meta.short_title, meta.type, meta.year)
        assert 1 <= h.page_start <= h.page_end <= demo_index.by_file[h.file].n_pages
        assert h.text and _norm(h.text) in _norm(demo_index.span_text(h.file, h.page_start, h.page_end))
        assert h.dense_score is not None or h.bm25_score is not None
        assert h.citation.startswith(h.short_title + ", p")
        for term in h.matched_terms:
            assert term in h.text
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert any(t.lower().startswith("complian") for h in hits for t in h.matched_terms)


def test_matched_terms_use_stems():
    assert matched_terms("neglected children", "Neglect of a child. Children were hungry.") == ("Neglect", "Children")


@pytest.mark.parametrize(
    ("query", "short_title"),
    [
        ("in the Child G review", "SCR Child G"),
        ("the 2019 thematic review", "Thematic Review 2019"),
        ("what happened to Baby LL", "SCR Baby LL"),
        ("the SUDI review", "SUDI Thematic Review"),
        ("the domestic homicide review", "DHR Doris"),
        ("the adolescent suicide review", "Thematic Review Adolescent Suicide"),
        ("the 7 minute briefing on neglect", "7MB Neglect"),
        ("SCR HH, II and JJ", "SCR HH, II and JJ"),
    ],
)
def test_named_reports_are_detected(demo_index, query, short_title):
    assert [demo_index.docs[d].meta.short_title for d in detect_reports(demo_index, query)] == [short_title]


@pytest.mark.parametrize(
    "query",
    [
        "what did reviews say about neglect?",
        "the review of neglect cases",
        "What did the thematic review say about supervision?",
    ],
)
def test_no_report_detected_in_general_questions(demo_index, query):
    assert detect_reports(demo_index, query) == []


def test_remove_report_mentions(demo_index):
    assert remove_report_mentions(demo_index, "what did Child G say?") == "what did say?"
    assert "2019" not in remove_report_mentions(demo_index, "neglect in the 2019 thematic review")


@pytest.mark.parametrize(
    ("question", "file"),
    [
        ("In the Child G review, what did professionals learn about supervision?", "scr-child-g.pdf"),
        ("What did the 2019 thematic review say about information sharing?", "thematic-review-2019.pdf"),
        ("What did the SCR Family M say about the voice of the child?", "scr-family-m-exec-summary.pdf"),
    ],
)
def test_named_report_ranks_first_even_for_a_common_topic(demo_index, question, file):
    hits = search(demo_index, question, k=5)
    assert hits[0].file == file
    # without the boost another report may win: the boost is what puts the named one first
    assert all(h.file == file for h in hits[:3])


def test_type_filter(demo_index):
    hits = search(demo_index, "safer sleep advice", k=10, filters=Filters(types=("7-minute briefing",)))
    assert hits and {h.type for h in hits} == {"7-minute briefing"}
    hits = search(demo_index, "safer sleep advice", k=10, filters=Filters(types=("scr", "SUDI")))
    assert hits and {h.type for h in hits} <= {"SCR", "SUDI"}


def test_year_range_filter(demo_index):
    hits = search(
        demo_index, "information sharing between agencies", k=10, filters=Filters(year_from=2016, year_to=2018)
    )
    assert hits and all(2016 <= h.year <= 2018 for h in hits)
    assert {h.year for h in search(demo_index, "neglect", k=10, filters=Filters(year_from=2021))} == {2021}
    assert all(h.year <= 2015 for h in search(demo_index, "young carers", filters=Filters(year_to=2015)))


def test_theme_filter_accepts_ids_and_aliases(demo_index):
    for theme in ("safer-sleep", "co-sleeping"):
        hits = search(demo_index, "what advice were parents given?", k=10, filters=Filters(themes=(theme,)))
        assert hits and all("safer-sleep" in h.themes for h in hits)
        assert {h.file for h in hits} <= {"7mb-safer-sleep.pdf", "thematic-sudi.pdf", "scr-baby-ll.pdf"} | {
            h.file for h in hits if "safer-sleep" in h.themes
        }


def test_report_filter_by_file_title_or_pseudonym(demo_index):
    for name in ("scr-child-g.pdf", "SCR Child G", "Child G", "scr-child-g"):
        hits = search(demo_index, "supervision and challenge", k=5, filters=Filters(reports=(name,)))
        assert hits and {h.file for h in hits} == {"scr-child-g.pdf"}
    both = search(demo_index, "neglect", k=20, filters=Filters(reports=("Child D", "7MB Neglect")))
    assert {h.file for h in both} == {"scr-child-d.pdf", "7mb-neglect.pdf"}


def test_filters_combine_and_can_match_nothing(demo_index):
    hits = search(demo_index, "neglect", filters=Filters(types=("SCR",), year_from=2018, themes=("neglect",)))
    assert hits and {h.file for h in hits} == {"scr-child-d.pdf"}
    assert search(demo_index, "neglect", filters=Filters(types=("DHR",), year_from=2021)) == []


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        (Filters(types=("inspection",)), "unknown review type 'inspection'"),
        (Filters(themes=("astrology",)), "unknown theme 'astrology'"),
        (Filters(reports=("Child Z",)), "unknown report 'Child Z'"),
        (Filters(year_from=2020, year_to=2010), "year range 2020-2010 is empty"),
    ],
)
def test_unknown_filter_values_raise_query_error(demo_index, filters, message):
    with pytest.raises(QueryError, match=re.escape(message)):
        search(demo_index, "neglect", filters=filters)


@pytest.mark.parametrize("query", ["", "   ", "\n"])
def test_empty_query_raises_query_error(demo_index, query):
    with pytest.raises(QueryError, match="empty"):
        search(demo_index, query)


def test_hits_per_report_cap(demo_index):
    settings = demo_index.settings.with_overrides(max_hits_per_report=1)
    hits = search(demo_index, "neglect and the voice of the child", k=10, settings=settings)
    files = [h.file for h in hits]
    assert len(files) == len(set(files)) >= 5
    uncapped = search(demo_index, "neglect and the voice of the child", k=10)
    assert len({h.file for h in uncapped}) < len(uncapped)


def test_merged_hits_do_not_repeat_chunks(demo_index):
    for query in (
        "neglect",
        "safer sleep advice for fathers",
        "what happened to Child D at school?",
        "In the Child G review, what happened?",
    ):
        hits = search(demo_index, query, k=15)
        ids = [c for h in hits for c in h.chunk_ids]
        assert len(ids) == len(set(ids)), query
        assert any(len(h.chunk_ids) > 1 for h in hits)  # some neighbours were merged
        for h in hits:
            chunks = [demo_index.chunks[demo_index.row_of[c]] for c in h.chunk_ids]
            seqs = sorted(c.seq for c in chunks)
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # contiguous
            assert {c.file for c in chunks} == {h.file}
            assert h.chunk_id in h.chunk_ids
            assert h.page_start == min(c.page_start for c in chunks)
            assert h.page_end == max(c.page_end for c in chunks)


def test_merging_can_be_switched_off(demo_index):
    settings = demo_index.settings.with_overrides(merge_adjacent=False)
    hits = search(demo_index, "neglect", k=10, settings=settings)
    assert all(len(h.chunk_ids) == 1 for h in hits)


@pytest.mark.parametrize("mode", ["dense", "bm25"])
def test_single_retriever_modes(demo_index, mode):
    hits = search(
        demo_index,
        "bruising in a non-mobile baby",
        k=5,
        settings=demo_index.settings.with_overrides(retrieval_mode=mode),
    )
    assert hits[0].file == "scr-baby-ll.pdf"
    if mode == "dense":
        assert all(h.dense_score is not None for h in hits)
    else:
        assert all(h.bm25_score is not None for h in hits)


def test_rrf_fusion_also_finds_known_answer(demo_index):
    settings = demo_index.settings.with_overrides(fusion="rrf")
    question, file, answers = KNOWN_ANSWERS[0]
    assert search(demo_index, question, k=3, settings=settings)[0].file == file


# --- themes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "theme"),
    [
        ("The review found the toxic trio in the household throughout the period.", "toxic-trio"),
        ("Co-sleeping on a sofa after drinking is a significant risk for the baby.", "safer-sleep"),
        ("Mother described coercive control: he took her phone and her money.", "domestic-abuse"),
        ("He was being exploited through county lines and was found in another town.", "exploitation"),
        ("The parents showed disguised compliance, tidying the house before each visit.", "disguised-compliance"),
        ("Neglect was chronic: the children were hungry and unkempt.", "neglect"),
        ("She had self-harmed twice before the overdose.", "suicide-self-harm"),
        ("Bruising in a non-mobile infant must always be referred.", "nai-infants"),
    ],
)
def test_tagging_planted_text_including_aliases(text, theme):
    assert theme in tag_text(text)


def test_neutral_text_gets_no_theme():
    assert tag_text("The panel met six times between February and October in the council offices.") == ()
    assert tag_text("") == ()


@pytest.mark.parametrize(
    ("name", "theme"),
    [
        ("toxic trio", "toxic-trio"),
        ("cumulative harm", "toxic-trio"),
        ("co-sleeping", "safer-sleep"),
        ("SUDI", "safer-sleep"),
        ("coercive control", "domestic-abuse"),
        ("county lines", "exploitation"),
        ("Disguised Compliance", "disguised-compliance"),
        ("neglect", "neglect"),
        ("voice-of-child", "voice-of-child"),
        ("Professional curiosity", "professional-curiosity"),
        ("elective home education", "not-in-school"),
    ],
)
def test_resolve_theme(name, theme):
    assert resolve_theme(name) == theme


@pytest.mark.parametrize("name", ["astrology", "", "   "])
def test_resolve_unknown_theme(name):
    assert resolve_theme(name) is None


def test_chunks_are_tagged_at_ingest(demo_index):
    tagged = [c for c in demo_index.chunks if c.themes]
    assert len(tagged) > len(demo_index.chunks) / 2
    assert all(set(c.themes) <= set(THEME_IDS) for c in demo_index.chunks)
    sudi = [c for c in demo_index.chunks if c.file == "thematic-sudi.pdf"]
    assert sum("safer-sleep" in c.themes for c in sudi) > len(sudi) / 2


def test_reports_by_theme(demo_index):
    rows = reports(demo_index, theme="safer sleep")
    files = [r["file"] for r in rows]
    assert set(files[:2]) == {"thematic-sudi.pdf", "7mb-safer-sleep.pdf"}
    counts = [r["theme_counts"]["safer-sleep"] for r in rows]
    assert counts == sorted(counts, reverse=True) and counts[0] > 0
    assert "scr-child-g.pdf" not in files
    dc = {r["file"] for r in reports(demo_index, theme="disguised compliance")}
    assert {"scr-child-d.pdf", "7mb-professional-curiosity.pdf"} <= dc
    assert "thematic-sudi.pdf" not in dc
    exploit = {r["file"] for r in reports(demo_index, theme="county lines")}
    assert "lcspr-child-b.pdf" in exploit


def test_reports_listing_and_type_filter(demo_index):
    rows = reports(demo_index)
    assert len(rows) == 15
    row = next(r for r in rows if r["file"] == "scr-child-d.pdf")
    assert row["short_title"] == "SCR Child D" and row["type"] == "SCR" and row["year"] == 2018
    assert row["pages"] == 16 and "neglect" in row["themes"] and row["theme_counts"]["neglect"] > 0
    assert {r["type"] for r in reports(demo_index, rtype="SCR")} == {"SCR"}
    assert len(reports(demo_index, rtype="SCR")) == 6
    with pytest.raises(QueryError):
        reports(demo_index, theme="astrology")
    with pytest.raises(QueryError):
        reports(demo_index, rtype="novel")


def test_resolve_report(demo_index):
    d = resolve_report(demo_index, "Baby LL")
    assert d is not None and demo_index.docs[d].meta.file == "scr-baby-ll.pdf"
    assert resolve_report(demo_index, "Child Q") is None


def test_rescore_adds_a_vote_and_keeps_lexical_only_candidates(demo_index):
    from sscp_rag.fusion import rescore, retrieve
    from sscp_rag.retrieval import retriever_for

    s = demo_index.settings.with_overrides(rescore=True, candidates=10)
    query = "Operation Encompass notification to the school after a domestic incident"
    r = retriever_for(demo_index)
    qvec = r.query_vector(query)
    fused, dense, bm25 = retrieve(r, query, qvec, None, s)
    lexical_only = [i for i in bm25 if i not in dense]
    assert lexical_only  # BM25 finds passages that the dense retriever does not
    out = rescore(r, qvec, fused, s, depth=len(fused))
    assert set(out) == set(fused)
    # every candidate keeps its own fused score and gets a vote (score fusion scales the weakest
    # sentence match to 0, so it may gain nothing)
    assert all(out[i] >= fused[i] for i in fused)
    assert sum(out[i] > fused[i] for i in fused) >= len(fused) - 1
    hits = search(demo_index, query, k=len(fused), settings=s)
    shown = {c for h in hits for c in h.chunk_ids}
    assert all(demo_index.chunks[i].id in shown for i in lexical_only)


@pytest.mark.parametrize(("question", "file", "answers"), KNOWN_ANSWERS[:4], ids=[q[1] for q in KNOWN_ANSWERS[:4]])
def test_known_answers_with_rescore(demo_index, question, file, answers):
    """The optional re-score keeps the right report first and the answering passage in the top
    three (all ten known answers do; four are run here because re-scoring embeds the sentences of
    30 chunks per question). It can put a passage that is about the question but does not answer
    it first: for the Child G disclosure question, the introduction's "a girl who was ... sexually
    abused" can outrank the disclosure itself."""
    settings = demo_index.settings.with_overrides(rescore=True)
    hits = search(demo_index, question, k=3, settings=settings)
    assert hits[0].file == file
    assert any(
        h.file == file and h.page_start <= page <= h.page_end and _norm(p) in _norm(h.text)
        for h in hits
        for page, p in answers
    )


def test_sentence_cache_returns_every_vector_even_when_a_call_overflows_it(demo_index, monkeypatch):
    """With a small cap, a call bringing more new sentences than the cache holds (or evicting the
    ones it then reads back) still returns every vector, equal to the uncached ones."""
    from sscp_rag import retrieval

    monkeypatch.setattr(retrieval, "SENTENCE_CACHE_SIZE", 3)
    retrieval.clear_caches(demo_index, everything=True)
    texts = [f"Sentence number {i} about a health visitor's home visit." for i in range(7)]
    first = retrieval.sentence_vectors(demo_index, texts[:3])
    got = retrieval.sentence_vectors(demo_index, texts)  # 4 new ones evict 3 it must still return
    assert got.shape == (7, demo_index.faiss.d)
    assert np.allclose(got[:3], first, atol=1e-5)
    want = demo_index.embedder.encode_live(texts)
    assert np.allclose(got, want, atol=1e-5)
    again = retrieval.sentence_vectors(demo_index, texts[::-1])  # repeated and reordered reads
    assert np.allclose(again, want[::-1], atol=1e-5)
    retrieval.clear_caches(demo_index, everything=True)


def test_abbreviations_are_expanded_both_ways_for_bm25():
    from sscp_rag.evaluation import CONFIGS
    from sscp_rag.fusion import bm25_query
    from sscp_rag.settings import Settings
    from sscp_rag.text import expand_abbreviations

    assert expand_abbreviations("What did the HV see?").endswith("health visitor health visiting")
    assert expand_abbreviations("Was the designated safeguarding lead told?").split()[-1] == "dsl"
    assert expand_abbreviations("What about neglect?") == "What about neglect?"
    # Off by default (it lowered page nDCG@10 on both eval sets); the eval keeps it comparable.
    assert bm25_query("What did the HV see?", Settings()) == "What did the HV see?"
    assert CONFIGS["hybrid-expand"].overrides == {"query_expansion": True}
