"""The recommendations register: every recommendation a report makes, verbatim, with its pages,
the agency it is addressed to, its themes and its report.

Method (on each document's cleaned text, the text quotes are checked against):

1. **Labelled items** anywhere in the report: "Recommendation 3: The CCG should ..." (the label
   followed by a colon, full stop or dash, or standing alone as a heading). The text runs from
   after the label to the end of its paragraph, or to the next label; a paragraph that ends
   without a full stop (a recommendation cut at a page break, or a line taken for a heading)
   runs on into the next one. "Recommendation 5 was completed ..." is not a label.
2. **Recommendation sections**: a "Recommendations" heading, "What needs to improve?" (Ofsted
   inspections of children's services) or "Areas for priority action" / "Areas for improvement"
   (area SEND inspections). In a section without labelled items:
   - a **table** whose rows hold the recommendations ("No. | Recommendation | Lead agency"): rows
     are found by their numbers 1, 2, 3 ... in order; the lead agency at the end of a row is split
     off by the agency vocabulary below;
   - **bullets** ("◼ The effectiveness of ..."): each top-level bullet with its sub-items;
   - **"should" sentences**: each sentence "<agency> should ..." starts a recommendation and the
     sentences after it that start no other ("This includes ...", "They should ...") belong to it.
   A section ends at the first paragraph that, with the paragraph after it, holds no item.
3. **Summary tables** that restate labelled recommendations (number, subject, lead agency,
   timescale), before or after them, are not recommendations: they give the lead agency of each
   number.

The **agency** is the lead agency of the report's table where it has one, else the subject of
"should" ("The Clinical Commissioning Group should" -> "Clinical Commissioning Group"), else a
"Responsible body" cell before the text; ``None`` where the report does not say (Ofsted's "What
needs to improve?" bullets address the local authority implicitly).

Every recommendation's text is a slice of the cleaned text and is checked, whitespace aside, to be
on the pages it cites (:func:`sscp_rag.answer.verify_quote`); one that is not is dropped. Its
pages come from its own offsets, so one cut at a page break cites both pages.
"""

from __future__ import annotations

import csv
import io
import re
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sscp_rag.chunking import DocText
from sscp_rag.errors import QueryError
from sscp_rag.records import DocumentMeta, content_id, page_label
from sscp_rag.themes import THEME_IDS, resolve_theme, themes_in

_LABEL = re.compile(
    r"(?:(?<=\n\n)|^|(?<=[.;]\s))(?:\d+(?:\.\d+)*\.?\s+)?\*{0,2}Recommendation\s+(\d{1,2})\*{0,2}"
    r"(?:\s*[:\u2013\u2014-]\s*|\.\s+|\s*\n\n)",
    re.IGNORECASE,
)
_SECTION = re.compile(
    r"(?:^|\n\n|(?<=[.!?] ))(?:\d+(?:\.\d+)*\.?\s+)?"
    r"(?P<name>(?:Summary of |Key |Our )?Recommendations|What needs to improve\??"
    r"|Areas for priority action|Areas for improvement)(?=\s*(?:\n\n|$|[A-Z\u25fc\u25aa\u2022]))",
    re.IGNORECASE,
)
_BULLET = "\u25fc\u25aa\u25a0\u2022\u25cf"
_TERMINAL = (".", "!", "?", ";", ")", '"', "\u201d", "\u2019")
# Words that end the name of an agency (and the acronyms that are agencies on their own).
_AGENCY_HEAD = re.compile(
    r"^(?:board|boards|council|councils|group|groups|partnership|partnerships|trust|trusts|services?|team|teams|"
    r"police|authority|authorities|commissioner|commissioners|provider|providers|unit|sub-?group|panel|agencies|"
    r"care|health|hub|leaders|lead|leads|nurse|nursing|visiting|schools|colleges|practices|help|education|cdop|camhs|"
    r"lscb|ccg|icb|mash|marac|nhs|send|cqc|yos|partners|department|office|directorate)\)?$",
    re.IGNORECASE,
)
_ACRONYM_AGENCIES = {"LSCB", "CCG", "ICB", "MASH", "MARAC", "NHS", "CAMHS", "CDOP", "SEND", "YOS", "GP", "DSL", "IDVA"}
_CONNECTORS = {"and", "of", "the", "for", "with", "&", "across", "in"}
_PRONOUN = re.compile(r"^(?:this|these|that|those|they|it|there|we|he|she|which)$", re.IGNORECASE)
_SHOULD = re.compile(r"\bshould\b")
_TABLE_HEAD_WORDS = re.compile(
    r"(?:\b(?:No\.|Recommendation|Subject|Lead agency|Lead|Timescale|Target date|Responsible body)\s*)+$"
)
_TIMESCALE = re.compile(
    r"\s+(?:\d+\s+(?:months?|weeks?)|(?:January|February|March|April|May|June|July|August|September|October|"
    r"November|December)\s+\d{4}|immediate(?:ly)?|ongoing)\s*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Recommendation:
    """One recommendation of one report, verbatim, with its pages and the agency it addresses."""

    id: str  # content hash of the report file and the text
    file: str
    short_title: str
    title: str
    type: str
    year: int | None
    n: int  # its number in the report (or its position in the section's list)
    page_start: int
    page_end: int
    text: str  # whitespace-folded; verbatim (whitespace aside) on its pages
    agency: str | None
    themes: tuple[str, ...]
    kind: str  # "label", "table", "bullet" or "should": how it was found
    section: str = ""

    @property
    def citation(self) -> str:
        """E.g. ``SCR Child D, p. 15``."""
        return f"{self.short_title}, {page_label(self.page_start, self.page_end)}"


@dataclass(frozen=True)
class _Item:
    start: int
    end: int
    n: int
    kind: str
    agency: str | None
    section: str


def _fold(text: str) -> str:
    return " ".join(text.split())


def _trim_end(text: str, start: int, end: int) -> int:
    """``end`` moved back over whitespace and a trailing paragraph number ("... children. 7.3", the
    number of the next item in the same paragraph)."""
    seg = text[start:end]
    seg2 = re.sub(r"\s+\d+(?:\.\d+)+\.?\s*$", "", seg.rstrip())
    return start + len(seg2.rstrip())


def _before(text: str, pos: int) -> str:
    """The text just before ``pos``, trailing whitespace dropped (a bounded look-back: slicing the
    whole prefix of a 600,000-character guidance document for every paragraph would be slow)."""
    return text[max(0, pos - 400) : pos].rstrip()


def _paragraph_end(text: str, pos: int, limit: int) -> int:
    """The end of the paragraph at ``pos``, running on over paragraph breaks that follow text with
    no closing punctuation (a page break or a line taken for a heading)."""
    while True:
        brk = text.find("\n\n", pos, limit)
        if brk < 0:
            return limit
        if _before(text, brk).endswith(_TERMINAL + (":",)):
            return brk
        nxt = text[brk + 2 : brk + 40].lstrip()
        if _LABEL.match(text, brk) or _SECTION.match(text, brk) or re.match(r"\d+\.\s+[A-Z]", nxt):
            return brk
        pos = brk + 2


def _subject(text: str, should_at: int, floor: int) -> int | None:
    """Where the subject of "should" at ``should_at`` starts ("The local area partnership",
    "Children's Services and the housing authority"), or None when it is a pronoun, a clause or
    not an agency-like phrase."""
    words = list(re.finditer(r"\S+", text[floor:should_at]))
    if not words:
        return None
    best = None
    for i in range(len(words) - 1, max(-1, len(words) - 13), -1):
        w = words[i].group(0)
        prev = words[i - 1].group(0) if i > 0 else ""
        if w.endswith((".", ";", ":")) and i != len(words) - 1:
            break
        w = w.rstrip(",")  # a list of agencies: "CAMHS, adult mental health services and ..."
        if not (w[:1].isupper() or w.lstrip("(")[:1].isupper()):
            if w.lower() not in _CONNECTORS and not re.match(r"^[a-z][\w'’-]*$", w):
                break
            continue
        starts_sentence = (
            i == 0
            or prev.endswith((".", ":", ";", "\u25fc"))
            or prev in _BULLET
            or bool(_AGENCY_HEAD.match(prev.strip("(),")))
            or re.match(r"^\d+(?:\.\d+)*\.?$", prev) is not None
        )
        if starts_sentence:
            best = floor + words[i].start()
            break
    if best is None:
        return None
    subject = text[best:should_at].strip()
    first = subject.split()[0] if subject else ""
    if not subject or _PRONOUN.match(first) or len(subject.split()) > 12:
        return None
    if re.search(r"\b(?:that|which|who|if|when|where|whether|because|so|but|what)\b", subject, re.IGNORECASE):
        return None
    return best


def _agency_of_subject(subject: str) -> str:
    s = _fold(subject).strip(" ,:")
    return re.sub(r"^(?:The|the)\s+", "", s)


def _split_agency(row: str) -> tuple[str, str | None]:
    """A table row "Train officers ... mental ill health Surrey Police" split into its text and the
    agency at its end, by the agency vocabulary: the longest tail that starts with a capitalised
    word (not an unknown acronym) after a lower-case word and ends with an agency word."""
    row = _TIMESCALE.sub("", row.rstrip())
    words = row.split()
    if len(words) < 2:
        return row, None
    last = words[-1].strip("(),")
    if not (_AGENCY_HEAD.match(last) or last.upper() in _ACRONYM_AGENCIES or words[-1].endswith(")")):
        return row, None
    for i in range(1, len(words)):
        w = words[i]
        if not w[:1].isupper():
            continue
        if w.isupper() and w.strip("(),") not in _ACRONYM_AGENCIES and len(w) > 1:
            continue
        tail = words[i:]
        if any(t.endswith(",") for t in tail[:-1]):
            continue  # a clause of the text ("... to the MASH, and followed up"), not a name
        # lower-case words sit inside a name ("Mental health trust") but a capitalised word never
        # follows one directly ("... CAMHS pathway Youth Offending Service")
        if any(a[:1].islower() and a.lower() not in _CONNECTORS and b[:1].isupper() for a, b in zip(tail, tail[1:])):
            continue
        head_words = words[:i]
        if not head_words or head_words[-1][:1].isupper() and not head_words[-1].isupper():
            continue  # a capitalised word before: the name started earlier
        if len(tail) > 10:
            continue
        text = " ".join(head_words)
        return text, " ".join(tail)
    return row, None


def _rows(text: str, start: int, end: int) -> list[tuple[int, int, int]]:
    """Numbered rows of a flattened table in text[start:end]: (n, row start, row end), rows
    1, 2, 3 ... in order, each number followed by a capital letter."""
    rows: list[tuple[int, int, int]] = []
    pos, n = start, 1
    while True:
        m = re.compile(rf"(?:(?<=\s)|^){n}\s+(?=[A-Z\"\u201c])").search(text, pos, end)
        if not m:
            break
        if rows:
            rows[-1] = (rows[-1][0], rows[-1][1], m.start())
        rows.append((n, m.end(), end))
        pos, n = m.end(), n + 1
    if rows:  # the last row ends at its paragraph's end
        n_last, a, _ = rows[-1]
        brk = text.find("\n\n", a, end)
        while brk >= 0 and not re.match(r"\n\n\d+(?:\.\d+)*\.?\s", text[brk : brk + 12]):
            brk = text.find("\n\n", brk + 2, end)
        rows[-1] = (n_last, a, brk if brk >= 0 else end)
    return rows if len(rows) >= 2 else []


def _section_spans(text: str) -> list[tuple[str, int, int]]:
    """(name, body start, body limit) of each recommendations section; a body runs at most to the
    next section start."""
    found = [(m.group("name"), m.end()) for m in _SECTION.finditer(text)]
    out = []
    for i, (name, a) in enumerate(found):
        limit = found[i + 1][1] - len(found[i + 1][0]) if i + 1 < len(found) else len(text)
        out.append((name, a, max(a, limit)))
    return out


def _label_items(text: str) -> list[_Item]:
    labels = list(_LABEL.finditer(text))
    items = []
    for i, m in enumerate(labels):
        limit = labels[i + 1].start() if i + 1 < len(labels) else len(text)
        a = m.end()
        while a < limit and text[a] in " \n*":
            a += 1
        end = _paragraph_end(text, a, limit)
        end = _trim_end(text, a, end)
        if end - a < 20:
            continue
        should = _SHOULD.search(text, a, end)
        agency = None
        if should and _subject(text, should.start(), a) == a:
            agency = _agency_of_subject(text[a : should.start()])
        items.append(_Item(a, end, int(m.group(1)), "label", agency, "Recommendation " + m.group(1)))
    return items


def _bullet_items(text: str, a: int, limit: int, section: str) -> list[_Item]:
    """Top-level bullets after ``a``: each runs to the next top-level bullet; the list ends at the
    first paragraph that is neither a bullet nor a sub-item nor the run-on of one."""
    items: list[_Item] = []
    pos = a
    while pos < limit and text[pos] in " \n":
        pos += 1
    cur: int | None = None
    while pos < limit:
        brk = text.find("\n\n", pos, limit)
        para_end = brk if brk >= 0 else limit
        para = text[pos:para_end]
        if para[:1] in _BULLET:
            for m in re.finditer(rf"[{_BULLET}]\s*", para):
                s = pos + m.end()
                if cur is not None:
                    items.append(
                        _Item(cur, _trim_end(text, cur, pos + m.start()), len(items) + 1, "bullet", None, section)
                    )
                cur = s
        elif cur is not None and (
            para[:1] in "-\u2013" or para[:1].islower() or not _before(text, pos).endswith(_TERMINAL)
        ):
            pass  # a sub-item or the run-on of the current bullet
        else:
            break
        if brk < 0:
            pos = limit
            break
        pos = brk + 2
    if cur is not None:
        items.append(
            _Item(cur, _trim_end(text, cur, pos if pos < limit else limit), len(items) + 1, "bullet", None, section)
        )
    return items


def _should_items(text: str, a: int, limit: int, section: str) -> list[_Item]:
    """Recommendations that are "<agency> should ..." sentences, each with the sentences after it
    that start none; the section ends at a paragraph that, with the next one, holds none."""
    starts: list[tuple[int, int]] = []  # (subject start, should start)
    paras = []
    pos = a
    while pos < limit:
        brk = text.find("\n\n", pos, limit)
        paras.append((pos, brk if brk >= 0 else limit))
        if brk < 0:
            break
        pos = brk + 2
    stop = limit
    has = []
    for pa, pb in paras:
        found = []
        for m in _SHOULD.finditer(text, pa, pb):
            s = _subject(text, m.start(), pa)
            if s is not None and (not found or s > found[-1][1]):
                found.append((s, m.start()))
        has.append(found)
    started = False
    for i, (pa, _pb) in enumerate(paras):
        nxt = has[i + 1] if i + 1 < len(has) else []
        continuation = started and (
            text[pa : pa + 1] in _BULLET + "-\u2013"
            or text[pa : pa + 1].islower()
            or not _before(text, pa).endswith(_TERMINAL + (":",))
        )
        if not has[i] and not nxt and not continuation and (started or i >= 2):
            stop = pa
            break
        if has[i]:
            started = True
        starts += has[i]
    items = []
    for j, (s, _sh) in enumerate(starts):
        end = starts[j + 1][0] if j + 1 < len(starts) else stop
        seg = text[s:end]
        # the text ends at its last sentence end; what follows before the next item (a
        # "Responsible body" cell) is not part of it
        last = max(seg.rfind(c) for c in (".", ";", "?", "!"))
        e = s + last + 1 if last > 0 else _trim_end(text, s, end)
        prev_end = items[-1].end if items else a
        cell = _fold(text[prev_end:s])
        cell = re.sub(r"^.*?(?:Responsible body\s+)?Areas for (?:priority action|improvement)\s*", "", cell)
        agency = _agency_of_subject(text[s:_sh])
        if cell and len(cell.split()) <= 20 and _AGENCY_HEAD.match(cell.split()[-1].strip("(),")):
            agency = cell
        items.append(_Item(s, e, len(items) + 1, "should", agency, section))
    return items


def _table_items(text: str, a: int, limit: int, section: str) -> list[_Item]:
    head = re.search(r"\bRecommendation\b[\s\S]{0,40}?\b(?:Lead(?: agency)?|Responsible)\b", text[a:limit])
    if not head:
        return []
    items = []
    for n, ra, rb in _rows(text, a + head.end(), limit):
        row = text[ra:rb]
        body, agency = _split_agency(row)
        rb2 = ra + len(body.rstrip())
        items.append(_Item(ra, rb2, n, "table", agency, section))
    return items


def _table_agencies(text: str, a: int, limit: int) -> dict[int, str]:
    """Lead agency by recommendation number from a summary table in the section."""
    head = re.search(r"\b(?:Lead agency|Lead)\b", text[a:limit])
    if not head:
        return {}
    out = {}
    for n, ra, rb in _rows(text, a + head.start(), limit):
        row = _TABLE_HEAD_WORDS.sub("", _fold(text[ra:rb])).strip()
        _, agency = _split_agency(row)
        if agency is None:  # a table of number, lead agency and date: the row is the agency
            row = _TIMESCALE.sub("", row).strip()
            last = row.split()[-1].strip("(),") if row else ""
            if row[:1].isupper() and len(row.split()) <= 10 and _AGENCY_HEAD.match(last):
                agency = row
        if agency:
            out[n] = agency
    return out


def extract(meta: DocumentMeta, doc: DocText) -> list[Recommendation]:
    """Every recommendation of one document (the method is in the module docstring)."""
    text = doc.text
    labelled = _label_items(text)
    items: list[_Item] = []
    agencies: dict[int, str] = {}
    for name, a, limit in _section_spans(text):
        inside = [it for it in labelled if a <= it.start < limit]
        if inside:  # a summary table may come before the recommendations or after them
            agencies.update(_table_agencies(text, a, inside[0].start))
            agencies.update(_table_agencies(text, inside[-1].end, limit))
            continue
        if name.lower().startswith("what needs"):
            items += _bullet_items(text, a, limit, name)
            continue
        table = _table_items(text, a, limit, name)
        if table:
            items += table
            continue
        items += _should_items(text, a, limit, name)
    # A label outside a section's limit still counts (recommendations after each finding).
    items += labelled
    items.sort(key=lambda it: it.start)
    out: list[Recommendation] = []
    taken: list[tuple[int, int]] = []
    for it in items:
        if any(it.start < b and a < it.end for a, b in taken):
            continue  # found twice (a label inside a section): once is enough
        taken.append((it.start, it.end))
        raw = text[it.start : it.end]
        folded = _fold(raw)
        if len(folded) < 15:
            continue
        p0, p1 = doc.span(it.start, it.end)
        if _fold(folded) not in _fold(_span(doc, p0, p1)):
            continue  # never register a text that is not on the pages it cites
        agency = agencies.get(it.n) if it.kind == "label" and it.n in agencies else it.agency
        out.append(
            Recommendation(
                id=content_id("rec", meta.file, folded),
                file=meta.file,
                short_title=meta.short_title,
                title=meta.title,
                type=meta.type,
                year=meta.year,
                n=it.n,
                page_start=p0,
                page_end=p1,
                text=folded,
                agency=agency or None,
                themes=themes_in(folded),
                kind=it.kind,
                section=it.section,
            )
        )
    return out


def _span(doc: DocText, p0: int, p1: int) -> str:
    start = doc.page_starts[p0 - 1]
    end = doc.page_starts[p1] if p1 < len(doc.page_starts) else len(doc.text)
    return doc.text[start:end]


# The register of each loaded index, built once and freed with the index (kept here rather than
# as a private attribute set on the Index, which this module does not own).
_REGISTERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Index -> list[Recommendation]


def register(index) -> list[Recommendation]:
    """Every recommendation of every indexed report, in report order (built once per loaded index).
    Each is verified on its cited pages with :func:`sscp_rag.answer.verify_quote`."""
    cached = _REGISTERS.get(index)
    if cached is not None:
        return cached
    from sscp_rag.answer import verify_quote

    out: list[Recommendation] = []
    for info in sorted(index.docs.values(), key=lambda d: ((d.meta.year or 0), d.meta.short_title)):
        for r in extract(info.meta, info.text):
            if verify_quote(index, r.file, r.page_start, r.page_end, r.text):
                out.append(r)
    _REGISTERS[index] = out
    return out


@dataclass(frozen=True)
class RecommendationFilters:
    """Register filters; empty fields do not filter."""

    theme: str | None = None
    agency: str | None = None
    year_from: int | None = None
    year_to: int | None = None
    report: str | None = None
    text: str | None = None


# Agency abbreviations reports use, beside the field's own (sscp_rag.vocabulary).
_AGENCY_ABBREVIATIONS = {
    "ccg": ("clinical commissioning group",),
    "icb": ("integrated care board",),
    "lscb": ("local safeguarding children board", "safeguarding children board"),
    "sscp": ("safeguarding children partnership",),
    "la": ("local authority",),
    "csp": ("community safety partnership",),
    "yos": ("youth offending service",),
}


def _agency_forms(query: str) -> list[str]:
    """The agency as typed plus its abbreviation or spelled-out forms ("CCG" and "clinical
    commissioning group"), lower case."""
    from sscp_rag.vocabulary import ABBREVIATIONS

    key = " ".join(query.lower().split())
    if not key:
        return []
    forms = [key]
    for abbr, long in (*_AGENCY_ABBREVIATIONS.items(), *ABBREVIATIONS.items()):
        if key == abbr:
            forms += long
        elif key in long:
            forms.append(abbr)
    return forms


def _names_agency(r: Recommendation, form: str) -> bool:
    """Whether the recommendation's agency, or the subject of its "should", names ``form``."""
    pattern = rf"\b{re.escape(form)}\b"
    should = r.text.lower().find(" should ")
    subject = r.text.lower()[:should] if should > 0 else ""
    return bool(re.search(pattern, (r.agency or "").lower()) or re.search(pattern, subject))


def filter_register(recs: Sequence[Recommendation], f: RecommendationFilters, index=None) -> list[Recommendation]:
    """The recommendations that pass the filters. An unknown theme, an empty year range or an
    unknown report raise QueryError with the valid values."""
    theme = None
    if f.theme:
        theme = resolve_theme(f.theme)
        if theme is None:
            raise QueryError(f"unknown theme {f.theme!r}; use one of: {', '.join(THEME_IDS)}")
    if f.year_from and f.year_to and f.year_from > f.year_to:
        raise QueryError(f"year range {f.year_from}-{f.year_to} is empty")
    report = None
    if f.report and index is not None:
        from sscp_rag.retrieval import resolve_report

        doc_id = resolve_report(index, f.report)
        if doc_id is None:
            raise QueryError(f"unknown report {f.report!r}")
        report = index.docs[doc_id].meta.file
    agency_forms = _agency_forms(f.agency or "")
    words = (f.text or "").strip().lower()
    out = []
    for r in recs:
        if theme and theme not in r.themes:
            continue
        if agency_forms and not any(_names_agency(r, form) for form in agency_forms):
            continue
        if f.year_from and (r.year is None or r.year < f.year_from):
            continue
        if f.year_to and (r.year is None or r.year > f.year_to):
            continue
        if report and r.file != report:
            continue
        if words and words not in r.text.lower():
            continue
        out.append(r)
    return out


def recommendation_to_dict(r: Recommendation) -> dict:
    """The stable JSON shape of one recommendation (docs/json.md)."""
    return {
        "id": r.id,
        "citation": r.citation,
        "file": r.file,
        "short_title": r.short_title,
        "title": r.title,
        "type": r.type,
        "year": r.year,
        "n": r.n,
        "page_start": r.page_start,
        "page_end": r.page_end,
        "agency": r.agency,
        "themes": list(r.themes),
        "text": r.text,
        "kind": r.kind,
    }


CSV_COLUMNS = ("report", "year", "n", "pages", "agency", "themes", "text", "file", "page_start", "page_end", "id")


def register_csv(recs: Iterable[Recommendation]) -> str:
    """The register as CSV (one row per recommendation; themes joined with "; "). Cells that a
    spreadsheet would run as a formula (starting with = + - @) are prefixed with an apostrophe."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for r in recs:
        row = [
            r.short_title,
            r.year or "",
            r.n,
            page_label(r.page_start, r.page_end),
            r.agency or "",
            "; ".join(r.themes),
            r.text,
            r.file,
            r.page_start,
            r.page_end,
            r.id,
        ]
        w.writerow([_csv_safe(c) for c in row])
    return buf.getvalue()


def _csv_safe(value: object) -> object:
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def register_docx(recs: Sequence[Recommendation], title: str = "Recommendations register") -> bytes:
    """The register as a Word document: a table of report, pages, agency, themes and text."""
    from docx import Document

    from sscp_rag.export import xml_safe

    doc = Document()
    doc.add_heading(title, level=1)
    doc.add_paragraph(
        f"{len(recs)} recommendation{'s' if len(recs) != 1 else ''} from "
        f"{len({r.file for r in recs})} report(s), each quoted verbatim from the pages cited."
    )
    table = doc.add_table(rows=1, cols=4)
    table.style = "Table Grid"
    for cell, head in zip(table.rows[0].cells, ("Report and pages", "Agency", "Themes", "Recommendation")):
        cell.text = head
        cell.paragraphs[0].runs[0].bold = True
    for r in recs:
        cells = table.add_row().cells
        cells[0].text = xml_safe(f"{r.citation} (no. {r.n})")
        cells[1].text = xml_safe(r.agency or "-")
        cells[2].text = xml_safe(", ".join(r.themes) or "-")
        cells[3].text = xml_safe(r.text)
    buf = io.BytesIO()
    doc.save(buf)
    return buf.getvalue()


__all__ = [
    "Recommendation",
    "RecommendationFilters",
    "extract",
    "register",
    "filter_register",
    "recommendation_to_dict",
    "register_csv",
    "register_docx",
]


# --------------------------------------------------------------------------------------------
# evaluation against a hand-judged list

MATCH_OVERLAP = 0.8


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower().replace("\u2019", "'"))


def text_overlap(a: str, b: str) -> float:
    """Word overlap of two texts: 2 |common words| / (|a| + |b|) over word multisets (Dice), 1.0
    when they are equal once case, punctuation and whitespace are ignored."""
    wa, wb = _words(a), _words(b)
    if not wa or not wb:
        return 0.0
    if wa == wb:
        return 1.0
    from collections import Counter

    common = sum((Counter(wa) & Counter(wb)).values())
    return 2 * common / (len(wa) + len(wb))


@dataclass(frozen=True)
class RegisterScore:
    """Precision and recall of the register against a judged list, overall and per report."""

    extracted: int
    judged: int
    matched: int
    agency_checked: int
    agency_right: int
    per_report: tuple[dict, ...]
    misses: tuple[dict, ...]  # judged recommendations not found
    extras: tuple[dict, ...]  # extracted recommendations not judged

    @property
    def precision(self) -> float:
        return self.matched / self.extracted if self.extracted else 1.0

    @property
    def recall(self) -> float:
        return self.matched / self.judged if self.judged else 1.0

    @property
    def agency_accuracy(self) -> float:
        return self.agency_right / self.agency_checked if self.agency_checked else 1.0

    def as_dict(self) -> dict:
        return {
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "extracted": self.extracted,
            "judged": self.judged,
            "matched": self.matched,
            "agency_accuracy": round(self.agency_accuracy, 4),
            "agency_checked": self.agency_checked,
            "per_report": list(self.per_report),
            "misses": list(self.misses),
            "extras": list(self.extras),
        }


def _same_agency(a: str | None, b: str | None) -> bool:
    x, y = " ".join(_words(a or "")), " ".join(_words(b or ""))
    x, y = re.sub(r"^the ", "", x), re.sub(r"^the ", "", y)
    return bool(x) and bool(y) and (x in y or y in x)


def score_register(recs: Sequence[Recommendation], judged: Sequence[dict]) -> RegisterScore:
    """Match extracted recommendations to judged ones, report by report, one to one.

    A pair matches when the texts are equal with case, punctuation and whitespace ignored, or
    their word overlap (:func:`text_overlap`) is at least ``MATCH_OVERLAP`` (0.8), and their pages
    intersect. Pairs are taken best overlap first. Only reports in the judged list count
    (a judged line ``{"file": ..., "none": true}`` says a report makes none)."""
    files = list(dict.fromkeys(j["file"] for j in judged))
    by_file: dict[str, list[Recommendation]] = {}
    for r in recs:
        by_file.setdefault(r.file, []).append(r)
    matched = extracted = n_judged = checked = right = 0
    per, misses, extras = [], [], []
    for f in files:
        gold = [j for j in judged if j["file"] == f and not j.get("none")]
        got = by_file.get(f, [])
        pairs = []
        for gi, g in enumerate(gold):
            g0, g1 = (g.get("pages") or [0, 10**6])[:2]
            for ri, r in enumerate(got):
                if r.page_end < g0 or r.page_start > g1:
                    continue
                o = text_overlap(g["text"], r.text)
                if o >= MATCH_OVERLAP:
                    pairs.append((o, gi, ri))
        used_g, used_r = set(), set()
        for _o, gi, ri in sorted(pairs, reverse=True):
            if gi in used_g or ri in used_r:
                continue
            used_g.add(gi)
            used_r.add(ri)
            if gold[gi].get("agency"):
                checked += 1
                right += _same_agency(gold[gi]["agency"], got[ri].agency)
        matched += len(used_g)
        extracted += len(got)
        n_judged += len(gold)
        per.append({"file": f, "judged": len(gold), "extracted": len(got), "matched": len(used_g)})
        misses += [{"file": f, "text": g["text"]} for gi, g in enumerate(gold) if gi not in used_g]
        extras += [
            {"file": f, "text": r.text, "pages": [r.page_start, r.page_end]}
            for ri, r in enumerate(got)
            if ri not in used_r
        ]
    return RegisterScore(extracted, n_judged, matched, checked, right, tuple(per), tuple(misses), tuple(extras))


def load_judged(path, corpus: str | None = None) -> list[dict]:
    """The judged list (JSONL, eval/recommendations.md), optionally one corpus's lines."""
    import json
    from pathlib import Path

    from sscp_rag.errors import EvalError

    p = Path(path)
    if not p.is_file():
        raise EvalError(f"no judged list at {p}")
    out = []
    for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except ValueError as exc:
            raise EvalError(f"{p}:{i}: not JSON ({exc})") from exc
        if not isinstance(d, dict) or "file" not in d or not (d.get("none") or d.get("text")):
            raise EvalError(f"{p}:{i}: a line needs 'file' and 'text' (or 'none': true)")
        if corpus is None or d.get("corpus") == corpus:
            out.append(d)
    return out
