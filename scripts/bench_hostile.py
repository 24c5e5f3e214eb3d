"""Hostile-PDF benchmark: the worst-case seconds and peak memory of reading (as ingest reads),
checking an upload and rendering a page image, for each hostile PDF, under the budgets.

    python scripts/bench_hostile.py [--rounds 1] [--json out.json]

The PDFs are built in a temporary folder (tests/pdfmaker.py): a 1.2 KB page that draws one form
XObject 5,000 times, a 34 KB file whose 200 pages share one content stream, a 300 KB file that
declares 50,000 pages, a file whose catalog is a bare reference, and a normal 3-page report for
comparison. The budgets are the settings' (defaults, or SSCP_RAG_READ_TIMEOUT, _MAX_PAGES,
_RENDER_TIMEOUT, _RENDER_MEMORY_MB). Each measurement runs in a fresh process, whose peak memory
(``resource.getrusage``, its own and its children's: the reader or renderer processes) is
reported with the wall-clock seconds and the outcome. Not a test: figures depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

import pdfmaker as pm  # noqa: E402

from sscp_rag.settings import Settings  # noqa: E402

FILES = {
    "form-fanout.pdf": pm.form_fanout_pdf,
    "shared-content.pdf": pm.shared_content_pdf,
    "50000-pages.pdf": pm.many_pages_pdf,
    "bare-reference.pdf": pm.bare_reference_pdf,
    "normal-report.pdf": lambda p: pm.simple_report(p, "bench", "Serious Case Review: Child B", paragraphs=6),
}
OPERATIONS = ("read", "upload", "render")


def one(op: str, path: Path) -> dict[str, Any]:
    """Run one operation on one file in this process; the outcome, seconds and peak memory."""
    from sscp_rag.errors import SscpRagError
    from sscp_rag.pdf import read_pdfs
    from sscp_rag.render import page_png
    from sscp_rag.upload import check_pdf

    s = Settings.from_env()
    t = time.perf_counter()
    try:
        if op == "read":
            [result] = list(read_pdfs([(path, path.name)], timeout=s.read_timeout, max_pages=s.max_pages))
            outcome = f"skipped: {result}" if isinstance(result, str) else f"read {result.n_pages} page(s)"
        elif op == "upload":
            outcome = f"accepted, {check_pdf(path.read_bytes(), path.name, s.max_pages, s.read_timeout)} page(s)"
        else:
            png = page_png(path, 1, timeout=s.render_timeout, max_mb=s.render_memory_mb, max_pages=s.max_pages)
            outcome = f"rendered, {len(png) // 1024} KB PNG"
    except SscpRagError as exc:
        outcome = f"refused: {exc}"
    seconds = time.perf_counter() - t
    mb = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)) / 1024
    return {"seconds": round(seconds, 2), "peak_mb": round(mb), "outcome": outcome}


def measure(op: str, path: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--one", op, str(path)], capture_output=True, text=True, timeout=3600
    )
    if proc.returncode != 0:
        return {"seconds": None, "peak_mb": None, "outcome": f"bench child failed: {proc.stderr.strip()[-300:]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=1, help="Measurements per file and operation (worst is kept).")
    ap.add_argument("--json", type=Path, help="Also write the figures to this file.")
    ap.add_argument("--one", nargs=2, metavar=("OP", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], Path(args.one[1]))))
        return
    s = Settings.from_env()
    one_min, five_min, _ = os.getloadavg()
    print(
        f"Budgets: read_timeout {s.read_timeout:g} s, max_pages {s.max_pages}, render_timeout "
        f"{s.render_timeout:g} s, render_memory_mb {s.render_memory_mb}; load average {one_min:.1f} / "
        f"{five_min:.1f} on {os.cpu_count()} cores; worst of {args.rounds} round(s)\n"
    )
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sscp-hostile-") as tmp:
        for name, make in FILES.items():
            path = make(Path(tmp) / name)
            for op in OPERATIONS:
                runs = [measure(op, path) for _ in range(args.rounds)]
                worst = max(runs, key=lambda r: (r["seconds"] or 0, r["peak_mb"] or 0))
                worst_mb = max((r["peak_mb"] or 0) for r in runs)
                row = {"file": name, "bytes": path.stat().st_size, "operation": op, **worst, "peak_mb": worst_mb}
                rows.append(row)
                print(
                    f"{name:<20} {row['bytes']:>8,} B  {op:<6} {row['seconds']!s:>7} s  {row['peak_mb']!s:>5} MB  "
                    f"{row['outcome'][:110]}",
                    flush=True,
                )
    if args.json:
        args.json.write_text(json.dumps({"settings": {"read_timeout": s.read_timeout, "max_pages": s.max_pages,
                                         "render_timeout": s.render_timeout, "render_memory_mb": s.render_memory_mb},
                                         "rows": rows}, indent=2) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
