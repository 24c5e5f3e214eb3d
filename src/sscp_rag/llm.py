"""Optional LLM synthesis over an extractive answer, verified sentence by sentence.

Active only when ``settings.llm_base_url`` names an OpenAI-compatible endpoint (a local Ollama,
vLLM or llama.cpp server, ...). The extractive answer is built first and always kept; the model
only adds a short prose summary on top of it.

Protocol: one ``POST {llm_base_url}/chat/completions`` (OpenAI chat-completions) with
``model = settings.llm_model``, ``temperature = 0``, a bearer token when ``settings.llm_api_key``
is set, and a timeout of ``settings.llm_timeout`` seconds. The request carries the answer's
numbered sources (``[n]``, citation, passage) and the question, and instructs the model to answer
only from the passages and to end every sentence with ``[n]`` citations.

Verification rule (every sentence of the reply, after splitting it with pysbd):

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

   Calibration on the demo corpus (hand-written claims against passages of SCR Child D, SCR
   Family M and the SUDI thematic review): correct paraphrases scored 0.57-0.83; unsupported
   claims scored 0.27-0.55, except a negation flip (0.70) that rule 4 catches. Word overlap alone
   over a whole page passes unsupported claims (a page holds most common words), and cosine alone
   passes topical claims ("should have removed the children at the first MARAC": 0.71), hence
   the mean over sentence windows.

Dropped sentences are listed in ``Answer.synthesis_notes``; the kept ones (with their citations)
form ``Answer.synthesis``. If nothing survives, ``synthesis`` stays empty and a note says so.

Failure is never raised to the user: a connection error, an HTTP error status, a timeout or a
reply that is not a chat completion (not JSON, no ``choices``, empty content) leaves the extractive
answer untouched and adds one plain note such as "LLM endpoint http://127.0.0.1:11434/v1 timed out
after 30 s; showing the extractive answer".
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import httpx

from sscp_rag.errors import LLMError
from sscp_rag.index import Index
from sscp_rag.records import REVIEW_TYPE_LABELS, Answer, Source
from sscp_rag.settings import Settings

SUPPORT_SCORE = 0.56
MAX_PASSAGE_CHARS = 2500
FALLBACK = "showing the extractive answer"

SYSTEM_PROMPT = (
    "You summarise what child safeguarding review documents say. Answer the question using ONLY "
    "the numbered passages given. Do not add facts, advice or knowledge of your own. End every "
    "sentence with the number(s) of the passage(s) that support it, in square brackets, e.g. [1] "
    "or [2][3]. Use only numbers from the list. Write at most five sentences of plain prose, no "
    "headings or lists. If the passages do not answer the question, say so in one sentence."
)

_CITE = re.compile(r"\[\s*(\d+(?:\s*(?:[,;]|-|–|and)\s*\d+)*)\s*\]")
_LEADING_CITES = re.compile(r"^\s*((?:\[[^\]]*\]\s*)+)")
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_NEGATION = re.compile(r"\b(not|no|never|nobody|none|neither|nor|cannot|without)\b|n't\b|\bno one\b", re.IGNORECASE)
_STOP = frozenset(
    "a an and are as at be been being but by can could did do does for from had has have he her "
    "his how i if in into is it its may might more most must no not of on or our she should so "
    "such than that the their them then there these they this those to too was we were what when "
    "where which while who whom why will with would you your also very all any each other some "
    "only own same just about over after before because during until against between through".split()
)


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


def build_messages(question: str, sources: Sequence[Source]) -> list[dict[str, str]]:
    """The chat messages: the rules, then the numbered passages and the question."""
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
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def chat(settings: Settings, messages: list[dict[str, str]]) -> str:
    """The assistant's reply text from the endpoint. Raises LLMError (with a plain message) on a
    connection error, timeout, HTTP error status or a reply that is not a chat completion."""
    url = endpoint_url(settings)
    headers = {"Content-Type": "application/json"}
    if settings.llm_api_key:
        headers["Authorization"] = f"Bearer {settings.llm_api_key}"
    body = {"model": settings.llm_model, "messages": messages, "temperature": 0, "stream": False}
    base = settings.llm_base_url
    try:
        resp = httpx.post(url, json=body, headers=headers, timeout=settings.llm_timeout)
    except httpx.TimeoutException as exc:
        raise LLMError(f"LLM endpoint {base} timed out after {settings.llm_timeout:g} s") from exc
    except (httpx.HTTPError, httpx.InvalidURL) as exc:  # connection refused, DNS, bad URL, ...
        raise LLMError(f"could not reach LLM endpoint {base} ({type(exc).__name__}: {exc})") from exc
    if resp.status_code >= 400:
        detail = " ".join(resp.text.split())[:200]
        raise LLMError(f"LLM endpoint {base} answered HTTP {resp.status_code}" + (f" ({detail})" if detail else ""))
    try:
        data: Any = resp.json()
    except (ValueError, json.JSONDecodeError) as exc:
        raise LLMError(f"LLM endpoint {base} did not answer JSON") from exc
    try:
        choices = data["choices"]
        content = choices[0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise LLMError(f"LLM endpoint {base} answered without a chat completion (no choices)") from exc
    if not isinstance(content, str) or not _THINK.sub("", content).strip():
        raise LLMError(f"LLM endpoint {base} answered an empty message")
    return _THINK.sub("", content).strip()


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


def split_reply(text: str) -> list[str]:
    """The reply's sentences; citations a model put after the full stop ("... there. [4]") are
    attached to the sentence they follow."""
    import pysbd

    seg = pysbd.Segmenter(language="en", clean=False)
    out: list[str] = []
    for para in re.split(r"\n\s*\n|\n(?=\s*[-*•]\s)", text):
        para = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s+", "", para.strip())
        if not para:
            continue
        for sent in seg.segment(para):
            sent = sent.strip()
            lead = _LEADING_CITES.match(sent)
            if lead and out:
                out[-1] = out[-1] + " " + lead.group(1).strip()
                sent = sent[lead.end() :].strip()
            if sent:
                out.append(sent)
    return [" ".join(s.split()) for s in out if re.search(r"\w", _CITE.sub("", s))]


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


def verify(index: Index, sentences: Sequence[str], sources: Sequence[Source]) -> list[Verdict]:
    """Apply the module's verification rule to each sentence of a reply."""
    by_n = {s.n: s for s in sources}
    verdicts: list[Verdict] = []
    checked: list[tuple[int, str, tuple[int, ...]]] = []
    for sent in sentences:
        cites = parse_citations(sent)
        if not cites:
            verdicts.append(Verdict(sent, cites, False, "it cites no passage"))
            continue
        missing = [n for n in cites if n not in by_n]
        if missing:
            bad = ", ".join(f"[{n}]" for n in missing)
            verdicts.append(Verdict(sent, cites, False, f"it cites {bad}, which is not in the sources"))
            continue
        checked.append((len(verdicts), sent, cites))
        verdicts.append(Verdict(sent, cites, False, "unchecked"))
    if not checked:
        return verdicts
    windows = {n: _windows(by_n[n].passage) for _, _, cites in checked for n in cites}
    singles = {n: [w for w, idx in wins if len(idx) == 1] for n, wins in windows.items()}
    order = list(singles)
    claims = [_CITE.sub("", sent).strip() for _, sent, _ in checked]
    vecs = index.embedder.encode_live(claims + [s for n in order for s in singles[n]])
    cvecs, svecs = vecs[: len(claims)], vecs[len(claims) :]
    start: dict[int, int] = {}
    pos = 0
    for n in order:
        start[n] = pos
        pos += len(singles[n])
    for (at, sent, cites), cvec in zip(checked, cvecs):
        best: tuple[float, float, float, str] = (-1.0, 0.0, 0.0, "")  # score, overlap, cosine, window
        claim_stems = _stems(sent)
        for n in cites:
            sims = svecs[start[n] : start[n] + len(singles[n])] @ cvec
            for text, idx in windows[n]:
                overlap = len(claim_stems & _stems(text)) / len(claim_stems) if claim_stems else 0.0
                cos = float(max(sims[i] for i in idx))
                score = (overlap + cos) / 2
                if score > best[0]:
                    best = (score, overlap, cos, text)
        score, overlap, cos, window = best
        if score < SUPPORT_SCORE:
            reason = f"the cited passage does not support it (word overlap {overlap:.0%}, similarity {cos:.2f})"
            verdicts[at] = Verdict(sent, cites, False, reason, overlap, cos)
        elif _negated(window) and not _negated(sent):
            verdicts[at] = Verdict(
                sent, cites, False, "the cited passage says the opposite (it is negated there)", overlap, cos
            )
        else:
            verdicts[at] = Verdict(sent, cites, True, "", overlap, cos)
    return verdicts


def _clip(text: str, n: int = 120) -> str:
    return text if len(text) <= n else text[: n - 1].rsplit(" ", 1)[0] + "…"


def synthesise(index: Index, answer: Answer, settings: Settings) -> Answer:
    """``answer`` with a verified LLM summary in ``synthesis`` and notes in ``synthesis_notes``.

    Never raises for an LLM failure: the extractive answer is returned with a note instead.
    """
    notes = list(answer.synthesis_notes)
    if not settings.llm_base_url:
        return answer
    if answer.abstained or not answer.sources:
        notes.append("no passages address the question, so the LLM was not asked")
        return replace(answer, synthesis_notes=tuple(notes))
    try:
        reply = chat(settings, build_messages(answer.standalone_query or answer.question, answer.sources))
    except LLMError as exc:
        notes.append(f"{exc}; {FALLBACK}")
        return replace(answer, synthesis="", synthesis_notes=tuple(notes))
    sentences = split_reply(reply)
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
    "parse_citations",
    "content_overlap",
    "endpoint_url",
    "Verdict",
    "SUPPORT_SCORE",
]
