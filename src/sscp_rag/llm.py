"""Optional LLM synthesis over an extractive answer, verified sentence by sentence and clause by
clause; the model may also vote that the passages do not state the answer.

Active only when ``settings.llm_base_url`` names an OpenAI-compatible endpoint (a local Ollama,
vLLM or llama.cpp server, ...). The extractive answer is built first; the model adds a short
prose summary on top of it, or votes (in the same request) that the passages do not state the
answer, which declines the answer.

Protocol: one ``POST {llm_base_url}/chat/completions`` (OpenAI chat-completions, not streamed)
with ``model = settings.llm_model``, ``temperature = 0``, ``max_tokens = settings.llm_max_tokens``,
``Accept-Encoding: identity`` and a bearer token when ``settings.llm_api_key`` is set. The request
carries the answer's numbered sources (``[n]``, citation, passage) and the question, and
instructs the model to answer only from the passages and to end every sentence with ``[n]``
citations.

Limits on the request (see :func:`chat`):

- **deadline**: ``settings.llm_timeout`` seconds for the whole request (connecting, waiting,
  reading the whole reply), however slowly the endpoint sends: the request runs in a worker
  thread that stops reading at the deadline, and the caller stops waiting for it at the deadline;
- **size**: at most ``MAX_REPLY_BYTES`` (64 KB) of reply body are read; a longer reply is refused
  (not truncated: a cut JSON body cannot be parsed). An encoded (compressed) reply is refused too;
- **work**: reasoning blocks are removed in one pass over the text, the reply is split into
  sentences in pieces of at most ``PIECE_CHARS`` characters and only its first
  ``MAX_SENTENCES`` sentences are checked, and a sentence longer than ``MAX_SENTENCE_CHARS`` is
  dropped, so checking a reply takes time linear in its size, and bounded.

"Not stated" vote (only when ``settings.llm_can_decline``): the system prompt tells the model
that, when the passages do not state the answer at all, its whole reply must be the sentinel
``NOT STATED`` on a line of its own, optionally followed by exactly one line starting
``Reason:``. The vote is accepted only in that exact form (see :func:`parse_vote`): first non-empty
line ``NOT STATED`` (any case, an optional full stop), at most one more non-empty line, which
starts with ``Reason:``, is at most ``MAX_REASON_CHARS`` long and cites no passage. The reason is
never shown. An accepted vote declines the answer: no quotes, no sources, the closest passages
as "possibly related", and ``decision.basis == "llm"``. A reply that contains the sentinel in any
other way ("NOT STATED but [1] says ...", prose that ends "NOT STATED") is not a vote: it is
checked sentence by sentence like any reply, and a note says the vote was not accepted. The vote
can only withdraw an answer, never add a claim; a passage that tells the model to answer NOT
STATED can make a question decline, and the closest passages are still listed.

Verification rule (every sentence of the reply):

1. It must carry at least one citation ``[n]`` (``[1]``, ``[1, 3]``, ``[2][4]``, ``[1-3]``);
   otherwise it is dropped.
2. Every cited number must exist in the sources list; a sentence citing a number that does not
   exist (e.g. ``[99]``) is dropped, because its claim cannot be traced to a page.
3. A cited passage must *support* it. Each cited passage is split into sentences, and every
   sentence and every pair of neighbouring sentences is a *window*. For each window two numbers
   are taken: the word overlap (the fraction of the claim's content words, lower-cased, stemmed,
   stop words and citation markers removed, that occur in the window) and the cosine similarity
   between the claim's embedding and that of the window's closest sentence (the index's own
   model). The support of the claim is the best mean of the two over all windows of all its
   cited passages; it must be at least ``SUPPORT_SCORE`` (0.56). Lexical and semantic agreement
   both count, so a close paraphrase passes while a fluent claim on the same topic that the
   passage does not make fails.
4. Polarity: if the best window is negated ("did not receive the advice") and the claim is not
   ("advice was given to every father"), the claim is dropped as saying the opposite. This is
   deliberately blunt and may drop a correct paraphrase of a negated sentence; dropping is the
   safe failure, because the extractive quotes are always shown.
5. Specifics: every number, URL, e-mail address, web domain, phone number, page reference and
   capitalised word (a name, an acronym, a month) in the claim must be held by the cited
   passages, compared literally (whitespace collapsed, case ignored; numbers as whole numbers,
   words as whole words). The report's title, short title, type and year also count for names
   and numbers. A page reference ("page 8", "p. 8", "pp. 8-9") must name the cited pages, even
   when the passage itself mentions another page (a cross-reference, or an injected instruction).
   The claim's first word is exempt when only its first letter is a capital. "call 0800 000 000
   or visit evil.example" and "page 99 shows ..." are dropped however well the rest matches.
6. Clauses: a claim is split into clauses at ``;``, ``:``, ``, ``, a spaced dash and the words
   and, or, but, while, whereas, although, though, because, yet, nor; a piece with fewer than
   ``MIN_CLAUSE_WORDS`` content words is joined to its neighbour (so lists stay whole). When
   there are two clauses or more, each must reach ``SUPPORT_SCORE`` on its own against the
   cited passages (as in rule 3), so an invented clause appended to a true sentence is dropped.

   Calibration on the demo corpus (hand-written claims against passages of SCR Child D, SCR
   Family M and the SUDI thematic review): correct paraphrases scored 0.57-0.83; unsupported
   claims scored 0.27-0.55, except a negation flip (0.70) that rule 4 catches. Word overlap alone
   over a whole page passes unsupported claims (a page holds most common words), and cosine alone
   passes topical claims ("should have removed the children at the first MARAC": 0.71), hence
   the mean over sentence windows.

Dropped sentences are listed in ``Answer.synthesis_notes``; the kept ones (with their citations)
form ``Answer.synthesis``. If nothing survives, ``synthesis`` stays empty and a note says so.

Failure is never raised to the user: a connection error, an HTTP error status, the deadline, a
reply over the size cap or a reply that is not a chat completion (not JSON, no ``choices``, empty
content) leaves the extractive answer untouched and adds one plain note such as "LLM endpoint
http://127.0.0.1:11434/v1 timed out after 30 s; showing the extractive answer".
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import httpx

from sscp_rag.errors import LLMError
from sscp_rag.index import Index
from sscp_rag.records import REVIEW_TYPE_LABELS, Answer, Source
from sscp_rag.retrieval import Retriever, retriever_for
from sscp_rag.settings import Settings

SUPPORT_SCORE = 0.56
MAX_PASSAGE_CHARS = 2500
MAX_REPLY_BYTES = 64 * 1024  # reply body read at most
MAX_ERROR_BYTES = 4 * 1024  # body of an HTTP error read at most (for its one-line detail)
MAX_SENTENCES = 10  # sentences of a reply checked (the prompt asks for at most five)
MAX_SENTENCE_CHARS = 700  # a longer generated sentence is dropped unchecked
PIECE_CHARS = 1000  # pysbd is superlinear, so it segments pieces of at most this many characters
MIN_CLAUSE_WORDS = 4  # content words a clause needs to be checked on its own
NOT_STATED = "NOT STATED"
MAX_REASON_CHARS = 300
FALLBACK = "showing the extractive answer"
LLM_DECLINE_REASON = "The language model found that the passages do not state the answer to this question."

_RULES = (
    "You summarise what child safeguarding review documents say. Answer the question using ONLY "
    "the numbered passages given. Do not add facts, advice or knowledge of your own. End every "
    "sentence with the number(s) of the passage(s) that support it, in square brackets, e.g. [1] "
    "or [2][3]. Use only numbers from the list. Write at most five sentences of plain prose, no "
    "headings or lists."
)
SYSTEM_PROMPT = _RULES + " If the passages do not answer the question, say so in one sentence."  # without the vote
SYSTEM_PROMPT_VOTE = (
    _RULES + f" If the passages do not state the answer to the question at all, reply with exactly "
    f"{NOT_STATED} on a line of its own, optionally followed by one line that starts with 'Reason:', "
    "and nothing else. If they state part of the answer, answer that part."
)

_CITE = re.compile(r"\[\s*(\d+(?:\s*(?:[,;]|-|–|and)\s*\d+)*)\s*\]")
_LEADING_CITES = re.compile(r"^\s*((?:\[[^\]]*\]\s*)+)")
_THINK_TAG = re.compile(r"<(/?)think\s*>", re.IGNORECASE)
_NEGATION = re.compile(r"\b(not|no|never|nobody|none|neither|nor|cannot|without)\b|n't\b|\bno one\b", re.IGNORECASE)
_STOP = frozenset(
    "a an and are as at be been being but by can could did do does for from had has have he her "
    "his how i if in into is it its may might more most must no not of on or our she should so "
    "such than that the their them then there these they this those to too was we were what when "
    "where which while who whom why will with would you your also very all any each other some "
    "only own same just about over after before because during until against between through".split()
)
_NOT_STATED_LINE = re.compile(r"not\s+stated\.?", re.IGNORECASE)
_REASON_LINE = re.compile(r"reason\s*:\s*\S", re.IGNORECASE)
# Specifics (rule 5). Claims are at most MAX_SENTENCE_CHARS long, which bounds these patterns.
_URL = re.compile(r"(?:https?://|www\.)[^\s<>\"'\[\]()]+", re.IGNORECASE)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_DOMAIN = re.compile(r"\b(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}\b", re.IGNORECASE)
_PHONE = re.compile(r"(?<![\w.])(?:\+|0)\d[\d -]{6,}\d(?![\w.])")  # 0800 000 000, +44 20 7946 0000
_PAGE_REF = re.compile(r"\b(?:pages?|pp?\.)\s*(\d+)(?:\s*[-–]\s*(\d+))?", re.IGNORECASE)
_NUMBER = re.compile(r"\d+(?:[.,:/]\d+)*")
_WORD = re.compile(r"[^\W\d_][^\W_]*")
_CLAUSE_BREAK = re.compile(
    r";\s*|:\s+|,\s+|\s+[-–—]\s+|\s+(?:and|or|but|while|whereas|although|though|because|yet|nor)\s+",
    re.IGNORECASE,
)
_LEADING_CONJUNCTION = re.compile(r"^(?:and|or|but|while|whereas|although|though|because|yet|nor)\s+", re.IGNORECASE)


@dataclass(frozen=True)
class Verdict:
    """What verification decided about one sentence of the reply."""

    sentence: str
    cites: tuple[int, ...]
    kept: bool
    reason: str = ""  # why it was dropped
    overlap: float = 0.0
    cosine: float = 0.0


def endpoint_url(settings: Settings) -> str:
    """The chat-completions URL for ``settings.llm_base_url``."""
    return settings.llm_base_url.rstrip("/") + "/chat/completions"


def build_messages(question: str, sources: Sequence[Source], can_decline: bool = True) -> list[dict[str, str]]:
    """The chat messages: the rules (with the NOT STATED vote when ``can_decline``), then the
    numbered passages and the question."""
    blocks = []
    for s in sources:
        kind = REVIEW_TYPE_LABELS.get(s.type, s.type)
        year = f", {s.year}" if s.year else ""
        passage = " ".join(s.passage.split())
        if len(passage) > MAX_PASSAGE_CHARS:
            passage = passage[: MAX_PASSAGE_CHARS - 1].rsplit(" ", 1)[0] + "…"
        blocks.append(f"[{s.n}] {s.citation} ({kind}{year})\n{passage}")
    user = (
        "Passages:\n\n" + "\n\n".join(blocks) + f"\n\nQuestion: {question}\n\n"
        "Answer from the passages only, ending every sentence with its [n] citation(s)."
    )
    system = SYSTEM_PROMPT_VOTE if can_decline else SYSTEM_PROMPT
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


class _Expired(Exception):
    """The request's deadline passed while the worker was reading."""


def _post(settings: Settings, body: dict[str, Any], deadline: float, cancel: threading.Event) -> tuple[int, bytes]:
    """Send the request and read the reply body (at most ``MAX_REPLY_BYTES``), stopping at
    ``deadline`` or when ``cancel`` is set. Runs in the worker thread of :func:`chat`."""
    base = settings.llm_base_url
    headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
    if settings.llm_api_key:
        headers["Authorization"] = f"Bearer {settings.llm_api_key}"
    try:
        with (
            httpx.Client(timeout=httpx.Timeout(settings.llm_timeout)) as client,
            client.stream("POST", endpoint_url(settings), json=body, headers=headers) as resp,
        ):
            encoding = resp.headers.get("Content-Encoding", "identity").strip().lower()
            if encoding not in ("", "identity"):
                raise LLMError(f"LLM endpoint {base} answered with content encoding {encoding[:30]!r}, not identity")
            cap = MAX_REPLY_BYTES if resp.status_code < 400 else MAX_ERROR_BYTES
            buf = bytearray()
            for chunk in resp.iter_raw():
                if cancel.is_set() or time.monotonic() > deadline:
                    raise _Expired
                buf += chunk
                if len(buf) > cap:
                    if resp.status_code >= 400:
                        break  # enough for the error's detail
                    raise LLMError(
                        f"LLM endpoint {base} sent a reply longer than {MAX_REPLY_BYTES // 1024} KB; "
                        "the reply was not read"
                    )
            return resp.status_code, bytes(buf[:cap])
    except httpx.TimeoutException as exc:
        raise _Expired from exc
    except (httpx.HTTPError, httpx.InvalidURL) as exc:  # connection refused, DNS, bad URL, ...
        raise LLMError(f"could not reach LLM endpoint {base} ({type(exc).__name__}: {exc})") from exc


def _request(settings: Settings, body: dict[str, Any]) -> tuple[int, bytes]:
    """:func:`_post` under a total deadline of ``settings.llm_timeout`` seconds. The worker thread
    stops reading at the deadline; if it is blocked in a read then, the caller does not wait for
    it (it ends by itself within one read timeout)."""
    timeout = settings.llm_timeout
    expired = LLMError(f"LLM endpoint {settings.llm_base_url} timed out after {timeout:g} s")
    deadline = time.monotonic() + timeout
    cancel, done = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["value"] = _post(settings, body, deadline, cancel)
        except Exception as exc:  # noqa: BLE001 - handed to the caller
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=work, name="sscp-rag-llm", daemon=True).start()
    if not done.wait(max(0.0, deadline - time.monotonic())):
        cancel.set()
        raise expired
    error = outcome.get("error")
    if isinstance(error, _Expired):
        raise expired from error
    if error is not None:
        raise error
    return outcome["value"]


def chat(settings: Settings, messages: list[dict[str, str]]) -> str:
    """The assistant's reply text from the endpoint, reasoning blocks removed. Raises LLMError
    (with a plain message) on a connection error, the deadline, an HTTP error status, a reply
    over ``MAX_REPLY_BYTES`` or a reply that is not a chat completion."""
    base = settings.llm_base_url
    body = {
        "model": settings.llm_model,
        "messages": messages,
        "temperature": 0,
        "max_tokens": max(1, settings.llm_max_tokens),
        "stream": False,
    }
    status, raw = _request(settings, body)
    if status >= 400:
        detail = " ".join(raw.decode("utf-8", "replace").split())[:200]
        raise LLMError(f"LLM endpoint {base} answered HTTP {status}" + (f" ({detail})" if detail else ""))
    try:
        data: Any = json.loads(raw)
    except ValueError as exc:  # includes JSONDecodeError and UnicodeDecodeError
        raise LLMError(f"LLM endpoint {base} did not answer JSON") from exc
    try:
        content = data["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise LLMError(f"LLM endpoint {base} answered without a chat completion (no choices)") from exc
    text = strip_reasoning(content) if isinstance(content, str) else ""
    if not text:
        raise LLMError(f"LLM endpoint {base} answered an empty message")
    return text


def strip_reasoning(text: str) -> str:
    """``text`` without ``<think>...</think>`` blocks, in one pass (nested blocks count as one).
    An unclosed ``<think>`` hides the rest of the text; a ``</think>`` with no opening tag hides
    everything before it (servers that put the opening tag in the prompt send only the closing
    one)."""
    kept: list[str] = []
    depth = 0
    pos = 0
    for m in _THINK_TAG.finditer(text):
        if depth == 0:
            kept.append(text[pos : m.start()])
        if not m.group(1):
            depth += 1
        elif depth:
            depth -= 1
        else:
            kept = []
        pos = m.end()
    if depth == 0:
        kept.append(text[pos:])
    return "".join(kept).strip()


def parse_vote(reply: str) -> bool | None:
    """Whether ``reply`` is a "not stated" vote: ``True`` for the exact protocol form (see the
    module docstring), ``False`` when it uses the sentinel in any other way (not accepted), and
    ``None`` when it does not use it."""
    lines = [ln.strip() for ln in reply.strip().splitlines() if ln.strip()]
    if lines and _NOT_STATED_LINE.fullmatch(lines[0]):
        if len(lines) == 1:
            return True
        if (
            len(lines) == 2
            and _REASON_LINE.match(lines[1])
            and len(lines[1]) <= MAX_REASON_CHARS
            and not _CITE.search(lines[1])
            and not re.search(r"\[\s*\d", lines[1])
        ):
            return True
        return False
    if NOT_STATED in reply or reply.lstrip().lower().startswith("not stated"):
        return False
    return None


def parse_citations(text: str) -> tuple[int, ...]:
    """The passage numbers cited in ``text``: ``[1]``, ``[1, 3]``, ``[2][4]``, ``[1-3]``."""
    nums: list[int] = []
    for m in _CITE.finditer(text):
        inner = m.group(1)
        for part in re.split(r"\s*(?:[,;]|and)\s*", inner):
            rng = re.split(r"\s*[-–]\s*", part)
            if len(rng) == 2 and rng[0].isdigit() and rng[1].isdigit():
                a, b = int(rng[0]), int(rng[1])
                nums.extend(range(a, b + 1) if 0 < b - a < 50 else (a, b))
            elif part.strip().isdigit():
                nums.append(int(part))
    return tuple(dict.fromkeys(nums))


def _pieces(para: str) -> Iterator[str]:
    """``para`` in pieces of at most ``PIECE_CHARS`` characters, cut after a full stop, question or
    exclamation mark where possible, else at a space, else anywhere."""
    if len(para) <= PIECE_CHARS:
        yield para
        return
    piece: list[str] = []
    size = 0
    for token in re.split(r"(?<=[.!?])\s+", para):
        while len(token) > PIECE_CHARS:
            cut = token.rfind(" ", 0, PIECE_CHARS)
            cut = cut if cut > 0 else PIECE_CHARS
            if piece:
                yield " ".join(piece)
                piece, size = [], 0
            yield token[:cut]
            token = token[cut:].lstrip()
        if piece and size + 1 + len(token) > PIECE_CHARS:
            yield " ".join(piece)
            piece, size = [], 0
        piece.append(token)
        size += len(token) + 1
    if piece:
        yield " ".join(piece)


def split_reply(text: str, limit: int | None = None) -> list[str]:
    """The reply's sentences (the first ``limit`` of them, if given); citations a model put after
    the full stop ("... there. [4]") are attached to the sentence they follow. Time is linear in
    the text's length, and stops early once ``limit`` sentences are known."""
    import pysbd

    seg = pysbd.Segmenter(language="en", clean=False)
    out: list[list[str]] = []  # each sentence as its parts: the text, then citations that followed it
    valid = 0
    for para in re.split(r"\n\s*\n|\n(?=\s*[-*•]\s)", text):
        para = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s+", "", para.strip())
        for piece in _pieces(para) if para else ():
            for sent in seg.segment(piece):
                sent = sent.strip()
                lead = _LEADING_CITES.match(sent)
                if lead and out:
                    out[-1].append(lead.group(1).strip())
                    sent = sent[lead.end() :].strip()
                if not sent:
                    continue
                if limit is not None and valid >= limit:  # the limit-th sentence has all its citations
                    return _joined(out, limit)
                out.append([sent])
                valid += bool(re.search(r"\w", _CITE.sub("", sent)))
    return _joined(out, limit)


def _joined(out: list[list[str]], limit: int | None) -> list[str]:
    sents = [" ".join(" ".join(parts).split()) for parts in out]
    sents = [s for s in sents if re.search(r"\w", _CITE.sub("", s))]
    return sents if limit is None else sents[:limit]


def _stems(text: str) -> set[str]:
    import Stemmer

    stem = Stemmer.Stemmer("english")
    words = re.findall(r"[a-z0-9]+(?:'[a-z]+)?", _CITE.sub(" ", text).lower())
    return {stem.stemWord(w) for w in words if w not in _STOP and len(w) > 1}


def content_overlap(sentence: str, passage: str) -> float:
    """Fraction of the sentence's content-word stems that occur in ``passage``."""
    words = _stems(sentence)
    if not words:
        return 0.0
    return len(words & _stems(passage)) / len(words)


def _negated(text: str) -> bool:
    return bool(_NEGATION.search(_CITE.sub(" ", text)))


def _windows(passage: str) -> list[tuple[str, tuple[int, ...]]]:
    """The passage's sentences and pairs of neighbouring sentences, with the sentence indexes."""
    from sscp_rag.retrieval import sentence_spans

    sents = [" ".join(passage[a:b].split()) for a, b in sentence_spans(passage)] or [" ".join(passage.split())]
    wins = [(s, (i,)) for i, s in enumerate(sents)]
    wins += [(sents[i] + " " + sents[i + 1], (i, i + 1)) for i in range(len(sents) - 1)]
    return wins


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


def _numbers(text: str) -> set[str]:
    return {m.group(0).replace(",", "") for m in _NUMBER.finditer(text)}


def unheld_specifics(claim: str, cited: Sequence[Source]) -> list[str]:
    """The specifics of ``claim`` (rule 5 of the module docstring) that the cited sources do not
    hold: numbers, URLs, e-mail addresses, domains, phone numbers, page references and capitalised
    words, each as written in the claim."""
    claim = " ".join(_CITE.sub(" ", claim).split())
    held = _norm(" ".join(s.passage for s in cited))
    meta = " ".join(
        f"{s.title} {s.short_title} {s.type} {REVIEW_TYPE_LABELS.get(s.type, '')} {s.year or ''}" for s in cited
    )
    numbers = _numbers(held) | _numbers(meta)
    words = {w.lower() for w in _WORD.findall(held + " " + meta)}
    pages = {p for s in cited for p in range(s.page_start, s.page_end + 1)}
    missing: list[str] = []
    covered: list[tuple[int, int]] = []  # spans already judged, left out of the number check

    def literal(pattern: re.Pattern[str]) -> None:
        for m in pattern.finditer(claim):
            covered.append(m.span())
            text = m.group(0).rstrip(".,;:!?)")
            if _norm(text) not in held:
                missing.append(text)

    for pattern in (_URL, _EMAIL, _DOMAIN, _PHONE):
        literal(pattern)
    for m in _PAGE_REF.finditer(claim):
        covered.append(m.span())
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        if not (hi - lo < 50 and all(p in pages for p in range(lo, hi + 1))):
            missing.append(m.group(0))  # even when the passage says it: a claim's page is a cited page
    for m in _NUMBER.finditer(claim):
        if not any(a <= m.start() < b for a, b in covered) and m.group(0).replace(",", "") not in numbers:
            missing.append(m.group(0))
    for i, m in enumerate(_WORD.finditer(claim)):
        word = m.group(0)
        if not word[0].isupper() or word == "I" or (i == 0 and word[1:].islower()):
            continue
        if any(a <= m.start() < b for a, b in covered):
            continue
        if word.lower() not in words:
            missing.append(word)
    return list(dict.fromkeys(missing))


def clauses(claim: str) -> list[str]:
    """``claim`` (citations removed) split into clauses (rule 6); a piece with fewer than
    ``MIN_CLAUSE_WORDS`` content words is joined to its neighbour."""
    text = " ".join(_CITE.sub(" ", claim).split())
    out: list[str] = []
    for part in _CLAUSE_BREAK.split(text):
        part = _LEADING_CONJUNCTION.sub("", part.strip(" ,;:.!?"))
        if not part:
            continue
        if out and (len(_stems(out[-1])) < MIN_CLAUSE_WORDS or len(_stems(part)) < MIN_CLAUSE_WORDS):
            out[-1] = f"{out[-1]} {part}"
        else:
            out.append(part)
    return out


def verify(index: Index | Retriever, sentences: Sequence[str], sources: Sequence[Source]) -> list[Verdict]:
    """Apply the module's verification rule to each sentence of a reply."""
    by_n = {s.n: s for s in sources}
    verdicts: list[Verdict] = []
    checked: list[tuple[int, str, tuple[int, ...], list[str]]] = []
    for sent in sentences:
        if len(sent) > MAX_SENTENCE_CHARS:
            verdicts.append(Verdict(sent, (), False, f"it is too long to check ({len(sent):,} characters)"))
            continue
        cites = parse_citations(sent)
        if not cites:
            verdicts.append(Verdict(sent, cites, False, "it cites no passage"))
            continue
        missing = [n for n in cites if n not in by_n]
        if missing:
            bad = ", ".join(f"[{n}]" for n in missing)
            verdicts.append(Verdict(sent, cites, False, f"it cites {bad}, which is not in the sources"))
            continue
        parts = clauses(sent)
        checked.append((len(verdicts), sent, cites, parts if len(parts) > 1 else []))
        verdicts.append(Verdict(sent, cites, False, "unchecked"))
    if not checked:
        return verdicts
    windows = {n: _windows(by_n[n].passage) for _, _, cites, _ in checked for n in cites}
    singles = {n: [w for w, idx in wins if len(idx) == 1] for n, wins in windows.items()}
    window_stems = {n: [_stems(text) for text, _ in wins] for n, wins in windows.items()}
    # The clauses of the passages' sentences, for comparing a claim's clause with a clause (rule 6).
    subs: dict[int, list[tuple[int, str]]] = {}
    for _, _, cites, parts in checked:
        for n in cites if parts else ():
            if n not in subs:
                split = [(i, clauses(sent)) for i, sent in enumerate(singles[n])]
                subs[n] = [(i, c) for i, cs in split if len(cs) > 1 for c in cs]
    batch: list[str] = []

    def add(texts: Sequence[str]) -> slice:
        batch.extend(texts)
        return slice(len(batch) - len(texts), len(batch))

    claim_at = add([_CITE.sub("", sent).strip() for _, sent, _, _ in checked])
    part_at = add([p for *_, parts in checked for p in parts])
    sent_at = {n: add(sents) for n, sents in singles.items()}
    sub_at = {n: add([c for _, c in pairs]) for n, pairs in subs.items()}
    vecs = retriever_for(index).encoder.encode_live(batch)

    def support(
        text: str, vec: Any, cites: tuple[int, ...], by_clause: bool = False
    ) -> tuple[float, float, float, str]:
        """The best (score, overlap, cosine, window) of ``text`` over the cited passages' windows; with
        ``by_clause``, a sentence's cosine is also taken with each of its clauses."""
        best: tuple[float, float, float, str] = (-1.0, 0.0, 0.0, "")
        stems = _stems(text)
        for n in cites:
            sims = vecs[sent_at[n]] @ vec
            if by_clause and subs.get(n):
                for (i, _), sim in zip(subs[n], vecs[sub_at[n]] @ vec):
                    sims[i] = max(sims[i], sim)
            for (win, idx), wstems in zip(windows[n], window_stems[n]):
                overlap = len(stems & wstems) / len(stems) if stems else 0.0
                cos = float(max(sims[i] for i in idx))
                score = (overlap + cos) / 2
                if score > best[0]:
                    best = (score, overlap, cos, win)
        return best

    cvecs, pvecs = vecs[claim_at], vecs[part_at]
    at_part = 0
    for (at, sent, cites, sent_parts), cvec in zip(checked, cvecs):
        part_vecs = pvecs[at_part : at_part + len(sent_parts)]
        at_part += len(sent_parts)
        score, overlap, cos, window = support(sent, cvec, cites)
        if score < SUPPORT_SCORE:
            reason = f"the cited passage does not support it (word overlap {overlap:.0%}, similarity {cos:.2f})"
            verdicts[at] = Verdict(sent, cites, False, reason, overlap, cos)
            continue
        if _negated(window) and not _negated(sent):
            reason = "the cited passage says the opposite (it is negated there)"
            verdicts[at] = Verdict(sent, cites, False, reason, overlap, cos)
            continue
        unheld = unheld_specifics(sent, [by_n[n] for n in cites])
        if unheld:
            names = ", ".join(f"\u201c{_clip(u, 40)}\u201d" for u in unheld[:5])
            reason = f"it names what the cited passage does not hold ({names})"
            verdicts[at] = Verdict(sent, cites, False, reason, overlap, cos)
            continue
        for part, pvec in zip(sent_parts, part_vecs):
            p_score, p_overlap, p_cos, _ = support(part, pvec, cites, by_clause=True)
            if p_score < SUPPORT_SCORE:
                reason = (
                    f"the cited passage does not support its clause \u201c{_clip(part, 80)}\u201d "
                    f"(word overlap {p_overlap:.0%}, similarity {p_cos:.2f})"
                )
                verdicts[at] = Verdict(sent, cites, False, reason, overlap, cos)
                break
        else:
            verdicts[at] = Verdict(sent, cites, True, "", overlap, cos)
    return verdicts


def _clip(text: str, n: int = 120) -> str:
    return text if len(text) <= n else text[: n - 1].rsplit(" ", 1)[0] + "…"


def declined_by_llm(answer: Answer, notes: Sequence[str] = ()) -> Answer:
    """``answer`` declined on the model's accepted "not stated" vote: no quotes and no sources, the
    closest passages as possibly related, and the decision's basis "llm"."""
    decision = answer.decision
    if decision is not None:
        decision = replace(decision, status="declined", basis="llm", reason=LLM_DECLINE_REASON)
    return replace(
        answer,
        abstained=True,
        message=f"{LLM_DECLINE_REASON} The closest passages are listed below as possibly related.",
        sections=(),
        sources=(),
        related=tuple(answer.hits[:5]),
        synthesis="",
        synthesis_notes=tuple(notes),
        decision=decision,
    )


def synthesise(index: Index | Retriever, answer: Answer, settings: Settings) -> Answer:
    """``answer`` with a verified LLM summary in ``synthesis`` and notes in ``synthesis_notes``, or
    declined when the model's "not stated" vote is accepted (``settings.llm_can_decline``).

    Never raises for an LLM failure: the extractive answer is returned with a note instead.
    """
    notes = list(answer.synthesis_notes)
    if not settings.llm_base_url:
        return answer
    if answer.abstained or not answer.sources:
        notes.append("no passages address the question, so the LLM was not asked")
        return replace(answer, synthesis_notes=tuple(notes))
    can_decline = settings.llm_can_decline
    question = answer.standalone_query or answer.question
    try:
        reply = chat(settings, build_messages(question, answer.sources, can_decline=can_decline))
    except LLMError as exc:
        notes.append(f"{exc}; {FALLBACK}")
        return replace(answer, synthesis="", synthesis_notes=tuple(notes))
    vote = parse_vote(reply)
    if vote is True and can_decline:
        notes.append(
            f"the LLM replied {NOT_STATED}: it found that the numbered passages do not state the answer "
            "(its reason, if any, is not shown)"
        )
        return declined_by_llm(answer, notes)
    if vote is True:
        notes.append(f"the LLM replied {NOT_STATED}, but llm_can_decline is off, so the vote was ignored; {FALLBACK}")
        return replace(answer, synthesis="", synthesis_notes=tuple(notes))
    if vote is False and can_decline:
        notes.append(
            f"the LLM's {NOT_STATED} was not accepted as a vote: a vote is a reply of exactly {NOT_STATED} "
            "(optionally with one uncited 'Reason:' line); the reply was checked sentence by sentence instead"
        )
    sentences = split_reply(reply, limit=MAX_SENTENCES + 1)
    if len(sentences) > MAX_SENTENCES:
        sentences = sentences[:MAX_SENTENCES]
        notes.append(f"the LLM reply ran past {MAX_SENTENCES} sentences; the rest was not checked and is not shown")
    verdicts = verify(index, sentences, answer.sources)
    kept = [v.sentence for v in verdicts if v.kept]
    for v in verdicts:
        if not v.kept:
            notes.append(f"dropped a generated sentence because {v.reason}: \u201c{_clip(v.sentence)}\u201d")
    if not kept:
        notes.append(f"the LLM reply had no sentence that the sources support; {FALLBACK}")
    return replace(answer, synthesis=" ".join(kept), synthesis_notes=tuple(notes))


__all__ = [
    "synthesise",
    "chat",
    "build_messages",
    "verify",
    "split_reply",
    "strip_reasoning",
    "parse_vote",
    "parse_citations",
    "unheld_specifics",
    "clauses",
    "content_overlap",
    "declined_by_llm",
    "endpoint_url",
    "Verdict",
    "SUPPORT_SCORE",
    "NOT_STATED",
    "MAX_REPLY_BYTES",
]
