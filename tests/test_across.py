"""Learning across reviews, on real indexes and real PDFs: the theme map, the recommendations
register (measured against the hand-judged list, eval/recommendations.jsonl) and the briefing
builder, through the library and the CLI. Every recommendation and every briefing quote is checked
against the index's page text and, independently, against pypdf's raw text of the cited pages."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import sys
import unicodedata
from functools import cache
from pathlib import Path

import pytest
from click.testing import CliRunner
from docx import Document
from pypdf import PdfReader

import sscp_rag.index as index_module
import sscp_rag.ingest as ingest_module
from sscp_rag.answer import verify_quote
from sscp_rag.briefing import HEADINGS, briefing_to_docx, briefing_to_markdown, build_briefing, verify_briefing
from sscp_rag.cli import cli, main
from sscp_rag.errors import QueryError
from sscp_rag.index import Index
from sscp_rag.ingest import chunk_corpus
from sscp_rag.recommendations import (
    RecommendationFilters,
    extract,
    filter_register,
    load_judged,
    register,
    register_csv,
    register_docx,
    score_register,
    text_overlap,
)
from sscp_rag.settings import Settings
from sscp_rag.thememap import cell_passages, map_to_dict, theme_map, themes_by_year, trend, years_to_dict

ROOT = Path(__file__).resolve().parent.parent
JUDGED = ROOT / "eval" / "recommendations.jsonl"
REAL_CORPUS = ROOT.parent / "shared" / "corpus-real"
# Three real reports of three shapes: "What needs to improve?" bullets, an "Areas for priority
# action" table with a responsible-body column, and "Areas for improvement" with sub-bullets.
REAL_FILES = (
    "ofsted-ilacs_manchester_19-may-2022.pdf",
    "ofsted-area-send_hertfordshire_10-november-2023.pdf",
    "ofsted-area-send_east-sussex_04-february-2025.pdf",
)
pytestmark = pytest.mark.slow


def _squash(text: str) -> str:
    """Compatibility characters normalised, whitespace and hyphens removed: line wrapping and
    hyphenation in the PDF do not matter."""
    text = unicodedata.normalize("NFKC", text).replace("\u00ad", "")
    return re.sub(r"[\s\-\u2010\u2011]+", "", text)


@cache
def _raw_pages(path: Path) -> tuple[str, ...]:
    return tuple(_squash(p.extract_text() or "") for p in PdfReader(str(path)).pages)


def _on_raw_pages(path: Path, p0: int, p1: int, text: str) -> bool:
    """Whether ``text`` is on pypdf's raw pages p0..p1 (a text across a page break starts on p0
    and ends on the next page: running headers and footers lie between)."""
    pages = _raw_pages(path)
    q = _squash(text)
    if p0 == p1:
        return q in pages[p0 - 1]
    rest = "".join(pages[p0:p1])
    return any(q[:k] in pages[p0 - 1] and q[k:] in rest for k in range(1, len(q)))


# --------------------------------------------------------------------------------------------
# recommendations register


def test_demo_register_meets_the_judged_list(demo_index: Index) -> None:
    recs = register(demo_index)
    score = score_register(recs, load_judged(JUDGED, "demo"))
    assert score.judged == 85 and score.precision >= 0.9 and score.recall >= 0.9, score.as_dict()
    for r in recs:
        assert verify_quote(demo_index, r.file, r.page_start, r.page_end, r.text), r
        assert _on_raw_pages(Path(demo_index.settings.corpus_dir) / r.file, r.page_start, r.page_end, r.text), r
    ids = [r.id for r in recs]
    assert len(ids) == len(set(ids))


def test_a_recommendation_cut_at_a_page_break_is_whole_and_cites_both_pages(demo_index: Index) -> None:
    child_a = [r for r in register(demo_index) if r.file == "scr-child-a-exec-summary.pdf"]
    second = next(r for r in child_a if r.n == 2)
    assert (second.page_start, second.page_end) == (3, 4)
    assert second.text.startswith('The LSCB should produce a "think family" protocol')
    assert second.text.endswith("has dependent children.")
    assert second.citation == "SCR Child A, pp. 3\u20134"


def test_agencies_come_from_should_and_from_tables(demo_index: Index) -> None:
    recs = {(r.file, r.n): r for r in register(demo_index)}
    assert recs[("scr-baby-ll.pdf", 2)].agency == "Clinical Commissioning Group"  # "The ... should"
    assert recs[("scr-child-d.pdf", 1)].agency == "Surrey Safeguarding Children Board"  # the lead-agency table
    dhr = recs[("dhr-doris-exec-summary.pdf", 1)]  # a table row: text, then the agency column
    assert dhr.kind == "table" and dhr.agency == "Surrey Police"
    assert dhr.text.endswith("including where the perpetrator has mental ill health")


def test_register_filters_and_bad_input(demo_index: Index) -> None:
    recs = register(demo_index)
    ccg = filter_register(recs, RecommendationFilters(agency="CCG"))
    assert ccg and all("commissioning group" in (r.agency or "").lower() or "CCG" in r.text for r in ccg)
    sleep = filter_register(recs, RecommendationFilters(theme="co-sleeping", year_from=2020, year_to=2020))
    assert sleep and all("safer-sleep" in r.themes and r.year == 2020 for r in sleep)
    assert not filter_register(recs, RecommendationFilters(agency="no such agency"))
    with pytest.raises(QueryError, match="unknown theme"):
        filter_register(recs, RecommendationFilters(theme="astrology"))
    with pytest.raises(QueryError, match="year range"):
        filter_register(recs, RecommendationFilters(year_from=2021, year_to=2015))


def test_register_exports(demo_index: Index) -> None:
    recs = filter_register(register(demo_index), RecommendationFilters(theme="neglect"))
    rows = list(csv.DictReader(io.StringIO(register_csv(recs))))
    assert [r["text"] for r in rows] == [r.text for r in recs]
    assert rows[0]["pages"].startswith("p")
    doc = Document(io.BytesIO(register_docx(recs)))
    table = doc.tables[0]
    assert len(table.rows) == len(recs) + 1
    assert table.rows[1].cells[3].text == recs[0].text


def test_real_reports_meet_the_judged_list(tmp_path: Path) -> None:
    """Three real Ofsted reports, read and cleaned exactly as ingest does (no embedding)."""
    if not REAL_CORPUS.is_dir():
        pytest.skip(f"the real corpus is not at {REAL_CORPUS}")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for f in REAL_FILES:
        shutil.copy(REAL_CORPUS / f, corpus / f)
    docs, skipped = chunk_corpus(Settings(corpus_dir=corpus, index_dir=tmp_path / "index"))
    assert not skipped
    recs = [r for d in docs for r in extract(d.meta, d.doc)]
    judged = [j for j in load_judged(JUDGED, "real") if j["file"] in REAL_FILES]
    score = score_register(recs, judged)
    assert score.judged == 15 and score.precision >= 0.9 and score.recall >= 0.9, score.as_dict()
    for r in recs:
        assert _on_raw_pages(corpus / r.file, r.page_start, r.page_end, r.text), r
    herts = [r for r in recs if "hertfordshire" in r.file]
    assert herts[0].agency.startswith("Hertfordshire County Council and NHS")  # the responsible-body column
    manchester = [r for r in recs if "manchester" in r.file]
    assert "the ambition for disabled children" in manchester[0].text  # sub-items stay with their bullet
    assert all(r.agency is None for r in manchester)


def test_text_overlap_matching_rule() -> None:
    assert text_overlap("The LSCB should act.", "the  LSCB should act") == 1.0
    assert text_overlap("a b c d e f g h i j", "a b c d e f g h i") >= 0.8
    assert text_overlap("a b c d", "w x y z") == 0.0


# --------------------------------------------------------------------------------------------
# theme map


def test_theme_map_counts_tagged_passages_and_picks_the_strongest(demo_index: Index) -> None:
    m = theme_map(demo_index)
    assert len(m.reports) == len(demo_index.docs)
    dates = [r.date for r in m.reports]
    assert dates == sorted(dates)  # by review date
    for cell in m.cells:
        tagged = [c for c in demo_index.chunks if c.file == cell.file and cell.theme in c.themes]
        assert cell.count == len(tagged)
        passages = cell_passages(demo_index, cell.theme, cell.file)
        assert len(passages) == cell.count
        assert passages[0].strength == pytest.approx(cell.best.strength, abs=1e-5)
        assert all(p.strength <= cell.best.strength + 1e-5 for p in passages)
    neglect = m.cell("neglect", "scr-child-d.pdf")
    assert neglect is not None and neglect.count >= 5 and neglect.best.alias_hits >= 2
    assert neglect.best.citation.startswith("SCR Child D, p")
    data = map_to_dict(m)
    assert data["version"] == 1 and {c["theme"] for c in data["cells"]} == set(m.themes)
    json.dumps(data)


def test_themes_by_year_and_trends(demo_index: Index) -> None:
    rows = themes_by_year(demo_index)
    years = {d.meta.year for d in demo_index.docs.values()}
    assert {r.year for r in rows} == years
    for r in rows:
        assert 0 <= r.reports <= r.reports_in_year
    per_year = {r.year: r.reports_in_year for r in rows}
    assert sum(per_year.values()) == len(demo_index.docs)
    assert trend(rows, "neglect")[0] in ("rising", "falling", "steady")
    assert years_to_dict(rows)["by"] == "year"
    with pytest.raises(QueryError, match="unknown theme"):
        theme_map(demo_index, "astrology")


# --------------------------------------------------------------------------------------------
# briefing


def test_briefing_quotes_are_verbatim_on_their_cited_pages(demo_index: Index) -> None:
    b = build_briefing(demo_index, "professional curiosity")
    assert b.theme == "professional-curiosity"
    assert [s.heading for s in b.sections] == list(HEADINGS[:3])
    assert len(b.quotes) >= 5 and b.reading
    assert not verify_briefing(demo_index, b)
    for q in b.quotes:
        assert _on_raw_pages(Path(demo_index.settings.corpus_dir) / q.file, q.page_start, q.page_end, q.text), q
        assert re.fullmatch(r".+, pp?\. \d+(\u2013\d+)?", q.citation)
    assert len({q.text for q in b.quotes}) == len(b.quotes)  # nothing quoted twice
    md = briefing_to_markdown(b)
    assert len(md.split()) < 1000  # one to two printed pages
    for heading in HEADINGS:
        assert f"## {heading}" in md
    doc = Document(io.BytesIO(briefing_to_docx(b)))
    text = "\n".join(p.text for p in doc.paragraphs)
    assert all(q.text in text for q in b.quotes) and "Further reading" in text


def test_briefing_refuses_a_topic_the_reviews_do_not_address(demo_index: Index) -> None:
    with pytest.raises(QueryError, match="do not appear to address"):
        build_briefing(demo_index, "the recipe for sourdough bread")
    with pytest.raises(QueryError, match="empty"):
        build_briefing(demo_index, "   ")


# --------------------------------------------------------------------------------------------
# command line


@pytest.fixture()
def run(demo_index, demo_settings, embedder, monkeypatch):
    monkeypatch.setattr(index_module, "make_encoder", lambda settings: embedder)
    monkeypatch.setattr(ingest_module, "make_encoder", lambda settings: embedder)
    for name in list(os.environ):
        if name.startswith("SSCP_RAG_"):
            monkeypatch.delenv(name)
    runner = CliRunner()

    def invoke(*args: str):
        where = ["--index", str(demo_settings.index_dir), "--corpus", str(demo_settings.corpus_dir)]
        return runner.invoke(cli, [args[0], *where, *args[1:]], catch_exceptions=True)

    return invoke


def test_cli_themes(run) -> None:
    res = run("themes", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["by"] == "review" and data["cells"][0]["strongest"]["citation"]
    res = run("themes", "--by", "year", "--csv")
    assert res.exit_code == 0 and res.output.startswith("year,theme,reports_in_year")
    res = run("themes", "--theme", "neglect")
    assert res.exit_code == 0 and "SCR Child D:" in res.output and "strongest: SCR Child D, p" in res.output


def test_cli_recommendations_and_exports(run, tmp_path: Path) -> None:
    res = run("recommendations", "--theme", "safer sleep", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["count"] == len(data["recommendations"]) > 0 and data["total"] >= data["count"]
    assert {"id", "citation", "agency", "themes", "text", "page_start", "page_end"} <= set(data["recommendations"][0])
    out = tmp_path / "register.docx"
    res = run("recommendations", "--agency", "police", "--out", str(out))
    assert res.exit_code == 0 and out.is_file(), res.output
    res = run("recommendations", "--year-from", "2020", "--csv")
    assert res.exit_code == 0 and res.output.startswith("report,year,n,pages")
    res = run("eval-recommendations", str(JUDGED), "--set", "demo")
    assert res.exit_code == 0 and "precision 1.000" in res.output or "precision 0.9" in res.output, res.output


def test_cli_brief_writes_word_and_markdown(run, tmp_path: Path) -> None:
    for name in ("brief.docx", "brief.md"):
        res = run("brief", "professional curiosity", "--out", str(tmp_path / name))
        assert res.exit_code == 0, res.output
        assert (tmp_path / name).stat().st_size > 500
    assert "## What to do" in (tmp_path / "brief.md").read_text(encoding="utf-8")


def test_cli_bad_input_is_one_line(demo_settings, monkeypatch, capsys) -> None:
    where = ["--index", str(demo_settings.index_dir), "--corpus", str(demo_settings.corpus_dir)]
    for args in (
        ["themes", *where, "--theme", "astrology"],
        ["recommendations", *where, "--agency", "no such agency"],
        ["brief", *where, "   "],
        ["recommendations", *where, "--out", "register.pdf"],
    ):
        monkeypatch.setattr(sys, "argv", ["sscp-rag", *args])
        with pytest.raises(SystemExit) as exc:
            main()
        assert exc.value.code != 0
        err = capsys.readouterr().err.strip()
        assert err and "Traceback" not in err and len(err.splitlines()) <= 3, err
