"""Reports named in a question: "in the Child G review", "the 2019 thematic review".

Chunk text alone rarely says which report it is in, so the query is matched against each report's
metadata (short title, subject pseudonym, distinctive title words, type + year, topic title). The
patterns are built once per loaded index and kept by its :class:`~sscp_rag.retrieval.Retriever`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, NamedTuple

from sscp_rag.index import Index
from sscp_rag.vocabulary import YEAR as _YEAR

if TYPE_CHECKING:
    from sscp_rag.retrieval import Retriever


class NamePattern(NamedTuple):
    """A pattern that names a report, and a lower-case word that every match contains ("": none
    known, the pattern is always tried)."""

    pattern: re.Pattern[str]
    needle: str


def _needle(words: list[str]) -> str:
    # The longest word is the rarest, usually. A word outside ASCII gives none: case-insensitive
    # matching folds some such letters to ASCII ones ("ſ" matches "s").
    word = max(words, key=len, default="")
    return word.lower() if word.isascii() else ""


class NameIndex:
    """Name patterns (per report, in report order) grouped by their needle, so that a question is
    matched only against the patterns whose needle it contains: with thousands of reports, running
    every report's patterns over every question would take most of a search."""

    def __init__(self, patterns: dict[str, list[NamePattern]]):
        self.patterns = patterns
        self._by_needle: dict[str, list[tuple[int, int, str, re.Pattern[str]]]] = {}
        for d, (doc_id, pats) in enumerate(patterns.items()):
            for k, p in enumerate(pats):
                self._by_needle.setdefault(p.needle, []).append((d, k, doc_id, p.pattern))

    def candidates(self, query: str) -> list[tuple[str, re.Pattern[str]]]:
        """(doc id, pattern) of every pattern that may match ``query``, in report and pattern order."""
        low = query.lower()
        # Outside ASCII, case-insensitive matching is not lower-case containment ("K" matches
        # the Kelvin sign): every pattern is tried.
        every = not query.isascii()
        found = [c for needle, group in self._by_needle.items() if every or needle in low for c in group]
        return [(doc_id, p) for _, _, doc_id, p in sorted(found, key=lambda c: (c[0], c[1]))]


def alias_patterns(index: Index) -> dict[str, list[NamePattern]]:
    """Per report, the patterns of the names a question calls it by: short title, subject
    pseudonym and the distinctive title words of :func:`distinctive_title_words`."""
    out: dict[str, list[NamePattern]] = {}
    distinctive = distinctive_title_words(index)
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
            plain = [w for w in re.split(r"[\s,]+", n) if w]
            words = [re.escape(w) for w in plain]
            pattern = re.compile(r"\b" + r"[\s,]+".join(words) + r"(?![\w])", re.IGNORECASE)
            pats.append(NamePattern(pattern, _needle(plain)))
        out[doc_id] = pats
    return out


def distinctive_title_words(index: Index) -> dict[str, list[str]]:
    """Per report, the capitalised words and word pairs of a report title that no other report's
    title has, that at most two reports' texts use, and that are written with their capitals nearly
    everywhere: a place or a name ("Kent", "Bracknell Forest"), by which a question names the
    report. A topic word ("Neglect", "Suicide") is lower case mid-sentence."""
    from collections import Counter

    cap = re.compile(r"[A-Z][a-z]{3,}")
    months = set("January February March April May June July August September October November December".split())
    cands: dict[str, set[str]] = {}
    for doc_id, d in index.docs.items():
        words = re.findall(r"[A-Za-z]+", f"{d.meta.title} {d.meta.short_title}")
        grams = {w for w in words if cap.fullmatch(w) and w not in months}
        cands[doc_id] = grams | {f"{a} {b}" for a, b in zip(words, words[1:]) if {a, b} <= grams}
    owners = Counter(g for grams in cands.values() for g in grams)
    # Only the candidates' own forms (as written, lower and upper case) are counted in the texts:
    # every word and word pair of every report would not fit in memory at archive scale.
    base_of = {form: g for grams in cands.values() for g in grams for form in (g.upper(), g.lower(), g)}
    firsts = {form.split(" ", 1)[0] for form in base_of if " " in form}
    counts: dict[str, Counter[str]] = {}
    users_of: dict[str, list[str]] = {}  # per candidate, the reports whose text uses it (as written or lower case)
    total: Counter[str] = Counter()
    for doc_id, d in index.docs.items():
        words = re.findall(r"[A-Za-z]+", d.text.text)
        c = Counter(w for w in words if w in base_of)
        c.update(f"{a} {b}" for a, b in zip(words, words[1:]) if a in firsts and f"{a} {b}" in base_of)
        counts[doc_id] = c
        total.update(c)
        for g in dict.fromkeys(base_of[form] for form in c if form != base_of[form].upper()):
            users_of.setdefault(g, []).append(doc_id)

    def proper(g: str) -> bool:
        cased = total[g]
        lower = total[g.lower()] + total[g.upper()]
        return cased > 0 and cased >= 0.9 * (cased + lower)

    out: dict[str, list[str]] = {}
    for doc_id, grams in cands.items():
        for g in sorted(grams):
            users = users_of.get(g, [])
            if owners[g] == 1 and len(users) <= 2 and doc_id in users and all(proper(w) for w in g.split()):
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


def topic_patterns(index: Index) -> dict[str, list[NamePattern]]:
    """Per report, a pattern for "the <topic> review" / "the review of <topic>", where <topic> is
    what its short title says beyond the type ("Thematic Review Adolescent Suicide" ->
    "the adolescent suicide review", "7MB Neglect" -> "the 7 minute briefing on neglect")."""
    out: dict[str, list[NamePattern]] = {}
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
        pattern = re.compile(
            rf"\bthe\s+(?:{topic})\s+{noun}\b|\bthe\s+{noun}\s+(?:on|of|about|into)\s+(?:{topic})\b",
            re.IGNORECASE,
        )
        out[doc_id] = [NamePattern(pattern, _needle(words))]
    return out


def report_mentions(r: Retriever, query: str) -> tuple[list[str], list[tuple[int, int]]]:
    """The reports a query names and the character spans that name them.

    In order of preference: a pseudonym or short title ("Child G", "Baby LL", "SCR Family M");
    a type with a year ("the 2019 thematic review"); a topic title ("the adolescent suicide
    review", "the 7 minute briefing on neglect"); or a singular type held by only one report
    ("the SUDI review", "the domestic homicide review"). ``r`` keeps the name patterns of its index.
    """
    index = r.index
    found: list[str] = []
    spans: list[tuple[int, int]] = []

    def collect(names: NameIndex) -> None:
        for doc_id, p in names.candidates(query):
            for m in p.finditer(query):
                spans.append(m.span())
                if doc_id not in found:
                    found.append(doc_id)

    collect(r.aliases())
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
    collect(r.topic_patterns())
    if found:
        return found, spans
    for t, pat in _SINGULAR_TYPE.items():
        m = re.search(rf"\b{pat}\b(?!s)", low)
        if m:
            of_type = [doc_id for doc_id, d in index.docs.items() if d.meta.type == t]
            if len(of_type) == 1:
                return of_type, [m.span()]
    return [], []
