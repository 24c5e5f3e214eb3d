"""The dense index kinds (settings.dense_index): ivf-sq8 finds what exact search finds, keeps to
filters, is fingerprinted, and loads and searches through the ordinary code path."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from sscp_rag import dense
from sscp_rag.errors import IndexStaleError
from sscp_rag.index import fingerprint, load_index, read_manifest, write_vectors
from sscp_rag.retrieval import Filters, retriever_for, search


def _vectors(index) -> np.ndarray:
    return np.vstack([index.faiss.reconstruct(i) for i in range(index.faiss.ntotal)])


def test_ivf_sq8_finds_what_exact_search_finds_and_keeps_to_a_mask(demo_index):
    s = demo_index.settings.with_overrides(dense_index="ivf-sq8")
    x = _vectors(demo_index)
    ivf = dense.build(x, s)
    assert ivf.ntotal == len(x) and ivf.nlist == dense.n_lists(len(x)) > 1
    assert np.allclose(ivf.reconstruct(5), x[5], atol=0.02)  # rows can be reconstructed (answerability's sample)
    flat = demo_index.settings
    queries = x[:: max(1, len(x) // 40)] + 0.05
    rng = np.random.default_rng(0)
    shares, masked = [], []
    for q in queries:
        q = (q / np.linalg.norm(q)).astype(np.float32)
        _, exact = dense.search(demo_index.faiss, q, 10, None, flat)
        _, got = dense.search(ivf, q, 10, None, s)
        shares.append(len(set(exact) & set(got)) / 10)
        mask = rng.random(len(x)) < 0.02  # a very selective filter: every list is visited
        _, exact_m = dense.search(demo_index.faiss, q, 10, mask, flat)
        _, got_m = dense.search(ivf, q, 10, mask, s)
        assert all(mask[i] for i in got_m if i >= 0)
        masked.append(len(set(exact_m) & set(got_m)) / max(1, len(set(exact_m) - {-1})))
    assert np.mean(shares) >= 0.9
    assert np.mean(masked) >= 0.95


def test_the_dense_index_kind_is_fingerprinted():
    from sscp_rag.settings import Settings

    assert "dense_index" not in fingerprint(Settings())  # indexes built before the setting stay valid
    assert fingerprint(Settings(dense_index="ivf-sq8"))["dense_index"] == "ivf-sq8"


def test_an_ivf_index_loads_and_searches_and_is_refused_under_flat(demo_index, demo_settings, embedder, tmp_path):
    """The demo index's store and BM25 with an ivf-sq8 dense index written by write_vectors."""
    index_dir = tmp_path / "ivf"
    shutil.copytree(demo_settings.index_dir, index_dir, ignore=shutil.ignore_patterns("staging", ".lock"))
    s = demo_settings.with_overrides(index_dir=index_dir, dense_index="ivf-sq8")
    manifest = read_manifest(index_dir)
    write_vectors(index_dir / manifest["data_dir"], _vectors(demo_index), s)
    manifest["fingerprint"] = fingerprint(s)
    (index_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexStaleError, match="dense_index"):
        load_index(demo_settings.with_overrides(index_dir=index_dir))
    index = load_index(s, embedder=embedder)
    query = "information sharing between agencies"
    exact = [h.chunk_id for h in search(demo_index, query)]
    got = [h.chunk_id for h in search(index, query)]
    assert len(set(exact) & set(got)) >= 8
    f = Filters(types=("SCR",))
    allowed = retriever_for(index).allowed(f)
    rows = {c.id: i for i, c in enumerate(index.chunks)}
    assert all(allowed[rows[c]] for h in search(index, query, filters=f) for c in h.chunk_ids)
