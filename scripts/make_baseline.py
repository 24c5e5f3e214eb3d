"""Write eval/reports/baseline.json and baseline.md from a full run of every configuration on the
eval sets (eval/demo.jsonl, eval/fresh-demo.jsonl and eval/blind-demo.jsonl over corpus/demo;
eval/real.jsonl, eval/fresh-real.jsonl and eval/blind-real.jsonl over ../shared/corpus-real).

The run uses the built-in default settings (SSCP_RAG_* environment variables are ignored), so the
"hybrid" entry is what tests/test_eval_guard.py compares against. Indexes are built (or reused) in
--work (default: index/eval-baseline/<corpus>; chunk-size variants under <corpus>/eval-variants/).

    python scripts/make_baseline.py                     # all six sets, all configurations
    python scripts/make_baseline.py --sets demo --configs bm25,dense,hybrid --no-reports
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# set name: (eval file, corpus, index folder under --work). Sets over one corpus share its index.
SETS = {
    "demo": (ROOT / "eval" / "demo.jsonl", ROOT / "corpus" / "demo", "demo"),
    "real": (ROOT / "eval" / "real.jsonl", ROOT.parent / "shared" / "corpus-real", "real"),
    "fresh-demo": (ROOT / "eval" / "fresh-demo.jsonl", ROOT / "corpus" / "demo", "demo"),
    "fresh-real": (ROOT / "eval" / "fresh-real.jsonl", ROOT.parent / "shared" / "corpus-real", "real"),
    "blind-demo": (ROOT / "eval" / "blind-demo.jsonl", ROOT / "corpus" / "demo", "demo"),
    "blind-real": (ROOT / "eval" / "blind-real.jsonl", ROOT.parent / "shared" / "corpus-real", "real"),
}


def main(argv: list[str] | None = None) -> int:
    from sscp_rag.embedding import make_encoder
    from sscp_rag.errors import SscpRagError
    from sscp_rag.evaluation import DEFAULT_CONFIG, evaluate_corpus, resolve_configs, table_rows, write_report
    from sscp_rag.evaluation import _md_table as md_table
    from sscp_rag.settings import Settings

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default=",".join(SETS), help=f"Comma-separated sets: {', '.join(SETS)} [default: all].")
    ap.add_argument("--configs", default="all", help="Configurations [default: all].")
    ap.add_argument("--k", type=int, default=10, help="Hits per question [default: 10].")
    ap.add_argument("--work", type=Path, default=ROOT / "index" / "eval-baseline", help="Index folder root.")
    ap.add_argument("--out", type=Path, default=ROOT / "eval" / "reports", help="Where baseline.* go.")
    ap.add_argument(
        "--no-reports",
        action="store_true",
        help="Do not write the per-set report folders (<out>/<set>/: per-question results, chart).",
    )
    args = ap.parse_args(argv)

    names = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = [n for n in names if n not in SETS]
    if unknown or not names:
        ap.error(f"unknown set(s) {unknown}; choose from {', '.join(SETS)}")
    try:
        configs = resolve_configs(args.configs)
        embedder = None
        sets: dict[str, dict] = {}
        runs = {}
        for name in names:
            eval_file, corpus, index_name = SETS[name]
            if not eval_file.is_file():
                raise SscpRagError(f"{eval_file} does not exist")
            if not corpus.is_dir():
                raise SscpRagError(f"corpus {corpus} does not exist")
            settings = Settings.from_env({}, corpus_dir=corpus, index_dir=args.work / index_name)
            embedder = embedder or make_encoder(settings)
            print(f"== {name}: {eval_file.relative_to(ROOT)} over {corpus}", file=sys.stderr)
            run = evaluate_corpus(eval_file, settings, configs, k=args.k, progress=True, embedder=embedder)
            run.source = str(eval_file.relative_to(ROOT))
            runs[name] = run
            sets[name] = {"eval_set_sha256": hashlib.sha256(eval_file.read_bytes()).hexdigest(), **run.to_dict()}
            if not args.no_reports:
                write_report(run, args.out / name)
    except SscpRagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    args.out.mkdir(parents=True, exist_ok=True)
    baseline = {
        "version": 1,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "default_config": DEFAULT_CONFIG,
        "settings": {
            k: str(v) if isinstance(v, Path) else v
            for k, v in Settings().__dict__.items()
            if k not in ("corpus_dir", "index_dir", "feedback_path")
        },
        "sets": sets,
    }
    (args.out / "baseline.json").write_text(json.dumps(baseline, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md = [
        "# Evaluation baseline",
        "",
        f"Made {baseline['created_at']} by `python scripts/make_baseline.py` with the default settings; "
        "the CI guard (tests/test_eval_guard.py) compares the demo set's `hybrid` page nDCG@10 "
        "(tolerance 0.02), citation validity (must be 1.0), abstention recall (no lower) and false-abstention "
        "rate (no higher) with this file's JSON twin.",
        "",
        "The abstention figures of configurations that use the answerability model are in-sample: the shipped "
        "model was fitted on these same sets. Held-out figures (each set against a model fitted on the others) are in "
        "[answerability.md](answerability.md).",
        "",
    ]
    for name, run in runs.items():
        h1, r1, h2, r2 = table_rows(run)
        md += [
            f"## {name}: `{run.source}`",
            "",
            f"{run.n_questions} questions ({run.n_answerable} answerable, "
            f"{run.n_questions - run.n_answerable} unanswerable), k={run.k}, corpus `{run.corpus}`.",
            "",
            md_table(h1, r1),
            "",
            md_table(h2, r2),
            "",
        ]
        default = next((c for c in run.configs if c.name == DEFAULT_CONFIG), None)
        for other in ("bm25", "dense"):
            o = next((c for c in run.configs if c.name == other), None)
            if default and o and default.page and o.page:
                verdict = "beats" if default.page["ndcg@10"] > o.page["ndcg@10"] else "does NOT beat"
                md.append(
                    f"- `{DEFAULT_CONFIG}` {verdict} `{other}` on page nDCG@10 "
                    f"({default.page['ndcg@10']:.3f} vs {o.page['ndcg@10']:.3f}); document nDCG@10 "
                    f"{default.document['ndcg@10']:.3f} vs {o.document['ndcg@10']:.3f}."
                )
        if not args.no_reports:
            md += ["", f"Per-question results and chart: [{name}/]({name}/summary.md)"]
        md.append("")
    md += ["## Configurations", ""] + [f"- `{c.name}`: {c.description}" for c in configs]
    (args.out / "baseline.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    print(f"wrote {args.out / 'baseline.json'} and {args.out / 'baseline.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
