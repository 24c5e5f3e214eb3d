"""Evaluation: eval-set validation, metrics checked against ranx / scikit-learn, a real eval run on
the demo index with a report folder, and `sscp-rag eval --beir` on a BEIR folder made here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sscp_rag.beir import beir_index_dir, load_beir
from sscp_rag.cli import cli
from sscp_rag.errors import EvalError
from sscp_rag.evaluation import (
    CONFIGS,
    METRICS,
    abstention_metrics,
    check_documents,
    config_settings,
    doc_ranking,
    latency_ms,
    load_eval_set,
    page_id,
    page_ranking,
    parse_eval_set,
    ranx_metrics,
    resolve_configs,
    run_evaluation,
    write_report,
)
from sscp_rag.records import Hit
from sscp_rag.settings import Settings

DEMO = Path(__file__).resolve().parent.parent / "corpus" / "demo"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _hit(rank: int, file: str, p0: int, p1: int | None = None) -> Hit:
    return Hit(
        chunk_id=f"c{rank}",
        doc_id=file,
        file=file,
        title=file,
        short_title=file,
        type="SCR",
        year=2020,
        page_start=p0,
        page_end=p1 or p0,
        heading="",
        text="",
        score=1.0 / rank,
        rank=rank,
    )


def _line(**kw) -> str:
    d = {"id": "q1", "question": "What happened?", "relevant": [{"doc": "a.pdf", "pages": [1]}], "answerable": True}
    d.update(kw)
    return json.dumps(d)


# --------------------------------------------------------------------------------------------
# eval-set validation


def test_valid_set_parses_with_optional_fields():
    qs = parse_eval_set(
        [
            _line(themes=["neglect"], notes="p1"),
            "",
            _line(id="q2", relevant=[], answerable=False),
        ]
    )
    assert [q.id for q in qs] == ["q1", "q2"]
    assert qs[0].themes == ("neglect",) and qs[0].line == 1
    assert qs[1].line == 3 and not qs[1].answerable
    assert qs[0].relevant_pages == {page_id("a.pdf", 1): 1}


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ('{"id": "q2", "question": "x", ', "not valid JSON"),
        (_line(id="q2", answerable="yes"), "answerable"),
        (_line(id="q2", relevent=[]), "unknown field(s): relevent"),
        (json.dumps({"id": "q2", "question": "x", "answerable": True}), "missing field(s): relevant"),
        (_line(id="q2", relevant=[]), "needs at least one relevant"),
        (_line(id="q2", answerable=False), 'must have "relevant": []'),
        (_line(id="q2", relevant=[{"doc": "a.pdf", "pages": [0]}]), "page numbers from 1"),
        (_line(id="q2", relevant=[{"doc": "a.pdf", "pages": []}]), "page numbers from 1"),
        (_line(id="q2", relevant=[{"doc": "a.pdf"}]), "exactly"),
        (_line(id="q1"), "duplicate id 'q1' (first on line 1)"),
        ("[1, 2]", "JSON object"),
    ],
)
def test_malformed_line_names_the_line(tmp_path, bad, fragment):
    path = tmp_path / "set.jsonl"
    path.write_text(_line() + "\n\n" + bad + "\n", encoding="utf-8")
    with pytest.raises(EvalError) as err:
        load_eval_set(path)
    assert "line 3" in str(err.value) and str(path) in str(err.value)
    assert fragment in str(err.value)


def test_unknown_document_and_missing_page_name_the_line():
    qs = parse_eval_set(
        [_line(), _line(id="q2", relevant=[{"doc": "scr-child-dd.pdf", "pages": [2]}])], source="demo.jsonl"
    )
    with pytest.raises(
        EvalError,
        match=r"demo.jsonl, line 2: unknown document 'scr-child-dd.pdf'.*"
        r"did you mean 'scr-child-d.pdf'",
    ):
        check_documents(qs, {"a.pdf": 3, "scr-child-d.pdf": 15}, "demo.jsonl")
    qs = parse_eval_set([_line(relevant=[{"doc": "a.pdf", "pages": [2, 4]}])], source="s")
    with pytest.raises(EvalError, match="line 1: a.pdf has 3 pages; page 4 does not exist"):
        check_documents(qs, {"a.pdf": 3}, "s")


def test_missing_or_empty_file(tmp_path):
    with pytest.raises(EvalError, match="does not exist"):
        load_eval_set(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n", encoding="utf-8")
    with pytest.raises(EvalError, match="no questions"):
        load_eval_set(tmp_path / "empty.jsonl")


# --------------------------------------------------------------------------------------------
# metrics


def test_page_expansion_keeps_rank_order_and_first_occurrence():
    hits = [_hit(1, "a.pdf", 2, 3), _hit(2, "b.pdf", 1), _hit(3, "a.pdf", 3, 4), _hit(4, "b.pdf", 1)]
    assert page_ranking(hits) == [page_id("a.pdf", 2), page_id("a.pdf", 3), page_id("b.pdf", 1), page_id("a.pdf", 4)]
    assert doc_ranking(hits) == ["a.pdf", "b.pdf"]


def test_known_page_run_against_ranx():
    # Relevant: a.pdf p3 and c.pdf p9. The expanded run is a2, a3, b1, b2, c1, c9:
    # a3 is in the top 5 (position 2), c9 is 6th -> recall@5 = 0.5, recall@10 = 1, MRR = 1/2.
    hits = [_hit(1, "a.pdf", 2, 3), _hit(2, "b.pdf", 1, 2), _hit(3, "c.pdf", 1), _hit(4, "c.pdf", 9)]
    qrels = {"q": {page_id("a.pdf", 3): 1, page_id("c.pdf", 9): 1}}
    means, per_q = ranx_metrics(qrels, {"q": page_ranking(hits)})
    assert means["recall@5"] == pytest.approx(0.5)
    assert means["recall@10"] == pytest.approx(1.0)
    assert means["mrr@10"] == pytest.approx(0.5)
    ideal = 1 + 1 / np.log2(3)
    assert means["ndcg@10"] == pytest.approx((1 / np.log2(3) + 1 / np.log2(7)) / ideal)
    assert per_q["q"] == pytest.approx(means)


def test_document_run_and_questions_without_hits():
    # q1: relevant doc second; q2: nothing retrieved (scores 0); unjudged runs are ignored.
    qrels = {"q1": {"a.pdf": 1}, "q2": {"b.pdf": 1}}
    means, per_q = ranx_metrics(qrels, {"q1": ["x.pdf", "a.pdf"], "q3": ["b.pdf"]})
    assert per_q["q1"]["mrr@10"] == pytest.approx(0.5)
    assert per_q["q1"]["ndcg@10"] == pytest.approx(1 / np.log2(3))
    assert per_q["q2"] == {m: 0.0 for m in METRICS}
    assert means["mrr@10"] == pytest.approx(0.25)
    assert set(per_q) == {"q1", "q2"}
    assert ranx_metrics(qrels, {})[0] == {m: 0.0 for m in METRICS}
    assert ranx_metrics({}, {"q": ["a"]})[0] == {m: None for m in METRICS}


def test_run_order_is_the_list_order_not_the_ids():
    # ids sort the other way round from their ranks: ranx must see list order.
    ranking = [f"d{i:02d}" for i in range(12, 0, -1)]
    means, _ = ranx_metrics({"q": {"d01": 1}}, {"q": ranking})
    assert means["recall@10"] == 0.0 and means["mrr@10"] == 0.0
    means, _ = ranx_metrics({"q": {"d12": 1}}, {"q": ranking})
    assert means["mrr@10"] == 1.0


@pytest.mark.parametrize(
    "abstained, answerable",
    [
        ([True, False, True, False, True, False], [False, False, True, True, False, True]),
        ([True, True, False], [False, False, False]),
        ([False, False, True, True, True], [True, False, True, True, False]),
    ],
)
def test_abstention_metrics_match_sklearn(abstained, answerable):
    from sklearn.metrics import precision_score, recall_score

    got = abstention_metrics(abstained, answerable)
    truth = [not a for a in answerable]  # positive class: should abstain
    assert got["precision"] == pytest.approx(precision_score(truth, abstained))
    assert got["recall"] == pytest.approx(recall_score(truth, abstained))
    assert got["abstained"] == sum(abstained)
    assert got["true_abstentions"] + got["missed_abstentions"] == sum(truth)


def test_abstention_metrics_undefined_ratios_are_none():
    got = abstention_metrics([False, False], [True, True])
    assert got["precision"] is None and got["recall"] is None
    with pytest.raises(ValueError):
        abstention_metrics([True], [])


def test_latency_percentiles():
    got = latency_ms([0.010, 0.020, 0.030, 0.040, 0.100])
    assert got == {"p50": pytest.approx(30.0), "p95": pytest.approx(88.0)}
    assert latency_ms([]) is None


def test_configs_resolve_and_variants_get_their_own_index(tmp_path):
    assert [c.name for c in resolve_configs(None)] == ["bm25", "dense", "hybrid"]
    assert [c.name for c in resolve_configs("all")] == list(CONFIGS)
    with pytest.raises(EvalError, match="unknown configuration nope; choose from"):
        resolve_configs("hybrid,nope")
    base = Settings(index_dir=tmp_path / "idx", llm_base_url="http://127.0.0.1:9/v1")
    s = config_settings(base, CONFIGS["hybrid-c200"])
    assert s.index_dir == tmp_path / "idx" / "eval-variants" / "c200"
    assert (s.chunk_tokens, s.llm_base_url) == (200, "")
    assert config_settings(base, CONFIGS["bm25"]).index_dir == base.index_dir
    assert config_settings(base, CONFIGS["bm25"]).retrieval_mode == "bm25"


# --------------------------------------------------------------------------------------------
# a real run on the demo index

# Paraphrased questions; page judgments checked against corpus/demo/src and the rendered pages.
SMALL_SET = [
    {
        "id": "t1",
        "question": "A bruise on Child D's face was put down to a scooter fall - what did the "
        "phone strategy meeting decide?",
        "relevant": [{"doc": "scr-child-d.pdf", "pages": [8, 9]}],
        "answerable": True,
    },
    {
        "id": "t2",
        "question": "How many infants in the sudden infant death thematic review died asleep on a "
        "settee with a parent?",
        "relevant": [{"doc": "thematic-sudi.pdf", "pages": [3, 4]}, {"doc": "7mb-safer-sleep.pdf", "pages": [1]}],
        "answerable": True,
    },
    {
        "id": "t3",
        "question": "What risk checklist score should lead to a MARAC referral?",
        "relevant": [{"doc": "7mb-domestic-abuse.pdf", "pages": [1]}],
        "answerable": True,
    },
    {
        "id": "t4",
        "question": "What does it mean when new behaviour is put down to a child's existing disability?",
        "relevant": [{"doc": "scr-child-g.pdf", "pages": [8]}],
        "answerable": True,
    },
    {
        "id": "u1",
        "question": "Which trampoline park safety standards did the reviews recommend?",
        "relevant": [],
        "answerable": False,
    },
    {
        "id": "u2",
        "question": "How many goals did the under-twelves football team score last season?",
        "relevant": [],
        "answerable": False,
    },
]


def _write_set(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.slow
def test_eval_run_on_demo_index_and_report_folder(tmp_path, demo_index, demo_settings):
    path = _write_set(tmp_path / "small.jsonl", SMALL_SET)
    questions = load_eval_set(path)
    run = run_evaluation(
        questions, resolve_configs("bm25,hybrid"), demo_settings, lambda s: demo_index, k=10, source=str(path)
    )
    assert [c.name for c in run.configs] == ["bm25", "hybrid"]
    for c in run.configs:
        assert len(c.questions) == len(SMALL_SET)
        for level in (c.document, c.page):
            assert set(level) == set(METRICS) and all(0.0 <= v <= 1.0 for v in level.values())
        for q in c.questions:
            assert 1 <= len(q.hits) <= 10 and q.search_ms > 0 and q.answer_ms > 0
            if not q.answerable:
                assert q.document is None and q.page is None and q.missed_pages == []
                continue
            judged = next(r for r in SMALL_SET if r["id"] == q.id)
            rel_pages = {(j["doc"], p) for j in judged["relevant"] for p in j["pages"]}
            assert {(m["doc"], m["page"]) for m in q.missed_pages} <= rel_pages
            # the doc-level MRR that ranx computed agrees with the rank we report
            rank = q.first_relevant_doc_rank
            assert q.document["mrr@10"] == pytest.approx(1 / rank if rank else 0.0)
            first = q.first_relevant_page_rank
            assert all(h["rank"] < (first or 99) for h in q.ranked_above)
            assert len(q.ranked_above) == (first - 1 if first else len(q.hits))
            if first is None:
                assert q.page["recall@10"] == 0.0
        a = c.answers
        assert a["abstained"] == sum(q.abstained for q in c.questions)
        assert a["true_abstentions"] == sum(q.abstained and not q.answerable for q in c.questions)
        assert a["quotes"] > 0 and a["citation_validity"] == 1.0
        assert c.latency["search"]["p50"] <= c.latency["search"]["p95"]
    hybrid = run.config("hybrid")
    # These four questions are easy for the default configuration: a relevant report comes first.
    assert all(q.first_relevant_doc_rank == 1 for q in hybrid.questions if q.answerable)

    paths = write_report(run, tmp_path / "report")
    assert paths["comparison.png"].read_bytes()[:8] == PNG_MAGIC
    data = json.loads(paths["results.json"].read_text(encoding="utf-8"))
    assert data == json.loads(json.dumps(run.to_dict()))
    assert data["version"] == 1 and data["questions"] == {"total": 6, "answerable": 4, "unanswerable": 2}
    rows = [json.loads(line) for line in paths["per_question.jsonl"].read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 2 * len(SMALL_SET)
    assert {
        "config",
        "id",
        "missed_pages",
        "ranked_above",
        "first_relevant_page_rank",
        "abstained",
        "citation_validity",
    } <= set(rows[0])
    summary = paths["summary.md"].read_text(encoding="utf-8")
    assert "| config |" in summary and "page nDCG@10" in summary and "comparison.png" in summary


@pytest.mark.slow
def test_cli_eval_on_demo_index(tmp_path, demo_index, demo_settings):
    path = _write_set(tmp_path / "small.jsonl", SMALL_SET)
    args = [
        "eval",
        str(path),
        "--corpus",
        str(DEMO),
        "--index",
        str(demo_settings.index_dir),
        "--configs",
        "bm25",
        "--no-answers",
        "--quiet",
    ]
    result = CliRunner().invoke(cli, args + ["--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    (cfg,) = data["configs"]
    assert cfg["name"] == "bm25" and cfg["answers"] is None and cfg["latency_ms"]["answer"] is None
    assert 0 < cfg["page"]["ndcg@10"] <= 1 and 0 < cfg["document"]["recall@10"] <= 1
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "page nDCG@10" in result.stdout and "bm25" in result.stdout

    # an unknown document: the message names the line; nothing is built or changed
    bad = _write_set(
        tmp_path / "bad.jsonl",
        SMALL_SET[:2]
        + [{"id": "x", "question": "q?", "relevant": [{"doc": "scr-child-z.pdf", "pages": [1]}], "answerable": True}],
    )
    result = CliRunner().invoke(cli, ["eval", str(bad), *args[2:-2], "--quiet"])  # answers on this time
    assert isinstance(result.exception, EvalError)
    assert "line 3: unknown document 'scr-child-z.pdf'" in str(result.exception)

    # an index of another corpus is refused, not overwritten
    before = (Path(demo_settings.index_dir) / "manifest.json").read_text(encoding="utf-8")
    result = CliRunner().invoke(
        cli, ["eval", str(path), "--corpus", str(tmp_path), "--index", str(demo_settings.index_dir), "--quiet"]
    )
    assert isinstance(result.exception, EvalError) and "was built from" in str(result.exception)
    assert (Path(demo_settings.index_dir) / "manifest.json").read_text(encoding="utf-8") == before


def test_cli_eval_usage_errors(tmp_path):
    path = _write_set(tmp_path / "s.jsonl", SMALL_SET)
    result = CliRunner().invoke(cli, ["eval"])
    assert result.exit_code == 2 and "either EVAL_FILE or --beir" in result.output
    result = CliRunner().invoke(cli, ["eval", str(path), "--configs", "fast"])
    assert isinstance(result.exception, EvalError) and "unknown configuration fast" in str(result.exception)
    (tmp_path / "m.jsonl").write_text(json.dumps(SMALL_SET[0]) + "\n{oops\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["eval", str(tmp_path / "m.jsonl"), "--index", str(tmp_path / "i")])
    assert isinstance(result.exception, EvalError) and "line 2: not valid JSON" in str(result.exception)
    assert not (tmp_path / "i").exists()
    result = CliRunner().invoke(cli, ["eval", "--list-configs"])
    assert result.exit_code == 0 and "hybrid-c200" in result.output


# --------------------------------------------------------------------------------------------
# BEIR

BEIR_DOCS = {
    "d1": (
        "Safer sleep",
        "Babies should sleep on their back in a cot, never on a sofa with an adult who has "
        "been drinking alcohol or taking drugs.",
    ),
    "d2": (
        "Domestic abuse risk",
        "The DASH checklist has 27 questions; a score of 14 or more means the case "
        "is high risk and is referred to MARAC.",
    ),
    "d3": (
        "Missing children",
        "Every child who goes missing from home should be offered a return home "
        "interview within 72 hours by an independent worker.",
    ),
    "d4": (
        "Neglect tools",
        "The Graded Care Profile helps practitioners measure the quality of care a "
        "child receives across physical care, safety, love and stimulation.",
    ),
    "d5": (
        "Escalation",
        "When a practitioner disagrees with a decision by children's social care they "
        "should use the escalation policy and challenge the decision in writing.",
    ),
    "d6": (
        "Interpreters",
        "Professional interpreters must be used; children and relatives should never be "
        "asked to interpret in safeguarding conversations.",
    ),
    "d7": (
        "Reduced timetables",
        "Part-time or reduced school timetables should last no longer than six weeks and be reviewed regularly.",
    ),
    "d8": (
        "",
        "Home education: the local authority adviser should see the child when a family withdraws "
        "the child from school to educate them at home.",
    ),
}
BEIR_QUERIES = {
    "q1": "Is it safe for a baby to sleep on the couch with a parent who drank?",
    "q2": "What DASH score sends a domestic abuse case to the multi-agency risk conference?",
    "q3": "How quickly should a return interview happen after a child runs away?",
    "q4": "Why shouldn't family members translate for the social worker?",
}
BEIR_QRELS = [("q1", "d1", 1), ("q2", "d2", 2), ("q3", "d3", 1), ("q4", "d6", 1), ("q4", "d5", 0)]


def _beir(root: Path, qrels=BEIR_QRELS) -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": k, "title": t, "text": x}) + "\n" for k, (t, x) in BEIR_DOCS.items()),
        encoding="utf-8",
    )
    (root / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": k, "text": x}) + "\n" for k, x in BEIR_QUERIES.items()), encoding="utf-8"
    )
    (root / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n" for q, d, s in qrels), encoding="utf-8"
    )
    return root


def test_load_beir_and_its_errors(tmp_path):
    beir = load_beir(_beir(tmp_path / "ok"))
    assert len(beir.documents) == 8 and [q.id for q in beir.questions] == ["q1", "q2", "q3", "q4"]
    assert beir.questions[1].relevant_docs == {"d2": 2}
    assert beir.questions[3].relevant_docs == {"d6": 1}  # score 0 is not relevant
    bad = _beir(tmp_path / "bad", BEIR_QRELS + [("q1", "d99", 1)])
    with pytest.raises(EvalError, match=r"test.tsv, line 7: unknown document 'd99'"):
        load_beir(bad)
    (bad / "corpus.jsonl").write_text('{"_id": "d1", "text": "x"}\n{"_id": "d2"}\n', encoding="utf-8")
    with pytest.raises(EvalError, match=r"corpus.jsonl, line 2: expected an object"):
        load_beir(bad)
    with pytest.raises(EvalError, match="does not exist"):
        load_beir(tmp_path / "missing")


@pytest.mark.slow
def test_cli_eval_beir(tmp_path):
    root = _beir(tmp_path / "mini-beir")
    index = tmp_path / "index"
    args = ["eval", "--beir", str(root), "--index", str(index), "--quiet"]
    result = CliRunner().invoke(
        cli, args + ["--configs", "bm25,dense,hybrid,hybrid-c200", "--json", "--out", str(tmp_path / "report")]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["kind"] == "beir" and data["questions"]["total"] == 4
    assert [c["name"] for c in data["configs"]] == ["bm25", "dense", "hybrid", "hybrid-c200"]
    for c in data["configs"]:
        assert c["page"] is None and c["answers"] is None
        assert set(c["document"]) == set(METRICS)
        assert all(0.0 <= v <= 1.0 for v in c["document"].values())
    # eight documents on eight topics: the dense and hybrid retrievers find the right one near the top
    by_name = {c["name"]: c for c in data["configs"]}
    assert by_name["hybrid"]["document"]["recall@5"] >= 0.75 and by_name["dense"]["document"]["mrr@10"] >= 0.5
    built = beir_index_dir(index, root)
    assert (built / "manifest.json").is_file() and (built / "eval-variants" / "c200" / "manifest.json").is_file()
    assert (tmp_path / "report" / "comparison.png").read_bytes()[:8] == PNG_MAGIC
    # a second run reuses the index and prints the table
    data_dir = json.loads((built / "manifest.json").read_text())["data_dir"]
    result = CliRunner().invoke(cli, args + ["--configs", "bm25"])
    assert result.exit_code == 0, result.output
    assert "doc nDCG@10" in result.stdout and "page nDCG@10" not in result.stdout
    assert json.loads((built / "manifest.json").read_text())["data_dir"] == data_dir
