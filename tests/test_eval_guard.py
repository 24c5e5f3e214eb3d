"""CI guard (issue 4, section 6): the demo eval for the default configuration, on the session demo
index, must not fall more than 0.02 below the committed baseline in page-level nDCG@10, every
quoted sentence must be found verbatim on the page it cites, and answerability must not regress:
abstention recall no lower and the false-abstention rate no higher than in the baseline.

The baseline is eval/reports/baseline.json, written by ``python scripts/make_baseline.py``. A
missing eval set or baseline is a failure, not a skip: the guard must not pass silently.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from sscp_rag.evaluation import CONFIGS, DEFAULT_CONFIG, load_eval_set, run_evaluation

ROOT = Path(__file__).resolve().parent.parent
DEMO_SET = ROOT / "eval" / "demo.jsonl"
BASELINE = ROOT / "eval" / "reports" / "baseline.json"
TOLERANCE = 0.02
REMEDY = "run: python scripts/make_baseline.py (all configurations, all sets) and commit the result"


def _baseline_entry() -> tuple[dict, dict]:
    """(the demo set's entry, the default configuration's entry) of the committed baseline."""
    if not DEMO_SET.is_file():
        pytest.fail(f"the demo eval set {DEMO_SET.relative_to(ROOT)} is missing; the CI guard needs it")
    if not BASELINE.is_file():
        pytest.fail(f"the baseline {BASELINE.relative_to(ROOT)} is missing; {REMEDY}")
    try:
        demo = json.loads(BASELINE.read_text(encoding="utf-8"))["sets"]["demo"]
        entry = next(c for c in demo["configs"] if c["name"] == DEFAULT_CONFIG)
        entry["page"]["ndcg@10"]
    except (ValueError, KeyError, TypeError, StopIteration) as exc:
        pytest.fail(
            f"{BASELINE.relative_to(ROOT)} has no demo entry for {DEFAULT_CONFIG!r} with page "
            f"nDCG@10 ({exc!r}); {REMEDY}"
        )
    sha = hashlib.sha256(DEMO_SET.read_bytes()).hexdigest()
    if demo.get("eval_set_sha256") != sha:
        pytest.fail(f"{DEMO_SET.relative_to(ROOT)} changed since the baseline was made; {REMEDY}")
    return demo, entry


@pytest.mark.slow
def test_default_configuration_holds_the_baseline(demo_index, demo_settings):
    demo, base = _baseline_entry()
    questions = load_eval_set(DEMO_SET)
    run = run_evaluation(
        questions,
        [CONFIGS[DEFAULT_CONFIG]],
        demo_settings,
        lambda s: demo_index,
        k=int(demo.get("k", 10)),
        source=str(DEMO_SET),
        cold_caches=False,  # latency is not checked here; reuse query embeddings
    )
    (result,) = run.configs

    bad = [f"{q.id} ({q.valid_quotes}/{q.quotes})" for q in result.questions if q.quotes != q.valid_quotes]
    validity = result.answers["citation_validity"]
    assert validity == 1.0, f"citation validity {validity} < 1.0; quotes not on their cited pages in: {bad}"

    # Answerability must not regress: no fewer unanswerable questions declined, no more answerable
    # ones wrongly declined than when the baseline was made.
    got_a, base_a = result.answers, base.get("answers") or {}
    for key in ("abstention_recall", "false_abstention_rate"):
        if base_a.get(key) is None:
            pytest.fail(f"{BASELINE.relative_to(ROOT)} has no {key} for {DEFAULT_CONFIG!r}; {REMEDY}")
    mistakes = [
        f"{q.id} ({'declined' if q.abstained else 'answered'})"
        for q in result.questions
        if q.abstained is not None and q.abstained == q.answerable
    ]
    # baseline.json rounds to four decimals; one question is at least 1/68 of a rate here.
    assert got_a["abstention_recall"] >= base_a["abstention_recall"] - 5e-4, (
        f"abstention recall on the demo set fell to {got_a['abstention_recall']:.3f} "
        f"(baseline {base_a['abstention_recall']:.3f}); wrong: {', '.join(mistakes)}"
    )
    assert got_a["false_abstention_rate"] <= base_a["false_abstention_rate"] + 5e-4, (
        f"false-abstention rate on the demo set rose to {got_a['false_abstention_rate']:.3f} "
        f"(baseline {base_a['false_abstention_rate']:.3f}); wrong: {', '.join(mistakes)}"
    )

    got, want = result.page["ndcg@10"], base["page"]["ndcg@10"]
    worst = sorted((q for q in result.questions if q.page is not None), key=lambda q: q.page["ndcg@10"])[:5]
    assert got >= want - TOLERANCE, (
        f"page-level nDCG@10 of {DEFAULT_CONFIG!r} on the demo set fell to {got:.4f} "
        f"(baseline {want:.4f}, tolerance {TOLERANCE}); weakest questions: "
        + ", ".join(f"{q.id}={q.page['ndcg@10']:.2f}" for q in worst)
    )
