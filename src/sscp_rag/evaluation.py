"""Evaluation: judged question sets, retrieval metrics (ranx) and answer metrics per configuration.

An eval set is a JSONL file, one question per line (format in ``eval/README.md``)::

    {"id": "q01", "question": "...", "relevant": [{"doc": "scr-child-d.pdf", "pages": [3, 4]}],
     "answerable": true}

Each *configuration* is a named set of :class:`Settings` overrides (``CONFIGS``). For every
configuration the questions are searched (and answered), and the hits are scored:

- **document level**: the run ranks documents by their first appearance in the hit list; the
  qrels are the relevant documents.
- **page level**: the qrels are the relevant ``(document, page)`` pairs; each hit is expanded into
  the pages its span covers, in rank order (a page's first occurrence wins), so a hit counts for a
  page when its span overlaps it. The ``@k`` cut-offs count page entries of that expanded list.
- **answers**: abstention precision and recall (the positive class is "abstained"; unanswerable
  questions should abstain) and citation validity (the share of quoted sentences found verbatim on
  the pages they cite).
- **latency**: p50 and p95 of search and of answer, in milliseconds.

Retrieval metrics come from ranx; unanswerable questions have no qrels and are left out of them,
but count for abstention.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import Any

from sscp_rag.errors import EvalError
from sscp_rag.jsonl import JsonLineError, loads_line
from sscp_rag.records import Hit, page_label
from sscp_rag.settings import Settings

RESULTS_VERSION = 1
METRICS: tuple[str, ...] = ("recall@5", "recall@10", "mrr@10", "ndcg@10")
_KEYS = {"id", "question", "relevant", "answerable", "themes", "notes"}
_REQUIRED = ("id", "question", "relevant", "answerable")


# --------------------------------------------------------------------------------------------
# eval sets


@dataclass(frozen=True)
class Judgement:
    """Relevant pages of one document for one question (``grade`` > 0; BEIR qrels may grade)."""

    doc: str
    pages: tuple[int, ...]
    grade: int = 1


@dataclass(frozen=True)
class EvalQuestion:
    """One line of an eval set."""

    id: str
    question: str
    relevant: tuple[Judgement, ...]
    answerable: bool
    themes: tuple[str, ...] = ()
    notes: str = ""
    line: int = 0  # line number in the eval file (1-based), for messages

    @property
    def relevant_docs(self) -> dict[str, int]:
        """Relevant document -> grade."""
        out: dict[str, int] = {}
        for j in self.relevant:
            out[j.doc] = max(out.get(j.doc, 0), j.grade)
        return out

    @property
    def relevant_pages(self) -> dict[str, int]:
        """Relevant page id (see :func:`page_id`) -> grade."""
        out: dict[str, int] = {}
        for j in self.relevant:
            for p in j.pages:
                pid = page_id(j.doc, p)
                out[pid] = max(out.get(pid, 0), j.grade)
        return out


def page_id(doc: str, page: int) -> str:
    """The ranx id of one page of one document."""
    return f"{doc}::p{page}"


def _fail(source: str, line: int, msg: str) -> EvalError:
    return EvalError(f"{source}, line {line}: {msg}")


def parse_question(raw: str, line: int, source: str = "eval set") -> EvalQuestion:
    """Parse and check one JSONL line; raise EvalError naming ``source`` and ``line``."""
    try:
        d = loads_line(raw)
    except json.JSONDecodeError as exc:
        raise _fail(source, line, f"not valid JSON ({exc.msg} at column {exc.colno})") from exc
    except JsonLineError as exc:
        raise _fail(source, line, str(exc)) from exc
    if not isinstance(d, dict):
        raise _fail(source, line, 'expected a JSON object {"id": ..., "question": ..., ...}')
    missing = [k for k in _REQUIRED if k not in d]
    if missing:
        raise _fail(source, line, f"missing field(s): {', '.join(missing)}")
    unknown = sorted(set(d) - _KEYS)
    if unknown:
        raise _fail(source, line, f"unknown field(s): {', '.join(unknown)} (allowed: {', '.join(sorted(_KEYS))})")
    qid, question, relevant, answerable = d["id"], d["question"], d["relevant"], d["answerable"]
    if not isinstance(qid, str) or not qid.strip():
        raise _fail(source, line, '"id" must be a non-empty string')
    if not isinstance(question, str) or not question.strip():
        raise _fail(source, line, '"question" must be a non-empty string')
    if not isinstance(answerable, bool):
        raise _fail(source, line, '"answerable" must be true or false')
    if not isinstance(relevant, list):
        raise _fail(source, line, '"relevant" must be a list of {"doc": ..., "pages": [...]}')
    judgements: list[Judgement] = []
    for i, r in enumerate(relevant, start=1):
        where = f"relevant[{i}]"
        if not isinstance(r, dict) or set(r) != {"doc", "pages"}:
            raise _fail(source, line, f'{where} must be exactly {{"doc": ..., "pages": [...]}}')
        doc, pages = r["doc"], r["pages"]
        if not isinstance(doc, str) or not doc.strip():
            raise _fail(source, line, f"{where}.doc must be a PDF file name relative to the corpus root")
        if (
            not isinstance(pages, list)
            or not pages
            or not all(isinstance(p, int) and not isinstance(p, bool) and p >= 1 for p in pages)
        ):
            raise _fail(source, line, f"{where}.pages must be a non-empty list of page numbers from 1")
        judgements.append(Judgement(doc.strip(), tuple(sorted(set(pages)))))
    if answerable and not judgements:
        raise _fail(source, line, "an answerable question needs at least one relevant document")
    if not answerable and judgements:
        raise _fail(source, line, 'an unanswerable question must have "relevant": []')
    themes = d.get("themes", [])
    if not isinstance(themes, list) or not all(isinstance(t, str) for t in themes):
        raise _fail(source, line, '"themes" must be a list of strings')
    notes = d.get("notes", "")
    if not isinstance(notes, str):
        raise _fail(source, line, '"notes" must be a string')
    return EvalQuestion(qid.strip(), question.strip(), tuple(judgements), answerable, tuple(themes), notes, line)


def parse_eval_set(lines: Iterable[str], source: str = "eval set") -> list[EvalQuestion]:
    """Parse JSONL lines (blank lines are skipped); ids must be unique."""
    questions: list[EvalQuestion] = []
    seen: dict[str, int] = {}
    for n, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        q = parse_question(raw, n, source)
        if q.id in seen:
            raise _fail(source, n, f"duplicate id {q.id!r} (first on line {seen[q.id]})")
        seen[q.id] = n
        questions.append(q)
    if not questions:
        raise EvalError(f"{source} holds no questions")
    return questions


def load_eval_set(path: Path) -> list[EvalQuestion]:
    """Read and check an eval set file; raise EvalError naming the bad line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise EvalError(f"eval set {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalError(f"eval set {path} is unreadable ({exc})") from exc
    # Lines end at "\n" only: str.splitlines() would also cut at U+2028 or U+0085 inside a string.
    return parse_eval_set(text.split("\n"), str(path))


def check_documents(
    questions: Sequence[EvalQuestion], pages_by_doc: Mapping[str, int], source: str = "eval set"
) -> None:
    """Every judged document must be indexed and every judged page must exist.

    ``pages_by_doc`` maps indexed file names (relative to the corpus root) to their page counts.
    """
    for q in questions:
        for j in q.relevant:
            if j.doc not in pages_by_doc:
                close = get_close_matches(j.doc, list(pages_by_doc), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise _fail(source, q.line, f"unknown document {j.doc!r} (not in the index){hint}")
            n = pages_by_doc[j.doc]
            bad = [p for p in j.pages if p > n]
            if bad:
                raise _fail(source, q.line, f"{j.doc} has {n} pages; page {bad[0]} does not exist")


# --------------------------------------------------------------------------------------------
# configurations


@dataclass(frozen=True)
class EvalConfig:
    """A named configuration: Settings overrides on top of the settings in effect."""

    name: str
    description: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    index_variant: str | None = None  # changes the index: built in <index>/eval-variants/<variant>


CONFIGS: dict[str, EvalConfig] = {
    c.name: c
    for c in (
        EvalConfig("bm25", "BM25 only (bm25s)", {"retrieval_mode": "bm25"}),
        EvalConfig("dense", "dense only (all-MiniLM-L6-v2, FAISS)", {"retrieval_mode": "dense"}),
        EvalConfig("hybrid", "the default settings: hybrid, score fusion, named-report boost, merged hits"),
        EvalConfig("hybrid-rrf", "hybrid with reciprocal rank fusion instead of score fusion", {"fusion": "rrf"}),
        EvalConfig("hybrid-noboost", "hybrid without the named-report boost", {"named_report_boost": False}),
        EvalConfig("hybrid-nomerge", "hybrid without merging adjacent chunks", {"merge_adjacent": False}),
        EvalConfig("hybrid-rescore", "hybrid, candidates re-scored by their best-matching sentence", {"rescore": True}),
        EvalConfig(
            "hybrid-expand",
            "hybrid with the field's abbreviations expanded in the BM25 query (HV and health visitor, ...)",
            {"query_expansion": True},
        ),
        EvalConfig(
            "hybrid-zscore",
            "hybrid, score fusion of standard scores (z-score) instead of min-max ones, dense_weight 0.4 "
            "(chosen by leave-one-set-out cross-validation)",
            {"fusion": "zscore", "dense_weight": 0.4},
        ),
        EvalConfig(
            "hybrid-dbsf",
            "hybrid, distribution-based score fusion (mean +- 3 sd mapped to 0..1) instead of min-max, "
            "dense_weight 0.35 (the middle of the cross-validated choices)",
            {"fusion": "dbsf", "dense_weight": 0.35},
        ),
        EvalConfig(
            "hybrid-spread",
            "hybrid, the best passage of each strong report (best passage in the top half of the candidates' "
            "score range) first, ordered by report score (best + 0.5 x mean of the next two), when the "
            "question names no report",
            {"report_spread": 0.5, "report_aggregate": 0.5},
        ),
        EvalConfig(
            "hybrid-maxsim",
            "hybrid, the top 50 fused candidates re-scored by late interaction (MaxSim of the model's token "
            "vectors, weight 0.5)",
            {"late_interaction": 0.5},
        ),
        EvalConfig(
            "hybrid-rm3",
            "hybrid with RM3-style pseudo-relevance feedback in BM25 (5 words from the first 3 BM25 passages, "
            "weight 0.2)",
            {"prf_terms": 5, "prf_docs": 3, "prf_weight": 0.2},
        ),
        EvalConfig(
            "hybrid-simabstain",
            "hybrid answers that decline on the best sentence's similarity alone (the rule before the "
            "answerability model)",
            {"answerability": "similarity"},
        ),
        EvalConfig(
            "hybrid-c200",
            "hybrid on 200-token chunks (overlap 40; the default before 128)",
            {"chunk_tokens": 200, "chunk_overlap": 40},
            index_variant="c200",
        ),
        EvalConfig(
            "hybrid-sections",
            "hybrid on chunks kept within sections (chunk_by_section)",
            {"chunk_by_section": True},
            index_variant="sections",
        ),
        EvalConfig(
            "hybrid-c320",
            "hybrid on 320-token chunks (overlap 64; the model reads 256)",
            {"chunk_tokens": 320, "chunk_overlap": 64},
            index_variant="c320",
        ),
    )
}
DEFAULT_CONFIG = "hybrid"
DEFAULT_CONFIGS: tuple[str, ...] = ("bm25", "dense", "hybrid")


def resolve_configs(spec: str | Sequence[str] | None) -> list[EvalConfig]:
    """Configurations from a comma-separated list of names (``all`` = every preset)."""
    if spec is None:
        names: list[str] = list(DEFAULT_CONFIGS)
    elif isinstance(spec, str):
        names = [n.strip() for n in spec.split(",") if n.strip()]
    else:
        names = [n.strip() for n in spec]
    if names == ["all"]:
        names = list(CONFIGS)
    unknown = [n for n in names if n not in CONFIGS]
    if unknown or not names:
        raise EvalError(
            f"unknown configuration {', '.join(unknown) or '(none)'}; choose from: all, {', '.join(CONFIGS)}"
        )
    return [CONFIGS[n] for n in dict.fromkeys(names)]


def config_settings(base: Settings, cfg: EvalConfig) -> Settings:
    """The settings a configuration runs with. Answers are evaluated extractively (no LLM), and
    a configuration that changes the index gets its own index folder under the base index."""
    s = base.with_overrides(**dict(cfg.overrides), llm_base_url="")
    if cfg.index_variant:
        s = s.with_overrides(index_dir=Path(base.index_dir) / "eval-variants" / cfg.index_variant)
    return s


# --------------------------------------------------------------------------------------------
# metrics


def doc_ranking(hits: Sequence[Hit]) -> list[str]:
    """Documents in order of first appearance in the hit list."""
    return list(dict.fromkeys(h.file for h in hits))


def page_ranking(hits: Sequence[Hit]) -> list[str]:
    """Page ids covered by the hits, in rank order; a page's first occurrence wins."""
    return list(dict.fromkeys(page_id(h.file, p) for h in hits for p in range(h.page_start, h.page_end + 1)))


def ranx_metrics(
    qrels: Mapping[str, Mapping[str, int]], runs: Mapping[str, Sequence[str]], metrics: Sequence[str] = METRICS
) -> tuple[dict[str, float | None], dict[str, dict[str, float]]]:
    """Mean and per-question metrics with ranx.

    ``qrels``: question id -> {relevant id: grade}; ``runs``: question id -> ranked ids (best
    first). Questions without qrels are ignored; a question with no ranked ids scores 0. Returns
    ({metric: mean}, {question id: {metric: value}}); means are None when there are no qrels.
    """
    qrels = {q: dict(r) for q, r in qrels.items() if r}
    if not qrels:
        return {m: None for m in metrics}, {}
    runs = {q: list(dict.fromkeys(runs.get(q, ()))) for q in qrels}
    runs = {q: r for q, r in runs.items() if r}
    if not runs:  # ranx cannot take an empty run; nothing was retrieved, so everything is 0
        return {m: 0.0 for m in metrics}, {q: {m: 0.0 for m in metrics} for q in qrels}
    from ranx import Qrels, Run
    from ranx import evaluate as ranx_evaluate

    # ranx stores ids as numpy '<U{longest id}' arrays and numba compiles its code per such dtype;
    # fixed-width codes keep that compiled code (and numba's on-disk cache) reusable across calls.
    codes: dict[str, str] = {}

    def code(x: str) -> str:
        return codes.setdefault(x, f"{len(codes):012d}")

    qcode = {q: code("q\x1f" + q) for q in qrels}
    ranx_qrels = Qrels({qcode[q]: {code(d): int(g) for d, g in r.items()} for q, r in qrels.items()})
    run = Run({qcode[q]: {code(d): float(len(r) - i) for i, d in enumerate(r)} for q, r in runs.items()})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba type-safety chatter
        means = ranx_evaluate(ranx_qrels, run, list(metrics), make_comparable=True)
    if not isinstance(means, dict):
        means = {metrics[0]: means}
    per_q = {q: {m: float(run.scores[m][qcode[q]]) for m in metrics} for q in qrels}
    return {m: float(means[m]) for m in metrics}, per_q


def abstention_metrics(abstained: Sequence[bool], answerable: Sequence[bool]) -> dict[str, Any]:
    """Abstention as a classifier whose positive class is "abstained" and whose truth is
    "unanswerable". Precision = abstentions that were right; recall = unanswerable questions that
    were abstained on. A ratio with an empty denominator is None."""
    if len(abstained) != len(answerable):
        raise ValueError("abstained and answerable must have the same length")
    tp = sum(1 for a, ok in zip(abstained, answerable) if a and not ok)
    fp = sum(1 for a, ok in zip(abstained, answerable) if a and ok)
    fn = sum(1 for a, ok in zip(abstained, answerable) if not a and not ok)
    tn = sum(1 for a, ok in zip(abstained, answerable) if not a and ok)
    return {
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "abstained": tp + fp,
        "true_abstentions": tp,
        "false_abstentions": fp,
        "missed_abstentions": fn,
        "answered": tn + fn,
        # The share of answerable questions that were wrongly declined.
        "false_abstention_rate": fp / (fp + tn) if fp + tn else None,
    }


def latency_ms(seconds: Sequence[float]) -> dict[str, float] | None:
    """p50 and p95 (linear interpolation) of durations in seconds, as milliseconds."""
    if not seconds:
        return None
    import numpy as np

    p50, p95 = np.percentile(np.asarray(seconds, dtype=float) * 1000.0, [50, 95])
    return {"p50": round(float(p50), 1), "p95": round(float(p95), 1)}


# --------------------------------------------------------------------------------------------
# results


@dataclass
class QuestionResult:
    """What one configuration did with one question."""

    config: str
    id: str
    question: str
    answerable: bool
    hits: list[dict[str, Any]]  # {rank, doc, page_start, page_end, citation}
    first_relevant_doc_rank: int | None = None
    first_relevant_page_rank: int | None = None  # rank of the first hit whose span covers a relevant page
    missed_pages: list[dict[str, Any]] = field(default_factory=list)
    ranked_above: list[dict[str, Any]] = field(default_factory=list)
    document: dict[str, float] | None = None
    page: dict[str, float] | None = None
    abstained: bool | None = None
    decision: str | None = None  # answered, partial or declined
    decision_basis: str | None = None  # model, name, similarity, passages, llm
    # The answerability model's probability; 0 when a rule declined (a name no report mentions,
    # nothing similar enough), so that "declined" is "answerability < threshold" for every question.
    answerability: float | None = None
    quotes: int = 0
    valid_quotes: int = 0
    search_ms: float = 0.0
    answer_ms: float | None = None

    @property
    def citation_validity(self) -> float | None:
        return self.valid_quotes / self.quotes if self.quotes else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "id": self.id,
            "question": self.question,
            "answerable": self.answerable,
            "first_relevant_doc_rank": self.first_relevant_doc_rank,
            "first_relevant_page_rank": self.first_relevant_page_rank,
            "missed_pages": self.missed_pages,
            "ranked_above": self.ranked_above,
            "document": _rounded(self.document),
            "page": _rounded(self.page),
            "abstained": self.abstained,
            "decision": self.decision,
            "decision_basis": self.decision_basis,
            "answerability": _round(self.answerability),
            "quotes": self.quotes,
            "valid_quotes": self.valid_quotes,
            "citation_validity": _round(self.citation_validity),
            "search_ms": round(self.search_ms, 1),
            "answer_ms": None if self.answer_ms is None else round(self.answer_ms, 1),
            "hits": self.hits,
        }


@dataclass
class ConfigResult:
    """The metrics of one configuration over the whole set."""

    name: str
    description: str
    overrides: dict[str, Any]
    index_dir: str
    questions: list[QuestionResult]
    document: dict[str, float | None]
    page: dict[str, float | None] | None
    answers: dict[str, Any] | None
    latency: dict[str, dict[str, float] | None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "overrides": {k: (str(v) if isinstance(v, Path) else v) for k, v in self.overrides.items()},
            "index_dir": self.index_dir,
            "document": _rounded(self.document),
            "page": _rounded(self.page),
            "answers": None
            if self.answers is None
            else {k: (_round(v) if isinstance(v, float) else v) for k, v in self.answers.items()},
            "latency_ms": self.latency,
        }


@dataclass
class EvalRun:
    """A full evaluation: every configuration over one question set."""

    kind: str  # "eval" (a judged PDF corpus) or "beir"
    source: str  # the eval set file or BEIR folder
    corpus: str
    k: int
    n_questions: int
    n_answerable: int
    configs: list[ConfigResult]
    created_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    def config(self, name: str) -> ConfigResult:
        for c in self.configs:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON shape documented in eval/README.md ("Output JSON")."""
        return {
            "version": RESULTS_VERSION,
            "kind": self.kind,
            "source": self.source,
            "corpus": self.corpus,
            "k": self.k,
            "created_at": self.created_at,
            "questions": {
                "total": self.n_questions,
                "answerable": self.n_answerable,
                "unanswerable": self.n_questions - self.n_answerable,
            },
            "metrics": list(METRICS),
            "configs": [c.to_dict() for c in self.configs],
        }

    def per_question(self) -> list[dict[str, Any]]:
        return [q.to_dict() for c in self.configs for q in c.questions]


def _round(v: float | None, nd: int = 4) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), nd)


def _rounded(d: Mapping[str, float | None] | None) -> dict[str, float | None] | None:
    return None if d is None else {k: _round(v) for k, v in d.items()}


# --------------------------------------------------------------------------------------------
# running


def _hit_dict(h: Hit, relevant_docs: Mapping[str, int], relevant_pages: Mapping[str, int]) -> dict[str, Any]:
    pages = range(h.page_start, h.page_end + 1)
    return {
        "rank": h.rank,
        "doc": h.file,
        "page_start": h.page_start,
        "page_end": h.page_end,
        "citation": h.citation,
        "relevant_doc": h.file in relevant_docs,
        "relevant_page": any(page_id(h.file, p) in relevant_pages for p in pages),
    }


def _judge_hits(q: EvalQuestion, hits: Sequence[Hit], result: QuestionResult, page_level: bool) -> None:
    rel_docs, rel_pages = q.relevant_docs, q.relevant_pages
    result.hits = [_hit_dict(h, rel_docs, rel_pages) for h in hits]
    if not q.answerable:
        return
    result.first_relevant_doc_rank = next((h["rank"] for h in result.hits if h["relevant_doc"]), None)
    key = "relevant_page" if page_level else "relevant_doc"
    first = next((h["rank"] for h in result.hits if h[key]), None)
    if page_level:
        result.first_relevant_page_rank = first
        covered = set(page_ranking(hits))
        result.missed_pages = [
            {"doc": j.doc, "page": p} for j in q.relevant for p in j.pages if page_id(j.doc, p) not in covered
        ]
    above = [h for h in result.hits if first is None or h["rank"] < first]
    result.ranked_above = [
        {k: h[k] for k in ("rank", "citation", "doc", "page_start", "page_end", "relevant_doc")} for h in above
    ]


def run_config(
    questions: Sequence[EvalQuestion],
    index: Any,
    settings: Settings,
    cfg: EvalConfig,
    k: int = 10,
    answers: bool = True,
    page_level: bool = True,
    progress: bool = False,
    cold_caches: bool = True,
) -> ConfigResult:
    """Search (and answer) every question with one configuration and score the results.

    With ``cold_caches`` (the default) cached query embeddings are dropped before every timed call
    and all retrieval caches before the configuration starts, so latency is that of new questions;
    without it (faster: e.g. the CI guard) answers reuse the query embedding of the search."""
    from tqdm import tqdm

    from sscp_rag.answer import answer, verify_quote
    from sscp_rag.retrieval import clear_caches, search

    # Warm up (model load, first-call costs) so that latency measures steady-state queries, and
    # start every configuration with cold caches so that none inherits another's work.
    search(index, "warm up query", k=k, settings=settings)
    if cold_caches:
        clear_caches(index, everything=True)
    results: list[QuestionResult] = []
    doc_runs: dict[str, list[str]] = {}
    page_runs: dict[str, list[str]] = {}
    for q in tqdm(questions, desc=f"eval {cfg.name}", unit="q", disable=not progress, leave=False):
        if cold_caches:
            clear_caches(index)
        t0 = time.perf_counter()
        hits = search(index, q.question, k=k, settings=settings)
        r = QuestionResult(cfg.name, q.id, q.question, q.answerable, [], search_ms=(time.perf_counter() - t0) * 1000.0)
        _judge_hits(q, hits, r, page_level)
        doc_runs[q.id] = doc_ranking(hits)
        page_runs[q.id] = page_ranking(hits)
        if answers:
            if cold_caches:
                clear_caches(index)  # a new question: its embedding is not cached yet
            t0 = time.perf_counter()
            a = answer(index, q.question, settings=settings)
            r.answer_ms = (time.perf_counter() - t0) * 1000.0
            r.abstained = a.abstained
            d = a.decision
            if d is not None:
                r.decision, r.decision_basis = d.status, d.basis
                r.answerability = 0.0 if d.declined and d.basis != "model" else d.probability
            by_n = {s.n: s for s in a.sources}
            for quote in a.quotes:
                r.quotes += 1
                src = by_n.get(quote.source)
                if src is not None and verify_quote(index, src.file, src.page_start, src.page_end, quote.text):
                    r.valid_quotes += 1
        results.append(r)

    judged = [q for q in questions if q.answerable]
    doc_means, doc_per_q = ranx_metrics({q.id: q.relevant_docs for q in judged}, doc_runs)
    page_means, page_per_q = (
        ranx_metrics({q.id: q.relevant_pages for q in judged}, page_runs) if page_level else (None, {})
    )
    for r in results:
        r.document = doc_per_q.get(r.id)
        r.page = page_per_q.get(r.id) if page_level else None

    answer_stats = None
    if answers:
        answer_stats = abstention_metrics([bool(r.abstained) for r in results], [r.answerable for r in results])
        answer_stats = {
            "abstention_precision": answer_stats.pop("precision"),
            "abstention_recall": answer_stats.pop("recall"),
            **answer_stats,
        }
        quotes = sum(r.quotes for r in results)
        valid = sum(r.valid_quotes for r in results)
        answer_stats.update(citation_validity=valid / quotes if quotes else None, quotes=quotes, valid_quotes=valid)
        answer_stats["partial"] = sum(1 for r in results if r.decision == "partial")
        answer_stats["threshold"] = settings.answerable_threshold if settings.answerability == "model" else None
    latency = {
        "search": latency_ms([r.search_ms / 1000.0 for r in results]),
        "answer": latency_ms([r.answer_ms / 1000.0 for r in results if r.answer_ms is not None]) if answers else None,
    }
    return ConfigResult(
        cfg.name,
        cfg.description,
        dict(cfg.overrides),
        str(settings.index_dir),
        results,
        doc_means,
        page_means,
        answer_stats,
        latency,
    )


def run_evaluation(
    questions: Sequence[EvalQuestion],
    configs: Sequence[EvalConfig],
    base: Settings,
    open_index: Callable[[Settings], Any],
    k: int = 10,
    answers: bool = True,
    page_level: bool = True,
    kind: str = "eval",
    source: str = "",
    progress: bool = False,
    pages_by_doc: Callable[[Any], Mapping[str, int]] | None = None,
    cold_caches: bool = True,
) -> EvalRun:
    """Run every configuration over ``questions`` (``cold_caches``: see :func:`run_config`).

    ``open_index(settings)`` returns the loaded index for a configuration's settings (building or
    reusing it). Before the first configuration runs, the judged documents are checked against
    that index (``pages_by_doc(index)``, default: its files and page counts).
    """
    if k < 1:
        raise EvalError("--k must be at least 1")
    results: list[ConfigResult] = []
    checked = False
    for cfg in configs:
        s = config_settings(base, cfg)
        index = open_index(s)
        if not checked:
            docs = pages_by_doc(index) if pages_by_doc else {f: d.n_pages for f, d in index.by_file.items()}
            check_documents(questions, docs, source or "eval set")
            checked = True
        results.append(
            run_config(
                questions,
                index,
                s,
                cfg,
                k=k,
                answers=answers,
                page_level=page_level,
                progress=progress,
                cold_caches=cold_caches,
            )
        )
    return EvalRun(
        kind, source, str(base.corpus_dir), k, len(questions), sum(1 for q in questions if q.answerable), results
    )


def corpus_index_opener(embedder: Any = None, progress: bool = False) -> Callable[[Settings], Any]:
    """An ``open_index`` for PDF corpora: build or update (incremental) and load each index once.

    Refuses an index folder that holds an index of another corpus, so an evaluation never
    overwrites an index it was not meant for.
    """
    from sscp_rag.embedding import make_encoder
    from sscp_rag.index import load_index, read_manifest
    from sscp_rag.ingest import build_index

    cache: dict[str, Any] = {}
    shared: list[Any] = [embedder]

    def open_index(s: Settings) -> Any:
        key = str(Path(s.index_dir).resolve())
        if key not in cache:
            manifest = read_manifest(Path(s.index_dir))
            if manifest and Path(manifest.get("corpus_dir", "")).resolve() != Path(s.corpus_dir).resolve():
                raise EvalError(
                    f"the index in {s.index_dir} was built from {manifest.get('corpus_dir')}, not "
                    f"{s.corpus_dir}; pass --index with a separate folder for this corpus"
                )
            if shared[0] is None:
                shared[0] = make_encoder(s)
            build_index(s, progress=progress, embedder=shared[0])
            cache[key] = load_index(s, embedder=shared[0])
        return cache[key]

    return open_index


def evaluate_corpus(
    eval_file: Path,
    settings: Settings,
    configs: Sequence[EvalConfig],
    k: int = 10,
    answers: bool = True,
    progress: bool = False,
    embedder: Any = None,
) -> EvalRun:
    """Load an eval set, build or reuse the index of ``settings.corpus_dir`` and run ``configs``."""
    questions = load_eval_set(eval_file)
    return run_evaluation(
        questions,
        configs,
        settings,
        corpus_index_opener(embedder, progress),
        k=k,
        answers=answers,
        source=str(eval_file),
        progress=progress,
    )


# --------------------------------------------------------------------------------------------
# output


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _short(metric: str) -> str:
    return metric.replace("recall@", "R@").replace("mrr@", "MRR@").replace("ndcg@", "nDCG@")


def table_rows(run: EvalRun) -> tuple[list[str], list[list[str]], list[str], list[list[str]]]:
    """(retrieval headers, rows, answer/latency headers, rows), values formatted."""
    levels = ["document"] + (["page"] if any(c.page is not None for c in run.configs) else [])
    head1 = ["config"] + [f"{lv.replace('document', 'doc')} {_short(m)}" for lv in levels for m in METRICS]
    rows1 = [[c.name] + [_fmt((getattr(c, lv) or {}).get(m)) for lv in levels for m in METRICS] for c in run.configs]
    with_answers = any(c.answers is not None for c in run.configs)
    head2 = ["config"]
    if with_answers:
        head2 += ["abstain P", "abstain R", "false abst", "abstained", "partial", "cite valid", "quotes"]
    head2 += ["search p50 ms", "search p95 ms"]
    if with_answers:
        head2 += ["answer p50 ms", "answer p95 ms"]
    rows2 = []
    for c in run.configs:
        row = [c.name]
        if with_answers:
            a = c.answers or {}
            row += [
                _fmt(a.get("abstention_precision")),
                _fmt(a.get("abstention_recall")),
                _fmt(a.get("false_abstention_rate")),
                _fmt(a.get("abstained")),
                _fmt(a.get("partial")),
                _fmt(a.get("citation_validity")),
                _fmt(a.get("quotes")),
            ]
        row += [_fmt((c.latency.get("search") or {}).get(p), 1) for p in ("p50", "p95")]
        if with_answers:
            row += [_fmt((c.latency.get("answer") or {}).get(p), 1) for p in ("p50", "p95")]
        rows2.append(row)
    return head1, rows1, head2, rows2


def _plain_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def format_table(run: EvalRun) -> str:
    """The terminal report: a retrieval table and an answers/latency table."""
    h1, r1, h2, r2 = table_rows(run)
    head = f"{run.source}: {run.n_questions} questions ({run.n_answerable} answerable), corpus {run.corpus}, k={run.k}"
    return f"{head}\n\n{_plain_table(h1, r1)}\n\n{_plain_table(h2, r2)}"


def to_markdown(run: EvalRun, chart: str | None = "comparison.png", worst: int = 10) -> str:
    """A Markdown summary: tables, definitions and the hardest questions of the default config."""
    h1, r1, h2, r2 = table_rows(run)
    lines = [
        f"# Evaluation: {Path(run.source).name or run.source}",
        "",
        f"- Source: `{run.source}` ({run.kind}); corpus `{run.corpus}`",
        f"- Questions: {run.n_questions} ({run.n_answerable} answerable, "
        f"{run.n_questions - run.n_answerable} unanswerable); hits per question k={run.k}",
        f"- Run at {run.created_at}",
        "",
        "## Retrieval",
        "",
        _md_table(h1, r1),
        "",
        "## Answers and latency",
        "",
        _md_table(h2, r2),
        "",
        "## Configurations",
        "",
    ]
    lines += [f"- `{c.name}`: {c.description}" for c in run.configs]
    if chart:
        lines += ["", f"![comparison]({chart})"]
        if any(c.answers and c.answers.get("threshold") is not None for c in run.configs):
            lines += [
                "",
                "Declined share against the answerability threshold (solid: unanswerable questions, the "
                "abstention recall; dashed: answerable ones, the false-abstention rate; grey: the setting):",
                "",
                "![answerability](answerability.png)",
            ]
    default = next((c for c in run.configs if c.name == DEFAULT_CONFIG), run.configs[0] if run.configs else None)
    if default is not None:
        level = "page" if default.page is not None else "document"
        judged = [q for q in default.questions if getattr(q, level) is not None]
        judged.sort(key=lambda q: (getattr(q, level)["ndcg@10"], q.id))
        lines += ["", f"## Hardest questions for `{default.name}` ({level} nDCG@10)", ""]
        for q in judged[:worst]:
            score = getattr(q, level)["ndcg@10"]
            first = q.first_relevant_page_rank if level == "page" else q.first_relevant_doc_rank
            missed = ", ".join(f"{m['doc']} {page_label(m['page'], m['page'])}" for m in q.missed_pages)
            above = "; ".join(h["citation"] for h in q.ranked_above[:5])
            lines.append(f"- **{q.id}** ({score:.3f}, first relevant at rank {first or '-'}): {q.question}")
            if missed:
                lines.append(f"  - missed: {missed}")
            if above:
                lines.append(f"  - ranked above: {above}")
        wrong = [q for q in default.questions if q.abstained is not None and q.abstained == q.answerable]
        if wrong:
            lines += ["", f"## Abstention mistakes for `{default.name}`", ""]
            lines += [
                f"- **{q.id}** ({'abstained on an answerable' if q.answerable else 'answered an unanswerable'}"
                f" question): {q.question}"
                for q in wrong
            ]
    return "\n".join(lines) + "\n"


def write_chart(run: EvalRun, path: Path) -> Path:
    """A grouped bar chart comparing the configurations (PNG, Agg backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    series: list[tuple[str, list[float]]] = []
    has_page = any(c.page is not None for c in run.configs)
    wanted = (
        [("page", "ndcg@10"), ("document", "ndcg@10"), ("page", "recall@10"), ("document", "recall@10")]
        if has_page
        else [("document", "ndcg@10"), ("document", "recall@10"), ("document", "mrr@10")]
    )
    for level, metric in wanted:
        series.append(
            (f"{level} {_short(metric)}", [float((getattr(c, level) or {}).get(metric) or 0.0) for c in run.configs])
        )
    names = [c.name for c in run.configs]
    fig = Figure(figsize=(max(6.0, 1.3 * len(names) + 2), 4.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series):
        xs = [x + (i - (len(series) - 1) / 2) * width for x in range(len(names))]
        bars = ax.bar(xs, values, width, label=label)
        ax.bar_label(bars, labels=[f"{v:.2f}" for v in values], fontsize=6, padding=1)
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 1.2)
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_ylabel("score")
    ax.set_title(f"{Path(run.source).name or run.source}: configurations compared (k={run.k})", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", ncols=len(series))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    return path


def reliability(results: Sequence[QuestionResult], thresholds: Sequence[float]) -> dict[str, list[float]]:
    """Declined share against the answerability threshold: for unanswerable questions (the
    abstention recall each threshold would give) and for answerable ones (its false-abstention
    rate). Questions without an answerability value are left out."""
    scored = [r for r in results if r.answerability is not None]
    out: dict[str, list[float]] = {"threshold": list(thresholds), "unanswerable": [], "answerable": []}
    for key, want in (("unanswerable", False), ("answerable", True)):
        group = [r.answerability for r in scored if r.answerable == want]
        out[key] = [sum(1 for p in group if p < t) / len(group) if group else float("nan") for t in thresholds]
    return out


def write_reliability_chart(run: EvalRun, path: Path) -> Path | None:
    """Declined share against the threshold, per configuration that uses the answerability model
    (PNG). None when no configuration does."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    configs = [c for c in run.configs if c.answers and c.answers.get("threshold") is not None]
    if not configs:
        return None
    thresholds = [i / 100 for i in range(0, 101)]
    fig = Figure(figsize=(6.5, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for c in configs:
        curve = reliability(c.questions, thresholds)
        ax.plot(thresholds, curve["unanswerable"], label=f"{c.name}: unanswerable declined (recall)")
        ax.plot(thresholds, curve["answerable"], linestyle="--", label=f"{c.name}: answerable declined (false)")
        ax.axvline(c.answers["threshold"], color="grey", linewidth=0.8)
    ax.set_xlabel("answerable_threshold")
    ax.set_ylabel("share declined")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{Path(run.source).name or run.source}: declined share against the threshold", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(Path(path), format="png")
    return Path(path)


def write_report(run: EvalRun, out_dir: Path) -> dict[str, Path]:
    """Write results.json, per_question.jsonl, summary.md, comparison.png and (when a configuration
    uses the answerability model) answerability.png into ``out_dir``."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        paths = {name: out / name for name in ("results.json", "per_question.jsonl", "summary.md", "comparison.png")}
        paths["results.json"].write_text(
            json.dumps(run.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        with paths["per_question.jsonl"].open("w", encoding="utf-8") as fh:
            for rec in run.per_question():
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        paths["summary.md"].write_text(to_markdown(run), encoding="utf-8")
        write_chart(run, paths["comparison.png"])
        chart = write_reliability_chart(run, out / "answerability.png")
        if chart is not None:
            paths["answerability.png"] = chart
    except OSError as exc:
        raise EvalError(f"cannot write the report to {out}: {exc}") from exc
    return paths
