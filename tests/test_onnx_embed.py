"""The ONNX embedding runtimes (fp32 for questions, int8 for ingest) against the torch model they are
exported from."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO_CORPUS

from sscp_rag.embedding import Embedder
from sscp_rag.index import Index
from sscp_rag.onnx_embed import MODEL_FILES, OnnxEncoder, ensure_onnx_model
from sscp_rag.settings import Settings

pytestmark = pytest.mark.slow


def demo_texts() -> list[str]:
    """20 sentences and 5 whole paragraphs from the demo reports' sources (as passages are)."""
    paragraphs: list[str] = []
    for md in sorted((DEMO_CORPUS / "src").glob("*.md")):
        body = md.read_text(encoding="utf-8").split("---", 2)[-1]
        paragraphs += [
            " ".join(p.replace("*", "").split())
            for p in body.split("\n\n")
            if len(p) > 300 and not p.lstrip().startswith(("#", "|", "-"))
        ]
    sentences = [s for p in paragraphs for s in re.split(r"(?<=[.?!])\s+(?=[A-Z])", p) if 60 < len(s) < 300]
    return sentences[:: max(1, len(sentences) // 20)][:20] + paragraphs[:: max(1, len(paragraphs) // 5)][:5]


@pytest.fixture(scope="module")
def onnx_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(embed_backend="onnx-int8", onnx_cache_dir=tmp_path_factory.mktemp("onnx-cache"))


def test_int8_embeddings_agree_with_fp32(onnx_settings: Settings, embedder: Embedder) -> None:
    texts = demo_texts()
    assert len(texts) == 25
    onnx = Embedder(onnx_settings)
    fast = onnx.encode(texts)
    ref = embedder.encode(texts)
    assert fast.shape == ref.shape == (25, 384) and fast.dtype == np.float32
    assert np.allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-4)
    cosine = (fast * ref).sum(axis=1)
    assert cosine.min() > 0.95, cosine
    assert cosine.mean() > 0.98, cosine.mean()

    # Retrieval-wise the same: each text's nearest other text is the same under both models.
    def nearest(v: np.ndarray) -> np.ndarray:
        sims = v @ v.T
        np.fill_diagonal(sims, -1)
        return sims.argmax(axis=1)

    assert (nearest(fast) == nearest(ref)).mean() >= 0.9
    # The order of the texts does not change a text's vector (batches are formed by length); the
    # batch does, a little: dynamic quantisation scales activations per batch.
    assert np.allclose(onnx.encode(texts[::-1])[::-1], fast, atol=1e-5)
    alone = onnx._onnx_model().encode(texts[:3], batch_size=1)
    assert (alone * fast[:3]).sum(axis=1).min() > 0.98


def test_export_is_cached_and_reused(onnx_settings: Settings, embedder: Embedder) -> None:
    path = ensure_onnx_model(embedder.model_path, onnx_settings.onnx_cache_dir, "int8")
    assert path.name == MODEL_FILES["int8"] and path.parent.parent == Path(onnx_settings.onnx_cache_dir)
    assert (path.parent / MODEL_FILES["fp32"]).exists()  # one export serves both runtimes
    stamp = path.stat().st_mtime_ns
    encoder = OnnxEncoder(embedder.model_path, "int8", cache_dir=onnx_settings.onnx_cache_dir)
    assert encoder.onnx_path == path and path.stat().st_mtime_ns == stamp  # not exported again
    assert encoder.dims == 384 and encoder.encode([]).shape == (0, 384)
    assert not [p for p in Path(onnx_settings.onnx_cache_dir).iterdir() if p.name.endswith(".tmp")]


def test_question_runtime_reproduces_the_torch_vectors(onnx_settings: Settings, embedder: Embedder) -> None:
    """Questions are embedded by the fp32 ONNX export and compared with passages embedded by
    torch: the two must give the same vectors, or retrieval would silently drift."""
    live = Embedder(Settings(onnx_cache_dir=onnx_settings.onnx_cache_dir))
    assert live.prepare_live() == "onnx-fp32"
    texts = [*demo_texts(), "x", "Sofa " * 400]  # a one-letter text and one past the 256-token limit
    fast, ref = live.encode_live(texts), embedder.encode(texts)
    assert fast.shape == ref.shape and fast.dtype == np.float32
    assert (fast * ref).sum(axis=1).min() > 0.9999
    assert np.allclose(live.encode_query(texts[0]), ref[0], atol=1e-4)
    assert live.encode_live([]).shape == (0, 384)
    # Its tokenizer (tokenizers, without transformers) gives transformers' token ids, truncation included.
    encoder = live._live
    ids = [e.ids for e in encoder.tokenizer.encode_batch(texts)]
    expected = embedder.tokenizer(texts, padding=True, truncation=True, max_length=256)["input_ids"]
    assert ids == expected and max(len(i) for i in ids) == 256


def test_question_runtime_torch_and_fallback(
    tmp_path: Path, embedder: Embedder, caplog: pytest.LogCaptureFixture
) -> None:
    chosen = Embedder(Settings(query_backend="torch"))
    assert chosen.prepare_live() == "torch"
    # An export that cannot be written (the cache path is a file) falls back to torch, with a
    # warning that says why, and still gives the torch vectors.
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    broken = Embedder(Settings(onnx_cache_dir=blocker))
    with caplog.at_level(logging.WARNING, logger="sscp_rag.embedding"):
        assert broken.prepare_live() == "torch"
    assert "embedded with torch instead of ONNX" in caplog.text and "not-a-folder" in caplog.text
    text = "Missed health appointments were not followed up."
    assert np.allclose(broken.encode_query(text), embedder.encode([text])[0], atol=1e-6)


def test_answering_never_imports_torch(demo_index: Index, onnx_settings: Settings) -> None:
    """What lets the app answer seconds after it starts: a fresh process that loads a built index
    and answers a question imports neither torch nor sentence-transformers."""
    code = (
        "import sys\n"
        "from sscp_rag.answer import answer\n"
        "from sscp_rag.index import load_index\n"
        "from sscp_rag.settings import Settings\n"
        f"s = Settings(index_dir={str(demo_index.settings.index_dir)!r}, corpus_dir={str(DEMO_CORPUS)!r}, "
        f"onnx_cache_dir={str(onnx_settings.onnx_cache_dir)!r})\n"
        "a = answer(load_index(s), 'What did reviews say about co-sleeping on a sofa?', settings=s)\n"
        "assert a.sources and not a.abstained, a.message\n"
        "print(a.sources[0].citation)\n"
        "print(sorted(m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    citation, modules = done.stdout.strip().splitlines()[-2:]
    assert ", p. " in citation
    assert modules == "[]", modules


def test_ingest_prepares_the_question_runtime_even_when_up_to_date(tmp_path: Path, embedder: Embedder) -> None:
    """run.sh ends with `sscp-rag ingest` then the app: whatever the index's state, after ingest
    the ONNX export is in the cache, so the app's first question never pays for it."""
    from sscp_rag.ingest import build_index
    from sscp_rag.onnx_embed import is_exported

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "7mb-neglect.pdf").write_bytes((DEMO_CORPUS / "7mb-neglect.pdf").read_bytes())
    cache = tmp_path / "onnx-cache"
    s = Settings(corpus_dir=corpus, index_dir=tmp_path / "index", onnx_cache_dir=cache, query_backend="torch")
    assert not build_index(s, progress=False, embedder=embedder).up_to_date
    assert not cache.exists()  # questions on torch: nothing to export
    s = s.with_overrides(query_backend="onnx")  # not part of the index: the index stays valid
    summary = build_index(s, progress=False)
    assert summary.up_to_date and is_exported(embedder.model_path, cache)
