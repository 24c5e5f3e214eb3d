"""Feedback lines in the eval-set format: page parsing, the relevance rules, appending JSONL."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from sscp_rag.errors import QueryError
from sscp_rag.feedback import feedback_record, load_feedback, parse_pages, save_feedback, to_eval_lines
from sscp_rag.records import Answer, Hit, Quote, ReportSection, Source

DOC_PAGES = {"scr-child-d.pdf": 16, "scr-child-g.pdf": 12}


def _source(n: int, file: str, p0: int, p1: int) -> Source:
    return Source(n, file, "Title", "SCR", "SCR", 2018, p0, p1, "passage")


def _answer(abstained: bool = False) -> Answer:
    if abstained:
        hit = Hit("c1", "d1", "scr-child-g.pdf", "T", "SCR Child G", "SCR", 2017, 3, 3, "", "text", 0.1)
        return Answer("is it raining?", "is it raining?", True, "no", (), (), (hit,), 0.2)
    sources = (_source(1, "scr-child-d.pdf", 11, 11), _source(2, "scr-child-d.pdf", 12, 13),
               _source(3, "scr-child-g.pdf", 4, 4))  # fmt: skip
    quotes = (Quote("q one.", 1), Quote("q two.", 2), Quote("q three.", 3))
    return Answer(
        "and in the Child D review?", "neglect in SCR Child D?", False, "From 2 reports",
        (ReportSection("SCR Child D", "scr-child-d.pdf", quotes[:2]),
         ReportSection("SCR Child G", "scr-child-g.pdf", quotes[2:])),
        sources,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("text", "pages"),
    [("12", [12]), ("12-13", [12, 13]), ("p. 4, 6", [4, 6]), ("pp. 12\u201314", [12, 13, 14]),
     ("12 - 13", [12, 13]), ("", []), ("4;7 9", [4, 7, 9])],
)  # fmt: skip
def test_parse_pages(text: str, pages: list[int]) -> None:
    assert parse_pages(text) == pages


@pytest.mark.parametrize("text", ["five", "0", "5-3", "1-500", "12a"])
def test_parse_pages_refuses_nonsense(text: str) -> None:
    with pytest.raises(QueryError):
        parse_pages(text)


def test_thumbs_up_marks_the_cited_pages_relevant() -> None:
    rec = feedback_record(_answer(), "up")
    assert rec["question"] == "neglect in SCR Child D?" and rec["asked"] == "and in the Child D review?"
    assert rec["relevant"] == [
        {"doc": "scr-child-d.pdf", "pages": [11, 12, 13]},
        {"doc": "scr-child-g.pdf", "pages": [4]},
    ]
    assert rec["answerable"] is True and rec["feedback"] == "up" and not rec["needs_review"]
    assert rec["id"].startswith("fb-") and rec["timestamp"].endswith("Z")


def test_thumbs_up_on_an_abstention_is_an_unanswerable_question() -> None:
    rec = feedback_record(_answer(abstained=True), "up")
    assert rec["relevant"] == [] and rec["answerable"] is False
    assert rec["cited"] == [{"doc": "scr-child-g.pdf", "pages": [3]}]


def test_thumbs_down_without_a_correction_needs_review() -> None:
    rec = feedback_record(_answer(), "down", notes="  wrong report ")
    assert rec["relevant"] == [] and rec["needs_review"] is True and rec["notes"] == "wrong report"


def test_a_correction_becomes_the_relevant_source() -> None:
    rec = feedback_record(_answer(abstained=True), "down", "scr-child-g.pdf", [6, 5, 5], doc_pages=DOC_PAGES)
    assert rec["relevant"] == [{"doc": "scr-child-g.pdf", "pages": [5, 6]}]
    assert rec["answerable"] is True and rec["right_source"] == rec["relevant"][0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"vote": "meh"}, "feedback must be one of"),
        ({"vote": "up", "right_doc": "nope.pdf", "right_pages": [1]}, "not an indexed report"),
        ({"vote": "up", "right_doc": "scr-child-g.pdf", "right_pages": []}, "give the page"),
        ({"vote": "up", "right_doc": "scr-child-g.pdf", "right_pages": [13]}, "has 12 page"),
        ({"vote": "up", "right_pages": [3]}, "choose the report"),
    ],
)
def test_bad_feedback_is_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        feedback_record(_answer(), doc_pages=DOC_PAGES, **kwargs)


def test_save_feedback_appends_whole_lines_even_from_threads(tmp_path: Path) -> None:
    path = tmp_path / "new" / "feedback.jsonl"
    records = [feedback_record(_answer(), "up", notes=f"n{i}" + "x" * 5000) for i in range(20)]
    threads = [threading.Thread(target=save_feedback, args=(path, r)) for r in records]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 20 and all(json.loads(line)["feedback"] == "up" for line in lines)
    assert sorted(r["notes"] for r in load_feedback(path)) == sorted(r["notes"] for r in records)
    assert load_feedback(tmp_path / "missing.jsonl") == []


def test_feedback_lines_become_valid_eval_set_lines(tmp_path: Path) -> None:
    from sscp_rag.evaluation import parse_question

    path = tmp_path / "feedback.jsonl"
    save_feedback(path, feedback_record(_answer(), "up", notes="good"))
    save_feedback(path, feedback_record(_answer(abstained=True), "up"))
    save_feedback(path, feedback_record(_answer(), "down"))  # needs review: left out
    save_feedback(path, feedback_record(_answer(), "down", "scr-child-g.pdf", [5], doc_pages=DOC_PAGES))
    lines = to_eval_lines(load_feedback(path))
    assert len(lines) == 3
    parsed = [parse_question(json.dumps(line), n, "feedback") for n, line in enumerate(lines, start=1)]
    assert [q.answerable for q in parsed] == [True, False, True]
    assert set(lines[0]) == {"id", "question", "relevant", "answerable", "notes"}
    assert lines[2]["relevant"] == [{"doc": "scr-child-g.pdf", "pages": [5]}]


def test_feedback_command_summarises_and_exports_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """`sscp-rag feedback`: counts, eval lines appended to an eval set without duplicates on a second
    run, and a damaged feedback file named in one plain line."""
    from test_ingest import run_cli

    from sscp_rag.evaluation import load_eval_set

    path = tmp_path / "feedback.jsonl"
    save_feedback(path, feedback_record(_answer(), "up"))
    save_feedback(path, feedback_record(_answer(), "down"))  # needs review: counted, not exported
    save_feedback(path, feedback_record(_answer(), "down", "scr-child-g.pdf", [5], doc_pages=DOC_PAGES))
    out = tmp_path / "eval" / "grown.jsonl"

    code, stdout, _ = run_cli(monkeypatch, capsys, "feedback", "--path", str(path), "--out", str(out))
    assert code == 0
    assert "3 feedback line(s)" in stdout and "1 up, 2 down, 1 with a correction; 1 need review" in stdout
    assert "Added 2 eval line(s)" in stdout
    questions = load_eval_set(out)
    assert [q.answerable for q in questions] == [True, True]
    code, stdout, _ = run_cli(monkeypatch, capsys, "feedback", "--path", str(path), "--out", str(out), "--json")
    counts = json.loads(stdout)
    assert code == 0 and counts["added"] == 0 and counts["eval_ready"] == 2 and counts["needs_review"] == 1
    assert len(out.read_text().splitlines()) == 2  # the second export added nothing

    monkeypatch.setenv("SSCP_RAG_FEEDBACK_PATH", str(path))
    code, stdout, _ = run_cli(monkeypatch, capsys, "feedback")  # no --out: the eval lines are printed
    assert code == 0 and len([line for line in stdout.splitlines() if line.startswith("{")]) == 2

    with path.open("a") as fh:
        fh.write('{"id": "half a line\n')
    code, _, err = run_cli(monkeypatch, capsys, "feedback")
    assert code == 1 and err.startswith("error: ") and "line 4: not JSON" in err and len(err.splitlines()) == 1
