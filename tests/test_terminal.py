"""Terminal escape sequences from the corpus (an OSC 52 clipboard write, a screen clear, a window
title, 8-bit CSI) never reach the terminal through the CLI's human output; JSON keeps them exact,
escaped by JSON itself."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pdfmaker as pm
import pytest

from sscp_rag.cli import main
from sscp_rag.display import terminal_safe


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["sscp-rag", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_terminal_safe_drops_escape_sequences_and_controls() -> None:
    assert terminal_safe("a\x1b]52;c;aGVsbG8=\x07b") == "ab"  # OSC 52: set the clipboard
    assert terminal_safe("a\x1b]0;title\x1b\\b") == "ab"  # OSC ended by ST
    assert terminal_safe("a\x1b[2J\x1b[31;1mb\x1b(0c") == "abc"  # CSI and charset switches
    assert terminal_safe("a\x9b31mb\x07\x08\x0b\x7fc\rd") == "a31mbcd"  # C1 CSI and C0 controls
    assert terminal_safe("tab\tand\nnewline") == "tab\tand\nnewline"
    assert terminal_safe("\x1b[1mbold\x1b[0m", keep=frozenset({"\x1b[1m", "\x1b[0m"})) == "\x1b[1mbold\x1b[0m"
    assert terminal_safe("bar\r\x1b[A", keep=frozenset({"\r", "\x1b[A"})) == "bar\r\x1b[A"


ESCAPES = "\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2J\x1b]0;pwned\x1b\\\x9b31m"


@pytest.mark.slow
def test_cli_output_carries_no_escape_sequences_from_the_corpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    pm.simple_report(corpus / "scr-child-q.pdf", "good", "Serious Case Review: Child Q", paragraphs=3)
    pm.empty_file(corpus / f"bad{ESCAPES}.pdf")  # a file name holding escape sequences
    manifest = {"documents": [{"file": "scr-child-q.pdf", "title": f"Review{ESCAPES} of Child Q",
                               "short_title": f"SCR{ESCAPES} Child Q", "type": "SCR", "year": 2022}]}  # fmt: skip
    (corpus / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    monkeypatch.setenv("SSCP_RAG_ENCODER", "hashing")  # about output, not the model: no model to load
    where = ["--corpus", str(corpus), "--index", str(tmp_path / "index")]

    code, out, err = run_cli(monkeypatch, capsys, "ingest", *where, "--quiet")
    assert code == 0 and "bad31m.pdf: empty file" in out  # what is left of the name: plain text
    code, out2, err2 = run_cli(monkeypatch, capsys, "reports", *where)
    assert code == 0 and "SCR31m Child Q" in out2 and "Review31m of Child Q" in out2
    code, out3, _ = run_cli(monkeypatch, capsys, "search", "health visitor", *where, "-k", "2")
    assert code == 0 and "SCR31m Child Q, p. " in out3
    for text in (out, err, out2, err2, out3):
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", text), repr(text)
    # JSON keeps the exact text, its control characters escaped by JSON itself
    code, js, _ = run_cli(monkeypatch, capsys, "reports", *where, "--json")
    assert json.loads(js)["reports"][0]["short_title"] == f"SCR{ESCAPES} Child Q"
    assert "\x1b" not in js and "\\u001b" in js
