"""Fit the answerability model on the eval sets and report it cross-validated across sets.

    python scripts/fit_answerability.py                 # report only
    python scripts/fit_answerability.py --write         # also write the shipped model and the report

For every question of every set, the answer's decision on the whole question (before a declined
two-part question is split, so that the features do not depend on the model being fitted) is
made with the default settings and its features are kept (questions declined by a rule, such as
a name no report mentions or a count no passage gives, keep their features too; the rule decides
them whatever the model says, and the model is fitted on the rest). Then, for each set in turn, a
logistic regression (scikit-learn, standardised features, balanced classes) is fitted on the
OTHER sets, its threshold is chosen on those same training sets (the highest recall of
unanswerable questions whose false-abstention rate on the training answerable questions stays
within ``--max-far``), and both are applied to the held-out set. Only these held-out figures are
reported. The shipped model is the same procedure fitted on all sets.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from sscp_rag.answer import whole_question_decision  # noqa: E402
from sscp_rag.answerability import FEATURE_HELP, FEATURES, MODEL_FILE  # noqa: E402
from sscp_rag.evaluation import corpus_index_opener, load_eval_set  # noqa: E402
from sscp_rag.settings import Settings  # noqa: E402

# set name: (eval file, corpus, index folder under --index-root). Sets over one corpus share its index.
SETS = {
    "demo": (ROOT / "eval" / "demo.jsonl", ROOT / "corpus" / "demo", "demo"),
    "real": (ROOT / "eval" / "real.jsonl", ROOT.parent / "shared" / "corpus-real", "real"),
    "fresh-demo": (ROOT / "eval" / "fresh-demo.jsonl", ROOT / "corpus" / "demo", "demo"),
    "fresh-real": (ROOT / "eval" / "fresh-real.jsonl", ROOT.parent / "shared" / "corpus-real", "real"),
    "blind-demo": (ROOT / "eval" / "blind-demo.jsonl", ROOT / "corpus" / "demo", "demo"),
    "blind-real": (ROOT / "eval" / "blind-real.jsonl", ROOT.parent / "shared" / "corpus-real", "real"),
}
RULES = ("name", "type", "similarity", "passages")


def collect(name: str, index_root: Path) -> list[dict]:
    """One row per question: label, features (or None) and whether a rule declined it."""
    eval_file, corpus, index_name = SETS[name]
    s = Settings(corpus_dir=corpus, index_dir=index_root / index_name)
    index = corpus_index_opener(progress=True)(s)
    rows = []
    for q in load_eval_set(eval_file):
        d = whole_question_decision(index, q.question, s)
        feats = dict(d.features) if d.features else None
        rows.append(
            {
                "set": name,
                "id": q.id,
                "question": q.question,
                "answerable": q.answerable,
                "rule": d.basis if d.declined and d.basis in RULES else None,
                "features": feats,
            }
        )
    return rows


def _xy(rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    # The model decides only what no rule has: rows a rule declined would teach it nothing it uses.
    rows = [r for r in rows if r["features"] is not None and r["rule"] is None]
    x = np.array([[r["features"][f] for f in FEATURES] for r in rows], dtype=np.float64)
    y = np.array([1 if r["answerable"] else 0 for r in rows])
    return x, y


def fit(rows: list[dict], c: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _xy(rows)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=1000))
    model.fit(x, y)
    return model


def probabilities(model, rows: list[dict]) -> np.ndarray:
    """P(answerable) per row; a rule-declined row is 0 whatever the model says."""
    out = np.zeros(len(rows))
    for i, r in enumerate(rows):
        if r["rule"] is None and r["features"] is not None:
            out[i] = model.predict_proba(np.array([[r["features"][f] for f in FEATURES]]))[0, 1]
    return out


def rates(p: np.ndarray, answerable: np.ndarray, t: float) -> tuple[float, float]:
    """(recall of unanswerable questions, false-abstention rate on answerable ones) at threshold t."""
    declined = p < t
    un = ~answerable
    recall = float(declined[un].mean()) if un.any() else float("nan")
    far = float(declined[answerable].mean()) if answerable.any() else float("nan")
    return recall, far


def choose_threshold(rows: list[dict], p: np.ndarray, max_far: float) -> float:
    """The threshold with the highest recall whose false-abstention rate stays within max_far on
    the training questions that no rule declined (the rules decline what they decline whatever
    the threshold, so their mistakes must not use up the model's budget); ties go to the lower
    threshold (fewer declines). With no threshold within budget, the lowest one."""
    free = np.array([r["rule"] is None for r in rows])
    answerable = np.array([r["answerable"] for r in rows])
    best_t, best_r = 0.02, -1.0
    for t in np.round(np.arange(0.02, 0.99, 0.01), 2):
        r, far = rates(p[free], answerable[free], t)
        if far <= max_far and r > best_r:
            best_t, best_r = float(t), r
    return best_t


def pooled_cv(rows: list[dict], c: float, max_far: float, repeats: int = 5) -> dict[str, dict[str, float]]:
    """A second, less noisy view: the sets pooled, 5-fold cross-validation stratified by set and
    label, repeated ``repeats`` times; each fold's model and threshold are fitted on the other
    folds. Per set: (abstention recall, false-abstention rate) over all held-out predictions."""
    from sklearn.model_selection import StratifiedKFold

    counts: dict[str, list[int]] = {}
    strata = [f"{r['set']}:{r['answerable']}" for r in rows]
    for seed in range(repeats):
        for fit_idx, test_idx in StratifiedKFold(5, shuffle=True, random_state=seed).split(rows, strata):
            train = [rows[i] for i in fit_idx]
            model = fit(train, c)
            t = choose_threshold(train, probabilities(model, train), max_far)
            test = [rows[i] for i in test_idx]
            for r, p in zip(test, probabilities(model, test)):
                n = counts.setdefault(r["set"], [0, 0, 0, 0])
                n[0 if r["answerable"] else 2] += 1
                n[1 if r["answerable"] else 3] += int(p < t)
    return {k: {"abstention_recall": n[3] / n[2], "false_abstention_rate": n[1] / n[0]} for k, n in counts.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default=",".join(SETS), help="comma-separated sets [default: all six]")
    ap.add_argument("--index-root", type=Path, default=ROOT / "index" / "eval-baseline")
    ap.add_argument("--max-far", type=float, default=0.03, help="false-abstention budget on the training sets")
    ap.add_argument("--c", type=float, default=1.0, help="inverse regularisation strength")
    ap.add_argument("--features-cache", type=Path, default=None, help="read/write the collected rows here")
    ap.add_argument("--write", action="store_true", help="write the shipped model and eval/reports/answerability.md")
    args = ap.parse_args()
    names = args.sets.split(",")

    if args.features_cache and args.features_cache.exists():
        rows = json.loads(args.features_cache.read_text())
    else:
        rows = [r for n in names for r in collect(n, args.index_root)]
        if args.features_cache:
            args.features_cache.write_text(json.dumps(rows))

    lines = []
    held: dict[str, dict] = {}
    wrong: list[str] = []
    for test in names:
        train_rows = [r for r in rows if r["set"] != test]
        test_rows = [r for r in rows if r["set"] == test]
        model = fit(train_rows, args.c)
        ptr = probabilities(model, train_rows)
        t = choose_threshold(train_rows, ptr, args.max_far)
        p = probabilities(model, test_rows)
        ans = np.array([r["answerable"] for r in test_rows])
        recall, far = rates(p, ans, t)
        held[test] = {
            "threshold": t,
            "abstention_recall": recall,
            "false_abstention_rate": far,
            "unanswerable": int((~ans).sum()),
            "answerable": int(ans.sum()),
            "declined_unanswerable": int(((p < t) & ~ans).sum()),
            "declined_answerable": int(((p < t) & ans).sum()),
        }
        lines.append(
            f"held-out {test}: fitted on {','.join(n for n in names if n != test)}, threshold {t:.2f}: "
            f"declines {held[test]['declined_unanswerable']}/{held[test]['unanswerable']} unanswerable "
            f"(recall {recall:.3f}), {held[test]['declined_answerable']}/{held[test]['answerable']} answerable "
            f"(false-abstention {far:.3f})"
        )
        for r, pi in zip(test_rows, p):
            if (pi < t) == r["answerable"]:
                kind = "declined" if r["answerable"] else "answered"
                wrong.append(f"{test} {r['id']} ({kind}, p={pi:.2f}, rule={r['rule']}): {r['question']}")
    pooled = pooled_cv(rows, args.c, args.max_far)
    for n, v in pooled.items():
        lines.append(
            f"pooled 5x5-fold CV, {n}: recall {v['abstention_recall']:.3f}, "
            f"false-abstention {v['false_abstention_rate']:.3f}"
        )
    print("\n".join(lines))
    print("\nstill wrong (held out):")
    print("\n".join("  " + w for w in wrong))

    final = fit(rows, args.c)
    pall = probabilities(final, rows)
    t_all = choose_threshold(rows, pall, args.max_far)
    scaler, lr = final.named_steps["standardscaler"], final.named_steps["logisticregression"]
    coef = dict(zip(FEATURES, lr.coef_[0].round(4).tolist()))
    print(f"\nshipped model: threshold {t_all:.2f} (fitted on all sets), coefficients (standardised): {coef}")
    if args.write:
        model_json = {
            "features": list(FEATURES),
            "mean": scaler.mean_.tolist(),
            "scale": scaler.scale_.tolist(),
            "coef": lr.coef_[0].tolist(),
            "intercept": float(lr.intercept_[0]),
            "threshold": t_all,
            "fitted_on": {n: str(SETS[n][0].relative_to(ROOT)) for n in names},
            "questions": len(rows),
            "made": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "made_by": "python scripts/fit_answerability.py --write",
            "held_out": held,
        }
        (ROOT / "src" / "sscp_rag" / MODEL_FILE).write_text(json.dumps(model_json, indent=1) + "\n")
        report = [
            "# Answerability model",
            "",
            f"Made {model_json['made']} by `python scripts/fit_answerability.py --write` "
            f"(C={args.c}, false-abstention budget {args.max_far} on the training sets).",
            "",
            "## Held-out figures (each set's model fitted on the other sets, threshold chosen on them too)",
            "",
            "| held-out set | threshold | unanswerable declined | abstention recall | answerable declined | "
            "false-abstention rate |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for n, h in held.items():
            report.append(
                f"| {n} | {h['threshold']:.2f} | {h['declined_unanswerable']}/{h['unanswerable']} | "
                f"{h['abstention_recall']:.3f} | {h['declined_answerable']}/{h['answerable']} | "
                f"{h['false_abstention_rate']:.3f} |"
            )
        report += [
            "",
            "The sets are small ("
            + " + ".join(str(h["unanswerable"]) for h in held.values())
            + " unanswerable questions), so one question moves a rate by 3-4%, and a",
            "threshold chosen on some sets transfers imperfectly to another. A second view pools the sets:",
            "5-fold cross-validation stratified by set and label, repeated 5 times, each fold's model and",
            "threshold fitted on the other folds:",
            "",
            "| set | abstention recall | false-abstention rate |",
            "|---|---:|---:|",
        ]
        report += [
            f"| {n} | {v['abstention_recall']:.3f} | {v['false_abstention_rate']:.3f} |" for n, v in pooled.items()
        ]
        report += ["", "## Shipped model (fitted on all sets)", "", f"Threshold {t_all:.2f}.", ""]
        report += ["| feature | standardised coefficient | meaning |", "|---|---:|---|"]
        report += [f"| `{f}` | {coef[f]:+.3f} | {FEATURE_HELP[f]} |" for f in FEATURES]
        report += ["", "## Still wrong when held out", ""] + [f"- {w}" for w in wrong] + [""]
        (ROOT / "eval" / "reports" / "answerability.md").write_text("\n".join(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
