"""The int8 ONNX embedding path against the fp32 torch model it is exported from."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO_CORPUS

from sscp_rag.embedding import Embedder
from sscp_rag.onnx_embed import MODEL_FILE, OnnxInt8Encoder, ensure_int8_model
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
    path = ensure_int8_model(embedder.model_path, onnx_settings.onnx_cache_dir)
    assert path.name == MODEL_FILE and path.parent.parent == Path(onnx_settings.onnx_cache_dir)
    stamp = path.stat().st_mtime_ns
    encoder = OnnxInt8Encoder(embedder.model_path, embedder.tokenizer, cache_dir=onnx_settings.onnx_cache_dir)
    assert encoder.onnx_path == path and path.stat().st_mtime_ns == stamp  # not exported again
    assert encoder.dims == 384 and encoder.encode([]).shape == (0, 384)
    assert not [p for p in Path(onnx_settings.onnx_cache_dir).iterdir() if p.name.endswith(".tmp")]
