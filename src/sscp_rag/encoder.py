"""What turns texts into vectors: the :class:`Encoder` protocol, and :class:`HashingEncoder`, a
deterministic encoder that needs no model.

The index, retrieval and answers depend only on the protocol. Two implementations exist:
:class:`sscp_rag.embedding.ModelEncoder` (the sentence-transformers model, run by torch, by its
fp32 ONNX export or by the int8 one, per ``Settings.embed_backend`` and ``query_backend``) and
:class:`HashingEncoder` (``Settings.encoder = 'hashing'``), which hashes words and word pairs
into a vector. The hashing encoder is for tests of everything but the model (ingest, storage,
the CLI, the app): it loads in milliseconds and gives texts sharing words similar vectors, so
dense retrieval still means something, but it knows no synonyms and its similarities are not
MiniLM's, so answerability and known-answer figures do not hold under it.

:func:`sscp_rag.embedding.make_encoder` gives the encoder that settings ask for. An encoder's
:attr:`Encoder.identity` is recorded in the index fingerprint, so an index built by one encoder
is never searched with another's vectors.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from sscp_rag.model_files import load_chunk_tokenizer, resolve_model_path
from sscp_rag.settings import Settings


@dataclass(frozen=True)
class EncoderIdentity:
    """What an index records about the vectors in it: a different identity means other vectors.

    ``model`` and ``backend`` are stored as the fingerprint's ``model`` and ``embed_backend``
    (the keys indexes had before encoders were pluggable, so those indexes stay valid)."""

    model: str
    backend: str


# Not runtime_checkable: isinstance() would read every property, and reading ``dims`` or
# ``tokenizer`` loads the model.
class Encoder(Protocol):
    """Encodes texts into L2-normalised float32 vectors (cosine = inner product).

    ``encode`` embeds passages at ingest; ``encode_live`` embeds questions and the sentences an
    answer chooses from. An encoder may run these on two runtimes of one model (equal vectors to
    float rounding); both must be comparable with each other."""

    @property
    def identity(self) -> EncoderIdentity:
        """The model and runtime of the passage vectors, as the index fingerprint records them."""
        ...

    @property
    def dims(self) -> int:
        """The vectors' dimension."""
        ...

    @property
    def tokenizer(self) -> Any:
        """The transformers tokenizer that chunks are measured with."""
        ...

    @property
    def live_runtime(self) -> str:
        """The runtime ``encode_live`` settled on ('' until ``prepare_live`` has run)."""
        ...

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Passage vectors, shape (len(texts), dims), float32, rows of unit length."""
        ...

    def encode_live(self, texts: Sequence[str]) -> np.ndarray:
        """Question-time vectors, shape (len(texts), dims), comparable with ``encode``'s."""
        ...

    def encode_query(self, text: str) -> np.ndarray:
        """The vector of one question, shape (dims,)."""
        ...

    def encode_tokens(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Per text, unit vectors of its tokens, shape (tokens, dims): for late-interaction scoring."""
        ...

    def live_needs_export(self) -> bool:
        """Whether ``prepare_live`` has slow one-time work to do (an ONNX export)."""
        ...

    def prepare_live(self) -> str:
        """Make the question-time runtime ready and name it."""
        ...


# Bump when the features or their weighting change: indexes built with the old ones are rebuilt.
HASHING_VERSION = 1
HASHING_DIMS = 384  # MiniLM's, so code that assumes nothing about dims is exercised the same way
_WORD = re.compile(r"\w+")
_PAIR_WEIGHT = 0.5  # word pairs add order, but the words themselves should dominate
# Without IDF, words in every text ('the', 'was') would make unrelated texts look alike.
_STOPWORDS = frozenset(
    "a an and are as at be been by for from had has have he her his in is it its of on or she that the their "
    "them they this to was were which who will with".split()
)


@functools.lru_cache(maxsize=1 << 16)
def _slot(feature: str, dims: int) -> tuple[int, float]:
    """The dimension and sign a feature is hashed to. blake2b, not ``hash()``: Python salts
    string hashes per process, and vectors must be the same in every process and on every run."""
    digest = int.from_bytes(hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest(), "little")
    # A sign per feature makes colliding features cancel on average instead of adding up.
    return digest % dims, 1.0 if (digest >> 63) & 1 else -1.0


class HashingEncoder:
    """A deterministic encoder with no model: lower-cased words (less a few dozen function words)
    and adjacent word pairs, weighted 1 + log(count) (pairs at half weight), feature-hashed with signs into
    ``HASHING_DIMS`` dimensions and L2-normalised.

    Texts sharing words get similar vectors; the same text gets the same vector in any process,
    batch or order. Chunks are measured with the configured model's tokenizer, so an index built
    with this encoder has the same chunks as one built with the model. For tests that do not
    test the model; see the module docstring for what it cannot stand in for."""

    def __init__(self, settings: Settings, dims: int = HASHING_DIMS):
        self.settings = settings
        self._dims = dims
        self._tokenizer: Any = None

    @property
    def identity(self) -> EncoderIdentity:
        return EncoderIdentity(model=f"hashing-{self._dims}-v{HASHING_VERSION}", backend="hashing")

    @property
    def dims(self) -> int:
        return self._dims

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            self._tokenizer = load_chunk_tokenizer(resolve_model_path(self.settings.model_name))
        return self._tokenizer

    @property
    def live_runtime(self) -> str:
        return "hashing"

    def _vector(self, text: str) -> np.ndarray:
        words = [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]
        counts = Counter(words)
        pairs = Counter(f"{a} {b}" for a, b in zip(words, words[1:]))
        vec = np.zeros(self._dims, dtype=np.float64)
        for features, weight in ((counts, 1.0), (pairs, _PAIR_WEIGHT)):
            for feature, n in features.items():
                slot, sign = _slot(feature, self._dims)
                vec[slot] += sign * weight * (1.0 + math.log(n))
        norm = np.linalg.norm(vec)
        return vec / norm if norm > 0 else vec  # a text with no words stays the zero vector

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), self._dims), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i] = self._vector(text)
        return out

    def encode_live(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode(texts)

    def encode_query(self, text: str) -> np.ndarray:
        return self.encode([text])[0]

    def encode_tokens(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Per text, the hashed vector of each of its words (less the function words)."""
        out = []
        for text in texts:
            words = [w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]
            out.append(self.encode(words) if words else np.zeros((0, self._dims), dtype=np.float32))
        return out

    def live_needs_export(self) -> bool:
        return False

    def prepare_live(self) -> str:
        return self.live_runtime
