"""Eval-set and feedback lines that json.loads accepts but that break later (nesting past the
recursion limit, lone surrogate escapes that cannot be written as UTF-8) are errors naming the
file and the line; a line ends at a newline only."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sscp_rag.errors import EvalError
from sscp_rag.evaluation import load_eval_set
from sscp_rag.feedback import load_feedback

DEEP = "[" * 100_000 + "]" * 100_000
DEEP_DICT = '{"id": "q1", "question": "x", "relevant": [], "answerable": false, "notes": ' + "[" * 200 + "]" * 200 + "}"
SURROGATE = '{"id": "q1", "question": "neglect \\ud800 of a child", "relevant": [], "answerable": false}'


@pytest.mark.parametrize("bad", [DEEP, DEEP_DICT, SURROGATE])
def test_eval_set_lines_that_break_json_consumers_are_named(tmp_path: Path, bad: str) -> None:
    good = '{"id": "q0", "question": "neglect?", "relevant": [], "answerable": false}'
    path = tmp_path / "set.jsonl"
    path.write_text(f"{good}\n\n{bad}\n", encoding="utf-8")
    with pytest.raises(EvalError, match=rf"{re.escape(str(path))}, line 3: (JSON nested too deeply|text with a lone)"):
        load_eval_set(path)


FEEDBACK = {"id": "f0", "question": "q", "relevant": [], "answerable": False, "feedback": "up", "notes": ""}


@pytest.mark.parametrize("bad", [DEEP, SURROGATE.replace("false}", 'false, "feedback": "up"}')])
def test_feedback_lines_that_break_json_consumers_are_named(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "feedback.jsonl"
    path.write_text(f"{json.dumps(FEEDBACK)}\n{bad}\n", encoding="utf-8")
    with pytest.raises(EvalError, match=rf"{re.escape(str(path))}, line 2: (JSON nested too deeply|text with a lone)"):
        load_feedback(path)


def test_feedback_with_line_separators_inside_its_strings_loads(tmp_path: Path) -> None:
    """The app saves feedback as UTF-8 JSON, where U+2028 and U+0085 stay unescaped: a line ends
    at a newline only."""
    path = tmp_path / "feedback.jsonl"
    record = {**FEEDBACK, "notes": "line\u2028separator and NEL\x85 in a comment"}
    path.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    assert load_feedback(path) == [record]
