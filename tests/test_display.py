"""Inert Markdown for corpus text: escaping, highlighting and snippets."""

from __future__ import annotations

import re

import pytest

from sscp_rag.display import HIGHLIGHT_OPEN, highlight_md, highlight_spans, md_escape, md_unescape, snippet

NASTY = (
    "<script>alert(1)</script> **bold** [link](http://x) ![img](http://y.png) `code` $x^2$ "
    "_em_ ~~gone~~ <b>b</b> &amp; :red[colour] | a | b |"
)


def test_md_escape_escapes_every_markdown_and_html_character() -> None:
    out = md_escape(NASTY)
    # no unescaped markup character is left
    assert not re.search(r"(?<!\\)[<>*\[\]()`$_~!|&:]", out.replace("\\\\", ""))
    assert md_unescape(out) == NASTY


@pytest.mark.parametrize(
    "line",
    ["# Heading", "- item", "1. item", "    indented code", "> quote", "---", "===", "+ plus", "```fence"],
)
def test_line_starts_cannot_make_block_markup(line: str) -> None:
    out = md_escape("text\n" + line)
    second = out.split("\n")[1]
    assert not second.startswith((" ", "#", "-", "1.", ">", "=", "+", "`"))
    assert md_unescape(second) == line.strip()


def test_highlight_marks_whole_words_only_and_escapes_the_rest() -> None:
    text = "Neglect was **missed**; the neglected child <b>was</b> seen. NEGLECT again."
    out = highlight_md(text, ["neglect"])
    assert out.count(HIGHLIGHT_OPEN) == 2  # "Neglect" and "NEGLECT", not "neglected"
    assert f"{HIGHLIGHT_OPEN}Neglect**]" in out and f"{HIGHLIGHT_OPEN}NEGLECT**]" in out
    assert "<b>" not in out and "\\*\\*missed\\*\\*" in out
    assert md_unescape(out) == text


def test_highlight_after_a_colon_uses_plain_bold() -> None:
    out = highlight_md("Note:neglect", ["neglect"])
    assert out == "Note\\:**neglect**"
    assert md_unescape(out) == "Note:neglect"


def test_highlight_keeps_paragraphs_and_folds_line_breaks() -> None:
    out = highlight_md("one\ntwo\n\n  three", [])
    assert out == "one two\n\nthree"


def test_highlight_spans_prefers_longer_terms() -> None:
    assert highlight_spans("co-sleeping and sleeping", ["sleeping", "co-sleeping"]) == [(0, 11), (16, 24)]
    assert highlight_spans("anything", []) == []


def test_snippet_centres_on_the_terms_and_marks_cuts() -> None:
    filler = " ".join(f"word{i}." for i in range(200))
    text = f"{filler} The baby slept on a sofa with a parent who had been drinking. {filler}"
    out = snippet(text, ["sofa"], width=200)
    assert "sofa" in out and out.startswith("\u2026 ") and out.endswith(" \u2026")
    assert len(out) <= 204
    assert snippet("short text", ["x"]) == "short text"
    assert snippet(text, [], width=100).startswith("word0.")
