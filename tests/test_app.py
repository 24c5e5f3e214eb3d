"""The Streamlit app, driven by streamlit.testing.v1.AppTest against real indexes and the real model.

AppTest re-runs the whole script on each interaction, so each test walks one user journey.
"""

from __future__ import annotations

import html
import io
import json
import re
import zipfile
from pathlib import Path

import pytest
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas
from streamlit.testing.v1 import AppTest

from sscp_rag.display import HIGHLIGHT_CLOSE, HIGHLIGHT_OPEN, md_unescape
from sscp_rag.evaluation import parse_question
from sscp_rag.feedback import to_eval_lines
from sscp_rag.index import Index
from sscp_rag.retrieval import Filters, search
from sscp_rag.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
pytestmark = pytest.mark.slow

EVIL_LINE_1 = "The chronology held a pasted web page: <script>alert(1)</script> in the health visitor notes."
EVIL_LINE_2 = "The school email said **bold** [link](http://x) and the referral was never followed up."


def new_app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=120)


def _no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _ask(at: AppTest, question: str) -> None:
    at.chat_input(key="ask_input").set_value(question).run()
    _no_exception(at)


def _all_markdown(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown]


def _table(at: AppTest, column: str):
    """The first dataframe shown that has ``column`` (dataframes carry no key in AppTest)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def _hit_headers(at: AppTest) -> list[str]:
    """The visible headers of the search hits shown, e.g. '1. SCR Child D, p. 11 · serious case review · 2018'."""
    return [md_unescape(v) for v in _all_markdown(at) if re.match(r"\*\*\d+\. ", v)]


@pytest.fixture
def demo_app_env(monkeypatch: pytest.MonkeyPatch, demo_index: Index, demo_settings: Settings, tmp_path: Path) -> Path:
    """Point the app at the session's demo index; feedback goes to a file in tmp_path."""
    feedback = tmp_path / "feedback.jsonl"
    monkeypatch.setenv("SSCP_RAG_INDEX_DIR", str(demo_settings.index_dir))
    monkeypatch.setenv("SSCP_RAG_CORPUS_DIR", str(demo_settings.corpus_dir))
    monkeypatch.setenv("SSCP_RAG_FEEDBACK_PATH", str(feedback))
    return feedback


def test_ask_gives_a_cited_answer_a_followup_and_exports(demo_app_env: Path, demo_index: Index) -> None:
    at = new_app().run()
    _no_exception(at)
    assert [t.label for t in at.tabs] == ["Ask", "Search", "Across reviews", "Library"]

    _ask(at, "What did reviews say about neglect?")
    turn = at.session_state["turns"][0]
    ans = turn["answer"]
    assert not ans.abstained and ans.quotes
    shown = [md_unescape(v) for v in _all_markdown(at)]
    # every quote appears in the chat, in curly quotes, with its [n] marker
    for q in ans.quotes:
        assert any(f"\u201c{q.text}\u201d [{q.source}]" in v for v in shown), q.text
    # each source is an expander labelled with its citation; inside: the passage, the page image, the PDF
    labels = [md_unescape(e.label) for e in at.expander]
    for s in ans.sources:
        assert any(lbl.startswith(f"[{s.n}] {s.citation}") for lbl in labels), s.citation
    assert any(re.match(r"\[\d+\] SCR Child D, pp?\. \d+", lbl) for lbl in labels)
    assert len(at.get("image")) >= len(ans.sources)  # one page image per source
    downloads = [b.label for b in at.get("download_button")]
    assert "Whole report (PDF)" in downloads and any(d.startswith("Cited p") for d in downloads)
    assert "Markdown" in downloads and "Word" in downloads

    # export: Markdown with the quotes and sources, previewed in the app; Word bytes with the question
    md = turn["markdown"]
    assert md.strip() in [c.value.strip() for c in at.code]
    for q in ans.quotes:
        assert md_unescape(q.text) in md_unescape(md) and f"[{q.source}]" in md
    for s in ans.sources:
        assert md_unescape(s.citation) in md_unescape(md)
    docx = turn["docx"]
    assert docx[:2] == b"PK"
    xml = zipfile.ZipFile(io.BytesIO(docx)).read("word/document.xml").decode("utf-8")
    body = html.unescape(re.sub(r"<[^>]+>", "", xml))
    assert "What did reviews say about neglect?" in body
    assert all(q.text in body for q in ans.quotes)

    # a follow-up uses the conversation: the topic carries over, the named report is searched
    # (SCR HH, II and JJ, whose children were neglected; SCR Child G never mentions neglect)
    _ask(at, "and in the HH, II and JJ review?")
    follow = at.session_state["turns"][1]["answer"]
    assert follow.standalone_query != follow.question
    assert "neglect" in follow.standalone_query.lower() and "hh, ii and jj" in follow.standalone_query.lower()
    assert any("searched as" in c.value and "HH, II and JJ" in md_unescape(c.value) for c in at.caption)
    assert follow.sections[0].short_title == "SCR HH, II and JJ"
    assert len(at.chat_message) == 4  # two questions, two answers


def test_feedback_is_saved_in_the_eval_format(demo_app_env: Path) -> None:
    feedback_path = demo_app_env
    at = new_app().run()
    _ask(at, "What is the learning about co-sleeping on a sofa?")
    ans = at.session_state["turns"][0]["answer"]

    # thumbs up without a correction: the cited pages are the relevant ones
    next(b for b in at.button if b.label == "Helpful").click().run()
    _no_exception(at)
    lines = [json.loads(x) for x in feedback_path.read_text().splitlines()]
    assert len(lines) == 1
    rec = lines[0]
    assert {"id", "question", "relevant", "answerable", "feedback", "timestamp"} <= set(rec)
    assert rec["feedback"] == "up" and rec["answerable"] is True and rec["question"] == ans.standalone_query
    cited = {(s.file, p) for s in ans.sources for p in range(s.page_start, s.page_end + 1)}
    assert {(r["doc"], p) for r in rec["relevant"] for p in r["pages"]} == cited
    assert any("feedback was saved" in c.value for c in at.caption)
    assert parse_question(json.dumps(to_eval_lines([rec])[0]), 1).answerable  # loads as an eval-set line

    # thumbs down naming the right source; a bad page entry is refused first and nothing is written
    _ask(at, "What did reviews find about disguised compliance?")
    at.selectbox(key="fb_doc_1").set_value("scr-child-g.pdf")
    at.text_input(key="fb_pages_1").set_value("five")
    next(b for b in at.button if b.label == "Not helpful").click().run()
    assert any("cannot read the page" in e.value for e in at.error)
    assert len(feedback_path.read_text().splitlines()) == 1
    at.text_input(key="fb_pages_1").set_value("5-6")
    next(b for b in at.button if b.label == "Not helpful").click().run()
    _no_exception(at)
    rec = json.loads(feedback_path.read_text().splitlines()[-1])
    assert rec["feedback"] == "down"
    assert rec["relevant"] == [{"doc": "scr-child-g.pdf", "pages": [5, 6]}] and rec["answerable"] is True
    assert rec["right_source"] == {"doc": "scr-child-g.pdf", "pages": [5, 6]}


def test_each_search_filter_changes_the_results(demo_app_env: Path, demo_index: Index) -> None:
    query = "parents who seem to cooperate but nothing changes"
    at = new_app().run()
    at.text_input(key="search_q").set_value(query).run()
    _no_exception(at)
    base = _hit_headers(at)
    expected = search(demo_index, query, k=100)
    assert base == [f"{h.rank}. {h.citation} · " + _type_year(h) for h in expected[:10]]
    counts = _table(at, "Hits")
    assert int(counts["Hits"].sum()) == len(expected)

    def check(filters: Filters, pred) -> list[str]:
        at.run()
        _no_exception(at)
        got = _hit_headers(at)
        want = search(demo_index, query, k=100, filters=filters)
        assert want and all(pred(h) for h in want)
        assert got == [f"{h.rank}. {h.citation} · " + _type_year(h) for h in want[:10]]
        assert got != base  # the filter changed what is shown
        return got

    at.multiselect(key="f_types").set_value(["SCR"])
    got = check(Filters(types=("SCR",)), lambda h: h.type == "SCR")
    assert all("serious case review" in g for g in got)
    at.multiselect(key="f_types").set_value([])

    at.slider(key="f_years").set_value((2019, 2020))
    got = check(Filters(year_from=2019, year_to=2020), lambda h: 2019 <= h.year <= 2020)
    assert all(g.endswith(("2019", "2020")) for g in got)
    at.slider(key="f_years").set_value((2014, 2021))

    at.multiselect(key="f_themes").set_value(["safer-sleep"])
    check(Filters(themes=("safer-sleep",)), lambda h: "safer-sleep" in h.themes)
    at.multiselect(key="f_themes").set_value([])

    at.multiselect(key="f_reports").set_value(["scr-child-g.pdf"])
    got = check(Filters(reports=("scr-child-g.pdf",)), lambda h: h.file == "scr-child-g.pdf")
    assert all(". SCR Child G, p" in g for g in got)
    assert list(_table(at, "Hits")["Report"]) == ["SCR Child G"]
    at.multiselect(key="f_reports").set_value([]).run()

    # paging: page 2 holds ranks 11-20
    assert _hit_headers(at) == base
    at.number_input(key="search_page").set_value(2).run()
    assert [int(h.split(".")[0]) for h in _hit_headers(at)] == list(range(11, 11 + len(_hit_headers(at))))


def _type_year(h) -> str:
    from sscp_rag.records import REVIEW_TYPE_LABELS

    return REVIEW_TYPE_LABELS[h.type] + (f" · {h.year}" if h.year else "")


def test_no_index_shows_how_to_build_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SSCP_RAG_INDEX_DIR", str(tmp_path / "no-index"))
    monkeypatch.setenv("SSCP_RAG_CORPUS_DIR", str(tmp_path / "corpus"))
    at = new_app().run()
    _no_exception(at)
    assert any("No index to search yet" in w.value for w in at.warning)
    assert any(c.value.startswith("sscp-rag ingest --corpus") and "no-index" in c.value for c in at.code)
    assert not at.tabs and not at.chat_input
    assert any(b.label == "Build the index now" for b in at.button)


def _evil_pdf(path: Path) -> None:
    """A two-page report whose text holds HTML, script and Markdown (drawn as literal text)."""
    c = canvas.Canvas(str(path), pagesize=A4)
    c.setTitle("Serious Case Review: Child Q")
    y = 800
    for line in (
        "Serious Case Review: Child Q",
        "1. Findings",
        "Child Q was a nine year old who missed school for long periods in the winter term.",
        EVIL_LINE_1,
        EVIL_LINE_2,
        "Professionals did not ask who else was living in the household or why the curtains stayed shut.",
    ):
        c.drawString(60, y, line)
        y -= 22
    c.showPage()
    c.drawString(60, 800, "2. Learning: ask who lives in the home, and follow up school absence with a visit.")
    c.drawString(60, 778, "A referral that gets no reply must be chased; silence is not reassurance for Child Q.")
    c.showPage()
    c.save()


def _plain_pdf(path: Path, title: str) -> None:
    c = canvas.Canvas(str(path), pagesize=A4)
    c.drawString(60, 800, title)
    c.drawString(60, 778, "The review of Baby R found that the safer sleep advice was given once and not repeated.")
    c.drawString(60, 756, "Health visitors should repeat safer sleep advice when family circumstances change.")
    c.showPage()
    c.save()


def test_corpus_text_is_inert_and_the_library_builds_uploads_and_reingests(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    _evil_pdf(corpus / "scr-child-q.pdf")
    monkeypatch.setenv("SSCP_RAG_CORPUS_DIR", str(corpus))
    monkeypatch.setenv("SSCP_RAG_INDEX_DIR", str(tmp_path / "index"))
    monkeypatch.setenv("SSCP_RAG_FEEDBACK_PATH", str(tmp_path / "feedback.jsonl"))

    # no index yet: build it from the app (with progress), then the tabs appear
    at = new_app().run()
    assert any("No index to search yet" in w.value for w in at.warning)
    next(b for b in at.button if b.label == "Build the index now").click().run()
    _no_exception(at)
    assert [t.label for t in at.tabs] == ["Ask", "Search", "Across reviews", "Library"]
    assert any("Index rebuilt: 1 documents" in s.value for s in at.success)

    # search: the passage holding <script> and Markdown is shown as escaped text, terms highlighted
    at.text_input(key="search_q").set_value("script alert bold link health visitor notes").run()
    _no_exception(at)
    _assert_inert(at)
    assert any(":orange-background[**script**]" in v for v in _all_markdown(at))

    # ask: quotes and passages are escaped too
    _ask(at, "What did the health visitor notes and the school email say?")
    _assert_inert(at)
    assert not at.get("html")  # nothing is rendered as HTML

    # upload: a non-PDF is refused and nothing is written; a PDF is saved with its manifest entry
    lib = next(t for t in at.tabs if t.label == "Library")
    lib.text_input(key="up_title").set_value("Serious Case Review: Baby R")
    lib.text_input(key="up_short").set_value("SCR Baby R")
    lib.selectbox(key="up_type").set_value("SCR")
    lib.number_input(key="up_year").set_value(2022)
    at.get("file_uploader")[0].set_value(("notes.pdf", b"just some notes", "application/pdf"))
    next(b for b in at.button if b.label == "Add to the corpus").click().run()
    assert any("not a PDF" in e.value for e in at.error)
    assert sorted(p.name for p in corpus.iterdir()) == ["scr-child-q.pdf"]

    _plain_pdf(tmp_path / "baby-r.pdf", "Serious Case Review: Baby R")
    at.get("file_uploader")[0].set_value(("SCR Baby R.pdf", (tmp_path / "baby-r.pdf").read_bytes(), "application/pdf"))
    next(b for b in at.button if b.label == "Add to the corpus").click().run()
    _no_exception(at)
    assert any("Saved SCR-Baby-R.pdf" in md_unescape(s.value) for s in at.success)
    manifest = json.loads((corpus / "manifest.json").read_text())
    assert manifest["documents"] == [
        {"file": "SCR-Baby-R.pdf", "title": "Serious Case Review: Baby R", "short_title": "SCR Baby R",
         "type": "SCR", "year": 2022, "themes": []}
    ]  # fmt: skip
    assert any("corpus has changed" in w.value and "1 added" in w.value for w in at.warning)

    # re-ingest: the new report is indexed and listed
    next(b for b in at.button if b.label == "Re-ingest the corpus").click().run()
    _no_exception(at)
    assert any("Index rebuilt: 2 documents" in s.value for s in at.success)
    assert any("questions embedded with onnx-fp32" in v for v in _all_markdown(at))  # the fast start-up runtime
    table = _table(at, "Pages")
    assert set(table["Report"]) == {"SCR Baby R", "Serious Case Review: Child Q"}
    assert table.set_index("Report").loc["SCR Baby R", "Year"] == 2022


def _assert_inert(at: AppTest) -> None:
    """Every element showing the evil passage escapes its HTML and Markdown, and reads as the text."""
    values = _all_markdown(at) + [e.label for e in at.expander]
    shown = [v for v in values if "script" in v or "bold" in v]
    assert shown, "the passage is not shown"
    for v in shown:
        ours_removed = v.replace(HIGHLIGHT_OPEN, "").replace(HIGHLIGHT_CLOSE, "")
        assert "<script>" not in v and "</script>" not in v
        assert "**bold**" not in ours_removed and "[link](" not in ours_removed
    plain = " ".join(" ".join(md_unescape(v).split()) for v in shown)
    assert "<script>alert(1)</script>" in plain
    assert "**bold** [link](http://x)" in plain


# --------------------------------------------------------------------------------------------
# hostile input (see also tests/test_hostile.py)


def _captions(at: AppTest) -> list[str]:
    return [img.caption for el in at.get("image") for img in el.proto.imgs]


def test_file_names_in_captions_are_escaped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, embedder) -> None:
    """A corpus file named with a Markdown link must not become a live link under its page image."""
    from sscp_rag.ingest import build_index

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    name = "[click here](https:evil.example) **Child Q**.pdf"  # no "/": it is a file name
    _evil_pdf(corpus / name)
    settings = Settings(corpus_dir=corpus, index_dir=tmp_path / "index")
    build_index(settings, progress=False, embedder=embedder)
    monkeypatch.setenv("SSCP_RAG_CORPUS_DIR", str(corpus))
    monkeypatch.setenv("SSCP_RAG_INDEX_DIR", str(settings.index_dir))
    monkeypatch.setenv("SSCP_RAG_FEEDBACK_PATH", str(tmp_path / "feedback.jsonl"))
    at = new_app().run()
    _ask(at, "What did the health visitor notes say about school absence?")
    captions = _captions(at)
    assert captions, "no page image shown"
    for caption in captions:
        assert "](" not in caption and "**" not in caption, caption  # no live link or emphasis
        assert re.fullmatch(r"Page \d+ of " + re.escape(name), md_unescape(caption)), caption


def test_control_characters_in_a_question_and_a_failing_export_lose_no_answer(
    demo_app_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sscp_rag.export as export_mod

    def word_buttons() -> int:
        return sum(b.label == "Word" for b in at.get("download_button"))

    at = new_app().run()
    before = word_buttons()  # (other tabs may offer Word downloads too)
    _ask(at, "What did reviews say about\x0b neglect?\x07")  # Word cannot hold \x0b or \x07
    turn = at.session_state["turns"][0]
    assert turn["docx"][:2] == b"PK" and turn["markdown"]
    assert word_buttons() == before + 1

    def broken(ans):
        raise ValueError("All strings must be XML compatible")

    monkeypatch.setattr(export_mod, "answer_to_docx", broken)  # any export failure, not just that one
    _ask(at, "What is the learning about co-sleeping on a sofa?")
    turns = at.session_state["turns"]
    assert len(turns) == 2 and turns[1]["docx"] is None and turns[1]["markdown"]  # the answer is kept
    assert any("The docx export failed" in md_unescape(c.value) for c in at.caption)
    assert word_buttons() == before + 1  # the first turn's still, none for the second


def test_library_reruns_do_not_read_the_corpus_pdfs_again(demo_app_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Library tab checks whether the corpus changed on every rerun: by size and modification
    time, not by hashing every PDF again."""
    import sscp_rag.corpus as corpus_mod

    read: list[Path] = []
    real = corpus_mod.sha256_file
    monkeypatch.setattr(corpus_mod, "sha256_file", lambda path: read.append(path) or real(path))
    at = new_app().run()
    _no_exception(at)
    at.run()
    _no_exception(at)
    assert not any("corpus has changed" in w.value for w in at.warning)
    assert read == []
