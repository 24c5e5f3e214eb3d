"""The app's Across reviews tab, driven by streamlit.testing.v1.AppTest against the real demo index:
the theme map (its pickers open a cell's passages: AppTest cannot click a chart, the browser test
does), the recommendations register with filters and downloads, and the briefing builder."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from sscp_rag.display import md_unescape
from sscp_rag.index import Index
from sscp_rag.settings import Settings

APP = str(Path(__file__).resolve().parent.parent / "app.py")
pytestmark = pytest.mark.slow


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, demo_index: Index, demo_settings: Settings, tmp_path: Path) -> AppTest:
    monkeypatch.setenv("SSCP_RAG_INDEX_DIR", str(demo_settings.index_dir))
    monkeypatch.setenv("SSCP_RAG_CORPUS_DIR", str(demo_settings.corpus_dir))
    monkeypatch.setenv("SSCP_RAG_FEEDBACK_PATH", str(tmp_path / "feedback.jsonl"))
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_theme_map_cell_opens_its_passages(app: AppTest) -> None:
    assert "Across reviews" in [t.label for t in app.tabs]
    charts = app.get("vega_lite_chart")  # the heatmap and the years chart
    assert len(charts) == 2 and all('"rect"' in c.proto.spec or '"line"' in c.proto.spec for c in charts)
    app.selectbox(key="across_theme").set_value("neglect")
    app.selectbox(key="across_report").set_value("scr-child-d.pdf").run()
    assert not app.exception, [e.value for e in app.exception]
    shown = [md_unescape(m.value) for m in app.markdown]
    assert any("passages of SCR Child D on Neglect, strongest first" in s for s in shown), shown
    labels = [md_unescape(e.label) for e in app.expander]
    assert any(label.startswith("SCR Child D, p") for label in labels), labels


def test_register_filters_and_downloads(app: AppTest) -> None:
    table = next(d.value for d in app.dataframe if "Recommendation" in d.value.columns)
    assert len(table) >= 80 and set(table.columns) >= {"Report", "Pages", "Agency", "Recommendation"}
    app.selectbox(key="reg_theme").set_value("safer-sleep")
    app.text_input(key="reg_agency").set_value("community health provider").run()
    table = next(d.value for d in app.dataframe if "Recommendation" in d.value.columns)
    assert 0 < len(table) < 10
    assert all("ommunity health provider" in a for a in table["Agency"])
    assert {"reg_csv", "reg_docx"} <= {b.key for b in app.get("download_button")}
    app.text_input(key="reg_agency").set_value("no such agency").run()
    assert any("No recommendations match" in i.value for i in app.info)


def test_briefing_builder(app: AppTest) -> None:
    app.text_input(key="brief_topic").set_value("professional curiosity")
    app.button(key="FormSubmitter:briefing_form-Build the briefing").click().run()
    assert not app.exception, [e.value for e in app.exception]
    saved = app.session_state["briefing"]
    b = saved["briefing"]
    assert b.quotes and "## What happened" in saved["markdown"]
    shown = "\n".join(md_unescape(m.value) for m in app.markdown)
    assert b.quotes[0].text in shown and b.quotes[0].citation in shown
    assert {"brief_docx", "brief_md"} <= {b.key for b in app.get("download_button")}
    app.text_input(key="brief_topic").set_value("the recipe for sourdough bread")
    app.button(key="FormSubmitter:briefing_form-Build the briefing").click().run()
    assert not app.exception
    assert any("do not appear to address" in e.value for e in app.error)


EVIL_REC = "The <script>alert(1)</script> Partnership should publish **bold** guidance [link](http://x) on neglect."


def test_report_text_is_inert_and_a_recommendation_cut_at_a_page_break_is_whole(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, embedder
) -> None:
    """A small real index of a report whose recommendations hold HTML and Markdown, one of them
    cut by a page break (with running header and footer between): the register keeps it whole on
    both pages, and the tab shows every report text escaped."""
    from pdfmaker import text_pdf

    from sscp_rag.index import load_index
    from sscp_rag.ingest import build_index
    from sscp_rag.recommendations import register

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    finding = "Neglect of Child Q was chronic: the home was unkempt, and neglect was not named by anyone."
    text_pdf(
        corpus / "scr-child-q.pdf",
        [
            ["Serious Case Review: Child Q", "", "1. Findings", "", finding, "", finding, "", "2. Recommendations", "",
             f"Recommendation 1: {EVIL_REC}", "",
             "Recommendation 2: The health visiting service should see every child at home when there is neglect,",
             "and should record what the child said about"],
            ["their day, their meals and who looks after them.", "", "3. Glossary", "",
             "GP means general practitioner."],
        ],
        header="SCR Child Q",
    )  # fmt: skip
    settings = Settings(corpus_dir=corpus, index_dir=tmp_path / "index")
    build_index(settings, progress=False, embedder=embedder)
    recs = register(load_index(settings, embedder=embedder))
    assert [r.n for r in recs] == [1, 2], recs
    assert recs[1].page_start == 1 and recs[1].page_end == 2
    assert recs[1].text.endswith("who looks after them.") and "SCR Child Q" not in recs[1].text
    assert recs[1].agency == "health visiting service"

    monkeypatch.setenv("SSCP_RAG_CORPUS_DIR", str(corpus))
    monkeypatch.setenv("SSCP_RAG_INDEX_DIR", str(settings.index_dir))
    monkeypatch.setenv("SSCP_RAG_FEEDBACK_PATH", str(tmp_path / "feedback.jsonl"))
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    at.text_input(key="brief_topic").set_value("neglect")
    at.button(key="FormSubmitter:briefing_form-Build the briefing").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["briefing"]["briefing"].quotes
    shown = [m.value for m in at.markdown] + [e.label for e in at.expander]
    for value in shown:
        assert "<script>" not in value and "](http" not in value and "**bold**" not in value, value
    assert any("alert(1)" in md_unescape(v) for v in shown)  # shown, as text
