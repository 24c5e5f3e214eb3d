"""Extractive, grounded answers: quoted sentences from the reports, each cited to report and page.

No language model writes the answer. The best hits for the (follow-up-resolved) question are split
into sentences; each sentence is scored by its embedding similarity to the question; MMR picks a
short, non-redundant set; quotes are grouped by report and each cites the page(s) that hold it.
Every quote is checked to appear verbatim on its cited pages before it is shown.

When even the best passage is less similar to the question than ``abstain_threshold``, the answer
says that the indexed reviews do not appear to address the question and lists the closest
passages as "possibly related".

Follow-up questions (method): the previous questions of the conversation are kept. A question is
treated as a follow-up when it opens with a connective ("and", "what about", "also", "in the ...")
or refers back ("it", "that review", "there", "they") and is short. If the follow-up names a
report but brings no topic of its own ("and in the Child G review?"), the topic of the previous
question is carried over with the previous report names removed; if it brings a topic but no
report and refers back ("what were its recommendations?"), the reports named in the previous
question are added. Otherwise the question stands alone.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Sequence

import numpy as np

from sscp_rag.errors import QueryError
from sscp_rag.index import Index
from sscp_rag.records import Answer, Hit, Quote, ReportSection, Source
from sscp_rag.retrieval import Filters, detect_reports, query_terms, search
from sscp_rag.settings import Settings

ABSTAIN_MESSAGE = (
    "The indexed reviews do not appear to address this question. "
    "The closest passages are listed below as possibly related."
)
MIN_SENTENCE_CHARS = 40
MAX_SENTENCE_CHARS = 700

_FOLLOWUP_START = re.compile(
    r"^\s*(and|also|what about|how about|and what about|what of|in the|same for|same in|but|then|"
    r"anything (else )?(in|from|about))\b",
    re.IGNORECASE,
)
_BACKREF = re.compile(r"\b(it|its|that review|this review|that report|this report|there|they|them|their|"
                      r"those|these|he|she|his|her|same)\b", re.IGNORECASE)
_CONNECTIVE = re.compile(r"^\s*(and|also|but|then|so|what about|how about|and what about|what of)\s+",
                         re.IGNORECASE)


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _remove_report_names(index: Index, text: str) -> str:
    from sscp_rag.retrieval import _aliases

    for pats in _aliases(index).values():
        for p in pats:
            text = p.sub(" ", text)
    text = re.sub(r"\b(in|from|of) the\s+(review|report|scr|lcspr|case)?\s*(?=[?.!,]|$)", " ", text,
                  flags=re.IGNORECASE)
    return _norm(text)


def rewrite_followup(index: Index, question: str, history: Sequence[str] = ()) -> str:
    """Rewrite a follow-up question into a standalone query using the previous questions."""
    question = _norm(question)
    if not history:
        return question
    prev = _norm(history[-1])
    content = [t for t in query_terms(_remove_report_names(index, question))
               if t not in {"review", "reviews", "report", "what", "about", "else", "also", "and", "in", "the"}]
    named_now = detect_reports(index, question)
    is_followup = bool(_FOLLOWUP_START.search(question)) or (bool(_BACKREF.search(question)) and len(content) <= 6)
    if not is_followup:
        return question
    core = _CONNECTIVE.sub("", question).rstrip("?. ")
    if named_now and not content:
        topic = _remove_report_names(index, prev).rstrip("?. ")
        return _norm(f"{topic} {core}?")
    if not named_now:
        prev_named = detect_reports(index, prev)
        if prev_named:
            names = " and ".join(index.docs[d].meta.short_title for d in prev_named)
            return _norm(f"{core} in {names}?")
        return _norm(f"{prev.rstrip('?. ')}: {core}?")
    return question


def _sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of the sentences of ``text``."""
    import pysbd

    seg = pysbd.Segmenter(language="en", clean=False, char_span=True)
    spans = []
    for s in seg.segment(text):
        start, end = s.start, s.end
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        # a paragraph break inside a "sentence" means a heading or list item ran into it: split
        parts = re.split(r"\n\n+", text[start:end])
        pos = start
        for part in parts:
            at = text.find(part, pos)
            if part.strip():
                spans.append((at, at + len(part)))
            pos = at + len(part)
    return spans


def _quotable(sentence: str) -> bool:
    if not MIN_SENTENCE_CHARS <= len(sentence) <= MAX_SENTENCE_CHARS:
        return False
    if not sentence.rstrip().endswith((".", "?", "!", '"', "'", ")", ":")):
        return False
    words = sentence.split()
    return len(words) >= 6 and sum(c.isalpha() for c in sentence) >= 0.6 * len(sentence)


def verify_quote(index: Index, file: str, page_start: int, page_end: int, text: str) -> bool:
    """Whether ``text`` appears verbatim (whitespace aside) on the cited pages."""
    return _norm(text) in _norm(index.span_text(file, page_start, page_end))


def _best_dense(index: Index, qvec: np.ndarray, hits: Sequence[Hit]) -> float:
    best = 0.0
    for h in hits:
        for cid in h.chunk_ids:
            row = index.row_of.get(cid)
            if row is not None:
                best = max(best, float(index.faiss.reconstruct(row) @ qvec))
    return best


def answer(index: Index, question: str, filters: Filters | None = None, history: Sequence[str] = (),
           settings: Settings | None = None) -> Answer:
    """A short, extractive, page-cited answer to ``question`` from the indexed reports.

    ``history`` holds the conversation's previous questions (oldest first); follow-ups are
    rewritten into standalone queries (see the module docstring). Raises QueryError for an empty
    question or unknown filter values.
    """
    s = settings or index.settings
    if not (question or "").strip():
        raise QueryError("the question is empty; type a question about the reviews")
    standalone = rewrite_followup(index, question, history)
    hits = search(index, standalone, k=s.answer_hits, filters=filters, settings=s)
    qvec = index.embedder.encode_query(standalone)
    best = _best_dense(index, qvec, hits)
    if not hits or best < s.abstain_threshold:
        return Answer(question, standalone, True, ABSTAIN_MESSAGE, (), (), tuple(hits[:5]), best, hits=tuple(hits))

    # Candidate sentences with absolute offsets in their document.
    cands: list[tuple[Hit, int, int, str]] = []
    seen: set[str] = set()
    for h in hits:
        for a, b in _sentences(h.text):
            sent = h.text[a:b]
            key = _norm(sent).lower()
            if key in seen or not _quotable(sent):
                continue
            seen.add(key)
            cands.append((h, h.char_start + a, h.char_start + b, sent))
    if not cands:
        return Answer(question, standalone, True, ABSTAIN_MESSAGE, (), (), tuple(hits[:5]), best, hits=tuple(hits))
    vecs = index.embedder.encode([_norm(c[3]) for c in cands])
    rel = vecs @ qvec
    rank_prior = np.array([1.0 / (1 + 0.15 * (c[0].rank - 1)) for c in cands])
    score = rel * (0.8 + 0.2 * rank_prior)

    chosen: list[int] = []
    pool = list(range(len(cands)))
    while pool and len(chosen) < s.answer_sentences:
        if chosen:
            red = np.max(vecs[pool] @ vecs[chosen].T, axis=1)
        else:
            red = np.zeros(len(pool))
        mmr = s.mmr_lambda * score[pool] - (1 - s.mmr_lambda) * red
        j = pool[int(np.argmax(mmr))]
        pool.remove(j)
        if rel[j] < s.abstain_threshold * 0.75 and chosen:
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
        info = index.docs[doc_id]
        quotes = []
        for j in sorted(idxs, key=lambda j: cands[j][1]):
            h, a, b, sent = cands[j]
            p0, p1 = info.text.span(a, b)
            if not verify_quote(index, h.file, p0, p1, sent):
                continue  # never show a quote that is not on the page it cites
            key = (h.file, p0, p1, h.chunk_id)
            if key not in source_of:
                source_of[key] = len(sources) + 1
                sources.append(Source(source_of[key], h.file, h.title, h.short_title, h.type, h.year, p0, p1,
                                      h.text, h.chunk_id))
            quotes.append(Quote(_norm(sent), source_of[key], float(rel[j])))
        if quotes:
            sections.append(ReportSection(info.meta.short_title, info.meta.file, tuple(quotes)))
    n_reports = len(sections)
    message = f"From {n_reports} report{'s' if n_reports != 1 else ''}, in their own words:"
    result = Answer(question, standalone, False, message, tuple(sections), tuple(sources), (), best,
                    hits=tuple(hits))
    if s.llm_base_url:
        from sscp_rag.llm import synthesise

        result = synthesise(index, result, s)
    return result


def followup_history(answers: Sequence[Answer]) -> list[str]:
    """The standalone queries of earlier answers, as ``history`` for the next question."""
    return [a.standalone_query for a in answers]


__all__ = ["answer", "rewrite_followup", "verify_quote", "followup_history", "ABSTAIN_MESSAGE", "replace"]
