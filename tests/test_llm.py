"""The optional LLM synthesis against a real HTTP server on 127.0.0.1 that speaks the OpenAI
chat-completions protocol with scripted replies: a good reply, one with a bad citation and an
unsupported sentence, an HTTP error, a timeout and garbage. In every case the extractive answer
must come back intact and nothing may be raised."""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sscp_rag.answer import answer
from sscp_rag.index import Index
from sscp_rag.llm import build_messages, parse_citations, split_reply, synthesise, verify
from sscp_rag.records import Answer

QUESTION = "What did the Child D review say about neglect?"


@dataclass
class Script:
    """What the scripted server does with the next request."""

    status: int = 200
    body: str = ""
    delay: float = 0.0
    requests: list[dict] = field(default_factory=list)


class ChatServer:
    """A real ThreadingHTTPServer on 127.0.0.1 (port 0) in a thread, answering
    ``POST /v1/chat/completions`` as the current :class:`Script` says."""

    def __init__(self) -> None:
        self.script = Script()
        self.release = threading.Event()  # wakes a sleeping handler at shutdown
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                server.script.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": json.loads(raw or b"{}")}
                )
                script = server.script
                if self.path != "/v1/chat/completions":
                    script = Script(status=404, body='{"error": "not found"}')
                if script.delay:
                    server.release.wait(script.delay)
                try:
                    payload = script.body.encode("utf-8")
                    self.send_response(script.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (the timeout case)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def reply(self, content: str | None, **extra) -> None:
        """Script a well-formed chat completion whose message content is ``content``."""
        body = {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "model": "scripted",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            **extra,
        }
        self.script = Script(body=json.dumps(body))

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def server():
    srv = ChatServer()
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def extractive(demo_index: Index) -> Answer:
    a = answer(demo_index, QUESTION)
    assert not a.abstained and len(a.sources) >= 2
    return a


def _llm_settings(index: Index, server: ChatServer, **kw):
    return index.settings.with_overrides(llm_base_url=server.base_url, llm_model="scripted-model", **kw)


def _assert_extractive_intact(result: Answer, extractive: Answer) -> None:
    assert result.question == extractive.question
    assert result.abstained is False
    assert result.sections == extractive.sections
    assert result.sources == extractive.sources
    assert result.message == extractive.message


def _good_sentences(a: Answer) -> list[str]:
    """Sentences a faithful model would write: the quotes' own words, each with its [n]."""
    return [q.text.rstrip(".") + f" [{q.source}]." for q in a.quotes[:3]]


def test_good_reply_is_kept_and_request_carries_passages_and_question(demo_index, server, extractive):
    good = _good_sentences(extractive)
    server.reply(" ".join(good))
    settings = _llm_settings(demo_index, server, llm_api_key="sekret-token")
    result = answer(demo_index, QUESTION, settings=settings)

    _assert_extractive_intact(result, extractive)
    assert result.synthesis == " ".join(good)
    assert result.synthesis_notes == ()

    (req,) = server.script.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["Authorization"] == "Bearer sekret-token"
    body = req["body"]
    assert body["model"] == "scripted-model"
    user = body["messages"][-1]["content"]
    assert body["messages"][0]["role"] == "system" and "square brackets" in body["messages"][0]["content"]
    assert body["temperature"] == 0
    assert QUESTION in user
    for src in extractive.sources:
        assert f"[{src.n}] {src.citation}" in user
        assert " ".join(src.passage.split())[:300] in user


def test_bad_citation_unsupported_and_uncited_sentences_are_dropped(demo_index, server, extractive):
    good = _good_sentences(extractive)[0]
    bad_cite = "Child D was later adopted by a family in Scotland [99]."
    unsupported = "The review found that the family's pet dog had been trained by the police dog unit [1]."
    uncited = "Neglect is a serious matter for every agency."
    server.reply(f"{good} {bad_cite} {unsupported}\n\n{uncited}")
    result = synthesise(demo_index, extractive, _llm_settings(demo_index, server))

    _assert_extractive_intact(result, extractive)
    assert result.synthesis == good
    notes = "\n".join(result.synthesis_notes)
    assert len(result.synthesis_notes) == 3
    assert "[99]" in notes and "not in the sources" in notes
    assert "does not support" in notes and "pet dog" in notes
    assert "cites no passage" in notes


def test_all_sentences_dropped_leaves_no_synthesis(demo_index, server, extractive):
    server.reply("The moon is made of cheese [1]. Everything is fine [42].")
    result = synthesise(demo_index, extractive, _llm_settings(demo_index, server))
    _assert_extractive_intact(result, extractive)
    assert result.synthesis == ""
    assert any("no sentence that the sources support" in n for n in result.synthesis_notes)


def test_http_error_keeps_extractive_answer(demo_index, server, extractive):
    server.script = Script(status=500, body='{"error": {"message": "model crashed"}}')
    result = synthesise(demo_index, extractive, _llm_settings(demo_index, server))
    _assert_extractive_intact(result, extractive)
    assert result.synthesis == ""
    (note,) = result.synthesis_notes
    assert server.base_url in note and "HTTP 500" in note and "model crashed" in note
    assert note.endswith("showing the extractive answer")


def test_timeout_keeps_extractive_answer(demo_index, server, extractive):
    server.reply("Too late [1].")
    server.script.delay = 5.0
    result = synthesise(demo_index, extractive, _llm_settings(demo_index, server, llm_timeout=1))
    _assert_extractive_intact(result, extractive)
    assert result.synthesis == ""
    assert result.synthesis_notes == (
        f"LLM endpoint {server.base_url} timed out after 1 s; showing the extractive answer",
    )


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("<html>502 Bad Gateway</html>", "did not answer JSON"),
        ('{"object": "error"}', "no choices"),
        ('{"choices": []}', "no choices"),
        ('{"choices": [{"message": {"role": "assistant", "content": "   "}}]}', "empty message"),
        ('{"choices": [{"message": {"role": "assistant", "content": null}}]}', "empty message"),
    ],
)
def test_garbage_replies_keep_extractive_answer(demo_index, server, extractive, body, expected):
    server.script = Script(status=200, body=body)
    result = synthesise(demo_index, extractive, _llm_settings(demo_index, server))
    _assert_extractive_intact(result, extractive)
    assert result.synthesis == ""
    (note,) = result.synthesis_notes
    assert expected in note and note.endswith("showing the extractive answer")


def test_unreachable_endpoint_keeps_extractive_answer(demo_index, extractive):
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    result = synthesise(demo_index, extractive, demo_index.settings.with_overrides(llm_base_url=url))
    _assert_extractive_intact(result, extractive)
    (note,) = result.synthesis_notes
    assert f"could not reach LLM endpoint {url}" in note


def test_extractive_is_the_default(demo_index, server, extractive):
    server.script = Script()
    assert demo_index.settings.llm_base_url == ""
    assert extractive.synthesis == "" and extractive.synthesis_notes == ()
    assert server.script.requests == []


def test_abstained_answer_does_not_call_the_llm(demo_index, server):
    server.reply("Bread needs flour [1].")
    settings = _llm_settings(demo_index, server)
    result = answer(demo_index, "What is the recipe for sourdough bread?", settings=settings)
    assert result.abstained and result.synthesis == ""
    assert server.script.requests == []


def test_parse_citations_and_split_reply():
    assert parse_citations("a [1] b [2, 4][3] c [5-7] d [8 and 9]") == (1, 2, 4, 3, 5, 6, 7, 8, 9)
    assert parse_citations("no citations (see p. 3)") == ()
    sents = split_reply("First claim [1]. Second claim. [2]\n\n- Third claim [3].\n\n[4]")
    assert sents == ["First claim [1].", "Second claim. [2]", "Third claim [3]. [4]"]


def test_reasoning_block_is_not_part_of_the_summary(demo_index, server, extractive):
    good = _good_sentences(extractive)[0]
    server.reply(f"<think>The user wants neglect. Maybe invent something.</think>\n{good}")
    result = synthesise(demo_index, extractive, _llm_settings(demo_index, server))
    assert result.synthesis == good and result.synthesis_notes == ()


def test_verify_paraphrase_and_negation(demo_index, extractive):
    src = extractive.sources[0]
    words = " ".join(src.passage.split())
    sentence = next(q.text for q in extractive.quotes if q.source == src.n)
    verdicts = verify(demo_index, [sentence.rstrip(".") + f" [{src.n}].", "It snowed in July [1]."], extractive.sources)
    assert verdicts[0].kept and verdicts[0].overlap >= 0.99
    assert not verdicts[1].kept
    assert build_messages("q?", extractive.sources)[1]["content"].count("[") >= len(extractive.sources)
    assert words[:50] in build_messages("q?", extractive.sources)[1]["content"]
