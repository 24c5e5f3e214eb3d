"""Distributed ingest on a Ray cluster: PDFs are read, chunked and embedded by Ray actors (one
encoder loaded per actor, kept for all its files); the driver writes the index through the same
staging and atomic publish as a local build (:func:`sscp_rag.ingest.build_index`).

What is shipped: each PDF's bytes (through Ray's object store, so workers need no shared file
system), its manifest metadata and the settings. What each worker needs installed: the same
sscp-rag (and so the same model package and ONNX runtime) in the same Python version; the ONNX
export is made once per machine in its ``onnx_cache_dir``. A file's vectors depend only on the
file (its chunks are embedded together, never batched with another file's), so the index equals
a local build's: same chunks, vectors equal to float rounding, same fingerprint.

Ray is an optional extra (``pip install '.[ray]'``); nothing here imports it until asked.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sscp_rag import store as st
from sscp_rag.corpus import CorpusFile
from sscp_rag.embedding import make_encoder
from sscp_rag.encoder import Encoder
from sscp_rag.errors import ConfigError, SscpRagError
from sscp_rag.ingest import EmbeddedFile, Producer, embed_file, iter_chunked
from sscp_rag.records import DocumentMeta
from sscp_rag.settings import Settings

LOCAL = "local"  # --ray without an address: start a Ray instance on this machine
LOCAL_CPUS = 2


def import_ray() -> Any:
    """The ``ray`` module, or a one-line ConfigError saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ConfigError("Ray is not installed: pip install '.[ray]'") from exc
    return ray


def process_pdf(
    settings: Settings, embedder: Encoder, rel: str, sha256: str, data: bytes, meta: str | None
) -> bytes | str:
    """Read, chunk and embed one PDF given as bytes, as a local build does (same reader, time
    budget, chunking and per-file embedding); returns the serialised EmbeddedFile or the reason
    the file was skipped. Runs on a Ray worker; plain function so it can be tested without Ray."""
    with tempfile.TemporaryDirectory(prefix="sscp-rag-") as tmp:
        path = Path(tmp) / "file.pdf"
        path.write_bytes(data)
        f = CorpusFile(path=path, rel=rel, sha256=sha256, size=len(data))
        manifests = {rel: st.meta_from_json(meta)} if meta else {}
        results = iter_chunked(settings, [f], manifests, embedder.tokenizer)
        try:
            _, chunked = next(results)
        finally:
            results.close()
    if isinstance(chunked, str):
        return chunked
    return embed_file(settings, chunked, embedder).to_bytes()


class _FileWorker:
    """A Ray actor: loads the encoder once, then reads and embeds the PDFs it is given."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.embedder = make_encoder(settings)

    def process(self, rel: str, sha256: str, data: bytes, meta: str | None) -> bytes | str:
        return process_pdf(self.settings, self.embedder, rel, sha256, data, meta)


class RayRun:
    """An iterator of ``(file, EmbeddedFile or skip reason)`` made by Ray actors, in the order they
    finish (the driver puts them in corpus order). Keeps at most two files per worker in flight,
    so the object store holds only those PDFs' bytes."""

    def __init__(
        self,
        ray: Any,
        settings: Settings,
        files: list[CorpusFile],
        manifests: dict[str, DocumentMeta],
        workers: int,
        cpus_per_worker: int,
    ):
        self.ray = ray
        # Workers read one file each with the same per-file budget, and embed with the CPUs Ray
        # gave them, so two workers on one machine do not each start a thread per core.
        worker_settings = dataclasses.replace(settings, read_workers=1, embed_threads=cpus_per_worker)
        actor = ray.remote(num_cpus=cpus_per_worker)(_FileWorker)
        self.actors = [actor.remote(worker_settings) for _ in range(max(1, workers))]
        self.idle = list(self.actors)
        self.pending = list(reversed(files))
        self.manifests = manifests
        self.running: dict[Any, tuple[CorpusFile, Any]] = {}

    def _submit(self) -> None:
        while self.idle and self.pending:
            f = self.pending.pop()
            actor = self.idle.pop()
            meta = self.manifests.get(f.rel)
            ref = actor.process.remote(
                f.rel, f.sha256, f.path.read_bytes(), st.meta_to_json(meta) if meta is not None else None
            )
            self.running[ref] = (f, actor)

    def __iter__(self) -> Iterator[tuple[CorpusFile, EmbeddedFile | str]]:
        return self

    def __next__(self) -> tuple[CorpusFile, EmbeddedFile | str]:
        self._submit()
        if not self.running:
            raise StopIteration
        [ref], _ = self.ray.wait(list(self.running), num_returns=1)
        f, actor = self.running.pop(ref)
        self.idle.append(actor)
        try:
            result = self.ray.get(ref)
        except self.ray.exceptions.RayError as exc:
            # A lost worker or node is not the file's fault: stop rather than record it as skipped
            # (a skip is remembered until the file changes). Files done so far stay in staging.
            lines = str(exc).strip().splitlines()
            raise SscpRagError(
                f"a Ray worker failed on {f.rel} ({lines[-1] if lines else type(exc).__name__}); "
                "re-run the ingest to resume from the files already done"
            ) from exc
        self._submit()
        return f, result if isinstance(result, str) else EmbeddedFile.from_bytes(result)

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors, self.idle, self.running = [], [], {}


def ray_producer(address: str | None = None, workers: int = 0, cpus_per_worker: int = 1) -> Producer:
    """A producer for :func:`sscp_rag.ingest.build_index` that reads and embeds on Ray.

    ``address``: None or 'local' starts a Ray instance on this machine (``LOCAL_CPUS`` CPUs) and
    stops it at the end; 'auto' or 'ray://host:10001' joins a running cluster. ``workers``: how
    many actors (0 = as many as the cluster's CPUs allow, ``cpus_per_worker`` each).
    """
    ray = import_ray()

    def produce(
        settings: Settings,
        files: list[CorpusFile],
        manifests: dict[str, DocumentMeta],
        embedder: Encoder,
        old_conn: sqlite3.Connection | None,
    ) -> Iterator[tuple[CorpusFile, EmbeddedFile | str]]:
        started = connect(ray, address)
        run = None
        try:
            n = workers or max(1, int(ray.cluster_resources().get("CPU", 1)) // max(1, cpus_per_worker))
            run = RayRun(ray, settings, files, manifests, n, cpus_per_worker)
            yield from run
        finally:
            if run is not None:
                run.close()
            if started:
                ray.shutdown()

    return produce


def connect(ray: Any, address: str | None) -> bool:
    """Connect to Ray (see :func:`ray_producer`); True if a local instance was started here. The
    settings travel with the actors, so workers need no SSCP_RAG_* environment."""
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": "error"}
    try:
        if address in (None, "", LOCAL):
            ray.init(num_cpus=LOCAL_CPUS, include_dashboard=False, **kwargs)
            return True
        ray.init(address=address, **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"cannot connect to the Ray cluster at {address} ({exc})") from exc
    return False
