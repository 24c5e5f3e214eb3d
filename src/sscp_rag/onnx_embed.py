"""Sentence embeddings with onnxruntime: the local sentence-transformers model exported to ONNX,
run at full precision (fp32) or quantised to int8.

Two uses. The fp32 export reproduces the torch model's vectors (cosine 1.0 to within float
rounding) without importing torch or sentence-transformers, which take most of the ~10 s a
process needs before its first torch embedding; questions and answer sentences are embedded this
way (``Settings.query_backend``), so the app answers within seconds of starting. The int8 export
is the faster ingest runtime (``embed_backend=onnx-int8``); its vectors are close to, not equal
to, the fp32 ones (``scripts/bench_ingest.py`` measures how close).

The export happens once per model and is cached (``Settings.onnx_cache_dir``, by default
``~/.cache/sscp-rag/onnx/<model hash>/``): ``torch.onnx.export`` writes the fp32 graph of the local
weights (nothing is downloaded) and ``onnxruntime.quantization.quantize_dynamic`` derives the
per-channel int8 model from it; both are kept. Tokenising uses the model's own ``tokenizer.json``
through the ``tokenizers`` library (the same tokenizer transformers' fast tokenizer runs), and
pooling and normalisation follow the model's sentence-transformers configuration (mean pooling
over real tokens for all-MiniLM-L6-v2). Dynamic quantisation scales activations per batch, so an
int8 vector also varies a little with the texts batched with it (cosine > 0.98 to itself encoded
alone); batches are formed by length, so the order of the texts does not matter.

Optimum is not used: it pins an older transformers than the one the project runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import uuid
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sscp_rag.errors import ConfigError
from sscp_rag.model_files import EXPORT_RECIPE, MODEL_FILES, is_exported, onnx_cache_folder, quiet_transformers

__all__ = ["MODEL_FILES", "OnnxEncoder", "ensure_onnx_model", "export_onnx", "is_exported", "load_tokenizer"]

INFO_FILE = "export.json"
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _read_json(path: Path, default: dict[str, Any]) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporter's tracer warnings and the quantiser's advice, which it logs through
    ``logging.warning`` (that call also installs a root handler, removed again here)."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)


def export_onnx(model_path: Path, out_dir: Path) -> None:
    """Export the transformer of the local model at ``model_path`` to ONNX in ``out_dir``: the
    fp32 graph and its int8 quantisation (``MODEL_FILES``). Needs torch, transformers, onnx and
    onnxruntime; reads only local files."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel, AutoTokenizer

    quiet_transformers()
    out_dir.mkdir(parents=True, exist_ok=True)
    fp32 = out_dir / MODEL_FILES["fp32"]
    # Eager attention traces into plain MatMul/Softmax, which onnxruntime fuses and quantises well.
    model = AutoModel.from_pretrained(str(model_path), attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    names = [n for n in _INPUTS if n in tokenizer.model_input_names]
    sample = tokenizer(
        ["a short sentence", "a somewhat longer second sentence to pad"], padding=True, return_tensors="pt"
    )

    class LastHiddenState(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, *args: torch.Tensor) -> torch.Tensor:
            return self.inner(**dict(zip(names, args))).last_hidden_state

    axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]}
    with _quiet(), torch.no_grad():
        torch.onnx.export(
            LastHiddenState(model),
            tuple(sample[n] for n in names),
            str(fp32),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
        quantize_dynamic(str(fp32), str(out_dir / MODEL_FILES["int8"]), weight_type=QuantType.QInt8, per_channel=True)


def ensure_onnx_model(model_path: Path, cache_dir: Path | None = None, precision: str = "int8") -> Path:
    """The cached ONNX model of ``model_path`` at ``precision`` ('fp32' or 'int8'), exported on
    first use.

    The export is written to a temporary folder and renamed into place, so an interrupted export
    leaves no half-written model and two processes exporting at once both end with a whole one.
    """
    if precision not in MODEL_FILES:
        raise ConfigError(f"unknown ONNX precision {precision!r}; use one of {', '.join(MODEL_FILES)}")
    model_path = Path(model_path)
    final = onnx_cache_folder(model_path, cache_dir)
    if is_exported(model_path, cache_dir):
        return final / MODEL_FILES[precision]
    if final.exists():  # a damaged cache entry: redo it
        shutil.rmtree(final, ignore_errors=True)
    tmp = final.parent / f".{final.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        export_onnx(model_path, tmp)
        info = {
            "model_path": str(model_path),
            "recipe": EXPORT_RECIPE,
            "files": {"fp32": MODEL_FILES["fp32"], "int8": f"{MODEL_FILES['int8']} (dynamic, per-channel)"},
        }
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        try:
            os.replace(tmp, final)
        except OSError:  # another process finished first (the folder exists and is not empty)
            if not (final / MODEL_FILES[precision]).exists():
                raise
    except ImportError as exc:
        raise ConfigError(
            f"the ONNX embedding runtime needs torch, onnx and onnxruntime to export the model once ({exc}); "
            "install the project again"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - any exporter failure becomes one clear message
        raise ConfigError(f"could not export {model_path} to ONNX ({type(exc).__name__}: {exc})") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final / MODEL_FILES[precision]


def load_tokenizer(model_path: Path, max_length: int) -> Any:
    """The model's fast tokenizer from its ``tokenizer.json``, truncating to ``max_length`` tokens
    and padding a batch to its longest text, without importing transformers."""
    from tokenizers import Tokenizer

    path = Path(model_path) / "tokenizer.json"
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # noqa: BLE001 - missing or unreadable file: one clear message
        raise ConfigError(f"cannot read the model's tokenizer {path} ({exc}); use query_backend=torch") from exc
    pad = _read_json(Path(model_path) / "tokenizer_config.json", {}).get("pad_token")
    if not isinstance(pad, str) or not pad:  # absent, or an AddedToken dict
        pad = "[PAD]"
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id(pad) or 0, pad_token=pad)
    return tokenizer


class OnnxEncoder:
    """Sentence embeddings from the ONNX export of a local sentence-transformers model."""

    def __init__(
        self,
        model_path: Path,
        precision: str = "int8",
        cache_dir: Path | None = None,
        threads: int | None = None,
    ):
        import onnxruntime as ort

        self.model_path = Path(model_path)
        self.precision = precision
        pooling = _read_json(self.model_path / "1_Pooling" / "config.json", {"pooling_mode_mean_tokens": True})
        if pooling.get("pooling_mode_mean_tokens"):
            self.pooling = "mean"
        elif pooling.get("pooling_mode_cls_token"):
            self.pooling = "cls"
        else:
            raise ConfigError(f"the ONNX runtime supports mean or CLS pooling, not {pooling}")
        st_config = _read_json(self.model_path / "sentence_bert_config.json", {})
        self.max_length = int(st_config.get("max_seq_length") or 256)
        self.tokenizer = load_tokenizer(self.model_path, self.max_length)
        self.dims = int(_read_json(self.model_path / "config.json", {}).get("hidden_size") or 0)
        self.onnx_path = ensure_onnx_model(self.model_path, cache_dir, precision)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or max(1, os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(self.onnx_path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        if not self.dims:
            self.dims = int(self.session.get_outputs()[0].shape[-1])

    def _features(self, texts: list[str]) -> dict[str, np.ndarray]:
        encodings = self.tokenizer.encode_batch(texts)
        return {
            "input_ids": np.asarray([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.asarray([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.asarray([e.type_ids for e in encodings], dtype=np.int64),
        }

    def encode(self, texts: Sequence[str], batch_size: int = 32, progress: bool = False) -> np.ndarray:
        """L2-normalised float32 embeddings, shape (len(texts), dims), in the order of ``texts``."""
        from tqdm import tqdm

        texts = list(texts)
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        # Longest first, as sentence-transformers does: batches of similar length pad little.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        batch_size = max(1, batch_size)
        starts = range(0, len(texts), batch_size)
        for start in tqdm(starts, desc="Embedding", unit="batch", disable=not progress, leave=False):
            idx = order[start : start + batch_size]
            features = self._features([texts[i] for i in idx])
            hidden = self.session.run(None, {n: features[n] for n in self.input_names})[0]
            if self.pooling == "mean":
                mask = features["attention_mask"][..., None].astype(np.float32)
                vecs = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
            else:
                vecs = hidden[:, 0]
            norms = np.linalg.norm(vecs, axis=1, keepdims=True)
            out[idx] = vecs / np.clip(norms, 1e-12, None)
        return out

    def encode_tokens(self, texts: Sequence[str], batch_size: int = 32) -> list[np.ndarray]:
        """Per text, the L2-normalised contextual vectors of its word pieces (the model's last
        hidden state, without the special tokens that open and close the text and without padding),
        float32, shape (pieces, dims): for late-interaction (MaxSim) scoring."""
        texts = list(texts)
        out: list[np.ndarray] = [np.zeros((0, self.dims), dtype=np.float32)] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for start in range(0, len(texts), max(1, batch_size)):
            idx = order[start : start + max(1, batch_size)]
            features = self._features([texts[i] for i in idx])
            hidden = self.session.run(None, {n: features[n] for n in self.input_names})[0]
            for row, i in enumerate(idx):
                n = int(features["attention_mask"][row].sum())
                vecs = hidden[row, 1 : max(1, n - 1)]
                norms = np.linalg.norm(vecs, axis=1, keepdims=True)
                out[i] = np.ascontiguousarray(vecs / np.clip(norms, 1e-12, None), dtype=np.float32)
        return out
