"""User feedback on answers, saved as JSONL lines in the evaluation-set format.

Each line is an eval-set question (``id``, ``question``, ``relevant``, ``answerable``; see
eval/README.md) plus what happened, so quality leads can review feedback and move lines into an
eval set::

    {"id": "fb-20250101T101500Z-3f2a9c", "question": "...", "relevant": [{"doc": "scr-child-d.pdf",
     "pages": [11]}], "answerable": true, "feedback": "up", "timestamp": "2025-01-01T10:15:00Z",
     "asked": "...", "abstained": false, "cited": [...], "right_source": null, "notes": "",
     "needs_review": false}

How ``relevant`` and ``answerable`` are set:

- a "the right source was ..." correction: that document and pages; answerable;
- thumbs up on an answer: the documents and pages it cited; answerable;
- thumbs up on an abstention ("the reviews do not address this"): no relevant pages; unanswerable;
- thumbs down without a correction: no relevant pages, and ``needs_review`` is true (the user
  says the answer was wrong but not what is right).

The extra fields make a feedback line a superset of an eval-set line; :func:`to_eval_lines` cuts
reviewed lines down to exactly the eval-set fields, ready to append to an eval set.

``question`` is the standalone query (a follow-up resolved with its history), so the line stands
on its own in an eval set; ``asked`` keeps what the user typed.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sscp_rag.errors import EvalError, QueryError
from sscp_rag.jsonl import JsonLineError, loads_line
from sscp_rag.records import Answer

VOTES = ("up", "down")


def parse_pages(text: str) -> list[int]:
    """Page numbers from text like ``12``, ``12-13``, ``p. 4, 6`` or ``pp. 12–14``, sorted.

    Raises QueryError for anything else.
    """
    cleaned = re.sub(r"\bp{1,2}\.?\s*", "", (text or "").strip().lower())
    cleaned = re.sub(r"\s*[-–—]\s*", "-", cleaned)
    if not cleaned:
        return []
    pages: set[int] = set()
    for part in re.split(r"[,;\s]+", cleaned):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"(\d{1,5})(?:-(\d{1,5}))?", part)
        if not m:
            raise QueryError(f"cannot read the page(s) {text!r}; write e.g. 12, 12-13 or 4, 6")
        a, b = int(m.group(1)), int(m.group(2) or m.group(1))
        if a < 1 or b < a or b - a > 200:
            raise QueryError(f"the page range {part!r} is not valid; pages count from 1")
        pages.update(range(a, b + 1))
    return sorted(pages)


def _cited(answer: Answer) -> list[dict[str, Any]]:
    """The documents and pages an answer cited (or, when it abstained, listed as related)."""
    spans = [(s.file, s.page_start, s.page_end) for s in answer.sources] or [
        (h.file, h.page_start, h.page_end) for h in answer.related
    ]
    by_doc: dict[str, set[int]] = {}
    for file, p0, p1 in spans:
        by_doc.setdefault(file, set()).update(range(p0, p1 + 1))
    return [{"doc": doc, "pages": sorted(pages)} for doc, pages in by_doc.items()]


def feedback_record(
    answer: Answer,
    vote: str,
    right_doc: str | None = None,
    right_pages: Sequence[int] = (),
    notes: str = "",
    doc_pages: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """One feedback line for ``answer`` in the eval-set format (see the module docstring).

    ``doc_pages`` (file -> page count), when given, is used to check the corrected source.
    Raises QueryError for an unknown vote, an unknown document or pages it does not have.
    """
    if vote not in VOTES:
        raise QueryError(f"feedback must be one of {', '.join(VOTES)}, not {vote!r}")
    right: dict[str, Any] | None = None
    if right_doc:
        if doc_pages is not None and right_doc not in doc_pages:
            raise QueryError(f"{right_doc!r} is not an indexed report")
        pages = sorted({int(p) for p in right_pages})
        if not pages:
            raise QueryError("give the page(s) of the right source, e.g. 12 or 12-13")
        if doc_pages is not None and (pages[0] < 1 or pages[-1] > doc_pages[right_doc]):
            raise QueryError(f"{right_doc} has {doc_pages[right_doc]} page(s); page {pages[-1]} is not in it")
        right = {"doc": right_doc, "pages": pages}
    elif right_pages:
        raise QueryError("choose the report the right page(s) are in")

    cited = _cited(answer)
    needs_review = False
    if right is not None:
        relevant, answerable = [right], True
    elif vote == "up" and not answer.abstained:
        relevant, answerable = cited, True
    elif vote == "up":
        relevant, answerable = [], False
    else:
        relevant, answerable, needs_review = [], True, True

    now = time.gmtime()
    return {
        "id": f"fb-{time.strftime('%Y%m%dT%H%M%SZ', now)}-{uuid.uuid4().hex[:6]}",
        "question": answer.standalone_query or answer.question,
        "relevant": relevant,
        "answerable": answerable,
        "feedback": vote,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", now),
        "asked": answer.question,
        "abstained": answer.abstained,
        "cited": cited,
        "right_source": right,
        "notes": notes.strip(),
        "needs_review": needs_review,
    }


def save_feedback(path: Path, record: Mapping[str, Any]) -> Path:
    """Append ``record`` as one JSON line to ``path`` (created with its folder if missing).

    Appends are locked, so concurrent app sessions never interleave lines.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, ensure_ascii=False, sort_keys=False) + "\n"
    with path.open("a", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    return path


def load_feedback(path: Path) -> list[dict[str, Any]]:
    """Every feedback line saved in ``path`` (an empty list if there is none). Raises EvalError,
    naming the line, for a line that is not a feedback record."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        raise EvalError(f"{path}: unreadable ({exc})") from exc
    records = []
    # Lines end at "\n" only: str.splitlines() would also cut at U+2028 or U+0085 inside a string.
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = loads_line(line)
        except JsonLineError as exc:
            raise EvalError(f"{path}, line {n}: {exc}") from exc
        except ValueError as exc:
            raise EvalError(f"{path}, line {n}: not JSON ({exc})") from exc
        missing = [k for k in (*EVAL_FIELDS, "feedback") if not isinstance(record, dict) or k not in record]
        if missing:
            raise EvalError(f"{path}, line {n}: not a feedback record (no {', '.join(missing)})")
        records.append(record)
    return records


def feedback_summary(records: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Counts for a quality lead: lines, thumbs up and down, corrections, lines needing review."""
    return {
        "lines": len(records),
        "up": sum(r.get("feedback") == "up" for r in records),
        "down": sum(r.get("feedback") == "down" for r in records),
        "corrections": sum(bool(r.get("right_source")) for r in records),
        "needs_review": sum(bool(r.get("needs_review")) for r in records),
        "eval_ready": len(to_eval_lines(records)),
    }


EVAL_FIELDS = ("id", "question", "relevant", "answerable")


def to_eval_lines(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The feedback lines that can join an eval set, cut down to exactly the eval-set fields
    (plus ``notes`` when there is one). Lines marked ``needs_review`` (a thumbs down with no
    correction) are left out: they say what was wrong, not what is right."""
    out = []
    for r in records:
        if r.get("needs_review"):
            continue
        line = {k: r[k] for k in EVAL_FIELDS}
        if r.get("notes"):
            line["notes"] = r["notes"]
        out.append(line)
    return out


def append_to_eval_set(lines: Sequence[Mapping[str, Any]], out: Path) -> int:
    """Append eval lines to the eval set ``out`` (JSONL, created if missing), skipping ids it
    already holds, so exporting the same feedback twice adds nothing. Returns how many were added."""
    out = Path(out)
    have: set[str] = set()
    if out.exists():
        try:
            text = out.read_text(encoding="utf-8")
        except (OSError, UnicodeError) as exc:
            raise EvalError(f"{out}: unreadable ({exc})") from exc
        for line in text.split("\n"):
            try:
                have.add(str(loads_line(line).get("id")))
            except (ValueError, AttributeError):
                continue  # not ours to judge here: `sscp-rag eval` reports malformed lines
    new = [line for line in lines if str(line["id"]) not in have]
    if new:
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("a", encoding="utf-8") as fh:
            fh.writelines(json.dumps(line, ensure_ascii=False) + "\n" for line in new)
    return len(new)
