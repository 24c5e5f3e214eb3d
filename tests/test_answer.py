"""Extractive answers on the real demo index: quotes from several reports, grouped by report, each
verbatim on the page(s) it cites (checked against the index and against pypdf's raw page text);
abstention on off-topic questions; follow-up rewriting; exports."""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from pathlib import Path

import pytest
from pypdf import PdfReader

from sscp_rag.answer import (
    answer,
    followup_history,
    rewrite_followup,
    strip_paragraph_number,
    unknown_pseudonyms,
    verify_quote,
)
from sscp_rag.errors import QueryError
from sscp_rag.export import answer_to_dict, answer_to_docx, answer_to_markdown
from sscp_rag.index import Index
from sscp_rag.records import Answer
from sscp_rag.retrieval import Filters

ON_TOPIC = [
    "what did reviews say about neglect?",
    "What should practitioners do about disguised compliance?",
    "What advice should parents get about co-sleeping after drinking alcohol?",
    "Why were the concerns of the school not escalated in the Child D review?",
    "How did agencies share information about domestic abuse?",
]
OFF_TOPIC = [
    "What is the recipe for sourdough bread?",
    "Who won the 2018 World Cup?",
    "How do I install Python on Windows?",
]


def _squash(text: str) -> str:
    """Text with compatibility characters normalised and all whitespace and hyphens removed, so
    that line wrapping and hyphenation in the PDF do not matter."""
    text = unicodedata.normalize("NFKC", text).replace("\u00ad", "")
    return re.sub(r"[\s\-\u2010\u2011]+", "", text)


@cache
def _raw_pages(path: Path) -> tuple[str, ...]:
    return tuple(_squash(p.extract_text() or "") for p in PdfReader(str(path)).pages)


def _on_raw_pages(index: Index, file: str, p0: int, p1: int, text: str) -> bool:
    """Whether ``text`` is on raw pypdf pages p0..p1; a text across a page break must start on
    p0 and end on the following page(s) (running headers and footers lie between them)."""
    pages = _raw_pages(Path(index.settings.corpus_dir) / file)
    q = _squash(text)
    if p0 == p1:
        return q in pages[p0 - 1]
    rest = "".join(pages[p0:p1])
    return any(
        pages[p0 - 1].endswith(q[:k]) and rest.startswith(q[k:]) or (q[:k] in pages[p0 - 1] and q[k:] in rest)
        for k in range(1, len(q))
    )


@pytest.fixture(scope="module")
def answers(demo_index: Index) -> dict[str, Answer]:
    return {q: answer(demo_index, q) for q in ON_TOPIC}


def test_neglect_answer_quotes_several_reports(answers):
    a = answers["what did reviews say about neglect?"]
    assert not a.abstained
    assert len(a.sections) >= 3
    assert a.message == f"From {len(a.sections)} reports, in their own words:"
    assert {s.short_title for s in a.sections} & {"SCR Child D", "7MB Neglect", "SCR HH, II and JJ"}
    assert any("neglect" in q.text.lower() for q in a.quotes)


@pytest.mark.parametrize("question", ON_TOPIC)
def test_every_quote_is_verbatim_on_its_cited_pages(demo_index, answers, question):
    a = answers[question]
    assert not a.abstained and a.quotes
    by_n = {s.n: s for s in a.sources}
    for q in a.quotes:
        src = by_n[q.source]
        assert verify_quote(demo_index, src.file, src.page_start, src.page_end, q.text)
        on_pages = re.sub(r"\s+", " ", demo_index.span_text(src.file, src.page_start, src.page_end))
        assert q.text in on_pages
        assert _on_raw_pages(demo_index, src.file, src.page_start, src.page_end, q.text), (src.citation, q.text)
        # the passage shown for [n] is on the cited pages too, and holds the quote
        assert re.sub(r"\s+", " ", src.passage) in on_pages
        assert q.text in re.sub(r"\s+", " ", src.passage)


@pytest.mark.parametrize("question", ON_TOPIC)
def test_quotes_are_clean_grouped_and_sources_numbered(demo_index, answers, question):
    a = answers[question]
    assert [s.n for s in a.sources] == list(range(1, len(a.sources) + 1))
    assert {q.source for q in a.quotes} == {s.n for s in a.sources}  # every source is cited
    assert len({s.short_title for s in a.sections}) == len(a.sections)
    by_n = {s.n: s for s in a.sources}
    for sec in a.sections:
        assert {by_n[q.source].short_title for q in sec.quotes} == {sec.short_title}
        for q in sec.quotes:
            assert not re.match(r"\d+(\.\d+)*\.?\s", q.text), q.text  # no paragraph number
            assert not q.text[0].islower(), q.text  # no fragment
            assert q.text.endswith((".", "?", "!", '"', ")", "\u201d", "'")), q.text
        pages = [by_n[q.source].page_start for q in sec.quotes]
        assert pages == sorted(pages)  # document order within a report
    assert len(a.quotes) <= demo_index.settings.answer_sentences
    assert len({q.text for q in a.quotes}) == len(a.quotes)
    src = a.sources[0]
    meta = demo_index.by_file[src.file].meta
    assert (src.title, src.type, src.year) == (meta.title, meta.type, meta.year)
    assert a.best_score >= demo_index.settings.abstain_threshold


def test_paragraph_numbers_are_left_out_but_quote_stays_verbatim(demo_index):
    a = answer(demo_index, "What did the Child D review find about the strategy discussion after the bruise?")
    assert not a.abstained
    page_texts = {s.n: demo_index.span_text(s.file, s.page_start, s.page_end) for s in a.sources}
    numbered = [q for q in a.quotes if re.search(r"\d+\.\d+ " + re.escape(q.text[:30]), page_texts[q.source])]
    assert numbered, "expected at least one quote that opens a numbered paragraph in the report"


@pytest.mark.parametrize(
    ("sentence", "cut"),
    [
        ("5.2 Practitioners should ask.", 4),
        ("3. Information: the risks.", 3),
        ("1.12 The review looked.", 5),
        ("• Think family.", 2),
        ("7 Minute Briefing: Neglect.", 0),
        ("2019 was a hard year.", 0),
        ("Practitioners should ask.", 0),
    ],
)
def test_strip_paragraph_number(sentence, cut):
    assert strip_paragraph_number(sentence) == cut


@pytest.mark.parametrize("question", OFF_TOPIC)
def test_off_topic_question_is_declined_with_related_passages(demo_index, question):
    a = answer(demo_index, question)
    assert a.abstained and a.decision.declined
    assert a.message.startswith(("The indexed reviews do not appear to", "No indexed report mentions"))
    assert a.message.endswith("The closest passages are listed below as possibly related.")
    assert a.sections == () and a.sources == () and a.quotes == ()
    assert 1 <= len(a.related) <= 5
    assert all(h.citation and h.text for h in a.related)
    assert a.best_score < demo_index.settings.abstain_threshold


def test_a_person_no_report_mentions_is_declined_by_name(demo_index):
    """Quoting other reports for "the Child Q review" would answer a question nobody asked."""
    a = answer(demo_index, "What did the Child Q review conclude about the strip search at school?")
    assert a.abstained and a.quotes == () and 1 <= len(a.related) <= 5
    assert a.message.startswith("No indexed report mentions Child Q, so the reviews cannot answer")
    assert unknown_pseudonyms(demo_index, "Were Child  G and Child Z seen alone?") == ["Child Z"]
    # Named in a report that is about someone else (Child F is Child D's sibling): answerable.
    assert unknown_pseudonyms(demo_index, "Who looked after Child F?") == []
    follow = answer(demo_index, "Who looked after Child F?")
    assert not follow.abstained and any(s.file == "scr-child-d.pdf" for s in follow.sources)
    # Lower case "child" plus a capital pronoun is not a pseudonym.
    assert unknown_pseudonyms(demo_index, "What if a child I support goes missing?") == []


def test_on_topic_evidence_is_well_above_off_topic(demo_index, answers):
    on = min(a.best_score for a in answers.values())
    off = max(answer(demo_index, q).best_score for q in OFF_TOPIC)
    assert on > off + 0.1


def test_filters_apply_to_answers(demo_index):
    a = answer(demo_index, "What are the risks of co-sleeping?", filters=Filters(types=("7-minute briefing",)))
    assert not a.abstained and {s.type for s in a.sources} == {"7-minute briefing"}
    with pytest.raises(QueryError, match="unknown theme"):
        answer(demo_index, "neglect", filters=Filters(themes=("astrology",)))


@pytest.mark.parametrize("question", ["", "  \n "])
def test_empty_question_raises(demo_index, question):
    with pytest.raises(QueryError, match="empty"):
        answer(demo_index, question)


# --- follow-ups ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("history", "question", "expected"),
    [
        (
            ["what did reviews say about neglect?"],
            "and in the Child G review?",
            "what did reviews say about neglect in the Child G review?",
        ),
        (
            ["What happened to Child D in hospital?"],
            "what were its recommendations?",
            "what were its recommendations in SCR Child D?",
        ),
        (
            ["what did reviews say about neglect?"],
            "what about the 2019 thematic review?",
            "what did reviews say about neglect in the 2019 thematic review?",
        ),
        (
            ["what did reviews say about neglect?", "and in the Child G review?"],
            "and in Child B?",
            "what did reviews say about neglect in Child B?",
        ),
        (
            ["What did the SUDI review say about fathers?"],
            "what about co-sleeping?",
            "co-sleeping in SUDI Thematic Review?",
        ),
        (["what did reviews say about neglect?"], "what about domestic abuse?", "domestic abuse?"),
        (["what did reviews say about neglect?"], "What is disguised compliance?", "What is disguised compliance?"),
        (
            ["What happened to Child D?"],
            "How did the Baby LL review describe the father?",
            "How did the Baby LL review describe the father?",
        ),
        ([], "and in the Child G review?", "and in the Child G review?"),
    ],
)
def test_rewrite_followup(demo_index, history, question, expected):
    assert rewrite_followup(demo_index, question, history) == expected


def test_followup_answer_lands_in_the_named_report(demo_index):
    first = answer(demo_index, "what did reviews say about professional curiosity?")
    follow = answer(demo_index, "and in the Child G review?", history=followup_history([first]))
    assert follow.question == "and in the Child G review?"
    assert "professional curiosity" in follow.standalone_query and "Child G" in follow.standalone_query
    assert not follow.abstained
    assert follow.sections[0].short_title == "SCR Child G"
    assert follow.hits[0].file == "scr-child-g.pdf"
    # SCR Child G never mentions neglect: asked about neglect there, the answer says so instead of
    # quoting Child G passages about something else.
    first = answer(demo_index, "what did reviews say about neglect?")
    follow = answer(demo_index, "and in the Child G review?", history=followup_history([first]))
    assert follow.abstained and "\u2018neglect\u2019" in follow.decision.reason
    assert follow.related and follow.related[0].file == "scr-child-g.pdf"


def test_followup_recommendations_of_child_d(demo_index):
    follow = answer(demo_index, "what were its recommendations?", history=["What happened to Child D at school?"])
    assert follow.standalone_query == "what were its recommendations in SCR Child D?"
    assert not follow.abstained
    assert follow.sections[0].short_title == "SCR Child D"
    d_sources = [s for s in follow.sources if s.file == "scr-child-d.pdf"]
    assert any(s.page_start >= 15 for s in d_sources)  # the recommendations are on pp. 15-16
    assert any("ecommend" in q.text for q in follow.quotes)


# --- exports ---------------------------------------------------------------------------------


def test_answer_exports(answers):
    a = answers["what did reviews say about neglect?"]
    d = answer_to_dict(a)
    assert d["version"] == 1 and d["abstained"] is False and d["question"] == a.question
    assert [s["n"] for s in d["sources"]] == [s.n for s in a.sources]
    assert {"citation", "file", "title", "short_title", "type", "year", "page_start", "page_end", "passage"} <= set(
        d["sources"][0]
    )
    assert d["sections"][0]["quotes"][0]["text"] == a.sections[0].quotes[0].text
    md = answer_to_markdown(a)
    assert a.sources[0].citation.split(",")[0] in md.replace("\\", "")
    assert "### Sources" in md
    assert answer_to_docx(a)[:2] == b"PK"
