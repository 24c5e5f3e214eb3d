"""Extractive, grounded answers: quoted sentences from the reports, each cited to report and page.

No language model writes the answer. The best hits for the (follow-up-resolved) question are split
into sentences (pysbd); each sentence is scored by its embedding similarity to the question; MMR
picks a short, non-redundant set; quotes are grouped by report and each cites the page(s) that
hold it. Every quote is checked to appear verbatim on its cited pages before it is shown. A
leading paragraph number ("5.2 Practitioners ...") is left out of the shown quote, which stays a
verbatim substring of the page. Fragments (a list item or a clause cut at a page break, which
starts in lower case), headings, contents, glossary and further-reading lists are not quoted.

Abstention: the evidence for a question is the similarity of the best quotable sentence among
the hits. When it is below ``abstain_threshold`` the answer says that the indexed reviews do not
appear to address the question and lists the closest passages as "possibly related". The best
single sentence separates answerable from off-topic questions much better than the best chunk
does: a chunk about safeguarding is moderately similar to any question with "children",
"school" or "baby" in it, while one sentence that really answers is very similar. A question
that names a pseudonym no indexed report mentions ("the Child Q review") is declined by name.

Follow-up questions (method): ``history`` holds the earlier questions, oldest first; the last one
is first resolved against its own history, so chains of follow-ups work. A question is treated as
a follow-up when it opens with a connective ("and", "also", "what about", "in the ..."), when it
refers back ("it", "its", "that review", "they", "her", ...) and is short, or when it only names
a report. Then:

1. it names a report but brings no topic ("and in the Child G review?"): the previous question's
   topic, with its report names removed, is asked about the named report;
2. it names a report and brings a topic: it already stands alone;
3. it brings a topic and the previous question named reports ("what were its
   recommendations?" after a question about Child D): those reports are added;
4. it refers back and the previous question named no report: the previous question is carried
   as context ("<previous>: <follow-up>");
5. otherwise it is a change of topic ("what about domestic abuse?"): the topic alone.

Report names are found by :func:`sscp_rag.retrieval.report_mentions` (pseudonyms, short titles,
type + year, topic titles, or a type held by one report).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from sscp_rag.answerability import Decision, answer_types, corpus_stats, decide, evidence, follows_on
from sscp_rag.errors import QueryError
from sscp_rag.index import Index
from sscp_rag.records import Answer, Hit, Quote, ReportSection, Source
from sscp_rag.retrieval import (
    Filters,
    Retriever,
    query_terms,
    query_vector,
    rankings,
    remove_report_mentions,
    report_mentions,
    retriever_for,
    search,
    sentence_spans,
    sentence_vectors,
    strip_paragraph_number,
)
from sscp_rag.settings import Settings
from sscp_rag.vocabulary import PSEUDONYM

MIN_SENTENCE_CHARS = 40
MAX_SENTENCE_CHARS = 700
# A further quote must be at least this fraction of the abstention threshold similar to the
# question, so that an answer does not trail off into loosely related sentences.
MIN_QUOTE_FRACTION = 0.8
# Sentences under these headings are lists of documents or terms, not findings.
_SKIP_HEADINGS = re.compile(
    r"^\s*(?:\d+\.?\s*)?(contents|glossary|further reading|references|bibliography|appendix|"
    r"abbreviations|resources)\b",
    re.IGNORECASE,
)

_FOLLOWUP_START = re.compile(
    r"^\s*(and|also|what about|how about|and what about|what of|in the|same for|same in|but|then|"
    r"anything (else )?(in|from|about))\b",
    re.IGNORECASE,
)
_BACKREF = re.compile(
    r"\b(it|its|that review|this review|that report|this report|they|them|their|those|he|she|his|"
    r"her|same)\b",
    re.IGNORECASE,
)
_CONNECTIVE = re.compile(r"^\s*(and|also|but|then|so|what about|how about|and what about|what of)\s+", re.IGNORECASE)
_DANGLING = re.compile(
    r"\s*\b(?:in|from|of|for|by|about)?\s*the\s*(?:'s\s+)?(?:review|report|scr|lcspr|case|briefing)?\s*"
    r"(?=[?.!,]*\s*$)",
    re.IGNORECASE,
)
_FILLER = {
    "review",
    "reviews",
    "report",
    "reports",
    "what",
    "about",
    "else",
    "also",
    "and",
    "in",
    "the",
    "briefing",
    "anything",
}


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _topic_of(r: Retriever, question: str) -> str:
    """The question with its report names (and a dangling "in the review") removed."""
    text = remove_report_mentions(r, question)
    text = _DANGLING.sub("", text.rstrip("?.! "))
    return _norm(text).rstrip("?.!, ")


def _content(r: Retriever, question: str) -> list[str]:
    return [t for t in query_terms(_topic_of(r, _CONNECTIVE.sub("", question))) if t not in _FILLER]


def rewrite_followup(index: Index | Retriever, question: str, history: Sequence[str] = ()) -> str:
    """Rewrite a follow-up question into a standalone query using the previous questions (the
    method is in the module docstring). A question that stands alone is returned unchanged."""
    r = retriever_for(index)
    question = _norm(question)
    if not history:
        return question
    prev = rewrite_followup(r, history[-1], history[:-1])
    named_now = report_mentions(r, question)[0]
    content = _content(r, question)
    backref = bool(_BACKREF.search(question))
    is_followup = (
        bool(_FOLLOWUP_START.search(question)) or (backref and len(content) <= 6) or (bool(named_now) and not content)
    )
    if not is_followup:
        return question
    core = _CONNECTIVE.sub("", question).rstrip("?. ")
    if named_now and not content:
        topic = _topic_of(r, prev)
        if not _content(r, topic):
            return question
        if not re.match(r"(in|from|of|for|by|about|at|according to)\b", core, re.IGNORECASE):
            core = f"in {core}"
        return _norm(f"{topic} {core}?")
    if named_now:
        return question
    prev_named = report_mentions(r, prev)[0]
    if prev_named:
        names = " and ".join(r.index.docs[d].meta.short_title for d in prev_named)
        return _norm(f"{core} in {names}?")
    if backref:
        return _norm(f"{prev.rstrip('?. ')}: {core}?")
    return _norm(f"{core}?")


def _quotable(sentence: str) -> bool:
    """Whether a (number-stripped) sentence reads as a complete sentence worth quoting."""
    if not MIN_SENTENCE_CHARS <= len(sentence) <= MAX_SENTENCE_CHARS:
        return False
    if not sentence.rstrip().endswith((".", "?", "!", '"', "'", ")", "\u201d", "\u2019")):
        return False
    first = sentence.lstrip("\"'\u201c\u2018(")[:1]
    if not first or first.islower():
        return False  # a fragment: a list item or a clause cut off at a page break
    words = sentence.split()
    return len(words) >= 6 and sum(c.isalpha() for c in sentence) >= 0.6 * len(sentence)


def verify_quote(index: Index | Retriever, file: str, page_start: int, page_end: int, text: str) -> bool:
    """Whether ``text`` appears verbatim (whitespace aside) on the cited pages."""
    r = retriever_for(index)
    return _norm(text) in _norm(r.index.span_text(file, page_start, page_end))


def _candidates(r: Retriever, hits: Sequence[Hit]) -> list[tuple[Hit, int, int, str]]:
    """Quotable sentences of the hits: (hit, start, end, text) with absolute document offsets of
    the shown text (paragraph number left out), de-duplicated across hits."""
    cands: list[tuple[Hit, int, int, str]] = []
    seen: set[str] = set()
    for h in hits:
        info = r.index.docs[h.doc_id]
        for a, b in sentence_spans(h.text):
            a += strip_paragraph_number(h.text[a:b])
            sent = h.text[a:b]
            key = _norm(sent).lower()
            if key in seen or not _quotable(sent):
                continue
            if _SKIP_HEADINGS.match(info.text.heading_at(h.char_start + a) or ""):
                continue
            seen.add(key)
            cands.append((h, h.char_start + a, h.char_start + b, sent))
    return cands


def _sentence_before(r: Retriever, h: Hit, start: int) -> str:
    """The two sentences before the one at document offset ``start`` in the hit's report: what
    its pronouns refer to ("her step-grandfather, Mr H, ... Mr H pleaded guilty ... He was
    sentenced to ...")."""
    text = r.index.docs[h.doc_id].text.text
    window = text[max(0, start - 600) : start]
    spans = sentence_spans(window)[-2:]
    return " ".join(window[a:b].strip() for a, b in spans)


def _cited_passage(r: Retriever, h: Hit, p0: int, p1: int) -> str:
    """The part of the hit's text that lies on pages p0..p1 (what the source [n] shows)."""
    starts = r.index.docs[h.doc_id].text.page_starts
    lo = max(h.char_start, starts[p0 - 1])
    hi = min(h.char_end, starts[p1] if p1 < len(starts) else h.char_end)
    return r.index.docs[h.doc_id].text.text[lo:hi].strip()


def _abstain(question: str, standalone: str, hits: Sequence[Hit], decision: Decision) -> Answer:
    message = f"{decision.reason} The closest passages are listed below as possibly related."
    return Answer(
        question,
        standalone,
        True,
        message,
        (),
        (),
        tuple(hits[:5]),
        decision.best_similarity,
        hits=tuple(hits),
        decision=decision,
    )


def _declined(reason: str, best: float, threshold: float, basis: str) -> Decision:
    return Decision("declined", 0.0, threshold, reason, best_similarity=best, basis=basis)


def unknown_pseudonyms(index: Index | Retriever, question: str) -> list[str]:
    """The pseudonyms a question names ("the Child Q review") that no indexed report mentions,
    in its text or its metadata. Reviews answer only about the people they describe, so quoting
    other reports for such a question would answer a different question."""
    r = retriever_for(index)
    known = corpus_stats(r).pseudonyms
    names = dict.fromkeys(" ".join(m.group(0).split()) for m in PSEUDONYM.finditer(question))
    return [n for n in names if n not in known]


def assess(
    index: Index | Retriever,
    question: str,
    hits: Sequence[Hit],
    qvec: np.ndarray,
    sentences: Sequence[str],
    sims: np.ndarray,
    filters: Filters | None,
    s: Settings,
    sources: Sequence[int] = (),
    before: Sequence[str] = (),
) -> Decision:
    """The answerability decision for a standalone question (see :mod:`sscp_rag.answerability`).
    ``sources``: for each sentence, the index in ``hits`` of its passage; ``before``: the two
    sentences before each in its report.

    With ``answerability = "similarity"`` only the best sentence's similarity decides (the
    earlier rule, kept for comparison). In either mode a best sentence below
    ``abstain_threshold`` declines: nothing in the passages is even close."""
    r = retriever_for(index)
    best = float(sims.max()) if len(sims) else 0.0
    floor = (
        f"The indexed reviews do not appear to address this question: the closest sentences are only "
        f"loosely related (best similarity {best:.2f})."
    )
    if s.answerability == "similarity":
        if best < s.abstain_threshold:
            return _declined(floor, best, s.abstain_threshold, "similarity")
        return Decision("answered", 1.0, s.abstain_threshold, "", best_similarity=best, basis="similarity")
    _, spans = report_mentions(r, question)
    ev = evidence(r, question, hits, qvec, sentences, sims, rankings(r, question, filters, s), spans, sources, before)
    decision = decide(ev, question, s.answerable_threshold)
    if best < s.abstain_threshold and not decision.declined:
        return replace(decision, status="declined", reason=floor, basis="similarity")
    return decision


# Where a question asks two things: "... co-sleeping and the family's pet dog?", "...; which
# agencies were invited?". Each side must bring words of its own.
_PARTS = re.compile(r"\s*;\s*|\?\s+|,?\s+and\s+(?:also\s+)?", re.IGNORECASE)


def _answer_covered_part(
    r: Retriever, question: str, standalone: str, filters: Filters | None, s: Settings
) -> Answer | None:
    """When a question the reports do not answer as a whole asks two things and the reports answer
    one of them, that part's answer, marked partial and saying which part is not covered."""
    pieces = [p.strip(" ?.") for p in _PARTS.split(standalone) if p.strip(" ?.")]
    if len(pieces) < 2 or len(pieces) > 3 or any(not query_terms(p) for p in pieces):
        return None
    # The first part may set the scene before it asks ("Kent commissioned a review - what came of it").
    if not re.search(
        r"(?:^|\s[-\u2013\u2014]\s|:\s)(?:what|which|who|how|when|where|why|did|does|do|is|are|was|were|has|have)\b",
        pieces[0],
        re.I,
    ):
        return None
    lead = re.match(r"^(.*?\b(?:about|on|of|regarding|for)\b)\s", pieces[0], re.IGNORECASE)
    parts = [pieces[0]] + [
        p
        if re.match(r"(?:what|which|who|how|when|where|why)\b", p, re.IGNORECASE) or not lead
        else f"{lead.group(1)} {p}"
        for p in pieces[1:]
    ]
    # "When did Baby LL's father plead guilty, and how many years was he jailed for?": the second
    # part is still about Baby LL's father, so it keeps the names the first part gives.
    names = _names(pieces[0])
    parts = [parts[0]] + [p if _names(p) or not names else f"{p} in {' and '.join(names)}" for p in parts[1:]]
    results = [_answer(r, p, filters, (), s, split_parts=False) for p in parts]
    covered = [(p, a) for p, a in zip(pieces, results) if not a.abstained]
    gaps = [(p, a) for p, a in zip(pieces, results) if a.abstained]
    if not covered or not gaps:
        return None
    best_part, best = max(covered, key=lambda pa: pa[1].decision.probability)
    # A part declined for want of a figure, date or name is not answered, though its words may all
    # be there: say which part, not which words.
    unanswered = tuple(p for p, a in gaps if a.decision.basis == "type")
    missing = tuple(
        w for _, a in gaps if a.decision.basis != "type" for w in (a.decision.uncovered or a.decision.missing)
    ) or (() if unanswered else tuple(p for p, _ in gaps))
    says = []
    if missing:
        says.append("do not mention " + " or ".join(f"\u2018{w}\u2019" for w in dict.fromkeys(missing)))
    if unanswered:
        says.append("do not say " + " or ".join(f"\u2018{p}\u2019" for p in unanswered))
    reason = (
        f"The reviews answer part of this question (\u2018{best_part}\u2019), but the passages found "
        f"{', and '.join(says)}."
    )
    missing = missing + unanswered
    decision = replace(best.decision, status="partial", reason=reason, uncovered=tuple(dict.fromkeys(missing)))
    return replace(best, question=question, standalone_query=standalone, decision=decision)


def _names(text: str) -> list[str]:
    """The pseudonyms, places and other names a question (part) gives: pseudonyms ("Baby LL"),
    then capitalised words and acronyms that do not start it."""
    found = [" ".join(m.group(0).split()) for m in PSEUDONYM.finditer(text)]
    for m in re.finditer(r"(?<=\s)(?:[A-Z][a-z]+(?:\s+[A-Z][a-z]+)*|[A-Z]{2,})\b", text):
        if not any(m.group(0) in f for f in found) and not re.search(r"[.?!:]\s*$", text[: m.start()]):
            found.append(m.group(0))
    return list(dict.fromkeys(found))


def answer(
    index: Index | Retriever,
    question: str,
    filters: Filters | None = None,
    history: Sequence[str] = (),
    settings: Settings | None = None,
) -> Answer:
    """A short, extractive, page-cited answer to ``question`` from the indexed reports.

    ``index`` is a loaded index or a :class:`~sscp_rag.retrieval.Retriever` of one (whose
    encoder and settings are then used throughout).

    ``history`` holds the conversation's previous questions (oldest first); follow-ups are
    rewritten into standalone queries (see the module docstring). ``Answer.decision`` says
    whether the reports answer the question, in part, or not, and why (see
    :mod:`sscp_rag.answerability`). Raises QueryError for an empty or over-long question or
    unknown filter values. With ``settings.llm_base_url`` set, a verified LLM summary is added
    (see :mod:`sscp_rag.llm`); an LLM failure only adds a note.
    """
    r = retriever_for(index)
    return _answer(r, question, filters, history, settings or r.settings, split_parts=True)


def whole_question_decision(index: Index | Retriever, question: str, settings: Settings | None = None) -> Decision:
    """The answerability decision on ``question`` as a whole, before a declined two-part question
    is split: what ``scripts/fit_answerability.py`` fits the model on, so that the features it
    learns from do not depend on the model being fitted."""
    r = retriever_for(index)
    return _answer(r, question, None, (), settings or r.settings, split_parts=False).decision


def _answer(
    r: Retriever,
    question: str,
    filters: Filters | None,
    history: Sequence[str],
    s: Settings,
    split_parts: bool,
) -> Answer:
    """:func:`answer`; ``split_parts``: whether a declined two-part question may be answered in part."""
    if not (question or "").strip():
        raise QueryError("the question is empty; type a question about the reviews")
    if len(question) > s.max_question_chars:
        raise QueryError(
            f"the question is {len(question):,} characters long; ask in at most {s.max_question_chars:,} "
            "characters (one question at a time)"
        )
    standalone = rewrite_followup(r, question, history)
    hits = search(r, standalone, k=s.answer_hits, filters=filters, settings=s)
    unknown = unknown_pseudonyms(r, standalone)
    if unknown:
        who = " or ".join(unknown)
        reason = f"No indexed report mentions {who}, so the reviews cannot answer this question."
        return _abstain(question, standalone, hits, _declined(reason, 0.0, s.answerable_threshold, "name"))
    loose = "The indexed reviews do not appear to address this question."
    if not hits:
        return _abstain(question, standalone, hits, _declined(loose, 0.0, s.answerable_threshold, "passages"))
    qvec = query_vector(r, standalone)
    cands = _candidates(r, hits)
    if not cands:
        return _abstain(question, standalone, hits, _declined(loose, 0.0, s.answerable_threshold, "passages"))
    vecs = sentence_vectors(r, [_norm(c[3]) for c in cands])
    rel = vecs @ qvec
    best = float(rel.max())
    position = {id(h): i for i, h in enumerate(hits)}
    sources = [position[id(c[0])] for c in cands]
    # Splitting sentences costs; only those the answer-type check reads with their context need it.
    typed = bool(answer_types(standalone))
    before = [_sentence_before(r, c[0], c[1]) if typed and follows_on(c[3]) else "" for c in cands]
    decision = assess(r, standalone, hits, qvec, [c[3] for c in cands], rel, filters, s, sources, before)
    if decision.declined:
        # A name no report mentions declines every part of the question; any other basis may
        # concern one part only.
        if decision.basis != "name" and split_parts:
            part = _answer_covered_part(r, question, standalone, filters, s)
            if part is not None:
                return part
        return _abstain(question, standalone, hits, decision)
    rank_prior = np.array([1.0 / (1 + 0.15 * (c[0].rank - 1)) for c in cands])
    score = rel * (0.8 + 0.2 * rank_prior)

    chosen: list[int] = []
    pool = list(range(len(cands)))
    floor = MIN_QUOTE_FRACTION * s.abstain_threshold
    while pool and len(chosen) < s.answer_sentences:
        red = np.max(vecs[pool] @ vecs[chosen].T, axis=1) if chosen else np.zeros(len(pool))
        mmr = s.mmr_lambda * score[pool] - (1 - s.mmr_lambda) * red
        j = pool[int(np.argmax(mmr))]
        pool.remove(j)
        if chosen and rel[j] < floor:
            break
        chosen.append(j)

    # Group by report (best report first), quotes in document order within a report.
    by_doc: dict[str, list[int]] = {}
    for j in sorted(chosen, key=lambda j: -score[j]):
        by_doc.setdefault(cands[j][0].doc_id, []).append(j)
    sources: list[Source] = []
    source_of: dict[tuple[str, int, int, str], int] = {}
    sections: list[ReportSection] = []
    for doc_id, idxs in by_doc.items():
        info = r.index.docs[doc_id]
        quotes = []
        for j in sorted(idxs, key=lambda j: cands[j][1]):
            h, a, b, sent = cands[j]
            p0, p1 = info.text.span(a, b)
            if not verify_quote(r, h.file, p0, p1, sent):
                continue  # never show a quote that is not on the page it cites
            key = (h.file, p0, p1, h.chunk_id)
            if key not in source_of:
                source_of[key] = len(sources) + 1
                sources.append(
                    Source(
                        source_of[key],
                        h.file,
                        h.title,
                        h.short_title,
                        h.type,
                        h.year,
                        p0,
                        p1,
                        _cited_passage(r, h, p0, p1),
                        h.chunk_id,
                    )
                )
            quotes.append(Quote(_norm(sent), source_of[key], float(rel[j])))
        if quotes:
            sections.append(ReportSection(info.meta.short_title, info.meta.file, tuple(quotes)))
    if not sections:
        return _abstain(
            question, standalone, hits, replace(decision, status="declined", reason=loose, basis="passages")
        )
    n_reports = len(sections)
    message = f"From {n_reports} report{'s' if n_reports != 1 else ''}, in their own words:"
    result = Answer(
        question,
        standalone,
        False,
        message,
        tuple(sections),
        tuple(sources),
        (),
        best,
        hits=tuple(hits),
        decision=decision,
    )
    if s.llm_base_url:
        from sscp_rag.llm import synthesise

        result = synthesise(r, result, s)
    return result


def followup_history(answers: Sequence[Answer]) -> list[str]:
    """The standalone queries of earlier answers, as ``history`` for the next question."""
    return [a.standalone_query for a in answers]


__all__ = [
    "answer",
    "rewrite_followup",
    "verify_quote",
    "followup_history",
    "strip_paragraph_number",
    "replace",
]
