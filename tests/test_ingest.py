"""Ingest end to end on small corpora of real PDFs made in tmp_path (and 3 of the real public
PDFs): bad inputs, exit codes, incremental and interrupted builds, metadata inference, stale and
missing indexes. No test here is about the model: every build uses the hashing encoder (settings
``HASHING``, the session ``hashing_encoder``), which loads instantly."""

from __future__ import annotations

import json
import shutil
import signal
import sys
import time
from pathlib import Path

import pdfmaker as pm
import pytest
from conftest import HASHING, REAL_CORPUS, start_ingest
from test_upload import mutants

from sscp_rag import vocabulary
from sscp_rag.cli import main
from sscp_rag.encoder import HashingEncoder
from sscp_rag.errors import CorpusError, IndexMissingError, IndexStaleError
from sscp_rag.index import load_index, read_manifest
from sscp_rag.ingest import build_index
from sscp_rag.retrieval import search
from sscp_rag.settings import Settings

pytestmark = pytest.mark.slow

MANIFEST = {
    "documents": [
        {
            "file": "scr-child-a.pdf",
            "title": "Serious Case Review: Child A",
            "short_title": "SCR Child A",
            "type": "SCR",
            "year": 2019,
            "subject": "Child A",
            "fictional": True,
        },
        {
            "file": "briefings/7mb-neglect.pdf",
            "title": "7 Minute Briefing: Neglect",
            "type": "7-minute briefing",
            "date": "2020-02",
            "fictional": True,
        },
    ]
}


def make_corpus(root: Path) -> Path:
    """Three small reports, two listed in a manifest and one (in no manifest) to infer."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "briefings").mkdir(exist_ok=True)
    pm.simple_report(root / "scr-child-a.pdf", "alpha", "Serious Case Review: Child A", paragraphs=8)
    pm.simple_report(root / "briefings" / "7mb-neglect.pdf", "bravo", "7 Minute Briefing: Neglect", paragraphs=4)
    pm.simple_report(
        root / "lcspr-child-k-2021.pdf", "kilo", "Local Child Safeguarding Practice Review: Child K", paragraphs=6
    )
    (root / "manifest.json").write_text(json.dumps(MANIFEST, indent=2), encoding="utf-8")
    return root


def settings_for(corpus: Path, index: Path, **kw) -> Settings:
    return Settings(corpus_dir=corpus, index_dir=index, **HASHING, **kw)


def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    """Run ``sscp-rag ARGS`` through the real entry point; (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["sscp-rag", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, hashing_encoder: HashingEncoder) -> Settings:
    """A built index of the three-report corpus; tests that change things work on a copy."""
    root = tmp_path_factory.mktemp("base")
    s = settings_for(make_corpus(root / "corpus"), root / "index")
    summary = build_index(s, progress=False, embedder=hashing_encoder)
    assert summary.documents == 3 and summary.embedded == summary.chunks > 0
    return s


def copy_of(base: Settings, dest: Path) -> Settings:
    shutil.copytree(base.corpus_dir, dest / "corpus")
    shutil.copytree(base.index_dir, dest / "index")
    return settings_for(dest / "corpus", dest / "index")


def chunk_texts(settings: Settings, hashing_encoder: HashingEncoder) -> dict[str, list[str]]:
    index = load_index(settings, embedder=hashing_encoder)
    try:
        out: dict[str, list[str]] = {}
        for c in index.chunks:
            out.setdefault(c.file, []).append(c.text)
        return out
    finally:
        index.close()


# --------------------------------------------------------------------------------------------
# bad input


BAD = {
    "locked.pdf": ("encrypted PDF", lambda p, good: pm.encrypted_pdf(p, good)),
    "garbage.pdf": ("corrupt PDF", lambda p, good: pm.corrupt_pdf(p)),
    "half.pdf": ("truncated PDF", lambda p, good: pm.truncated_pdf(p, good)),
    "empty.pdf": ("empty file", lambda p, good: pm.empty_file(p)),
    "photo.pdf": ("not a PDF", lambda p, good: pm.png_renamed(p)),
    "notes.pdf": ("not a PDF", lambda p, good: pm.text_renamed(p)),
    "scan.pdf": ("no text layer", lambda p, good: pm.image_only_pdf(p)),
}


def test_each_bad_input_is_skipped_with_its_reason_and_the_rest_ingest(
    tmp_path: Path, hashing_encoder: HashingEncoder, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    good = pm.simple_report(corpus / "scr-child-b.pdf", "good", "Serious Case Review: Child B", paragraphs=4)
    pm.simple_report(corpus / "7mb-safer-sleep.pdf", "sleep", "7 Minute Briefing: Safer Sleep", paragraphs=3)
    for name, (_, make) in BAD.items():
        make(corpus / name, good)
    monkeypatch.setenv("SSCP_RAG_ENCODER", "hashing")  # the CLI's settings: the encoder of settings_for

    code, out, err = run_cli(
        monkeypatch, capsys, "ingest", "--corpus", str(corpus), "--index", str(tmp_path / "index"), "--quiet"
    )
    assert code == 0, err
    assert "documents 2" in out and f"Skipped {len(BAD)} file(s)" in out
    manifest = read_manifest(tmp_path / "index")
    skipped = {s["file"]: s for s in manifest["skipped"]}
    assert set(skipped) == set(BAD)
    for name, (reason, _) in BAD.items():
        line = next(ln for ln in out.splitlines() if ln.strip().startswith(f"{name}:"))
        assert reason in line, line  # one line each in the summary ...
        assert skipped[name]["reason"] in line and "\n" not in skipped[name]["reason"]
        assert skipped[name]["reason"].startswith(reason)  # ... and in the index manifest
        assert skipped[name]["sha256"]
    assert sorted(manifest["files"]) == ["7mb-safer-sleep.pdf", "scr-child-b.pdf"]
    assert {c.file for c in load_index(settings_for(corpus, tmp_path / "index"), embedder=hashing_encoder).chunks} == {
        "7mb-safer-sleep.pdf",
        "scr-child-b.pdf",
    }

    # Unchanged re-run: up to date, the skipped files still reported.
    code, out, _ = run_cli(
        monkeypatch, capsys, "ingest", "--corpus", str(corpus), "--index", str(tmp_path / "index"), "--json"
    )
    summary = json.loads(out)
    assert code == 0 and summary["up_to_date"] and summary["embedded"] == 0
    assert {s["file"] for s in summary["skipped"]} == set(BAD)

    # --strict: any skipped file fails the run (exit 1, reasons named) and keeps the old index.
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        "ingest",
        "--corpus",
        str(corpus),
        "--index",
        str(tmp_path / "strict"),
        "--quiet",
        "--strict",
    )
    assert code == 1 and "--strict" in err and "locked.pdf: encrypted PDF" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    with pytest.raises(IndexMissingError):
        load_index(settings_for(corpus, tmp_path / "strict"))

    # Nothing ingestible: exit 1 with the reasons, and no index.
    only_bad = tmp_path / "only-bad"
    only_bad.mkdir()
    for name in ("empty.pdf", "scan.pdf", "notes.pdf"):
        shutil.copy(corpus / name, only_bad / name)
    code, out, err = run_cli(
        monkeypatch, capsys, "ingest", "--corpus", str(only_bad), "--index", str(tmp_path / "none"), "--quiet"
    )
    assert code == 1 and "nothing could be ingested" in err and "scan.pdf: no text layer" in err
    assert not (tmp_path / "none" / "manifest.json").exists()


def test_strict_and_empty_corpus_raise_corpus_error(tmp_path: Path, hashing_encoder: HashingEncoder) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    with pytest.raises(CorpusError, match="no PDF files"):
        build_index(settings_for(corpus, tmp_path / "index"), progress=False, embedder=hashing_encoder)
    pm.empty_file(corpus / "empty.pdf")
    with pytest.raises(CorpusError, match="nothing could be ingested: empty.pdf: empty file"):
        build_index(settings_for(corpus, tmp_path / "index"), progress=False, embedder=hashing_encoder)


# --------------------------------------------------------------------------------------------
# incremental


def test_incremental_reingest_embeds_only_what_changed(
    base: Settings, tmp_path: Path, hashing_encoder: HashingEncoder
) -> None:
    s = copy_of(base, tmp_path)
    before = chunk_texts(s, hashing_encoder)

    again = build_index(s, progress=False, embedder=hashing_encoder)
    assert again.up_to_date and again.embedded == 0 and again.reused == 3

    # Change one file: only its chunks are embedded; the others are reused as they were.
    pm.simple_report(
        s.corpus_dir / "lcspr-child-k-2021.pdf",
        "kappa",
        "Local Child Safeguarding Practice Review: Child K",
        paragraphs=7,
    )
    changed = build_index(s, progress=False, embedder=hashing_encoder)
    manifest = read_manifest(s.index_dir)
    assert not changed.up_to_date
    assert (changed.ingested, changed.reused) == (1, 2)
    assert changed.embedded == manifest["files"]["lcspr-child-k-2021.pdf"]["chunks"] > 0
    after = chunk_texts(s, hashing_encoder)
    assert after["scr-child-a.pdf"] == before["scr-child-a.pdf"]
    assert any("(kappap1s0)" in t for t in after["lcspr-child-k-2021.pdf"])
    assert not any("(kilop1s0)" in t for t in after["lcspr-child-k-2021.pdf"])
    index = load_index(s, embedder=hashing_encoder)
    hit = search(index, "kappap3s1", k=1)[0]  # the new text is searchable
    assert hit.file == "lcspr-child-k-2021.pdf" and "(kappap3s1)" in index.span_text(
        hit.file, hit.page_start, hit.page_end
    )
    index.close()

    # Remove a file: dropped, nothing embedded.
    (s.corpus_dir / "scr-child-a.pdf").unlink()
    removed = build_index(s, progress=False, embedder=hashing_encoder)
    assert removed.removed == ["scr-child-a.pdf"] and removed.embedded == 0 and removed.ingested == 0
    assert set(chunk_texts(s, hashing_encoder)) == {"briefings/7mb-neglect.pdf", "lcspr-child-k-2021.pdf"}
    assert sorted(read_manifest(s.index_dir)["files"]) == ["briefings/7mb-neglect.pdf", "lcspr-child-k-2021.pdf"]
    assert len(list(s.index_dir.glob("data-*"))) == 1  # earlier builds cleaned away


# --------------------------------------------------------------------------------------------
# interrupted


def _results(
    settings: Settings, hashing_encoder: HashingEncoder, queries: list[str]
) -> list[list[tuple[str, int, int, float]]]:
    index = load_index(settings, embedder=hashing_encoder)
    try:
        return [[(h.file, h.page_start, h.page_end, round(h.score, 6)) for h in search(index, q, k=5)] for q in queries]
    finally:
        index.close()


QUERIES = ["health visitor new birth visit", "strategy discussion without the GP", "Child K escalation"]


def test_interrupted_ingest_leaves_the_previous_index_loadable(
    base: Settings, tmp_path: Path, hashing_encoder: HashingEncoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = copy_of(base, tmp_path).with_overrides(embed_batch_size=2)  # 8 chunks per embedding batch
    before = _results(s, hashing_encoder, QUERIES)
    manifest_before = read_manifest(s.index_dir)
    pm.simple_report(s.corpus_dir / "scr-child-a.pdf", "changed", "Serious Case Review: Child A", paragraphs=12)

    # Ctrl-C after the first embedding batch of the new build.
    calls: list[int] = []
    real_encode = hashing_encoder.encode

    def interrupted(texts, progress=False):
        calls.append(len(texts))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_encode(texts, progress)

    monkeypatch.setattr(hashing_encoder, "encode", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_index(s, progress=False, embedder=hashing_encoder)
    monkeypatch.undo()
    assert len(calls) == 2
    assert read_manifest(s.index_dir) == manifest_before
    assert not list(s.index_dir.glob("data-*.tmp"))  # the half-built data is gone
    assert _results(s, hashing_encoder, QUERIES) == before  # same index, same answers

    # The next run completes (the build lock was released) and picks the change up.
    done = build_index(s, progress=False, embedder=hashing_encoder)
    assert done.ingested == 1 and not done.up_to_date
    assert any("(changedp1s0)" in t for t in chunk_texts(s, hashing_encoder)["scr-child-a.pdf"])


def test_killed_ingest_leaves_the_previous_index_loadable(
    base: Settings, tmp_path: Path, hashing_encoder: HashingEncoder
) -> None:
    s = copy_of(base, tmp_path)
    before = _results(s, hashing_encoder, QUERIES)
    manifest_before = read_manifest(s.index_dir)
    pm.simple_report(s.corpus_dir / "lcspr-child-k-2021.pdf", "killed", "LCSPR Child K", paragraphs=9)
    proc = start_ingest(s.corpus_dir, s.index_dir)
    try:
        deadline = time.monotonic() + 120
        while not list(s.index_dir.glob("data-*.tmp")):  # the new build has started ...
            assert proc.poll() is None, "ingest ended before it could be killed"
            assert time.monotonic() < deadline, "the ingest never started a build"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)  # ... kill it without warning
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert read_manifest(s.index_dir) == manifest_before
    assert _results(s, hashing_encoder, QUERIES) == before
    # The leftover half build is cleared by the next successful run.
    build_index(s, progress=False, embedder=hashing_encoder)
    assert [p.name for p in s.index_dir.glob("data-*")] == [read_manifest(s.index_dir)["data_dir"]]


# --------------------------------------------------------------------------------------------
# metadata, stale and missing indexes


def test_file_missing_from_manifest_is_ingested_with_inferred_metadata(
    base: Settings, hashing_encoder: HashingEncoder
) -> None:
    index = load_index(base, embedder=hashing_encoder)
    try:
        listed = index.by_file["scr-child-a.pdf"].meta
        assert (listed.title, listed.type, listed.year, listed.inferred) == (
            "Serious Case Review: Child A",
            "SCR",
            2019,
            False,
        )
        briefing = index.by_file["briefings/7mb-neglect.pdf"].meta  # manifest in the root, file in a sub-folder
        assert (briefing.type, briefing.year) == ("7-minute briefing", 2020)
        inferred = index.by_file["lcspr-child-k-2021.pdf"].meta
        assert inferred.inferred
        assert inferred.title.startswith("Local Child Safeguarding Practice Review: Child K")  # page 1, line 1
        assert (inferred.type, inferred.year, inferred.subject) == ("LCSPR", 2021, "Child K")  # from the name
        assert any(c.file == "lcspr-child-k-2021.pdf" for c in index.chunks)
    finally:
        index.close()


def test_stale_and_missing_index_refuse_to_load_with_a_clear_message(
    base: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(IndexStaleError, match=r"chunk_tokens 128 -> 120.*rebuild it with: sscp-rag ingest"):
        load_index(base.with_overrides(chunk_tokens=120))
    with pytest.raises(IndexMissingError, match=r"no index in .*build one with: sscp-rag ingest"):
        load_index(settings_for(base.corpus_dir, tmp_path / "nowhere"))
    # Themes are tagged at ingest: a changed lexicon makes the index stale too.
    with monkeypatch.context() as m:
        m.setattr(vocabulary, "THEMES", vocabulary.THEMES[:-1])
        with pytest.raises(IndexStaleError, match=r"themes '\w+' -> '\w+'"):
            load_index(base)
    load_index(base).close()  # the same lexicon again: loads
    # Through the CLI: one plain line, exit 1.
    monkeypatch.setenv("SSCP_RAG_ENCODER", "hashing")
    monkeypatch.setenv("SSCP_RAG_CHUNK_TOKENS", "120")
    code, _, err = run_cli(monkeypatch, capsys, "search", "neglect", "--index", str(base.index_dir))
    assert code == 1 and err.startswith("error: the index in") and "chunk_tokens" in err
    assert len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------------------------
# real PDFs

REAL_FILES = (
    "ofsted-area-send_east-sussex_04-february-2025.pdf",
    "ofsted-area-send_west-sussex_29-february-2024.pdf",
    "ofsted-ilacs_camden_21-june-2022.pdf",
)


def test_real_pdfs_ingest_and_search(tmp_path: Path, hashing_encoder: HashingEncoder) -> None:
    if not REAL_CORPUS.is_dir():
        pytest.skip(f"the real PDFs are not here: {REAL_CORPUS} is absent")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in REAL_FILES:  # links, not copies
        (corpus / name).symlink_to(REAL_CORPUS / name)
    s = settings_for(corpus, tmp_path / "index")
    summary = build_index(s, progress=False, embedder=hashing_encoder)
    assert summary.documents == 3 and not summary.skipped
    assert summary.pages == sum(read_manifest(s.index_dir)["files"][f]["pages"] for f in REAL_FILES) >= 20
    index = load_index(s, embedder=hashing_encoder)
    try:
        hits = search(index, "Camden care leavers personal advisers", k=5)
        assert hits[0].file == "ofsted-ilacs_camden_21-june-2022.pdf"
        for h in hits:
            assert f"p. {h.page_start}" in h.citation or f"pp. {h.page_start}" in h.citation
            pages_text = " ".join(index.span_text(h.file, h.page_start, h.page_end).split())
            assert " ".join(h.text.split()) in pages_text
        send = search(index, "West Sussex local area partnership SEND", k=3)
        assert send[0].file == "ofsted-area-send_west-sussex_29-february-2024.pdf"
    finally:
        index.close()


# --------------------------------------------------------------------------------------------
# hostile input


@pytest.mark.slow
def test_fuzzed_pdfs_are_skipped_by_ingest_with_a_reason(tmp_path: Path, hashing_encoder: HashingEncoder) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    seed = pm.simple_report(tmp_path / "seed.pdf", "fuzz", "Serious Case Review: Child F", paragraphs=2).read_bytes()
    pm.simple_report(corpus / "good.pdf", "good", "Serious Case Review: Child Q", paragraphs=3)
    for i, data in enumerate(mutants(seed, 50, seed=7)):
        (corpus / f"m{i:02d}.pdf").write_bytes(data)
    settings = settings_for(corpus, tmp_path / "index", read_timeout=20)
    summary = build_index(settings, progress=False, embedder=hashing_encoder)
    assert summary.files == 51 and "good.pdf" not in {f for f, _ in summary.skipped}
    assert summary.skipped, "no mutant was bad enough to skip"
    for file, reason in summary.skipped:
        assert reason and "\n" not in reason, (file, reason)
    assert {s["file"] for s in read_manifest(settings.index_dir)["skipped"]} == {f for f, _ in summary.skipped}


@pytest.mark.slow
def test_data_folders_left_by_a_killed_cleanup_are_removed_by_the_next_run(
    tmp_path: Path, hashing_encoder: HashingEncoder
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    pm.simple_report(corpus / "scr-child-q.pdf", "good", "Serious Case Review: Child Q", paragraphs=3)
    settings = settings_for(corpus, tmp_path / "index")
    build_index(settings, progress=False, embedder=hashing_encoder)
    current = read_manifest(settings.index_dir)["data_dir"]
    # what a kill during the clean-up of an earlier build leaves: part of a data folder, and a temp build
    half = settings.index_dir / "data-20240101000000-dead00"
    (half / "bm25").mkdir(parents=True)
    (half / "bm25" / "params.index.json").write_text("{}")
    (settings.index_dir / "data-20240101000001-beef00.tmp").mkdir()
    again = build_index(settings, progress=False, embedder=hashing_encoder)
    assert again.up_to_date  # nothing to build, and still cleaned
    assert [p.name for p in settings.index_dir.glob("data-*")] == [current]
