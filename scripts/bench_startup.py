"""Start-up benchmark of the app: from starting the server to the first cited answer, in Debian's
headless Chromium, for each question runtime, in interleaved rounds of one run.

    python scripts/bench_startup.py [--index DIR] [--corpus DIR] [--rounds 3] [--json FILE]

Each round starts a fresh server (a new process: nothing is cached but the OS's file cache),
opens the page, waits until the chat input can be used (question encoder and index loaded),
asks one question and waits for the cited answer. It reports the median seconds of
each step per runtime and the ratio of the totals: on a shared, noisy machine the ratio measured
in one run is the figure to compare, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screenshots import QUESTION, ROOT, ask, chromium  # noqa: E402

from sscp_rag.appserver import running_app  # noqa: E402

RUNTIMES = ("onnx", "torch")  # Settings.query_backend


def one_start(index_dir: Path, corpus_dir: Path | None, runtime: str) -> dict[str, float]:
    env = {"SSCP_RAG_INDEX_DIR": str(index_dir), "SSCP_RAG_QUERY_BACKEND": runtime}
    if corpus_dir:
        env["SSCP_RAG_CORPUS_DIR"] = str(corpus_dir)
    with tempfile.TemporaryDirectory() as tmp:
        env["SSCP_RAG_FEEDBACK_PATH"] = str(Path(tmp) / "feedback.jsonl")
        driver = chromium(Path(tmp) / "chrome")  # started first: its own start-up is not the app's
        try:
            t0 = time.perf_counter()
            with running_app(env, log_path=Path(tmp) / "app.log") as url:
                t_healthy = time.perf_counter()
                driver.get(url)
                WebDriverWait(driver, 300).until(
                    ec.element_to_be_clickable((By.CSS_SELECTOR, '[data-testid="stChatInputTextArea"]'))
                )
                t_ready = time.perf_counter()
                text = ask(driver, QUESTION)
                t_answer = time.perf_counter()
        finally:
            driver.quit()
    if "\u201c" not in text:
        raise RuntimeError(f"no cited answer with {runtime}: {text[:200]!r}")
    return {
        "healthy_s": t_healthy - t0,
        "page_ready_s": t_ready - t0,
        "answer_after_ask_s": t_answer - t_ready,
        "first_answer_s": t_answer - t0,
    }


def load() -> str:
    return "load avg " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, default=Path(os.environ.get("SSCP_RAG_INDEX_DIR", ROOT / "index")))
    parser.add_argument("--corpus", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None, help="Also write the results here.")
    args = parser.parse_args()

    runs: dict[str, list[dict[str, float]]] = {r: [] for r in RUNTIMES}
    for i in range(args.rounds):
        for runtime in RUNTIMES if i % 2 == 0 else RUNTIMES[::-1]:  # interleaved, alternating order
            res = one_start(args.index, args.corpus, runtime)
            runs[runtime].append(res)
            print(f"round {i + 1} {runtime:5s} " + " ".join(f"{k} {v:.1f}" for k, v in res.items()) + f"  [{load()}]")
    med = {r: {k: round(statistics.median(x[k] for x in runs[r]), 2) for k in runs[r][0]} for r in RUNTIMES}
    ratio = round(med["torch"]["first_answer_s"] / med["onnx"]["first_answer_s"], 2)
    print(f"\nmedian of {args.rounds} rounds (seconds from starting the server):")
    for r in RUNTIMES:
        m = med[r]
        print(
            f"  {r:5s} healthy {m['healthy_s']:.1f} · page ready {m['page_ready_s']:.1f} · answer "
            f"{m['answer_after_ask_s']:.1f} after asking · first answer {m['first_answer_s']:.1f}"
        )
    print(f"  first answer: torch takes {ratio}x as long as onnx")
    if args.json:
        args.json.write_text(json.dumps({"median": med, "ratio_torch_over_onnx": ratio, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
