"""Shared fixtures: the real embedding model, loaded once, and a real index of the demo corpus
built once per test session in a temporary folder; and the model-free hashing encoder, for tests
of everything but the model (their settings say ``encoder="hashing"``: ``HASHING``)."""

from __future__ import annotations

import os
import subprocess
import sys
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


def start_ingest(corpus: Path, index: Path, **env: str) -> subprocess.Popen:
    """``sscp-rag ingest --quiet`` of ``corpus`` into ``index`` in a process of its own (to be
    killed mid-run), with the hashing encoder and any further ``SSCP_RAG_*`` variables."""
    env = {
        **os.environ,
        "SSCP_RAG_CORPUS_DIR": str(corpus),
        "SSCP_RAG_INDEX_DIR": str(index),
        "SSCP_RAG_ENCODER": "hashing",
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "sscp_rag.cli", "ingest", "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


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
