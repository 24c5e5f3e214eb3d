"""Budgets for tiny PDFs that cost a reader or renderer minutes and gigabytes (each built here):
a page drawing one form 5,000 times, 200 pages sharing one content stream, 50,000 declared pages.
Ingest skips them with a reason, upload refuses them, rendering stops; reader processes stop at
their time and die with a killed ingest, which leaves no lock behind."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pdfmaker as pm
import pytest
from conftest import HASHING, start_ingest

from sscp_rag.corpus import folder_lock
from sscp_rag.encoder import HashingEncoder
from sscp_rag.errors import PdfError, SscpRagError
from sscp_rag.ingest import build_index
from sscp_rag.render import page_png
from sscp_rag.settings import Settings
from sscp_rag.upload import check_pdf
from sscp_rag.workers import JobFailed, run_jobs


def good_report(path: Path, tag: str = "good") -> Path:
    return pm.simple_report(path, tag, "Serious Case Review: Child Q", paragraphs=3)


def _sleep_or_die(seconds: float) -> float:
    if seconds < 0:
        os._exit(3)
    time.sleep(seconds)
    return seconds


def test_a_job_over_its_time_is_stopped_and_the_rest_still_run() -> None:
    t0 = time.monotonic()
    results = list(run_jobs(_sleep_or_die, [(0.1,), (600,), (-1,), (0.2,)], workers=1, timeout=3))
    assert results[0] == 0.1 and results[3] == 0.2
    assert isinstance(results[1], JobFailed) and results[1].timed_out
    assert isinstance(results[2], JobFailed) and "exit code 3" in results[2].reason
    assert time.monotonic() - t0 < 120  # not 600 s: the sleeping worker was killed


def _lock_target(fd: int) -> str:
    return os.readlink(f"/proc/self/fd/{fd}")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_worker_processes_do_not_hold_the_parents_locks(tmp_path: Path) -> None:
    lock = str(tmp_path / ".lock")
    with folder_lock(tmp_path, ".lock", SscpRagError("busy")):
        [fd] = [int(n) for n in os.listdir("/proc/self/fd") if _target(int(n)) == lock]
        [in_worker] = run_jobs(_lock_target, [(fd,)])
    assert in_worker == os.devnull  # the worker's copy of the descriptor no longer points at the lock


def _target(fd: int) -> str | None:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return None


@pytest.mark.slow
def test_costly_pdfs_are_skipped_with_a_reason_within_their_budget(
    tmp_path: Path, hashing_encoder: HashingEncoder
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    good_report(corpus / "scr-child-q.pdf")
    pm.form_fanout_pdf(corpus / "fanout.pdf")  # ~17 min of pypdf without a budget
    pm.shared_content_pdf(corpus / "shared.pdf")  # ~5 to 27 min
    pm.many_pages_pdf(corpus / "many.pdf", pages=5000)  # (50,000 at the default cap: see the upload test)
    settings = Settings(
        corpus_dir=corpus, index_dir=tmp_path / "index", read_timeout=5, read_workers=2, max_pages=300, **HASHING
    )
    t0 = time.monotonic()
    summary = build_index(settings, progress=False, embedder=hashing_encoder)
    took = time.monotonic() - t0
    reasons = dict(summary.skipped)
    assert summary.documents == 1 and set(reasons) == {"fanout.pdf", "shared.pdf", "many.pdf"}
    assert reasons["fanout.pdf"].startswith("over the time budget") and "read_timeout" in reasons["fanout.pdf"]
    assert reasons["shared.pdf"].startswith("over the time budget")
    assert reasons["many.pdf"].startswith("too many pages (5000; at most 300") and "max_pages" in reasons["many.pdf"]
    assert took < 240, took  # minutes apart from the unbudgeted case, generous for a shared 2-core box


def test_upload_check_applies_the_same_page_and_time_budgets(tmp_path: Path) -> None:
    many = pm.many_pages_pdf(tmp_path / "many.pdf").read_bytes()
    with pytest.raises(PdfError, match=r"many.pdf is not a readable PDF: too many pages \(50000"):
        check_pdf(many, "many.pdf")
    three = pm.text_pdf(tmp_path / "three.pdf", [[pm.sentences(f"p{i}", 1)] for i in range(3)]).read_bytes()
    assert check_pdf(three, "three.pdf", max_pages=3) == 3
    with pytest.raises(PdfError, match=r"too many pages \(3; at most 2 are read, setting max_pages\)"):
        check_pdf(three, "three.pdf", max_pages=2)
    fanout = pm.form_fanout_pdf(tmp_path / "fanout.pdf").read_bytes()
    t0 = time.monotonic()
    with pytest.raises(PdfError, match=r"fanout.pdf is not a readable PDF: reading it took longer than 3 s"):
        check_pdf(fanout, "fanout.pdf", timeout=3)
    assert time.monotonic() - t0 < 90


def test_page_rendering_is_bounded_in_time_memory_and_pages(tmp_path: Path) -> None:
    fanout = pm.form_fanout_pdf(tmp_path / "fanout.pdf")
    t0 = time.monotonic()
    with pytest.raises(PdfError, match=r"fanout.pdf: page 1 (took longer than 20 s|could not be rendered \(it needed)"):
        page_png(fanout, 1, timeout=20, max_mb=256)  # unbudgeted: ~30-60 s and 3-4 GB
    assert time.monotonic() - t0 < 90
    with pytest.raises(PdfError, match=r"too many pages \(50000; at most 1000"):
        page_png(pm.many_pages_pdf(tmp_path / "many.pdf"), 1)
    with pytest.raises(PdfError, match="took longer than 0.01 s to render"):
        page_png(good_report(tmp_path / "good.pdf"), 1, timeout=0.01)
    assert page_png(tmp_path / "good.pdf", 1)[:4] == b"\x89PNG"


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_readers_die_with_a_killed_ingest_and_the_next_ingest_runs(
    tmp_path: Path, hashing_encoder: HashingEncoder
) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    good_report(corpus / "scr-child-q.pdf")
    pm.form_fanout_pdf(corpus / "fanout.pdf")
    index = tmp_path / "index"
    proc = start_ingest(corpus, index, SSCP_RAG_READ_TIMEOUT="900", SSCP_RAG_READ_WORKERS="1")
    try:
        deadline = time.monotonic() + 180
        readers: list[int] = []
        while not readers:  # the reader is busy with fanout.pdf (15 minutes of work) ...
            assert proc.poll() is None, "ingest ended before it could be killed"
            assert time.monotonic() < deadline, "the ingest never started a reader"
            time.sleep(0.1)
            readers = _children(proc.pid)
        time.sleep(1.0)  # let it settle into the file
        for pid in readers:  # the reader does not hold the index lock (it would outlive the kill)
            fds = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
            assert str(index / ".lock") not in fds
        proc.send_signal(signal.SIGKILL)  # ... kill -9 the ingest
    finally:
        proc.wait(timeout=60)
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in readers):
        assert time.monotonic() < deadline, f"readers {readers} outlived the killed ingest"
        time.sleep(0.1)
    # The next ingest is not refused by a lock a reader still holds, and skips the costly file.
    summary = build_index(
        Settings(corpus_dir=corpus, index_dir=index, read_timeout=5, **HASHING),
        progress=False,
        embedder=hashing_encoder,
    )
    assert summary.documents == 1 and dict(summary.skipped)["fanout.pdf"].startswith("over the time budget")
