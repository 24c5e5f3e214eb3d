"""Inert Markdown for showing corpus text in the app: no HTML, links, emphasis or layout from a PDF;
and inert text for terminals: no escape sequences from a PDF.

Report text is untrusted: a PDF can hold ``<script>``, ``[links](http://...)``, ``**emphasis**``,
``# headings``, ``$maths$`` or lines that Markdown would turn into lists and rules. Every ASCII
punctuation character is backslash-escaped (CommonMark renders an escaped character literally) and
line starts are de-indented, so the text shows exactly as written. Highlighting of query terms is
added *after* escaping, as markup this module writes itself.

In a terminal, the danger is escape sequences: text from a PDF (a file name, a title, a passage)
could set the clipboard (OSC 52), retitle the window, rewrite what is on screen or hide text.
:func:`terminal_safe` drops every escape sequence and control character except tab and newline
(and the bold on/off that the CLI writes itself), and :func:`safe_terminal` puts it in front of
``sys.stdout`` and ``sys.stderr`` while the CLI runs.
"""

from __future__ import annotations

import contextlib
import re
import string
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

_PUNCT = frozenset(string.punctuation)
# Streamlit renders ``:color-background[...]``; the term inside is escaped text.
HIGHLIGHT_OPEN = ":orange-background[**"
HIGHLIGHT_CLOSE = "**]"


def _escape_chars(text: str) -> str:
    return "".join("\\" + ch if ch in _PUNCT else ch for ch in text)


def md_escape(text: str) -> str:
    """``text`` as Markdown that renders literally: every ASCII punctuation character escaped,
    leading indentation dropped (it would make a code block), line breaks kept."""
    lines = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        lines.append(_escape_chars(line.lstrip(" \t")))
    return "\n".join(lines)


def md_paragraphs(text: str) -> str:
    """Escaped text with single line breaks folded into spaces and paragraph breaks kept."""
    paras = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    return "\n\n".join(md_escape(p) for p in paras if p)


def highlight_spans(text: str, terms: Iterable[str]) -> list[tuple[int, int]]:
    """(start, end) of whole-word, case-insensitive occurrences of ``terms`` in ``text``."""
    words = sorted({t for t in terms if t and t.strip()}, key=len, reverse=True)
    if not words:
        return []
    pat = re.compile(r"(?<![\w])(?:" + "|".join(re.escape(w) for w in words) + r")(?![\w])", re.IGNORECASE)
    return [(m.start(), m.end()) for m in pat.finditer(text)]


def highlight_md(text: str, terms: Iterable[str]) -> str:
    """Inert Markdown of ``text`` with the words in ``terms`` highlighted.

    Whitespace inside a paragraph is folded; paragraph breaks are kept. The markup around a term
    is ours; the term itself and everything else is escaped.
    """
    paras = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text)]
    terms = list(terms)
    out = []
    for para in paras:
        if not para:
            continue
        pos, parts = 0, []
        for a, b in highlight_spans(para, terms):
            parts.append(_escape_chars(para[pos:a]))
            if a and para[a - 1] == ":":  # a directive cannot follow a colon: bold only
                parts.append("**" + _escape_chars(para[a:b]) + "**")
            else:
                parts.append(HIGHLIGHT_OPEN + _escape_chars(para[a:b]) + HIGHLIGHT_CLOSE)
            pos = b
        parts.append(_escape_chars(para[pos:]))
        out.append("".join(parts))
    return "\n\n".join(out)


def md_unescape(markdown: str) -> str:
    """The visible text of Markdown written by this module (escapes and highlight markup removed)."""
    plain = markdown.replace(HIGHLIGHT_OPEN, "").replace(HIGHLIGHT_CLOSE, "")
    plain = re.sub(r"(?<!\\)\*\*", "", plain)
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", plain)


def snippet(text: str, terms: Iterable[str], width: int = 600) -> str:
    """Plain text: the ``width``-character window of ``text`` (whitespace folded) holding the
    most occurrences of ``terms``, widened to a sentence start where one is near, cut at word
    boundaries, with an ellipsis where text was left out."""
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    spans = highlight_spans(flat, terms)
    start = 0
    if spans:
        best = -1
        for a, _ in spans:
            lo = max(0, a - 80)
            count = sum(1 for s, e in spans if s >= lo and e <= lo + width)
            if count > best:
                best, start = count, lo
    if start:
        sentence = flat.rfind(". ", max(0, start - 150), start + 1)
        if sentence >= 0:
            start = sentence + 2
        else:
            space = flat.find(" ", start)
            start = space + 1 if 0 <= space < start + 40 else start
    end = min(len(flat), start + width)
    if end < len(flat):
        space = flat.rfind(" ", start, end)
        end = space if space > start else end
    return ("\u2026 " if start else "") + flat[start:end] + (" \u2026" if end < len(flat) else "")


# --------------------------------------------------------------------------------------------
# terminals

_TERMINAL_RE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"  # CSI: cursor moves, colours, erase, ...
    r"|\x1b[\]PX^_].*?(?:\x07|\x1b\\|\x9c|$)"  # OSC (clipboard, title, links), DCS, SOS, PM, APC
    r"|\x1b[ -/]*[0-~]"  # the other escape sequences
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]",  # control characters (C0 but tab and newline, DEL, C1), a lone ESC
    re.DOTALL,
)
_OWN_STYLES = frozenset({"\x1b[1m", "\x1b[0m", "\x1b[22m"})  # click.style(bold=True) and resets
_PROGRESS = frozenset({"\x1b[A", "\r"})  # tqdm redraws its bars: back to the line start, up a line


def terminal_safe(text: str, keep: frozenset[str] = frozenset()) -> str:
    """``text`` without escape sequences and control characters other than tab and newline,
    except the sequences (or characters) in ``keep``."""
    return _TERMINAL_RE.sub(lambda m: m.group(0) if m.group(0) in keep else "", text)


class SafeTerminalStream:
    """A text stream that passes everything written to it through :func:`terminal_safe`.

    It has no ``buffer``, so nothing (click looks for one) can write around it; ``raw`` is the
    stream underneath, for output that must stay byte-exact (JSON escapes control characters)."""

    def __init__(self, raw: TextIO, keep: frozenset[str] = _OWN_STYLES):
        self.raw = raw
        self._keep = keep

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self.raw.write(terminal_safe(text, self._keep))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        if name == "buffer":
            raise AttributeError(name)
        return getattr(self.raw, name)


@contextlib.contextmanager
def safe_terminal() -> Iterator[None]:
    """While inside, ``sys.stdout`` and ``sys.stderr`` drop escape sequences and control
    characters (stderr keeps what progress bars need: carriage return and cursor-up)."""
    out, err = sys.stdout, sys.stderr
    if out is not None:
        sys.stdout = SafeTerminalStream(out)  # type: ignore[assignment]
    if err is not None:
        sys.stderr = SafeTerminalStream(err, _OWN_STYLES | _PROGRESS)  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err


def raw_stream(stream: Any) -> Any:
    """The stream under a SafeTerminalStream (or ``stream`` itself)."""
    return getattr(stream, "raw", stream) if isinstance(stream, SafeTerminalStream) else stream
