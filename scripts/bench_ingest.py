"""Ingest benchmark: throughput of fresh builds per configuration, an unchanged re-run, and the
two embedding backends side by side.

    python scripts/bench_ingest.py [--corpus ../shared/corpus-real] [--json out.json]
    python scripts/bench_ingest.py --backends [--rounds 3]   # the older backend micro-benchmark

Builds the corpus fresh (into temporary folders) once per configuration, all in one run, so the
figures are comparable as ratios on a shared machine: fp32 torch with one reader process, fp32
and int8 with the local parallel pipeline (reader processes working ahead while this process
embeds), and Ray with 1 and 2 workers (a local Ray instance of 2 CPUs; its start and the workers'
model loads are included). Reports chunks/s and pages/s end to end, the projected hours for an
archive of 1,400 reviews x 50 pages, and the seconds of an unchanged re-run. Local configurations
use an already loaded model (its load time is printed once). Not a test: figures depend on the
machine and its load (printed with each line).
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
from sscp_rag.index import Index, embed_text, load_index  # noqa: E402
from sscp_rag.ingest import build_index  # noqa: E402
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


ARCHIVE_PAGES = 1_400 * 50


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children (the PDF readers)."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def bench_config(name: str, corpus: Path, workdir: Path, embedder: Embedder | None, **kw: Any) -> dict[str, Any]:
    """One fresh build of ``corpus`` with settings ``kw`` (and ``producer`` for Ray)."""
    producer = kw.pop("producer", None)
    s = Settings(corpus_dir=corpus, index_dir=workdir / name.replace(" ", "-"), **kw)
    t, cpu = time.perf_counter(), cpu_seconds()
    summary = build_index(s, progress=False, embedder=embedder, producer=producer)
    total = time.perf_counter() - t
    cpu = cpu_seconds() - cpu
    pages_s = summary.pages / total
    out = {
        "config": name,
        "embed_backend": s.embed_backend,
        "documents": summary.documents,
        "pages": summary.pages,
        "chunks": summary.chunks,
        "seconds": round(total, 2),
        "chunks_per_s": round(summary.chunks / total, 2),
        "pages_per_s": round(pages_s, 2),
        "archive_hours": round(ARCHIVE_PAGES / pages_s / 3600, 2),
        # CPU time of this process and its reader processes (not of Ray's workers): what the
        # build costs whatever else the shared machine runs.
        "cpu_seconds": round(cpu, 1),
        "chunks_per_cpu_s": round(summary.chunks / cpu, 2) if cpu > 0 and producer is None else None,
        "load": load(),
        "index_dir": str(s.index_dir),
    }
    print(
        f"{name:<28} {out['chunks']:>5} chunks {out['pages']:>4} pages in {out['seconds']:>6.1f} s -> "
        f"{out['chunks_per_s']:>6.2f} chunks/s, {out['pages_per_s']:>5.2f} pages/s; 1,400 x 50 pages: "
        f"{out['archive_hours']:.1f} h; {out['chunks_per_cpu_s']} chunks per CPU-s   [{out['load']}]",
        flush=True,
    )
    return out


def bench_configs(corpus: Path, ray_workers: list[int]) -> dict[str, Any]:
    """Every configuration built fresh in one run, then an unchanged re-run of the default."""
    default = Settings().embed_backend
    t = time.perf_counter()
    fp32 = Embedder(Settings(embed_backend="torch"))
    fp32.encode(["warm up"])
    t_int8 = time.perf_counter()
    int8 = Embedder(Settings(embed_backend="onnx-int8"))
    int8.encode(["warm up"])
    print(
        f"corpus {corpus}; default embed_backend {default}; model load: torch {t_int8 - t:.1f} s, "
        f"onnx-int8 {time.perf_counter() - t_int8:.1f} s   [{load()}]",
        flush=True,
    )
    emb = {"torch": fp32, "onnx-int8": int8}
    rows = []
    with tempfile.TemporaryDirectory(prefix="sscp-bench-") as tmp:
        work = Path(tmp)
        rows.append(bench_config("fp32, 1 reader", corpus, work, fp32, embed_backend="torch", read_workers=1))
        rows.append(bench_config("fp32, local parallel", corpus, work, fp32, embed_backend="torch"))
        rows.append(bench_config("int8, local parallel", corpus, work, int8, embed_backend="onnx-int8"))
        for n in ray_workers:
            from sscp_rag.distributed import ray_producer

            rows.append(
                bench_config(
                    f"Ray {n} worker{'s' if n > 1 else ''} ({default})",
                    corpus,
                    work,
                    emb[default],
                    embed_backend=default,
                    producer=ray_producer(None, workers=n),
                )
            )
        # The unchanged re-run: on the index the default backend's local build just wrote.
        built = next(r for r in rows if r["embed_backend"] == default and "Ray" not in r["config"])
        s = Settings(corpus_dir=corpus, index_dir=Path(built["index_dir"]), embed_backend=default)
        t = time.perf_counter()
        again = build_index(s, progress=False, embedder=emb[default])
        rerun = time.perf_counter() - t
        assert again.up_to_date and again.embedded == 0
    print(f"unchanged re-run ({default}): {rerun:.2f} s   [{load()}]", flush=True)
    base = rows[1]["chunks_per_s"]
    for r in rows:
        r["vs_fp32_parallel"] = round(r["chunks_per_s"] / base, 2)
    return {"corpus": str(corpus), "default_backend": default, "configs": rows, "unchanged_rerun_seconds": rerun}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, default=REAL if REAL.is_dir() else DEMO, help="Corpus to build.")
    ap.add_argument("--ray", default="1,2", help="Ray worker counts to run ('' = none).")
    ap.add_argument("--backends", action="store_true", help="Run the backend micro-benchmark instead.")
    ap.add_argument("--rounds", type=int, default=3, help="Interleaved rounds of the backend comparison.")
    ap.add_argument("--sample", type=int, default=64, help="Demo passages in the backend comparison.")
    ap.add_argument("--json", type=Path, help="Also write the figures to this JSON file.")
    args = ap.parse_args()
    print(f"sscp-rag ingest benchmark   [{load()}]", flush=True)
    if not args.backends:
        figures = bench_configs(args.corpus, [int(n) for n in args.ray.split(",") if n.strip()])
        print("\n| configuration | chunks/s | pages/s | vs fp32 parallel | chunks per CPU-s | 1,400 x 50 pages |")
        print("|---|---:|---:|---:|---:|---:|")
        for r in figures["configs"]:
            print(
                f"| {r['config']} | {r['chunks_per_s']:.1f} | {r['pages_per_s']:.2f} | "
                f"{r['vs_fp32_parallel']:.2f}x | {r['chunks_per_cpu_s'] or '-'} | {r['archive_hours']:.1f} h |"
            )
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        return
    backend_benchmark(args)


def backend_benchmark(args: argparse.Namespace) -> None:
    """The two backends on the demo corpus: passages/s, cosine and retrieval quality."""
    t = time.perf_counter()
    torch_emb = Embedder(Settings(embed_backend="torch"))
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
