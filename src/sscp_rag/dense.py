"""The dense (FAISS) index: which kind is built (``settings.dense_index``) and how it is searched.

``flat`` (the default) searches every vector exactly; up to a few hundred thousand passages it is
fast enough and it is what the eval figures were measured with. ``ivf-sq8`` is for archives of a
million passages, where the flat index is too slow and too big (1M x 384 float32 = 1.5 GB): an
inverted file of ``nlist`` k-means lists whose vectors are stored in 8 bits per dimension (a
quarter of the memory). A query visits ``dense_nprobe`` lists. A filter is applied inside FAISS
(a bitmap of the allowed rows), and a filter that lets through a fraction ``f`` of the passages
visits ``nprobe / f`` lists, so that about as many allowed vectors are compared as unfiltered: a
very selective filter scans every list, which is then an exact search of the allowed rows.
The kind is part of the index fingerprint (see :func:`fingerprint`), so a changed setting means
a rebuild. ``scripts/bench_scale.py`` measures both at 1M passages.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sscp_rag.settings import Settings

DENSE_INDEXES = ("flat", "ivf-sq8")
# k-means wants about 39 training points per list (FAISS warns below that); more than 256 per
# list adds training time and little quality.
_MIN_POINTS_PER_LIST = 39
_MAX_TRAIN_PER_LIST = 256


def fingerprint(settings: Settings) -> dict[str, Any]:
    """The index fingerprint's entry for the dense index: empty for ``flat``, so indexes built
    before the setting existed stay valid."""
    return {} if settings.dense_index == "flat" else {"dense_index": settings.dense_index}


def n_lists(n: int) -> int:
    """Inverted lists for ``n`` vectors: about 2 * sqrt(n) (2,000 at 1M), fewer when there are too
    few vectors to train that many."""
    return max(1, min(int(2 * math.sqrt(n)), n // _MIN_POINTS_PER_LIST))


def build(matrix: np.ndarray, settings: Settings, seed: int = 0) -> Any:
    """A FAISS inner-product index of ``matrix`` (rows: L2-normalised float32 vectors) of the kind
    ``settings.dense_index`` names."""
    import faiss

    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    dims = matrix.shape[1]
    if settings.dense_index == "flat" or len(matrix) == 0:
        index = faiss.IndexFlatIP(dims)
    elif settings.dense_index == "ivf-sq8":
        quantizer = faiss.IndexFlatIP(dims)
        nlist = n_lists(len(matrix))
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, dims, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        index.cp.seed = seed
        rng = np.random.default_rng(seed)
        n_train = min(len(matrix), nlist * _MAX_TRAIN_PER_LIST)
        train = matrix if n_train == len(matrix) else matrix[np.sort(rng.choice(len(matrix), n_train, replace=False))]
        index.train(train)
        # Rows are reconstructed by id (answerability's sample of passage vectors, the theme map).
        index.make_direct_map()
    else:
        raise ValueError(f"unknown dense_index {settings.dense_index!r}")
    if len(matrix):
        index.add(matrix)
    return index


def search(
    index: Any, qvec: np.ndarray, n: int, mask: np.ndarray | None, settings: Settings
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, rows) of the ``n`` best vectors for ``qvec`` among the rows ``mask`` allows
    (None: all), best first; rows are -1 where fewer were found."""
    import faiss

    bits = None  # kept referenced until the search is done: FAISS reads it through a pointer
    sel = None
    if mask is not None:
        # A bitmap of the mask, built by numpy and read by FAISS: no per-row work in Python.
        bits = np.packbits(mask, bitorder="little")
        sel = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bits))
    ivf = faiss.try_extract_index_ivf(index) if settings.dense_index != "flat" else None
    if ivf is not None:
        nprobe = settings.dense_nprobe
        if mask is not None:
            frac = max(float(mask.mean()), 1e-9)
            nprobe = math.ceil(nprobe / frac)
        params = faiss.SearchParametersIVF(sel=sel, nprobe=min(ivf.nlist, nprobe))
    else:
        params = faiss.SearchParameters(sel=sel) if sel is not None else None
    scores, rows = index.search(qvec.reshape(1, -1).astype(np.float32, copy=False), n, params=params)
    del bits
    return scores[0], rows[0]
