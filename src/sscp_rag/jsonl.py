"""One line of a JSON Lines file (eval sets, feedback) as a value that the rest of the code can use.

``json.loads`` accepts two things that fail later, far from the line that caused them: nesting so
deep that Python's recursion limit is hit (a RecursionError, while parsing or when the value is
written out again), and ``\\ud800``-style escapes of lone surrogates (a UnicodeEncodeError when
the text is printed or saved as UTF-8). :func:`loads_line` refuses both with a plain reason, so
the caller can name the file and line.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 64  # far more than any eval-set or feedback line needs (they nest 3 deep)
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


class JsonLineError(ValueError):
    """Valid JSON that cannot be used: nested too deeply, or holding a lone surrogate."""


def loads_line(raw: str) -> Any:
    """``json.loads(raw)``; raises json.JSONDecodeError for text that is not JSON, and
    JsonLineError for JSON nested more than ``MAX_DEPTH`` levels or holding a lone surrogate."""
    try:
        value = json.loads(raw)
    except RecursionError as exc:
        raise JsonLineError(f"JSON nested too deeply (more than {MAX_DEPTH} levels)") from exc
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _SURROGATE_RE.search(item):
                raise JsonLineError(f"text with a lone surrogate escape ({_escape_of(item)}), not valid Unicode")
        elif isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise JsonLineError(f"JSON nested too deeply (more than {MAX_DEPTH} levels)")
            if isinstance(item, dict):
                stack.extend((k, depth) for k in item)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)
    return value


def _escape_of(text: str) -> str:
    ch = _SURROGATE_RE.search(text)
    return f"\\u{ord(ch.group(0)):04x}" if ch else "?"
