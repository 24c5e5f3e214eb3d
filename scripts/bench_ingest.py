"""Ingest benchmark: throughput of fresh builds, an unchanged re-run, and the two embedding backends.

    python scripts/bench_ingest.py [--skip-real] [--rounds 3] [--json out.json]

Prints, for corpus/demo and ../shared/corpus-real (each built fresh into a temporary folder):
pages/s and chunks/s over the whole build, the reading (extract + clean + chunk) and embedding
shares, and the seconds of an unchanged re-run. Then the embedding backends side by side in the
same run: passages/s of fp32 torch and int8 ONNX (interleaved rounds on the same demo passages,
with all cores and with one thread each; wall clock and process CPU time, since the machine is
shared), the mean cosine between the two
backends' vectors of every demo chunk, and retrieval quality on eval/demo.jsonl with each backend
(hit@5 and MRR@10 on relevant reports and pages). Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from sscp_rag.embedding import Embedder  # noqa: E402
from sscp_rag.index import Index, build_index, embed_text, load_index  # noqa: E402
from sscp_rag.onnx_embed import OnnxEncoder  # noqa: E402
from sscp_rag.retrieval import search  # noqa: E402
from sscp_rag.settings import Settings  # noqa: E402

DEMO = ROOT / "corpus" / "demo"
REAL = ROOT.parent / "shared" / "corpus-real"
EVAL = ROOT / "eval" / "demo.jsonl"


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} on {os.cpu_count()} cores"


def bench_build(name: str, corpus: Path, workdir: Path, embedder: Embedder, backend: str = "torch") -> dict[str, Any]:
    """A fresh build of ``corpus``, then an unchanged re-run; returns the figures."""
    s = Settings(corpus_dir=corpus, index_dir=workdir / f"{name}-{backend}", embed_backend=backend)
    t = time.perf_counter()
    summary = build_index(s, progress=False, embedder=embedder)
    total = time.perf_counter() - t
    t = time.perf_counter()
    again = build_index(s, progress=False, embedder=embedder)
    rerun = time.perf_counter() - t
    assert again.up_to_date and again.embedded == 0
    out = {
        "corpus": name,
        "backend": backend,
        "files": summary.files,
        "documents": summary.documents,
        "pages": summary.pages,
        "chunks": summary.chunks,
        "seconds": round(total, 2),
        "pages_per_s": round(summary.pages / total, 2),
        "chunks_per_s": round(summary.chunks / total, 2),
        "read_seconds": round(summary.read_seconds, 2),
        "read_pages_per_s": round(summary.pages / summary.read_seconds, 2) if summary.read_seconds else None,
        "embed_seconds": round(summary.embed_seconds, 2),
        "embed_chunks_per_s": round(summary.embedded / summary.embed_seconds, 2) if summary.embed_seconds else None,
        "unchanged_rerun_seconds": round(rerun, 3),
        "index_dir": str(s.index_dir),
    }
    print(
        f"{name:>6} [{backend}]: {out['documents']} docs, {out['pages']} pages, {out['chunks']} chunks in "
        f"{out['seconds']:.1f} s -> {out['pages_per_s']:.2f} pages/s, {out['chunks_per_s']:.2f} chunks/s "
        f"(read+chunk {out['read_seconds']:.1f} s = {out['read_pages_per_s']} pages/s; embed "
        f"{out['embed_seconds']:.1f} s = {out['embed_chunks_per_s']} chunks/s); unchanged re-run "
        f"{out['unchanged_rerun_seconds']:.2f} s   [{load()}]",
        flush=True,
    )
    return out


def passages(index: Index) -> list[str]:
    return [embed_text(index.docs[c.doc_id].meta, c) for c in index.chunks]


def bench_backends(
    texts: list[str], torch_emb: Embedder, onnx_emb: Embedder, rounds: int, threads: int | None = None
) -> dict[str, Any]:
    """Interleaved rounds over the same passages: passages/s by wall clock and by CPU time.
    With ``threads``, both runtimes are limited to that many threads for the comparison."""
    import torch

    tokens = [len(torch_emb.tokenizer(t, truncation=True, max_length=256)["input_ids"]) for t in texts]
    saved = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
        onnx = OnnxEncoder(onnx_emb.model_path, "int8", onnx_emb.settings.onnx_cache_dir, threads)
        batch = onnx_emb.settings.embed_batch_size
        encoders = {"torch": torch_emb.encode, "onnx-int8": lambda t: onnx.encode(t, batch)}
    else:
        encoders = {"torch": torch_emb.encode, "onnx-int8": onnx_emb.encode}
    try:
        for encode in encoders.values():  # warm up
            encode(texts[:8])
        res: dict[str, dict[str, list[float]]] = {b: {"wall": [], "cpu": []} for b in encoders}
        for _ in range(rounds):
            for name, encode in encoders.items():
                w, c = time.perf_counter(), time.process_time()
                encode(texts)
                res[name]["wall"].append(len(texts) / (time.perf_counter() - w))
                res[name]["cpu"].append(len(texts) / (time.process_time() - c))
    finally:
        torch.set_num_threads(saved)
    med = {b: {k: statistics.median(v) for k, v in d.items()} for b, d in res.items()}
    out = {
        "threads": threads or os.cpu_count(),
        "passages": len(texts),
        "mean_tokens": round(float(np.mean(tokens)), 1),
        "rounds": rounds,
        "torch_per_s": round(med["torch"]["wall"], 2),
        "onnx_per_s": round(med["onnx-int8"]["wall"], 2),
        "ratio_wall": round(med["onnx-int8"]["wall"] / med["torch"]["wall"], 2),
        "torch_per_cpu_s": round(med["torch"]["cpu"], 2),
        "onnx_per_cpu_s": round(med["onnx-int8"]["cpu"], 2),
        "ratio_cpu": round(med["onnx-int8"]["cpu"] / med["torch"]["cpu"], 2),
    }
    print(
        f"embedding {out['passages']} passages of {out['mean_tokens']} tokens on {out['threads']} thread(s), "
        f"median of {rounds} interleaved rounds: torch fp32 {out['torch_per_s']}/s, onnx int8 "
        f"{out['onnx_per_s']}/s -> ratio {out['ratio_wall']}x (by CPU time: {out['torch_per_cpu_s']} vs "
        f"{out['onnx_per_cpu_s']} per CPU-s, {out['ratio_cpu']}x)   [{load()}]",
        flush=True,
    )
    return out


def vectors(index: Index) -> np.ndarray:
    return index.faiss.reconstruct_n(0, index.faiss.ntotal)


def retrieval_quality(index: Index, questions: list[dict], mode: str) -> dict[str, float]:
    """Hit@5 and MRR@10 over relevant reports (and pages) for the answerable questions."""
    s = index.settings.with_overrides(retrieval_mode=mode)
    doc_hit = page_hit = rr = 0.0
    n = 0
    for q in questions:
        if not q.get("answerable", True) or not q.get("relevant"):
            continue
        n += 1
        docs = {r["doc"] for r in q["relevant"]}
        pages = {(r["doc"], p) for r in q["relevant"] for p in r.get("pages", [])}
        hits = search(index, q["question"], k=10, settings=s)
        ranks = [i for i, h in enumerate(hits, start=1) if h.file in docs]
        rr += 1 / ranks[0] if ranks else 0.0
        doc_hit += any(h.file in docs for h in hits[:5])
        page_hit += any((h.file, p) in pages for h in hits[:5] for p in range(h.page_start, h.page_end + 1))
    return {
        "questions": n,
        "doc_hit@5": round(doc_hit / n, 3),
        "page_hit@5": round(page_hit / n, 3),
        "doc_mrr@10": round(rr / n, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--skip-real", action="store_true", help="Do not build ../shared/corpus-real.")
    ap.add_argument("--rounds", type=int, default=3, help="Interleaved rounds of the backend comparison.")
    ap.add_argument("--sample", type=int, default=64, help="Demo passages in the backend comparison.")
    ap.add_argument("--json", type=Path, help="Also write the figures to this JSON file.")
    args = ap.parse_args()

    print(f"sscp-rag ingest benchmark   [{load()}]", flush=True)
    t = time.perf_counter()
    torch_emb = Embedder(Settings())
    torch_emb.encode(["warm up"])
    t_onnx = time.perf_counter()
    onnx_emb = Embedder(Settings(embed_backend="onnx-int8"))
    onnx_emb.encode(["warm up"])
    print(
        f"model load: torch {t_onnx - t:.1f} s; onnx-int8 {time.perf_counter() - t_onnx:.1f} s "
        f"(includes the one-off export when {onnx_emb.settings.onnx_cache_dir} has none)",
        flush=True,
    )

    figures: dict[str, Any] = {"builds": []}
    with tempfile.TemporaryDirectory(prefix="sscp-bench-") as tmp:
        work = Path(tmp)
        demo = bench_build("demo", DEMO, work, torch_emb)
        demo_onnx = bench_build("demo", DEMO, work, onnx_emb, backend="onnx-int8")
        figures["builds"] += [demo, demo_onnx]
        if args.skip_real:
            print("real: skipped (--skip-real)")
        elif not REAL.is_dir():
            print(f"real: skipped ({REAL} is absent)")
        else:
            figures["builds"].append(bench_build("real", REAL, work, torch_emb))

        s_torch = Settings(corpus_dir=DEMO, index_dir=Path(demo["index_dir"]))
        s_onnx = Settings(corpus_dir=DEMO, index_dir=Path(demo_onnx["index_dir"]), embed_backend="onnx-int8")
        i_torch, i_onnx = load_index(s_torch, embedder=torch_emb), load_index(s_onnx, embedder=onnx_emb)
        texts = passages(i_torch)
        step = max(1, len(texts) // args.sample)
        sample = texts[::step][: args.sample]
        figures["backends"] = bench_backends(sample, torch_emb, onnx_emb, args.rounds)
        figures["backends_1_thread"] = bench_backends(sample, torch_emb, onnx_emb, args.rounds, threads=1)

        assert [c.id for c in i_torch.chunks] == [c.id for c in i_onnx.chunks]
        cos = (vectors(i_torch) * vectors(i_onnx)).sum(axis=1)
        figures["cosine"] = {
            "chunks": len(cos),
            "mean": round(float(cos.mean()), 4),
            "min": round(float(cos.min()), 4),
            "p05": round(float(np.percentile(cos, 5)), 4),
        }
        print(
            f"cosine onnx-int8 vs torch over all {len(cos)} demo chunks: mean {cos.mean():.4f}, "
            f"5th percentile {np.percentile(cos, 5):.4f}, min {cos.min():.4f}"
        )

        questions = (
            [json.loads(ln) for ln in EVAL.read_text(encoding="utf-8").splitlines() if ln.strip()]
            if EVAL.exists()
            else []
        )
        if questions:
            figures["retrieval"] = {}
            for mode in ("dense", "hybrid"):
                a, b = retrieval_quality(i_torch, questions, mode), retrieval_quality(i_onnx, questions, mode)
                figures["retrieval"][mode] = {"torch": a, "onnx-int8": b}
                print(
                    f"retrieval on {EVAL.name} ({a['questions']} answerable questions), {mode}: "
                    f"torch {a}  |  onnx-int8 {b}"
                )
        i_torch.close()
        i_onnx.close()
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
