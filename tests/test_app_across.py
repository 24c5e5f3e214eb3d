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
