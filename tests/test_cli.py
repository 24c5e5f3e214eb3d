"""The search, ask and reports commands on the real demo index: readable text, the documented
JSON shapes (docs/json.md), filters and themes, and plain one-line errors with a non-zero exit
(never a traceback) for an empty query, an unknown filter value and a missing or stale index."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import sscp_rag.index as index_module
import sscp_rag.ingest as ingest_module
from sscp_rag.cli import cli, main

HIT_KEYS = {
    "rank",
    "citation",
    "file",
    "title",
    "short_title",
    "type",
    "year",
    "page_start",
    "page_end",
    "heading",
    "text",
    "score",
    "dense_score",
    "bm25_score",
    "matched_terms",
    "themes",
}
SOURCE_KEYS = {"n", "citation", "file", "title", "short_title", "type", "year", "page_start", "page_end", "passage"}
ANSWER_KEYS = {
    "version",
    "question",
    "standalone_query",
    "abstained",
    "message",
    "best_score",
    "sections",
    "sources",
    "related",
    "synthesis",
    "synthesis_notes",
    "decision",
}
DECISION_KEYS = {
    "status",
    "probability",
    "threshold",
    "reason",
    "missing",
    "uncovered",
    "covered",
    "best_similarity",
    "basis",
    "features",
}
REPORT_KEYS = {
    "file",
    "title",
    "short_title",
    "type",
    "year",
    "subject",
    "pages",
    "themes",
    "theme_counts",
    "fictional",
    "inferred",
    "source_url",
}


@pytest.fixture(autouse=True)
def _shared_model(monkeypatch, embedder):
    """Each CLI call loads the index afresh; let it reuse the session's (real) model instead of
    loading the same weights again for every invocation."""
    monkeypatch.setattr(index_module, "make_encoder", lambda settings: embedder)
    monkeypatch.setattr(ingest_module, "make_encoder", lambda settings: embedder)
    for name in list(os.environ):
        if name.startswith("SSCP_RAG_"):
            monkeypatch.delenv(name)


@pytest.fixture()
def run(demo_index, demo_settings):
    runner = CliRunner()

    def invoke(*args: str, index_dir: Path | None = None):
        where = ["--index", str(index_dir or demo_settings.index_dir), "--corpus", str(demo_settings.corpus_dir)]
        return runner.invoke(cli, [args[0], *where, *args[1:]], catch_exceptions=True)

    return invoke


def _main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run the real entry point ``main()`` in-process; returns (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["sscp-rag", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def test_search_json_shape(run):
    res = run("search", "neglect and school attendance", "--json", "--type", "SCR", "--year-from", "2015", "-k", "4")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["version"] == 1 and data["query"] == "neglect and school attendance"
    assert data["filters"] == {"types": ["SCR"], "year_from": 2015, "year_to": None, "themes": [], "reports": []}
    assert 1 <= len(data["hits"]) <= 4
    for rank, hit in enumerate(data["hits"], start=1):
        assert set(hit) == HIT_KEYS
        assert hit["rank"] == rank and hit["type"] == "SCR" and hit["year"] >= 2015
        assert hit["citation"].startswith(hit["short_title"] + ", p")
        assert isinstance(hit["matched_terms"], list) and isinstance(hit["themes"], list)


def test_search_theme_alias_and_report_filters(run):
    data = json.loads(run("search", "advice for parents", "--theme", "co-sleeping", "--json").output)
    assert data["hits"] and all("safer-sleep" in h["themes"] for h in data["hits"])
    data = json.loads(run("search", "supervision", "--report", "Child G", "--json").output)
    assert data["hits"] and {h["file"] for h in data["hits"]} == {"scr-child-g.pdf"}
    data = json.loads(run("search", "neglect", "--per-report", "1", "-k", "6", "--json").output)
    files = [h["file"] for h in data["hits"]]
    assert len(files) == len(set(files))


def test_search_text_output(run):
    res = run("search", "bruising in a baby who cannot crawl", "-k", "3")
    assert res.exit_code == 0
    assert res.output.startswith("1. SCR Baby LL, p")
    assert "matched:" in res.output and "score" in res.output


def test_ask_json_shape(run):
    res = run("ask", "what did reviews say about neglect?", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert set(data) == ANSWER_KEYS
    assert data["abstained"] is False and len(data["sections"]) >= 2
    assert set(data["decision"]) == DECISION_KEYS and data["decision"]["status"] in ("answered", "partial")
    assert data["decision"]["probability"] >= data["decision"]["threshold"]
    ns = {s["n"] for s in data["sources"]}
    for sec in data["sections"]:
        assert set(sec) == {"report", "file", "quotes"}
        for q in sec["quotes"]:
            assert set(q) == {"text", "source"} and q["source"] in ns
    for s in data["sources"]:
        assert set(s) == SOURCE_KEYS
    assert data["related"] == [] and data["synthesis"] == "" and data["synthesis_notes"] == []


def test_ask_followup_and_text_output(run):
    res = run("ask", "and in the Child G review?", "--history", "what did reviews say about professional curiosity?")
    assert res.exit_code == 0, res.output
    assert "(understood as: what did reviews say about professional curiosity in the Child G review?)" in res.output
    assert "SCR Child G" in res.output and "Sources:" in res.output and "[1] SCR Child G, p" in res.output


def test_ask_off_topic_is_declined(run):
    res = run("ask", "Who won the 2018 World Cup?", "--json")
    data = json.loads(res.output)
    assert data["abstained"] is True and data["sections"] == [] and data["sources"] == []
    assert data["related"] and set(data["related"][0]) == HIT_KEYS
    # Declined by name: the question names something no indexed report mentions.
    assert data["decision"]["status"] == "declined" and data["decision"]["basis"] == "name"
    assert data["decision"]["missing"] == ["Cup"]  # "World" is in the reports, "Cup" in none
    text = run("ask", "Who won the 2018 World Cup?").output
    assert "No indexed report mentions \u2018Cup\u2019" in text and "Possibly related:" in text
    assert "Why: in no indexed report: Cup" in text
    text = run("ask", "What is the recipe for sourdough bread?").output
    assert "do not appear to" in text and "Possibly related:" in text and "best sentence similarity" in text


def test_reports_json_and_theme(run):
    data = json.loads(run("reports", "--json").output)
    assert data["version"] == 1 and len(data["reports"]) == 15
    assert all(set(r) == REPORT_KEYS for r in data["reports"])
    data = json.loads(run("reports", "--theme", "disguised compliance", "--json").output)
    counts = [r["theme_counts"]["disguised-compliance"] for r in data["reports"]]
    assert counts == sorted(counts, reverse=True) and "scr-child-d.pdf" in {r["file"] for r in data["reports"]}
    text = run("reports", "--type", "DHR").output
    assert text.startswith("DHR Doris") and "themes:" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", ""], "error: the query is empty"),
        (["search", "   "], "error: the query is empty"),
        (["ask", ""], "error: the question is empty"),
        (["search", "neglect", "--type", "inspection"], "error: unknown review type 'inspection'"),
        (["search", "neglect", "--theme", "astrology"], "error: unknown theme 'astrology'"),
        (["ask", "neglect", "--report", "Child Z"], "error: unknown report 'Child Z'"),
        (["reports", "--theme", "astrology"], "error: unknown theme 'astrology'"),
        # A pasted wall of names (each once cost a scan of the corpus) is refused by length.
        (["ask", "What about " + ", ".join(f"Child A{i}" for i in range(400))], "error: the question is 4,"),
        (["search", "x" * 4001], "error: the query is 4,001 characters long"),
    ],
)
def test_bad_input_gives_one_plain_line(monkeypatch, capsys, demo_index, demo_settings, args, message):
    where = ["--index", str(demo_settings.index_dir), "--corpus", str(demo_settings.corpus_dir)]
    code, out, err = _main(monkeypatch, capsys, args[0], *where, *args[1:])
    assert code == 1
    assert err.startswith(message) and err.count("\n") == 1
    assert "Traceback" not in out + err


def test_missing_and_stale_index(monkeypatch, capsys, tmp_path, demo_index, demo_settings):
    code, _, err = _main(monkeypatch, capsys, "search", "neglect", "--index", str(tmp_path / "none"))
    assert code == 1 and err.startswith("error: no index in") and "sscp-rag ingest" in err
    stale = tmp_path / "stale"
    shutil.copytree(demo_settings.index_dir, stale)
    manifest = json.loads((stale / "manifest.json").read_text())
    manifest["fingerprint"]["chunk_tokens"] = 123  # as if built with other settings
    (stale / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = _main(monkeypatch, capsys, "ask", "neglect", "--index", str(stale))
    assert code == 1 and "built with other settings" in err and "chunk_tokens" in err
    assert "Traceback" not in err


def test_entry_point_in_a_subprocess_prints_no_traceback(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSCP_RAG_")}
    for args, message in (
        (["search", "neglect", "--index", str(tmp_path / "missing")], "error: no index in"),
        (["ask", " ", "--index", str(tmp_path / "missing")], "error: the question is empty"),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "sscp_rag.cli", *args], capture_output=True, text=True, env=env, timeout=120
        )
        assert proc.returncode == 1
        assert proc.stderr.startswith(message)
        assert "Traceback" not in proc.stderr + proc.stdout
