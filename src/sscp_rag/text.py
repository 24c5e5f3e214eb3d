"""Sentences and stems, shared by retrieval and answers: query terms, the words of a passage that
match them (highlighting), paragraph numbers and sentence splitting (pysbd)."""

from __future__ import annotations

import functools
import re

from sscp_rag.vocabulary import ABBREVIATIONS

_STOP = set(
    "a an and are as at be by can did do does for from had has have how i in into is it its me my "
    "of on or our say said says should that the their them there these they this those to was "
    "were what when where which who why will with would you your about any reviews review report "
    "reports tell show find".split()
)


@functools.lru_cache(maxsize=1)
def abbreviation_forms() -> tuple[tuple[str, re.Pattern[str]], ...]:
    """(abbreviation, pattern of its spelled-out forms in a question), for every abbreviation of
    the field (``vocabulary.ABBREVIATIONS``)."""
    out = []
    for abbr, forms in ABBREVIATIONS.items():
        words = "|".join(r"\s+".join(re.escape(w) for w in f.split()) for f in forms)
        out.append((abbr, re.compile(rf"\b(?:{words})\b", re.IGNORECASE)))
    return tuple(out)


def expand_abbreviations(query: str) -> str:
    """``query`` with the field's abbreviations it uses spelled out, and the abbreviations of the
    forms it spells out added ("HV visits" -> "HV visits health visitor health visiting"), so
    that BM25 finds a passage whichever way the report writes it."""
    words = set(re.findall(r"[a-z]+", query.lower()))
    extra: list[str] = []
    for abbr, spelled in abbreviation_forms():
        if abbr in words:
            extra.extend(ABBREVIATIONS[abbr])
        elif spelled.search(query):
            extra.append(abbr)
    return f"{query} {' '.join(extra)}" if extra else query


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


def clear_sentence_cache() -> None:
    """Forget the sentence splits computed so far (for latency measured as a new question sees it)."""
    _sentence_spans.cache_clear()


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
