"""Query latency benchmark: p50 / p95 of ``search`` and ``answer`` on warm indexes.

Usage::

    python scripts/bench_query.py                 # demo corpus and ../shared/corpus-real
    python scripts/bench_query.py --skip-real     # demo corpus only
    python scripts/bench_query.py --json          # figures as JSON

Indexes are built (incrementally: a second run reuses them) under ``--cache-dir``
(default ``~/.cache/sscp-rag/bench``); the real corpus takes a few minutes the first time.

"Warm" means the model is loaded and the index is in memory: three warm-up questions, not timed
and not among the timed ones, run first. Then every question is timed twice:

* first pass: each question seen for the first time (query and sentence embeddings computed);
* repeat pass: the same questions again (the per-index query and sentence caches hit).

The machine's cores are shared, so the load average is printed with the figures; compare runs
made under similar load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from sscp_rag.answer import answer
from sscp_rag.embedding import make_encoder
from sscp_rag.encoder import Encoder
from sscp_rag.index import Index, load_index
from sscp_rag.ingest import build_index
from sscp_rag.retrieval import search
from sscp_rag.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "corpus" / "demo"
REAL = ROOT.parent / "shared" / "corpus-real"

WARMUP = [
    "warm up the model",
    "what is this document about?",
    "children's services",
]
QUESTIONS = [
    "what did reviews say about neglect?",
    "How should practitioners respond to disguised compliance?",
    "What is the toxic trio?",
    "What safer sleep advice should parents be given?",
    "Why is the voice of the child important?",
    "What went wrong with information sharing between agencies?",
    "How were fathers involved in assessments?",
    "What did the Child G review find about communication needs?",
    "What happened when the child was excluded from school?",
    "How should agencies support young carers?",
    "what did the 2019 thematic review say about supervision?",
    "What did reviews find about self-harm in adolescents?",
    "What is professional curiosity?",
    "How quickly were children seen after a referral?",
    "What did inspectors say about the quality of social work practice?",
    "How are care leavers supported into accommodation?",
    "What does the guidance say about sharing information without consent?",
    "How well are children with special educational needs supported?",
    "county lines and criminal exploitation of teenagers",
    "What is the recipe for sourdough bread?",
]


def percentiles(values: list[float]) -> dict[str, float]:
    arr = np.array(values)
    return {
        "p50": round(float(np.percentile(arr, 50)) * 1000, 1),
        "p95": round(float(np.percentile(arr, 95)) * 1000, 1),
        "mean": round(statistics.fmean(values) * 1000, 1),
        "max": round(float(arr.max()) * 1000, 1),
        "n": len(values),
    }


def ensure_index(corpus: Path, index_dir: Path, embedder: Encoder, rescore: bool) -> Index:
    settings = Settings.from_env(corpus_dir=corpus, index_dir=index_dir, rescore=rescore or None)
    t0 = time.perf_counter()
    summary = build_index(settings, progress=sys.stderr.isatty(), embedder=embedder)
    what = "up to date" if summary.up_to_date else f"built in {time.perf_counter() - t0:.0f} s"
    print(f"index {index_dir}: {summary.documents} documents, {summary.chunks} chunks ({what})", file=sys.stderr)
    return load_index(settings, embedder=embedder)


def bench(index: Index) -> dict[str, dict[str, float]]:
    for q in WARMUP:
        answer(index, q)
    out: dict[str, dict[str, float]] = {}
    for label in ("first", "repeat"):
        t_search: list[float] = []
        t_answer: list[float] = []
        for q in QUESTIONS:
            t0 = time.perf_counter()
            search(index, q)
            t1 = time.perf_counter()
            answer(index, q)
            t2 = time.perf_counter()
            t_search.append(t1 - t0)
            t_answer.append(t2 - t1)
        out[f"search_{label}"] = percentiles(t_search)
        out[f"answer_{label}"] = percentiles(t_answer)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache-dir", type=Path, default=Path("~/.cache/sscp-rag/bench").expanduser())
    ap.add_argument("--skip-real", action="store_true", help="Only the demo corpus.")
    ap.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    ap.add_argument("--rescore", action="store_true", help="Time with the best-sentence re-score on.")
    args = ap.parse_args()

    load_before = os.getloadavg()
    embedder = make_encoder(Settings.from_env())
    corpora = [("demo", DEMO)]
    if not args.skip_real:
        if REAL.is_dir():
            corpora.append(("corpus-real", REAL))
        else:
            print(f"skipping the real corpus: {REAL} is absent", file=sys.stderr)
    results: dict[str, dict] = {}
    for name, corpus in corpora:
        index = ensure_index(corpus, args.cache_dir / f"{name}-index", embedder, args.rescore)
        results[name] = {"documents": len(index.docs), "chunks": len(index.chunks), **bench(index)}
        index.close()
    results["load_average"] = {
        "before": [round(x, 2) for x in load_before],
        "after": [round(x, 2) for x in os.getloadavg()],
    }
    results["cpu_count"] = os.cpu_count()
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"cores: {os.cpu_count()}; load average before {results['load_average']['before']}, "
        f"after {results['load_average']['after']}"
    )
    mode = "re-score on" if args.rescore else "default settings"
    print(f"{len(QUESTIONS)} questions, each timed in a first and a repeat pass ({mode}; milliseconds)\n")
    print(f"{'corpus':<12} {'docs':>5} {'chunks':>7}  {'what':<16} {'p50':>8} {'p95':>8} {'mean':>8} {'max':>8}")
    for name, _ in corpora:
        r = results[name]
        for key in ("search_first", "search_repeat", "answer_first", "answer_repeat"):
            f = r[key]
            print(
                f"{name:<12} {r['documents']:>5} {r['chunks']:>7}  {key:<16} {f['p50']:>8.1f} {f['p95']:>8.1f} "
                f"{f['mean']:>8.1f} {f['max']:>8.1f}"
            )


if __name__ == "__main__":
    main()
