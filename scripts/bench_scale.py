"""Scale benchmark: ``search`` over a synthetic index of a million passages (not a timed test).

Usage::

    python scripts/bench_scale.py                        # 1M chunks, flat and ivf-sq8
    python scripts/bench_scale.py --chunks 100000 --dense ivf-sq8 flat --json

What is synthetic. Embedding a million passages with the model is out of reach here (~10 chunks/s),
so the index is synthesised from a real one (``--source``, default the real eval index, 2,161
chunks of 21 reports):

* reports: ``chunks / ~100`` synthetic reports, report ``k`` modelled on real report ``k mod 21``
  (its type, year and number of chunks), with its own file name and title ("Synthetic review
  00042") and no subject pseudonym, so no question names it;
* passages: the ``t``-th chunk of a synthetic report is modelled on the ``t``-th chunk ``i`` of its
  real report: heading and themes of ``i``; text of sentences drawn at random from ``i`` and from
  one of ``i``'s 20 nearest real neighbours ``j``, up to ``i``'s length; vector
  ``normalise(x_i + u x_j + 0.3 g)`` with ``u ~ U(0, 0.5)`` and ``g`` a random unit vector, so
  passages cluster as real ones do without being copies. Three passages per page.

The synthetic index is written through the same code as an ingest (``store`` rows, the BM25 and
FAISS writers of :mod:`sscp_rag.index`, a manifest with the real fingerprint, ``publish``) and
loaded with ``load_index``; only the embedding-cache table is left empty (a load never reads it).
Each dense index kind (``--dense``) is a separate index folder sharing the same chunk store and
BM25 files (hard links).

Measured, for each kind, in a fresh process: load time (``load_index`` and the Retriever's
columns; then the report-name patterns a first query builds), resident memory added by the load
(RSS from /proc, not tracemalloc: FAISS and BM25 arrays are not Python objects), and p50/p95 of
``search`` over the eval questions (eval/real.jsonl and eval/demo.jsonl), unfiltered and with a
filter (type, theme, year range, or one report, in turn). Query embeddings are computed before
timing (the model's ~10 ms does not depend on the index's size). Recall@10 of each kind is the
share of exact search's (``flat``) top-10 passages it returns, for hybrid search and for dense
search alone. The machine's 2 cores are shared: the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PASSAGES_PER_PAGE = 3


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _questions() -> list[str]:
    out = []
    for name in ("eval/real.jsonl", "eval/demo.jsonl"):
        for line in (ROOT / name).read_text(encoding="utf-8").splitlines():
            if line.strip():
                out.append(json.loads(line)["question"])
    return out


# --------------------------------------------------------------------------------------------
# build


def synthesise(source, n_chunks: int, seed: int):
    """(docs, vectors): docs as (meta, DocText, pages, chunks) built from the real index
    ``source`` as the module docstring describes; vectors in chunk row order."""
    from sscp_rag.chunking import DocText
    from sscp_rag.records import Chunk, DocumentMeta, content_id
    from sscp_rag.retrieval import sentence_spans

    rng = np.random.default_rng(seed)
    real = source.chunks
    x = np.vstack([source.faiss.reconstruct(i) for i in range(source.faiss.ntotal)]).astype(np.float32)
    nbrs = np.argsort(-(x @ x.T), axis=1)[:, 1:21]
    sents = []
    for c in real:
        spans = sentence_spans(c.text)
        sents.append([c.text[a:b] for a, b in spans] or [c.text])
    by_doc: dict[str, list[int]] = {}
    for i, c in enumerate(real):
        by_doc.setdefault(c.doc_id, []).append(i)
    models = [source.docs[d] for d in by_doc]
    docs = []
    vecs = []
    total = 0
    k = 0
    while total < n_chunks:
        model = models[k % len(models)]
        rows = by_doc[model.meta.doc_id][: n_chunks - total]
        name = f"Synthetic review {k:05d}"
        meta = DocumentMeta(
            file=f"synthetic/review-{k:05d}.pdf",
            title=f"{name}: {model.meta.type} {model.meta.year or ''}".strip(),
            short_title=name,
            type=model.meta.type,
            year=model.meta.year,
            themes=model.meta.themes,
            fictional=True,
        )
        parts, chunks, page_starts, headings = [], [], [], []
        pos = 0
        for t, i in enumerate(rows):
            j = int(nbrs[i, rng.integers(nbrs.shape[1])])
            pool = sents[i] + sents[j]
            want = len(real[i].text)
            text = ""
            for s in rng.permutation(len(pool)):
                text = f"{text} {pool[s]}".strip()
                if len(text) >= want:
                    break
            page = t // PASSAGES_PER_PAGE + 1
            if t % PASSAGES_PER_PAGE == 0:
                page_starts.append(pos)
            if real[i].heading and (not headings or headings[-1][1] != real[i].heading):
                headings.append((pos, real[i].heading))
            chunks.append(
                Chunk(
                    id=content_id("chunk", meta.file, t),
                    doc_id=meta.doc_id,
                    file=meta.file,
                    seq=t,
                    page_start=page,
                    page_end=page,
                    char_start=pos,
                    char_end=pos + len(text),
                    heading=real[i].heading,
                    text=text,
                    themes=real[i].themes,
                )
            )
            parts.append(text)
            pos += len(text) + 2
            v = x[i] + rng.uniform(0, 0.5) * x[j]
            g = rng.standard_normal(x.shape[1]).astype(np.float32)
            v = v / np.linalg.norm(v) + 0.3 * g / np.linalg.norm(g)
            vecs.append(v / np.linalg.norm(v))
        doc_text = "\n\n".join(parts)
        doc = DocText(doc_text, tuple(page_starts), tuple(headings))
        pages = [(p, doc.page_text(p)) for p in range(1, len(page_starts) + 1)]
        docs.append((meta, doc, pages, chunks))
        total += len(chunks)
        k += 1
    return docs, np.vstack(vecs).astype(np.float32)


def build(out: Path, kinds: list[str], n_chunks: int, seed: int, source_dir: Path) -> None:
    """Write one index folder per dense kind under ``out`` (skipped if present)."""
    from sscp_rag import store as st
    from sscp_rag.index import (
        bm25_text,
        build_lock,
        fingerprint,
        load_index,
        new_data_dir,
        publish,
        write_bm25,
        write_vectors,
    )
    from sscp_rag.settings import Settings

    todo = [k for k in kinds if not (out / k / "manifest.json").exists()]
    if not todo:
        return
    t0 = time.perf_counter()
    source = load_index(Settings(index_dir=source_dir))
    docs, matrix = synthesise(source, n_chunks, seed)
    print(f"synthesised {len(matrix):,} chunks in {len(docs):,} reports ({time.perf_counter() - t0:.0f} s)", flush=True)
    shared: Path | None = None
    for kind in todo:
        settings = Settings(index_dir=out / kind, corpus_dir=out / "no-corpus", dense_index=kind)
        index_dir = out / kind
        index_dir.mkdir(parents=True, exist_ok=True)
        with build_lock(index_dir):
            data_dir = new_data_dir(index_dir)
            t = time.perf_counter()
            if shared is None:
                conn = st.create(data_dir / "chunks.sqlite")
                row = 0
                texts = []
                for meta, doc, pages, chunks in docs:
                    st.insert_pages(conn, meta.doc_id, pages)
                    st.insert_chunks(conn, row, chunks, [c.id for c in chunks])
                    row += len(chunks)
                    counts: dict[str, int] = {}
                    for c in chunks:
                        for th in c.themes:
                            counts[th] = counts.get(th, 0) + 1
                    st.insert_doc(
                        conn,
                        meta,
                        meta.doc_id,
                        len(pages),
                        doc.text,
                        doc.page_starts,
                        doc.headings,
                        list(counts),
                        counts,
                        "",
                    )
                    texts.extend(bm25_text(meta, c) for c in chunks)
                conn.commit()
                conn.close()
                print(f"  chunk store: {time.perf_counter() - t:.0f} s", flush=True)
                t = time.perf_counter()
                write_bm25(data_dir, texts)
                del texts
                print(f"  BM25: {time.perf_counter() - t:.0f} s", flush=True)
                shared = data_dir
            else:
                os.link(_final(shared) / "chunks.sqlite", data_dir / "chunks.sqlite")
                (data_dir / "bm25").mkdir()
                for f in (_final(shared) / "bm25").iterdir():
                    os.link(f, data_dir / "bm25" / f.name)
            t = time.perf_counter()
            write_vectors(data_dir, matrix, settings)
            print(f"  dense {kind}: {time.perf_counter() - t:.0f} s", flush=True)
            manifest = {
                "fingerprint": fingerprint(settings),
                "corpus_dir": str(settings.corpus_dir),
                "synthetic": {"chunks": len(matrix), "reports": len(docs), "seed": seed, "source": str(source_dir)},
                "files": {},
            }
            publish(index_dir, data_dir, manifest)
            shared = index_dir / json.loads((index_dir / "manifest.json").read_text())["data_dir"]


def _final(data_dir: Path) -> Path:
    return data_dir.with_name(data_dir.name.removesuffix(".tmp"))


# --------------------------------------------------------------------------------------------
# measure (in a fresh process per index)


def _filters(index) -> list:
    from collections import Counter

    from sscp_rag.retrieval import Filters

    one = next(d.meta.short_title for d in index.docs.values() if d.meta.short_title.startswith("Synthetic"))
    types = [t for t, _ in Counter(index.docs[c.doc_id].meta.type for c in index.chunks).most_common()]
    # From broad to narrow: the commonest type, a year range, a theme, the rarer types with a
    # theme, one report (about 100 of the million passages).
    return [
        Filters(types=(types[0],)),
        Filters(year_from=2020, year_to=2023),
        Filters(themes=("neglect",)),
        Filters(types=tuple(types[1:]), themes=("domestic-abuse",)),
        Filters(reports=(one,)),
    ]


def measure(index_dir: Path, kind: str) -> dict:
    from sscp_rag.index import load_index
    from sscp_rag.retrieval import retriever_for, search
    from sscp_rag.settings import Settings

    settings = Settings(index_dir=index_dir, corpus_dir=index_dir.parent / "no-corpus", dense_index=kind)
    base = rss_mb()
    t0 = time.perf_counter()
    index = load_index(settings)
    t_load = time.perf_counter() - t0
    r = retriever_for(index)
    t_columns = time.perf_counter() - t0 - t_load
    loaded = rss_mb()
    t1 = time.perf_counter()
    r.aliases()
    r.topic_patterns()
    t_names = time.perf_counter() - t1
    named = rss_mb()
    questions = _questions()
    filters = _filters(index)
    t2 = time.perf_counter()
    for q in questions:
        r.query_vector(q)
    t_embed = (time.perf_counter() - t2) / len(questions)
    out = {
        "kind": kind,
        "chunks": len(index.chunks),
        "reports": len(index.docs),
        "load_s": round(t_load, 1),
        "columns_s": round(t_columns, 2),
        "report_names_s": round(t_names, 1),
        "rss_index_mb": round(loaded - base),
        "rss_with_names_mb": round(named - base),
        "embed_ms": round(1000 * t_embed, 1),
    }
    for label, mode in (("hybrid", "hybrid"), ("dense", "dense")):
        s = settings.with_overrides(retrieval_mode=mode)
        for filtered in (False, True):
            times, tops = [], []
            search(index, questions[0], settings=s)  # warm
            for n, q in enumerate(questions):
                f = filters[n % len(filters)] if filtered else None
                t = time.perf_counter()
                hits = search(index, q, filters=f, settings=s)
                times.append(1000 * (time.perf_counter() - t))
                tops.append([h.chunk_id for h in hits[:10]])
            key = f"{label}_{'filtered' if filtered else 'unfiltered'}"
            out[key] = {
                "p50_ms": round(statistics.median(times), 1),
                "p95_ms": round(float(np.percentile(times, 95)), 1),
                "max_ms": round(max(times), 1),
                "top10": tops,
            }
    out["load_average"] = os.getloadavg()
    return out


def recall(exact: list[list[str]], approx: list[list[str]]) -> float:
    shares = [len(set(a) & set(e)) / len(e) for e, a in zip(exact, approx) if e]
    return round(float(np.mean(shares)), 4) if shares else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--chunks", type=int, default=1_000_000)
    p.add_argument("--dense", nargs="+", default=["ivf-sq8", "flat"], help="dense index kinds; flat is exact")
    p.add_argument("--out", type=Path, default=None, help="folder of the synthetic indexes")
    p.add_argument("--source", type=Path, default=ROOT / "index" / "eval-baseline" / "real")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.add_argument("--measure", help=argparse.SUPPRESS)  # internal: measure one kind, print JSON
    a = p.parse_args()
    out = a.out or ROOT / "index" / f"scale-{a.chunks}"
    if a.measure:
        print(json.dumps(measure(out / a.measure, a.measure)))
        return
    kinds = list(dict.fromkeys([*a.dense, "flat"]))  # flat: the exact reference
    build(out, kinds, a.chunks, a.seed, a.source)
    results = {}
    for kind in kinds:
        cmd = [sys.executable, __file__, "--chunks", str(a.chunks), "--out", str(out), "--measure", kind]
        res = subprocess.run(cmd, check=True, capture_output=True, text=True)
        results[kind] = json.loads(res.stdout.strip().splitlines()[-1])
    exact = results["flat"]
    for res in results.values():
        for key in ("hybrid_unfiltered", "hybrid_filtered", "dense_unfiltered", "dense_filtered"):
            res[key]["recall@10"] = recall(exact[key]["top10"], res[key]["top10"])
    if a.json:
        for res in results.values():
            for v in res.values():
                if isinstance(v, dict):
                    v.pop("top10", None)
        print(json.dumps(results, indent=2))
        return
    for kind, res in results.items():
        la = ", ".join(f"{x:.1f}" for x in res["load_average"])
        print(
            f"\n{kind}: {res['chunks']:,} chunks in {res['reports']:,} reports; load {res['load_s']} s "
            f"(+ columns {res['columns_s']} s, report names on first query {res['report_names_s']} s); "
            f"RSS +{res['rss_index_mb']:,} MB (+{res['rss_with_names_mb']:,} MB with report names); "
            f"query embedding {res['embed_ms']} ms (not in the figures below); load average {la}"
        )
        for key in ("hybrid_unfiltered", "hybrid_filtered", "dense_unfiltered", "dense_filtered"):
            v = res[key]
            print(
                f"  {key:18} p50 {v['p50_ms']:7.1f} ms  p95 {v['p95_ms']:7.1f} ms  max {v['max_ms']:7.1f} ms  "
                f"recall@10 vs flat {v['recall@10']:.3f}"
            )


if __name__ == "__main__":
    main()
