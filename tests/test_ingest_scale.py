"""Ingest at scale, on real PDFs: a build killed with SIGKILL mid-embedding resumes from the files
it finished (never embedding them again) and ends equal to a clean build; a build on a real local
Ray instance with two workers writes the same index as a local one. Both are about the build, not
the model: they use the hashing encoder (``HASHING``), in the Ray workers and the killed
subprocess too (they make their encoder from the settings)."""

from __future__ import annotations

import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO_CORPUS, HASHING, REAL_CORPUS, start_ingest

from sscp_rag.encoder import HashingEncoder
from sscp_rag.index import load_index, read_manifest
from sscp_rag.ingest import STAGING, build_index
from sscp_rag.settings import Settings

pytestmark = pytest.mark.slow

# Three short Ofsted reports (10 to 20 pages each), so the kill lands between files.
REAL_FILES = (
    "ofsted-area-send_east-sussex_04-february-2025.pdf",
    "ofsted-ilacs_herefordshire_21-september-2022.pdf",
    "ofsted-ilacs_manchester_19-may-2022.pdf",
)
DEMO_FILES = ("7mb-neglect.pdf", "scr-child-d.pdf")


def index_contents(
    settings: Settings, hashing_encoder: HashingEncoder
) -> tuple[list[tuple[str, str]], np.ndarray, dict]:
    """(chunk id, text) pairs, the vectors in the same order, and the manifest's fingerprint."""
    index = load_index(settings, embedder=hashing_encoder)
    try:
        chunks = [(c.id, c.text) for c in index.chunks]
        vectors = index.faiss.reconstruct_n(0, index.faiss.ntotal)
        return chunks, vectors, index.manifest["fingerprint"]
    finally:
        index.close()


def assert_same_index(a: Settings, b: Settings, hashing_encoder: HashingEncoder) -> None:
    chunks_a, vectors_a, fp_a = index_contents(a, hashing_encoder)
    chunks_b, vectors_b, fp_b = index_contents(b, hashing_encoder)
    assert chunks_a == chunks_b and len(chunks_a) > 20
    assert vectors_a.shape == vectors_b.shape
    assert np.allclose(vectors_a, vectors_b, atol=1e-5), np.abs(vectors_a - vectors_b).max()
    assert fp_a == fp_b


def test_ingest_killed_mid_embedding_resumes_without_redoing_finished_files(
    tmp_path: Path, hashing_encoder: HashingEncoder
) -> None:
    if not REAL_CORPUS.is_dir():
        pytest.skip(f"the real PDFs are not here: {REAL_CORPUS} is absent")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in REAL_FILES:  # links, not copies
        (corpus / name).symlink_to(REAL_CORPUS / name)
    clean = Settings(corpus_dir=corpus, index_dir=tmp_path / "clean", **HASHING)
    full = build_index(clean, progress=False, embedder=hashing_encoder)
    assert full.documents == len(REAL_FILES) and not full.skipped
    per_file = {f: v["chunks"] for f, v in read_manifest(clean.index_dir)["files"].items()}

    resumed = Settings(corpus_dir=corpus, index_dir=tmp_path / "resumed", **HASHING)
    staging = resumed.index_dir / STAGING
    proc = start_ingest(corpus, resumed.index_dir)
    try:
        deadline = time.monotonic() + 180
        while not list(staging.glob("*/*.npz")):  # the first file is embedded and staged ...
            assert proc.poll() is None, "ingest ended before it could be killed"
            assert time.monotonic() < deadline, "the ingest never staged a file"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)  # ... kill it without warning, mid-build
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert read_manifest(resumed.index_dir) is None  # nothing published
    staged = len(list(staging.glob("*/*.npz")))
    assert 1 <= staged < len(REAL_FILES)

    again = build_index(resumed, progress=False, embedder=hashing_encoder)
    # The files finished before the kill come from staging: neither read nor embedded again.
    assert again.resumed == staged and again.ingested == len(REAL_FILES)
    assert again.embedded == full.chunks - _staged_chunks(per_file, staged) < full.chunks
    assert again.chunks == full.chunks
    assert not staging.exists()  # cleared once published
    assert_same_index(clean, resumed, hashing_encoder)


def _staged_chunks(per_file: dict[str, int], staged: int) -> int:
    """Chunks of the first ``staged`` files in corpus order (the order a local build embeds in)."""
    return sum(per_file[f] for f in sorted(per_file)[:staged])


def test_ray_ingest_with_two_workers_equals_the_local_build(tmp_path: Path, hashing_encoder: HashingEncoder) -> None:
    from sscp_rag.distributed import ray_producer

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in DEMO_FILES:
        shutil.copy(DEMO_CORPUS / name, corpus / name)
    local = Settings(corpus_dir=corpus, index_dir=tmp_path / "local", **HASHING)
    on_ray = Settings(corpus_dir=corpus, index_dir=tmp_path / "ray", **HASHING)
    a = build_index(local, progress=False, embedder=hashing_encoder)
    b = build_index(on_ray, progress=False, embedder=hashing_encoder, producer=ray_producer(None, workers=2))
    assert (b.documents, b.chunks, b.embedded) == (a.documents, a.chunks, a.embedded) == (2, a.chunks, a.chunks)
    assert_same_index(local, on_ray, hashing_encoder)
    # An unchanged re-run needs no Ray at all.
    assert build_index(on_ray, progress=False, embedder=hashing_encoder).up_to_date


def test_ray_option_without_ray_installed_is_a_one_line_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from sscp_rag.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` does when it is not installed
    monkeypatch.setattr(sys, "argv", ["sscp-rag", "ingest", "--corpus", str(DEMO_CORPUS), "--index", str(tmp_path)])
    monkeypatch.setattr(sys, "argv", [*sys.argv, "--ray", "--quiet"])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err
    assert exc.value.code != 0 and "Ray is not installed: pip install '.[ray]'" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "manifest.json").exists()


def test_a_damaged_staging_entry_is_done_again_not_trusted(tmp_path: Path) -> None:
    from sscp_rag.corpus import CorpusFile
    from sscp_rag.ingest import Staging

    s = Settings(corpus_dir=tmp_path, index_dir=tmp_path / "index")
    staging = Staging(s.index_dir, s)
    f = CorpusFile(path=tmp_path / "a.pdf", rel="a.pdf", sha256="0" * 64, size=1)
    staging._path(f.rel, f.sha256, "inferred").parent.mkdir(parents=True)
    staging._path(f.rel, f.sha256, "inferred").write_bytes(b"PK\x03\x04 not a whole npz")
    assert staging.get(f, "inferred") is None
