"""The encoders: the hashing encoder is deterministic and meaningful enough for retrieval tests,
the settings choose the encoder, and the encoder modules import each other in no circle. No
test here loads the model."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pdfmaker as pm
import pytest

from sscp_rag.embedding import ModelEncoder, encoder_identity, make_encoder
from sscp_rag.encoder import HASHING_DIMS, HashingEncoder
from sscp_rag.errors import ConfigError, IndexStaleError
from sscp_rag.index import fingerprint, load_index
from sscp_rag.ingest import build_index
from sscp_rag.retrieval import search
from sscp_rag.settings import Settings

SRC = Path(__file__).resolve().parent.parent / "src" / "sscp_rag"
TEXTS = [
    "The health visitor missed the new birth visit for the baby.",
    "The new birth visit by the health visitor was missed.",
    "Coercive control and domestic abuse were not recognised by the police.",
]


def test_hashing_vectors_are_unit_float32_and_similar_texts_are_closer() -> None:
    enc = HashingEncoder(Settings(encoder="hashing"))
    vecs = enc.encode(TEXTS)
    assert vecs.shape == (3, HASHING_DIMS) == (3, enc.dims) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-6)
    sims = vecs @ vecs.T
    assert sims[0, 1] > 0.6 > 0.2 > sims[0, 2]  # shared words near, unrelated far
    # Questions and passages are encoded alike, one at a time or in a batch, in any order.
    assert np.array_equal(enc.encode_query(TEXTS[2]), vecs[2])
    assert np.array_equal(enc.encode_live(TEXTS[::-1]), vecs[::-1])
    assert enc.encode([]).shape == (0, HASHING_DIMS)
    assert not enc.encode(["", "  ,. "]).any()  # no words: the zero vector, not NaN


def test_hashing_vectors_are_the_same_in_another_process() -> None:
    # Python salts str hashes per process; the encoder must not depend on them.
    code = (
        "import sys; from sscp_rag.encoder import HashingEncoder; from sscp_rag.settings import Settings; "
        f"sys.stdout.buffer.write(HashingEncoder(Settings()).encode({TEXTS!r}).tobytes())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, env={"PYTHONHASHSEED": "7"})
    other = np.frombuffer(out.stdout, dtype=np.float32).reshape(len(TEXTS), HASHING_DIMS)
    assert np.array_equal(other, HashingEncoder(Settings()).encode(TEXTS))


def test_settings_choose_the_encoder_and_its_identity() -> None:
    hashing = make_encoder(Settings(encoder="hashing"))
    assert isinstance(hashing, HashingEncoder) and not hashing.live_needs_export()
    assert hashing.prepare_live() == hashing.live_runtime == "hashing"
    assert hashing.identity == encoder_identity(Settings(encoder="hashing"))
    model = make_encoder(Settings())  # not loaded: the model loads on first use
    assert isinstance(model, ModelEncoder) and model._model is None
    # The model's identity is what indexes recorded before encoders were pluggable.
    assert (model.identity.model, model.identity.backend) == ("all-MiniLM-L6-v2", "torch")
    assert model.identity == encoder_identity(Settings())
    assert encoder_identity(Settings(encoder="hashing")) != encoder_identity(Settings())
    assert Settings.from_env({"SSCP_RAG_ENCODER": "hashing"}).encoder == "hashing"
    with pytest.raises(ConfigError, match="encoder must be one of model, hashing"):
        Settings().with_overrides(encoder="minilm")


def test_hashing_encoder_chunks_with_the_models_tokenizer() -> None:
    # Same chunk boundaries as a model index: chunking tests mean the same under either encoder.
    text = "Professional curiosity about the child's lived experience."
    hashing = HashingEncoder(Settings()).tokenizer
    model = ModelEncoder(Settings()).tokenizer  # the tokenizer only, not the model
    assert hashing(text)["input_ids"] == model(text)["input_ids"]


def test_a_hashing_index_is_never_loaded_as_a_model_index(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    pm.simple_report(corpus / "scr-child-h.pdf", "hotel", "Serious Case Review: Child H", paragraphs=3)
    hashing = Settings(corpus_dir=corpus, index_dir=tmp_path / "index", encoder="hashing", retrieval_mode="dense")
    model = hashing.with_overrides(encoder="model")
    assert fingerprint(model) == {**fingerprint(hashing), "model": "all-MiniLM-L6-v2", "embed_backend": "torch"}
    with pytest.raises(ConfigError, match="not the one the settings ask for"):  # checked before any loading
        build_index(hashing, progress=False, embedder=ModelEncoder(model))
    assert build_index(hashing, progress=False).chunks > 0
    index = load_index(hashing)
    assert search(index, "hotelp2s1", k=1)[0].file == "scr-child-h.pdf"  # dense alone finds the words
    index.close()
    with pytest.raises(IndexStaleError, match="model 'hashing-384-v1' -> 'all-MiniLM-L6-v2'"):
        load_index(model)


def _imports(module: str) -> set[str]:
    tree = ast.parse((SRC / f"{module}.py").read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):  # function-level imports count too: they are arrows all the same
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sscp_rag."):
            found.add(node.module.removeprefix("sscp_rag."))
        elif isinstance(node, ast.Import):
            found |= {a.name.removeprefix("sscp_rag.") for a in node.names if a.name.startswith("sscp_rag.")}
    return found


def test_encoder_modules_import_each_other_in_no_circle() -> None:
    modules = ("model_files", "encoder", "onnx_embed", "embedding")
    graph = {m: _imports(m) & set(modules) for m in modules}
    assert graph["model_files"] == set()  # the leaf
    assert "embedding" not in graph["onnx_embed"] and "embedding" not in graph["encoder"]

    def reaches(start: str, goal: str, seen: frozenset[str] = frozenset()) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in graph[start])

    assert not [m for m in modules if reaches(m, m)], graph
