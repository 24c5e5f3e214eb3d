"""Shared fixtures: the real embedding model, loaded once, and a real index of the demo corpus
built once per test session in a temporary folder; and the model-free hashing encoder, for tests
of everything but the model (their settings say ``encoder="hashing"``: ``HASHING``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sscp_rag.embedding import Embedder
from sscp_rag.encoder import HashingEncoder
from sscp_rag.index import Index, load_index
from sscp_rag.ingest import build_index
from sscp_rag.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DEMO_CORPUS = ROOT / "corpus" / "demo"
REAL_CORPUS = ROOT.parent / "shared" / "corpus-real"
# The settings overrides of a test that does not test the model: Settings(**HASHING, ...).
HASHING = {"encoder": "hashing"}


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder(Settings())


@pytest.fixture(scope="session")
def hashing_encoder() -> HashingEncoder:
    """The encoder ``Settings(**HASHING)`` ask for: deterministic, no model to load."""
    return HashingEncoder(Settings(**HASHING))


@pytest.fixture(scope="session")
def demo_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(corpus_dir=DEMO_CORPUS, index_dir=tmp_path_factory.mktemp("demo-index"))


@pytest.fixture(scope="session")
def demo_index(demo_settings: Settings, embedder: Embedder) -> Index:
    build_index(demo_settings, progress=False, embedder=embedder)
    return load_index(demo_settings, embedder=embedder)
