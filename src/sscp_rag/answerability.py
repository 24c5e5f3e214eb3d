"""Answerability: do the indexed reports answer a question, answer part of it, or say nothing?

Similarity alone cannot tell "the page is about this" from "the page says this": a passage on
strategy meetings is very similar to "which agencies were invited to the strategy meeting?"
whether or not it names them. So the decision weighs several kinds of evidence (the features,
documented in docs/answers.md):

- **coverage**: the question's salient words (by stem, by the field's abbreviations and by theme
  synonyms), weighted by how rare they are in the corpus (IDF), found in the best passage, in any
  of the passages, or nowhere in the corpus;
- **similarity**: the best quotable sentence's cosine similarity to the question, and its margin
  over the question's typical similarity to the corpus;
- **agreement** of the BM25 and dense rankings;
- **constraints**: a year named in the question met by the passages' reports or text; a "how
  many" / "what percentage" / "when" question met by a figure or date in the best sentences.

A logistic regression over these features (coefficients in ``answerability_model.json``, fitted by
``scripts/fit_answerability.py`` on the eval sets and reported cross-validated: fitted on one set,
measured on the other) gives the probability that the reports answer the question. Below
``settings.answerable_threshold`` the answer declines, naming the missing words. A question that
names something no indexed report mentions at all (a pseudonym, a place, an acronym, a year) is
declined by name without the model. An answer whose passages leave a rare question word
uncovered is given as a partial answer that says what is not covered.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np

from sscp_rag.encoder import Encoder
from sscp_rag.index import Index
from sscp_rag.records import REVIEW_TYPE_LABELS, Hit
from sscp_rag.retrieval import Retriever, retriever_for
from sscp_rag.text import abbreviation_forms
from sscp_rag.themes import THEMES
from sscp_rag.vocabulary import ABBREVIATIONS, PSEUDONYM, YEAR

FEATURES: tuple[str, ...] = (
    "best_sentence",
    "margin",
    "uncovered_best",
    "uncovered_all",
    "missing",
    "max_uncovered_idf",
    "agreement",
    "constraint_unmet",
    "uncovered_sentence",
    "uncovered_phrase",
    "support",
)
FEATURE_HELP: dict[str, str] = {
    "best_sentence": "cosine similarity of the best quotable sentence of the passages to the question",
    "margin": "that similarity minus the question's mean similarity to a fixed sample of the corpus's passages",
    "uncovered_best": "IDF-weighted share of the question's salient words that the best-covering passage lacks "
    "(among the passages of reports that meet the question's named words)",
    "uncovered_all": "IDF-weighted share of the salient words that none of those passages holds",
    "missing": "IDF-weighted share of the salient words that no indexed passage holds at all",
    "max_uncovered_idf": "the largest normalised IDF (0-1) among the words none of the passages holds",
    "agreement": "overlap of the BM25 and dense top ten passages (0-1)",
    "constraint_unmet": "1 when none of the passages comes from a report that mentions (in its text, title or "
    "year) all the names, acronyms and years the question gives",
    "uncovered_phrase": "IDF-weighted share of the question's two-word phrases ('sexual exploitation', 'private "
    "fostering') whose words no passage holds within three words of each other",
    "uncovered_sentence": "IDF-weighted share of the question's salient words (names aside) that the best-covering "
    "sentence of the passages lacks",
    "support": "how many of the passages found hold at least half of the question's salient words (names aside, "
    "IDF-weighted), out of five: a topic the reviews discuss fills several passages, one named in passing fills one",
}
STATUSES = ("answered", "partial", "declined")

# Words that frame a question rather than say what it is about. Together with the stop words
# below they are never salient.
_FRAME = set(
    """a about above after again against all also am an and any anything are as at be because been
    before being below between both but by can could did do does doing done down during each either
    else ever every few for from further get gets got had has have having he her here hers him his how
    i if in into is it its itself just know known learn learned learning learnt lessons like made make
    many may me might more most much must my no nor not now of off on once only or other our ours out
    over own per please said same say says see seen she should show showed shown so some such tell
    than that the their theirs them then there these they this those through to told too under until
    up us very was we were what whatever when where whether which while who whom whose why will with
    would yes you your yours mention mentioned mentions describe described discuss discussed
    review reviews reviewed report reports reported find found finding findings say conclude concluded
    conclusion conclusions give given gave document documents one ones anyone someone thing things
    happen happened far highlight highlighted identify identified note noted raise raised explain
    explained suggest suggested offer offered outline outlined cover covered address addressed include
    included feature featured deal dealt pick picked think thought ok okay really actually criticise
    criticised criticize criticized praise praised commend commended wasn didn doesn isn aren weren hasn
    haven couldn wouldn shouldn don go goes going went gone take takes taking took taken turn turned come came
    let according finally eventually ultimately especially particularly specifically exactly mainly
    generally incl including eg ie etc approx approximately vs versus""".split()
)
_MONTHS = "january february march april may june july august september october november december".split()
_WEEKDAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
_YEARISH = re.compile(r"\b((?:19|20)\d\d)(?:\s*[/\-]\s*(\d{2,4}))?\b")
_NUMBER_WORDS = set(
    """one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen
    seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand
    million half third quarter twice dozen none single""".split()
)
_NUM = r"(?:\d[\d,.]*|" + "|".join(sorted(_NUMBER_WORDS)) + r")"
# Answer types, as classical question answering types them: what kind of answer the question
# asks for (the question pattern) and what a sentence must hold to give one (the answer pattern).
# "How long" wants a duration, "how much" an amount of money, "which borough" a name, and a
# sentence on the right topic without one does not answer.
_ANSWER_TYPES: tuple[tuple[str, re.Pattern[str], re.Pattern[str]], ...] = tuple(
    (name, re.compile(q, re.IGNORECASE), re.compile(a, re.IGNORECASE if name != "name" else 0))
    for name, q, a in (
        (
            "percentage",
            r"\bwhat\s+(?:percentage|proportion|share|fraction|rate)\b|\bhow\s+many\s+(?:per\s*cent|percent)\b",
            rf"%|\bper\s*cent\b|\bpercent\b|\b(?:half|third|quarter|majority|minority)\b|\b{_NUM}\s+(?:in|out\s+of)\s+{_NUM}\b",
        ),
        (
            "money",
            r"\bhow\s+much\s+(?:extra\s+|more\s+|additional\s+)?(?:money|funding|did\b.*\b(?:cost|spend|pay|fine))"
            r"|\b(?:cost|costs|spend|spent|budget|fine|funding)\b"
            # "How much is the clothing allowance?": an allowance, grant or fee is an amount of money.
            r"|\bhow\s+much\s+(?:is|was|are|were)\b[^?]*\b(?:allowances?|grants?|fees?|salary|salaries|payments?)\b",
            r"£|\$|€|\b\d[\d,.]*\s*(?:k|m|bn|million|thousand|pounds)\b",
        ),
        (
            "duration",
            r"\bhow\s+long\b|\bfor\s+how\s+long\b|\bhow\s+many\s+(?:more\s+)?(?:minutes|hours|days|weeks|months|years)\b",
            # "two-year waits" and "a six-week wait" give a duration as much as "two years" does.
            rf"\b{_NUM}(?:\s+|\s*-\s*)(?:more\s+)?(?:minutes?|hours?|days?|weeks?|months?|years?|terms?)\b|\b(?:weeks|months|years|days)\b",
        ),
        (
            "frequency",
            r"\bhow\s+often\b|\bhow\s+frequently\b",
            # "Used in only 6 of the 30 cases", "in 40% of cases", "rarely": how often, as a share or in words.
            rf"\bevery\b|\beach\b|\bper\b|\b(?:daily|weekly|fortnightly|monthly|annually|yearly|once|twice)\b|\b{_NUM}\s+times\b"
            rf"|%|\bper\s*cent\b|\b{_NUM}\s+(?:of|out\s+of|in)\s+(?:the\s+|them\b|those\b|{_NUM}\b)"
            r"|\b(?:never|rarely|seldom|occasionally|sometimes|regularly|routinely|repeatedly|frequently|often)\b",
        ),
        (
            "age",
            r"\bwhat\s+age\b|\bhow\s+old\b|\bat\s+what\s+age\b",
            # A baby's age is in weeks or months: "until twelve months old", "a six-week-old baby".
            rf"\baged?\s+{_NUM}\b|\b{_NUM}\s*(?:-|\s)?(?:years?|months?|weeks?)\s*(?:-|\s)?old\b|\bunder\s+{_NUM}s?\b"
            rf"|\b(?:until|up\s+to|under|before|from)\s+(?:the\s+(?:age\s+of|baby\s+is|child\s+is)\s+)?{_NUM}\s+(?:years?|months?|weeks?)\b",
        ),
        (
            "date",
            # "When did / was ..." asks for a date; "when can / should / must ..." for the circumstances.
            # A later part asks for a date too: "What did the police find, and when were the searches?"
            r"(?:^\s*|[;?]\s*|\band\s+)when\b(?!\s+(?:can|could|should|must|may|might|would|do|does|is\s+it|are)\b)"
            r"|\bwhat\s+(?:date|year|month)\b|\bwhich\s+(?:date|year|month)\b|\bsince\s+when\b",
            r"\b(?:19|20)\d\d\b|\b(?:" + "|".join(_MONTHS) + r")\b|\b\d{1,2}/\d{1,2}\b",
        ),
        (
            "number",
            r"\bhow\s+many\b|\bwhat\s+(?:number|amount|figure)\b"
            r"|\bwhat\s+(?:was|is|were|are)\s+(?:the|their|its)\s+(?:average|mean|median)\b"
            # "What EPDS score did she have?", "what weight was he?": a score or a measure is a number.
            r"|\bwhat\s+(?:\w+\s+)?(?:score|scores|weight|height|total)\b(?!\s+(?:of|for)\s+(?:concern|improvement))"
            r"|\bhow\s+much\s+did\b[^?]*\bweigh\b"
            r"|\bhow\s+(?:big|large|high|small|low)\b",
            rf"\b{_NUM}\b",
        ),
        # The field's own closed answer sets: an inspection's judgement is one of four grades, and
        # a child protection plan is made under one of four categories.
        (
            "grade",
            r"\b(?:what|which)\s+(?:overall\s+)?(?:judgements?|judgments?|grades?|ratings?)\b",
            # "good" alone is everyday praise ("a consistently good service"); as a grade it is judged.
            r"\b(?:inadequate|requires\s+improvement|outstanding)\b|\b(?:judged|rated|graded)\s+(?:as\s+|to\s+be\s+)?good\b",
        ),
        (
            "category",
            r"\b(?:what|which)\s+categor(?:y|ies)\b",
            r"\b(?:neglect|physical\s+abuse|emotional\s+abuse|sexual\s+abuse|multiple)\b",
        ),
        (
            # What the criminal courts did: "was the father convicted", "what sentence did she
            # receive", "was anyone charged". "Criminal proceedings concluded in March" does not say.
            "outcome",
            r"\bwhat\s+sentences?\b|\b(?:anyone|anybody|either|both)\s+(?:ever\s+)?(?:charged|prosecuted|convicted)\b"
            r"|\b(?:was|were|is|are|has|have|had)\b[^?.;]*\b(?:convicted|prosecuted|charged|sentenced|jailed|imprisoned|"
            r"acquitted|cautioned)\b|\bdid\b[^?.;]*\b(?:convict|prosecute|jail|imprison|acquit)\b",
            r"\b(?:convict\w*|prosecut\w*|charged|charges?|sentenc\w*|jail\w*|prison\w*|imprison\w*|custod\w*|"
            r"acquit\w*|plead\w*|pled|guilty|cautioned|caution)\b",
        ),
        (
            # A name: "which borough", "which charity", "who is the director": a capitalised word
            # or an acronym (not the sentence's first word) that the question does not already give.
            "name",
            # "What did the court decide" asks what was decided, not which court: no verb between.
            r"\b(?:which|what)\s+(?:(?!(?:did|does|do|is|are|was|were|has|have|had|can|could|should|would|will|"
            r"might|must)\b)\w+\s+){0,2}(?:borough|town|city|county|country|charity|company|organisation|"
            r"organization|supplier|provider|product|app|apps|platform|platforms|software|judge|court|hospital|"
            r"language|languages|name|names|tool|tools|framework|programme|scheme)\b|\bwho\s+(?:is|was|were|are)\s+the\b|\bwhat\s+is\s+the\s+name\b",
            # Or a quoted phrase: reports name approaches and tools in quotes ("the 'our child' approach").
            r"(?<![.!?]\s)(?<!^)\b(?:[A-Z][a-z]+|[A-Z]{2,})\b|(?<!\w)['\u2018\"\u201c][^'\u2019\"\u201d\n]{2,60}['\u2019\"\u201d](?!\w)",
        ),
    )
)
_TYPE_WORDS = {
    "percentage": "a percentage",
    "money": "an amount of money",
    "duration": "a length of time",
    "frequency": "how often",
    "age": "an age",
    "date": "a date",
    "number": "a number",
    "grade": "an inspection judgement",
    "outcome": "what the criminal courts did (a charge, a conviction or a sentence)",
    "category": "a category",
    "name": "a name",
}
_TOKEN = re.compile(r"\w\w+")
_HOW_MAGNITUDE = re.compile(
    r"\bhow\s+(big|large|high|low|small|soon|far|severe|serious|bad|quick|quickly|fast|slow|slowly|late|early)\b",
    re.IGNORECASE,
)
SAMPLE_SIZE = 1024
SENTENCES = 5  # the best sentences whose own coverage of the question counts
SUPPORT_PASSAGES = 5
WORD_CACHE_SIZE = 50_000
# A question word counts as covered by a passage word whose embedding is at least this similar
# (all-MiniLM-L6-v2 single words: "extra"/"additional" 0.83, "weakness"/"weak" 0.66, "money"/
# "funding" 0.65; but "sentence"/"court" 0.37, "apps"/"platforms" 0.43, "fgm"/"mutilation" 0.28).
SOFT_COVER = 0.6
_PASSAGE_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]{2,}")
MODEL_FILE = "answerability_model.json"
# A word that none of the quoted passages holds makes an answer partial when its normalised IDF
# is at least this (a word in fewer than about one passage in twenty).
PARTIAL_IDF = 0.45


@functools.lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


def stems(text: str) -> list[str]:
    """Lower-cased, stemmed words of two or more characters (as the BM25 index reads text)."""
    return _stemmer().stemWords([m.group(0) for m in _TOKEN.finditer(text.lower())])


@dataclass(frozen=True)
class Term:
    """A salient word of the question and how the corpus and the passages hold it."""

    text: str  # as written in the question
    start: int  # offset in the question
    alternatives: tuple[tuple[str, ...], ...]  # stem tuples, any of which stands for the word
    themes: tuple[str, ...]  # theme ids whose synonyms stand for the word
    idf: float  # normalised 0-1: 1 = in no passage of the corpus
    named: bool  # a name, acronym, pseudonym or year: declined by name when the corpus lacks it

    @property
    def in_corpus(self) -> bool:
        return self.idf < 1.0


@dataclass(frozen=True)
class Decision:
    """Whether and how far the reports answer a question, and why."""

    status: str  # "answered", "partial" or "declined"
    probability: float  # the model's probability that the reports answer the question
    threshold: float
    reason: str  # one plain sentence for the reader
    missing: tuple[str, ...] = ()  # question words no indexed report holds
    uncovered: tuple[str, ...] = ()  # question words the passages found do not hold
    covered: tuple[str, ...] = ()  # question words the passages hold
    best_similarity: float = 0.0
    features: tuple[tuple[str, float], ...] = field(default=(), repr=False)
    # What decided: "model", "name" (the question names something no report mentions), "type"
    # (it asks for a number, a name, ... that no passage found gives), "similarity" (nothing close
    # enough), "passages" (no quotable passage) or "llm" (the model voted "not stated").
    basis: str = "model"

    @property
    def declined(self) -> bool:
        return self.status == "declined"

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "probability": round(self.probability, 4),
            "threshold": self.threshold,
            "reason": self.reason,
            "missing": list(self.missing),
            "uncovered": list(self.uncovered),
            "covered": list(self.covered),
            "best_similarity": round(self.best_similarity, 4),
            "basis": self.basis,
            "features": {k: round(v, 4) for k, v in self.features},
        }


@dataclass(frozen=True)
class Model:
    """A fitted logistic regression over :data:`FEATURES` (standardised inputs)."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    info: dict[str, Any]

    def probability(self, x: Sequence[float]) -> float:
        z = (np.asarray(x, dtype=np.float64) - self.mean) / self.scale
        return float(1.0 / (1.0 + math.exp(-(float(z @ self.coef) + self.intercept))))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Model:
        if tuple(d["features"]) != FEATURES:
            raise ValueError(f"model features {d['features']} differ from {list(FEATURES)}")
        return cls(
            np.asarray(d["mean"], dtype=np.float64),
            np.asarray(d["scale"], dtype=np.float64),
            np.asarray(d["coef"], dtype=np.float64),
            float(d["intercept"]),
            {k: v for k, v in d.items() if k not in ("mean", "scale", "coef", "intercept")},
        )


@functools.lru_cache(maxsize=1)
def load_model() -> Model:
    """The shipped model (``src/sscp_rag/answerability_model.json``)."""
    text = resources.files("sscp_rag").joinpath(MODEL_FILE).read_text(encoding="utf-8")
    return Model.from_dict(json.loads(text))


class CorpusStats:
    """What the decision needs to know about one loaded index, computed once: passage frequency
    of every stem (from the BM25 index), the themes present, and a sample of passage vectors."""

    def __init__(self, index: Index):
        bm = index.bm25
        indptr = np.asarray(bm.scores["indptr"])
        self.n = max(int(bm.scores["num_docs"]), 1)
        self._df = {
            tok: int(indptr[i + 1] - indptr[i]) if i + 1 < len(indptr) else 0 for tok, i in bm.vocab_dict.items()
        }
        # One pass over the reports' texts (read from the chunk store): per report, the stems of
        # its text and metadata (a question's names and years are checked against the reports the
        # passages come from); every pseudonym any report uses, so that a question naming one is
        # checked with a set look-up; and the words the reports write in lower case.
        self.doc_stems: dict[str, frozenset[str]] = {}
        pseudonyms: set[str] = set()
        lower: Counter[str] = Counter()
        for doc_id, d in index.docs.items():
            text = d.text.text
            head = f"{d.meta.title} {d.meta.short_title} {d.meta.subject}"
            self.doc_stems[doc_id] = frozenset(stems(f"{head} {d.meta.year or ''} {text}"))
            pseudonyms.update(" ".join(m.group(0).split()) for t in (text, head) for m in PSEUDONYM.finditer(t))
            lower.update(re.findall(r"\b[a-z][a-z'\-]+\b", text))
        self.pseudonyms = frozenset(pseudonyms)
        # Words the reports use in lower case at least twice: a capitalised word among them is a
        # title or a role ("Mother", "Court"), not a name.
        self.common_lower = frozenset(w for w, c in lower.items() if c >= 2)
        total = index.faiss.ntotal
        if total:
            rows = np.linspace(0, total - 1, num=min(SAMPLE_SIZE, total)).astype(np.int64)
            self.sample = np.vstack([index.faiss.reconstruct(int(r)) for r in np.unique(rows)])
        else:
            self.sample = np.zeros((0, index.faiss.d), dtype=np.float32)
        self._max_idf = self._idf(0)
        self._words: dict[str, np.ndarray] = {}

    def word_vectors(self, encoder: Encoder, words: Sequence[str]) -> np.ndarray:
        """Embeddings of single words, cached (the same report words come back question after question)."""
        todo = [w for w in dict.fromkeys(words) if w not in self._words]
        if todo:
            if len(self._words) + len(todo) > WORD_CACHE_SIZE:
                self._words.clear()
            self._words.update(zip(todo, encoder.encode_live(todo)))
        if not words:
            return np.zeros((0, self.sample.shape[1]), dtype=np.float32)
        return np.vstack([self._words[w] for w in words])

    def df(self, stem: str) -> int:
        return self._df.get(stem, 0)

    def _idf(self, df: int) -> float:
        return math.log(1.0 + (self.n - df + 0.5) / (df + 0.5))

    def idf(self, alternatives: Sequence[Sequence[str]]) -> float:
        """Normalised IDF of a word given its alternative forms: the commonest form counts (a
        multi-word form is as frequent as its rarest word)."""
        df = max((min(self.df(s) for s in alt) for alt in alternatives if alt), default=0)
        return self._idf(df) / self._max_idf if df else 1.0


def corpus_stats(index: Index | Retriever) -> CorpusStats:
    """The :class:`CorpusStats` of a loaded index, kept by its Retriever (built on first use,
    freed with the index)."""
    return retriever_for(index).derived("answerability", CorpusStats)


@functools.lru_cache(maxsize=1)
def _theme_patterns() -> tuple[tuple[str, re.Pattern[str]], ...]:
    return tuple((t.id, re.compile(r"\b(?:" + "|".join(t.aliases) + r")", re.IGNORECASE)) for t in THEMES)


@functools.lru_cache(maxsize=1)
def _stop_stems() -> frozenset[str]:
    return frozenset(stems(" ".join(_FRAME)))


def question_terms(index: Index | Retriever, question: str, skip: Sequence[tuple[int, int]] = ()) -> list[Term]:
    """The salient words of ``question``: not framing or stop words, not inside ``skip`` spans
    (the words that name a report), each with its alternative forms and corpus IDF."""
    stats = corpus_stats(index)
    stop = _stop_stems()
    theme_spans = [(tid, m.span()) for tid, pat in _theme_patterns() for m in pat.finditer(question)]
    expansion_spans = [(abbr, m.span()) for abbr, pat in abbreviation_forms() for m in pat.finditer(question)]
    named_spans = [m.span() for m in PSEUDONYM.finditer(question)]
    # "2019/20" is one year: its "20" is not a word of its own.
    skip = [*skip, *(m.span(2) for m in _YEARISH.finditer(question) if m.group(2))]
    # "how many", "what percentage": the kind of answer asked for, checked on its own.
    skip = [*skip, *(m.span() for _, pat, _ in _ANSWER_TYPES[:-1] for m in pat.finditer(question))]
    # "How big was the caseload": the answer gives a size ("over 600"), not the word "big".
    skip = [*skip, *(m.span(1) for m in _HOW_MAGNITUDE.finditer(question))]
    terms: list[Term] = []
    for m in _TOKEN.finditer(question):
        a, b = m.span()
        if any(x <= a < y for x, y in skip):
            continue
        word = m.group(0)
        low = word.lower()
        stem = (stems(low) or [low])[0]
        if low in _FRAME or stem in stop:
            continue
        # An adverb no report uses ("finally", "swiftly") says how, not what: the reports' silence
        # on it is no evidence that they do not answer.
        if low.endswith("ly") and len(low) > 4 and not stats.df(stem):
            continue
        alts: list[tuple[str, ...]] = [(stem,)]
        for form in ABBREVIATIONS.get(low, ()):
            alts.append(tuple(s for s in stems(form) if s not in stop))
        alts += [(abbr,) for abbr, (x, y) in expansion_spans if x <= a < y]
        themes = tuple(dict.fromkeys(tid for tid, (x, y) in theme_spans if x <= a < y))
        named = (
            (word[:1].isupper() and a > 0 and not question[:a].rstrip().endswith((".", "?", "!", ":")))
            or (len(word) >= 2 and word.isupper())
            or bool(YEAR.fullmatch(word))
            or any(x <= a < y for x, y in named_spans)
        )
        idf = stats.idf(alts)  # by its own forms only: a theme's other synonyms do not make it present
        terms.append(Term(word, a, tuple(alts), themes, idf, named))
    return terms


def _hit_stems(index: Index, hit: Hit) -> frozenset[str]:
    meta = index.docs[hit.doc_id].meta
    label = REVIEW_TYPE_LABELS.get(meta.type, meta.type)
    return frozenset(stems(f"{meta.title} {meta.short_title} {meta.subject} {meta.year or ''} {label} {hit.text}"))


def _covers(term: Term, hit_stems: frozenset[str], hit_themes: Sequence[str]) -> bool:
    return any(alt and all(s in hit_stems for s in alt) for alt in term.alternatives) or any(
        t in hit_themes for t in term.themes
    )


def _share(terms: Sequence[Term], flags: Sequence[bool]) -> float:
    total = sum(t.idf for t in terms)
    return sum(t.idf for t, f in zip(terms, flags) if f) / total if total > 0 else 0.0


@dataclass(frozen=True)
class Evidence:
    """The features of one question and what they were computed from."""

    terms: tuple[Term, ...]
    covered_any: tuple[bool, ...]  # per term: held by some passage
    values: tuple[float, ...]  # in FEATURES order
    # The kind of answer the question asks for ("number", "name", ...) when no passage gives one.
    unmet_type: str = ""

    def as_pairs(self) -> tuple[tuple[str, float], ...]:
        return tuple(zip(FEATURES, self.values))


def evidence(
    index: Index | Retriever,
    question: str,
    hits: Sequence[Hit],
    qvec: np.ndarray | None,
    sentences: Sequence[str],
    sims: np.ndarray,
    rankings: tuple[dict[int, float], dict[int, float]],
    skip: Sequence[tuple[int, int]] = (),
    sources: Sequence[int] = (),
    before: Sequence[str] = (),
) -> Evidence:
    """The features of :data:`FEATURES` for ``question`` given its ``hits``, the candidate answer
    sentences and their similarities ``sims``, and the dense and BM25 rankings. ``sources``: for
    each sentence, the index in ``hits`` of the passage it comes from; ``before``: for each
    sentence, the sentences before it in its report ("" for none), which the answer-type check
    reads with it ("Mr H pleaded guilty. He was sentenced to eleven years.").

    The question's named words (names, acronyms, years) are its constraints: the content words
    count as covered only in the passages of reports that mention every named word, since
    "overseas recruitment" in Liverpool's report does not answer a question about Kent's."""
    r = retriever_for(index)
    stats = corpus_stats(r)
    terms = question_terms(r, question, skip)
    cover = _coverage(
        r.encoder,
        stats,
        terms,
        [h.text for h in hits],
        [_hit_stems(r.index, h) for h in hits],
        [h.themes for h in hits],
    )
    named = [t for t in terms if t.named]
    meeting = [i for i, h in enumerate(hits) if all(_covers(t, stats.doc_stems[h.doc_id], ()) for t in named)]
    constraint_unmet = bool(named) and not meeting
    pool = meeting if meeting else list(range(len(hits)))
    covered_any = tuple(any(cover[i][j] for i in pool) for j in range(len(terms)))
    best_cover = max((_share(terms, cover[i]) for i in pool), default=0.0)
    uncovered_best = 1.0 - best_cover if terms else 0.0
    uncovered_all = _share(terms, [not c for c in covered_any])
    missing = _share(terms, [not t.in_corpus for t in terms])
    max_unc = max((t.idf for t, c in zip(terms, covered_any) if not c), default=0.0)

    best = float(sims.max()) if len(sims) else 0.0
    base = float((stats.sample @ qvec).mean()) if qvec is not None and len(stats.sample) else 0.0
    dense, bm25 = rankings
    top_d = set(sorted(dense, key=dense.get, reverse=True)[:10])
    top_b = set(sorted(bm25, key=bm25.get, reverse=True)[:10])
    agreement = len(top_d & top_b) / 10.0 if top_d and top_b else 0.0

    # The best sentences themselves: an answer is usually one sentence that holds the question's
    # rare words (or near-synonyms), where a passage on the same topic holds them only in part.
    content = [t for t in terms if not t.named]
    sent_cover = _coverage(
        r.encoder, stats, content, sentences, [frozenset(stems(x)) for x in sentences], [()] * len(sentences)
    )
    sent_share = [_share(content, row) for row in sent_cover]
    uncovered_sentence = 1.0 - max(sent_share, default=0.0) if content else 0.0
    # The answer type is looked for in the most similar sentences and in those that hold most of
    # the question's words; for a question with names, only in passages of reports that mention
    # them: Child B's eleven missing episodes do not say how often YP4 went missing.
    eligible = range(len(sentences))
    if named and meeting and len(sources) == len(sentences):
        allowed = set(meeting)
        eligible = [i for i in eligible if sources[i] in allowed]
    type_share = _type_shares(r.encoder, stats, question, content, sentences, before) if content else sent_share
    by_similarity = sorted(eligible, key=lambda i: -sims[i])[:SENTENCES]
    by_cover = [i for i in sorted(eligible, key=lambda i: -type_share[i])[:SENTENCES] if type_share[i] >= 0.5]
    look = list(dict.fromkeys([*by_similarity, *by_cover]))
    unmet_type = answer_type_unmet(
        question,
        [sentences[i] for i in look],
        [type_share[i] for i in look],
        not content,
        stats.common_lower,
        lambda a, b: stats.word_vectors(r.encoder, a) @ stats.word_vectors(r.encoder, b).T,
    )
    uncovered_phrase = _uncovered_phrases(question, terms, [hits[i].text for i in pool])
    content_idx = [j for j, t in enumerate(terms) if not t.named]
    support = 0.0
    if content_idx:
        shares = [_share([terms[j] for j in content_idx], [row[j] for j in content_idx]) for row in cover]
        support = min(sum(x >= 0.5 for x in shares), SUPPORT_PASSAGES) / SUPPORT_PASSAGES
    values = (
        best,
        best - base,
        uncovered_best,
        uncovered_all,
        missing,
        max_unc,
        agreement,
        float(constraint_unmet),
        uncovered_sentence,
        uncovered_phrase,
        support,
    )
    return Evidence(tuple(terms), covered_any, values, unmet_type)


# "What have inspections found about how long children wait?" asks what they found: a typed
# phrase after "about", "on", "regarding" or "into" names the topic, not the kind of answer.
_EMBEDDED = re.compile(r"\b(?:about|on|regarding|into|of)\s*$", re.IGNORECASE)


def _typed_matches(question: str, pattern: re.Pattern[str]) -> list[re.Match[str]]:
    return [m for m in pattern.finditer(question) if not _EMBEDDED.search(question[: m.start()])]


# A sentence that opens with a pronoun continues the one before ("He was sentenced to ..."); any
# other sentence says what it is about itself, and reading its neighbours into it would let "they
# had been waiting 22 weeks" (for CAMHS) answer how long a child waited for another service.
_FOLLOWS_ON = re.compile(r"(?:He|She|They|It|His|Her|Their|Its|This|These|Those)\b")


def follows_on(sentence: str) -> bool:
    """Whether ``sentence`` opens with a pronoun, so that the answer-type check reads it with the
    sentences before it (for a question that asks for a type of answer: :func:`answer_types`)."""
    return bool(_FOLLOWS_ON.match(sentence))


def _type_shares(
    encoder: Encoder,
    stats: CorpusStats,
    question: str,
    content: Sequence[Term],
    sentences: Sequence[str],
    before: Sequence[str],
) -> list[float]:
    """Per sentence, the share of the typed clause's words (see :func:`typed_clause`) that the
    sentence holds, read with the sentences before it when it opens with a pronoun
    (:func:`follows_on`): a figure answers what its sentence, or the ones it follows on from ("He
    was sentenced to ..."), are about."""
    if not answer_types(question):
        return [0.0] * len(sentences)
    a, b = typed_clause(question)
    clause = [t for t in content if a <= t.start < b] or list(content)
    texts = [
        f"{before[i]} {x}" if i < len(before) and before[i] and follows_on(x) else x for i, x in enumerate(sentences)
    ]
    rows = _coverage(encoder, stats, clause, texts, [frozenset(stems(x)) for x in texts], [()] * len(texts))
    return [_share(clause, row) for row in rows]


def answer_types(question: str) -> list[str]:
    """The kinds of answer a question asks for ("duration", "money", "name", ...), most specific first."""
    return [name for name, q, _ in _ANSWER_TYPES if _typed_matches(question, q)]


# Where a clause of a question ends: a statement before " - " or ": " ("West Sussex said ... -
# how many ...") sets the scene; the typed clause says what the answer must be about.
_CLAUSE_END = re.compile(r"[.;:!?]\s|\s[-\u2013\u2014]\s|,\s+(?:and|but)\s")


def typed_clause(question: str) -> tuple[int, int]:
    """(start, end) of the clause that holds the question's answer-type phrase ("how many ...",
    "when did ..."); the whole question when it asks for no type."""
    types = answer_types(question)
    if not types:
        return 0, len(question)
    pat = next(q for name, q, _ in _ANSWER_TYPES if name == types[0])
    at = _typed_matches(question, pat)[0].start()
    start = max((m.end() for m in _CLAUSE_END.finditer(question) if m.end() <= at), default=0)
    end = min((m.start() for m in _CLAUSE_END.finditer(question) if m.start() >= at), default=len(question))
    return start, end


# Words that end the noun phrase a "how many" asks about: "how many practitioners came ...",
# "how many children in the county ..."
_PHRASE_END = frozenset(
    """did do does were was are is have has had be been being can could will would should may might
    in on at for of to by with from when that who which whose where while after before during about
    over under came went got per""".split()
)
_INITIALS_SKIP = frozenset("of and for the to in on at a an".split())
# Words after a number within which the thing counted must come ("4,260 Operation Encompass
# notifications").
FOCUS_WINDOW = 4


_UNIT_COUNT = re.compile(
    r"\bhow\s+many\s+(?:more\s+|working\s+|calendar\s+)?(minutes|hours|days|weeks|months|years|terms)\b", re.I
)


def _years(text: str) -> set[str]:
    """The first year of each year or year range in ``text`` ("2019/20" -> "2019")."""
    return {m.group(1) for m in _YEARISH.finditer(text)}


def _count_focus(question: str) -> list[str]:
    """The words of the noun phrase a "how many" question counts: the words after "how many" (or
    "what number of", "the average") up to the verb or preposition that ends the phrase ("how many
    Operation Encompass notifications did ..." -> operation, encompass, notifications); for "what
    EPDS score", the score's words."""
    m = re.search(
        r"\bhow\s+many\s+|\bwhat\s+number\s+of\s+|\b(?:average|mean|median)\s+(?:number\s+of\s+)?",
        question,
        re.IGNORECASE,
    )
    if not m:
        # "What EPDS score": the score is what the figure must come with ("an EPDS score of 14").
        score = re.search(r"\bwhat\s+((?:\w+\s+)?(?:score|scores))\b", question, re.IGNORECASE)
        return score.group(1).lower().split() if score else []
    out: list[str] = []
    for w in re.finditer(r"[A-Za-z][\w'\-]*", question[m.end() :]):
        low = w.group(0).lower()
        if low in _PHRASE_END or len(out) >= 4:
            break
        out.append(low)
    return out


def _initials(question: str) -> str:
    return "".join(w[0] for w in re.findall(r"[A-Za-z][\w'\-]*", question.lower()) if w not in _INITIALS_SKIP)


def _is_new_name(word: str, initials: str, given: set[str], common_lower: frozenset[str]) -> bool:
    """Whether a capitalised word or acronym in a sentence is a name the question does not already
    give: not a month or weekday, not a word of the question or an acronym of its words ("DCS"
    for "director of children's services") or one of the field's abbreviations, and not a common
    word capitalised as a title or a role ("Mother", "Court", "Department"), which a proper name
    seldom is in lower case. ``initials``: the first letters of the question's words."""
    if word[:1] in "'\u2018\"\u201c":
        # A quoted phrase names something new when it holds a word the question does not, and is
        # short: "the 'our child' approach" names one; "to get him away from it" is quoted speech.
        words = re.findall(r"\w+", word.lower())
        return len(words) <= 4 and any(w not in given for w in words)
    low = word.lower()
    if low in given or low in _MONTHS or low in _WEEKDAYS:
        return False
    if word.isupper():
        # The field's own abbreviations (SCR, MASH, GP) name kinds of things, not a particular one.
        return low not in initials and low not in ABBREVIATIONS
    return low not in common_lower


def answer_type_unmet(
    question: str,
    sentences: Sequence[str],
    shares: Sequence[float],
    no_content: bool,
    common_lower: frozenset[str] = frozenset(),
    similar: Callable[[Sequence[str], Sequence[str]], np.ndarray] | None = None,
) -> str:
    """The answer type the question asks for that none of ``sentences`` gives together with some
    of the question's words (``shares``: their covered share of the question's words); "" when
    met or when the question asks for no particular type.

    A sentence that dates itself to other years than the question's does not answer it (a
    figure for 2020/21 is not the figure for 2019/20). A count must count the thing asked about:
    the number comes just before a word of the counted phrase (by stem, or by ``similar``, the
    word-embedding similarity), so "six agencies" does not answer "how many practitioners". A
    name must be new: ``common_lower`` holds the words the corpus uses in lower case."""
    types = answer_types(question)
    if not types:
        return ""
    name, _, pat = next(t for t in _ANSWER_TYPES if t[0] == types[0])
    given = set(re.findall(r"\w+", question.lower()))
    q_years = _years(question)
    focus = _count_focus(question) if name == "number" else []
    # "How many hours ..." asks for a number of hours: "every two years" or "for many months" give
    # a length of time, but not the one counted.
    unit = _UNIT_COUNT.search(question) if name == "duration" else None
    if unit:
        pat = re.compile(
            rf"\b{_NUM}(?:\s+|\s*-\s*)(?:more\s+|working\s+|calendar\s+)?{unit.group(1)[:-1]}s?\b", re.IGNORECASE
        )
    initials = _initials(question) if name == "name" else ""
    person = name == "name" and bool(re.search(r"\bwho\b", question, re.IGNORECASE))
    # An average or a score may name what it measures before the figure ("caseloads averaged 27").
    named_before = bool(re.search(r"\b(?:average|mean|median|score|scores)\b", question, re.IGNORECASE))
    for text, share in zip(sentences, shares):
        if share < 0.3 and not no_content:
            continue
        s_years = _years(text)
        if q_years and s_years and not (q_years & s_years):
            continue
        for m in pat.finditer(text):
            if name == "name" and not _is_new_name(m.group(0), initials, given, common_lower):
                continue
            if name == "name" and person and m.group(0).isupper():
                continue  # "Who is the interim DCS?" asks for a person: "CEO" is a role
            if name == "number" and _not_a_count(text, m):
                continue
            if focus and not _counts(text[m.end() :], focus, similar):
                if not (named_before and _counts(" ".join(text[: m.start()].split()[-3:]), focus, similar)):
                    continue
            return ""
    return name


# A number that is part of a date ("6 December 2016", "in 2019") or names a part of a document or
# a school year ("Recommendation 7", "section 17", "Year 10") counts nothing.
_MONTH_AFTER = re.compile(r"^\s*(?:" + "|".join(_MONTHS) + r")\b", re.IGNORECASE)
_MONTH_BEFORE = re.compile(r"\b(?:" + "|".join(_MONTHS) + r")\s*$", re.IGNORECASE)
_LABEL_BEFORE = re.compile(
    r"\b(?:recommendations?|findings?|sections?|paragraphs?|paras?|year|appendix|annex|table|pages?|"
    r"figure|chapter|part|stage|key\s+stage|tier|level|step|phase|article|schedule|regulation|rule|standard|"
    r"priority|area|question|episode|case|child|infant|young\s+person|yp|mr|ms|mrs|dr)\.?\s*$",
    re.IGNORECASE,
)


def _not_a_count(text: str, m: re.Match[str]) -> bool:
    """Whether the number ``m`` in ``text`` is a year, part of a date or a label, not a count."""
    word = m.group(0)
    if YEAR.fullmatch(word):
        return True
    before, after = text[: m.start()], text[m.end() :]
    if word.lower() in _NUMBER_WORDS and re.search(r"\d\s*$", before):
        return True  # "million" in "1.4 million": the figure before it was the number
    return bool(_MONTH_AFTER.match(after) or _MONTH_BEFORE.search(before) or _LABEL_BEFORE.search(before))


def _counts(after: str, focus: Sequence[str], similar) -> bool:
    """Whether a word of the counted phrase comes within ``FOCUS_WINDOW`` words after a number."""
    # The counted phrase ends at punctuation or a conjunction: "six agencies, and a practitioner
    # learning event" counts agencies, not practitioners.
    after = re.split(r"[,;:.!?()]|\b(?:and|or|but)\b", after, maxsplit=1)[0]
    words = re.findall(r"[A-Za-z][\w'\-]*", after)[:FOCUS_WINDOW]
    if not words:
        return False
    focus_stems = {st for f in focus for st in stems(f)}
    if any(st in focus_stems for w in words for st in stems(w.lower())):
        return True
    return similar is not None and bool((similar(focus, [w.lower() for w in words]) >= SOFT_COVER).any())


PHRASE_WINDOW = 3


def _uncovered_phrases(question: str, terms: Sequence[Term], texts: Sequence[str]) -> float:
    """IDF-weighted share of the question's two-word phrases (neighbouring salient words, such as
    "sexual exploitation" or "children's homes") that no text holds within ``PHRASE_WINDOW``
    words of each other, in either order. A topic named by a phrase is not covered by passages
    that hold its words apart ("sexual abuse" here, "criminal exploitation" there)."""
    pairs = []
    for t1, t2 in zip(terms, terms[1:]):
        gap = question[t1.start + len(t1.text) : t2.start]
        if not t1.named and not t2.named and re.fullmatch(r"[\s\-/]*(?:'s\s+)?", gap):
            pairs.append((t1, t2))
    if not pairs:
        return 0.0
    seqs = [stems(text) for text in texts]
    positions = []
    for seq in seqs:
        pos: dict[str, list[int]] = {}
        for i, st in enumerate(seq):
            pos.setdefault(st, []).append(i)
        positions.append(pos)

    def near(a: Term, b: Term) -> bool:
        sa = [alt[0] for alt in a.alternatives if len(alt) == 1]
        sb = [alt[0] for alt in b.alternatives if len(alt) == 1]
        for pos in positions:
            xs = [i for s in sa for i in pos.get(s, ())]
            ys = [i for s in sb for i in pos.get(s, ())]
            if any(abs(x - y) <= PHRASE_WINDOW for x in xs for y in ys):
                return True
        return False

    total = sum(a.idf + b.idf for a, b in pairs)
    missing = sum(a.idf + b.idf for a, b in pairs if not near(a, b))
    return missing / total if total > 0 else 0.0


def _coverage(
    encoder: Encoder,
    stats: CorpusStats,
    terms: Sequence[Term],
    texts: Sequence[str],
    text_stems: Sequence[frozenset[str]],
    text_themes: Sequence[Sequence[str]],
) -> list[list[bool]]:
    """Per text, per term: whether the text holds the term, literally (by stem, abbreviation or
    theme synonym) or by a near-synonym (``SOFT_COVER``), so a paraphrase ("weakness" for "weak",
    "extra money" for "additional funding") is not taken for a gap. Only terms some text lacks
    literally are compared by embedding, and never names, which must be present as written."""
    cover = [[_covers(t, st, th) for t in terms] for st, th in zip(text_stems, text_themes)]
    todo = [j for j, t in enumerate(terms) if not all(row[j] for row in cover) and not t.named]
    if not todo or not texts:
        return cover
    words = [
        [w for w in dict.fromkeys(m.group(0).lower() for m in _PASSAGE_WORD.finditer(text)) if w not in _FRAME]
        for text in texts
    ]
    vocab = list(dict.fromkeys(w for ws in words for w in ws))
    if not vocab:
        return cover
    pos = {w: i for i, w in enumerate(vocab)}
    sims = stats.word_vectors(encoder, [terms[j].text.lower() for j in todo]) @ stats.word_vectors(encoder, vocab).T
    for i, ws in enumerate(words):
        if not ws:
            continue
        best = sims[:, [pos[w] for w in ws]].max(axis=1)
        for k, j in enumerate(todo):
            cover[i][j] = cover[i][j] or bool(best[k] >= SOFT_COVER)
    return cover


def _phrases(terms: Sequence[Term], flags: Sequence[bool], question: str) -> tuple[str, ...]:
    """The flagged terms as phrases: neighbouring flagged words of the question run together."""
    out: list[str] = []
    prev_end = -10
    for t, f in zip(terms, flags):
        if not f:
            prev_end = -10
            continue
        gap = question[prev_end : t.start] if prev_end >= 0 else ""
        if out and prev_end >= 0 and re.fullmatch(r"[\s\-/]*", gap):
            out[-1] = out[-1] + gap + t.text
        else:
            out.append(t.text)
        prev_end = t.start + len(t.text)
    return tuple(dict.fromkeys(out))


def _quoted(items: Sequence[str]) -> str:
    q = [f"\u2018{x}\u2019" for x in items]
    return q[0] if len(q) == 1 else ", ".join(q[:-1]) + " or " + q[-1]


def decide(ev: Evidence, question: str, threshold: float, model: Model | None = None) -> Decision:
    """Turn evidence into a decision: declined by name, declined by the model, partial or answered."""
    model = model or load_model()
    terms, covered = ev.terms, ev.covered_any
    feats = ev.as_pairs()
    best = ev.values[0]
    names_missing = _phrases(terms, [t.named and not t.in_corpus for t in terms], question)
    missing = _phrases(terms, [not t.in_corpus for t in terms], question)
    uncovered = _phrases(terms, [not c for c in covered], question)
    covered_ph = _phrases(terms, list(covered), question)
    common = {"missing": missing, "uncovered": uncovered, "covered": covered_ph, "best_similarity": best}
    if names_missing:
        reason = f"No indexed report mentions {_quoted(names_missing)}, so the reviews cannot answer this question."
        return Decision("declined", 0.0, threshold, reason, features=feats, basis="name", **common)
    if ev.unmet_type:
        # A typed question ("how many", "which borough") whose passages give no answer of that
        # type is declined whatever the model says: on-topic passages without the figure or the
        # name are exactly the tempting near-miss a practitioner must not be shown as an answer.
        reason = (
            f"The indexed reviews do not appear to answer this question: it asks for {_TYPE_WORDS[ev.unmet_type]}, "
            "and none of the passages found gives one for what it asks."
        )
        return Decision("declined", 0.0, threshold, reason, features=feats, basis="type", **common)
    content = [c for t, c in zip(terms, covered) if not t.named]
    if content and not any(content):
        # Not one of the words the question asks about is in the passages found (the named report's
        # passages, when it names one): whatever they say, they say it about something else.
        reason = (
            "The indexed reviews do not appear to answer this question: the passages found do not mention "
            f"{_quoted(uncovered)}."
        )
        return Decision("declined", 0.0, threshold, reason, features=feats, basis="passages", **common)
    p = model.probability(ev.values)
    if p < threshold:
        if uncovered:
            why = f"the passages found do not mention {_quoted(uncovered)}"
        elif ev.values[7]:
            why = "no report found holds all the names and years it gives"
        else:
            why = f"the closest sentences are only loosely related (best similarity {best:.2f})"
        reason = f"The indexed reviews do not appear to answer this question: {why}."
        return Decision("declined", p, threshold, reason, features=feats, **common)
    gaps = [not c and t.idf >= PARTIAL_IDF for t, c in zip(terms, covered)]
    if any(gaps):
        gap = _phrases(terms, gaps, question)
        if covered_ph:
            topics = _quoted(covered_ph).replace(" or ", " and ")
            reason = f"The reviews discuss {topics}, but the passages found do not mention {_quoted(gap)}."
        else:
            reason = f"The passages found do not mention {_quoted(gap)}; they may answer only part of the question."
        return Decision("partial", p, threshold, reason, features=feats, **{**common, "uncovered": gap})
    return Decision("answered", p, threshold, "The passages found cover the question.", features=feats, **common)
