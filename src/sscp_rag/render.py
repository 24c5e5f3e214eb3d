"""PDF pages for people: a page as a PNG image (pypdfium2) and a page range as its own PDF (pypdf).

The app shows the page a quote comes from and offers the cited pages as a small PDF, so a reader
can check the citation against the original layout.

A page is rendered in a child process (``python -m sscp_rag.render``) within a budget: a page that
draws one form XObject thousands of times takes pdfium a minute and gigabytes, and pdfium cannot
be stopped from Python. The child is killed after ``render_timeout`` seconds, may allocate at
most ``render_memory_mb`` MB, refuses files of more than ``max_pages`` pages, and dies with its
parent. Starting it costs ~0.1 s on top of the ~0.1 s a page takes (the app caches the images).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from sscp_rag.errors import PdfError
from sscp_rag.settings import Settings

DEFAULT_WIDTH = 900  # pixels: sharp in the app's source panel, small enough to render in ~0.1 s
_DEFAULTS = Settings()
_EXIT_PDF_ERROR = 3  # the child's exit code for a PdfError; its message is the last line of stderr


def page_count(pdf_path: Path) -> int:
    """Number of pages in a PDF (pypdfium2)."""
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(str(pdf_path))
    except (pdfium.PdfiumError, OSError) as exc:
        raise PdfError(f"{pdf_path.name}: cannot open the PDF ({exc})") from exc
    try:
        return len(pdf)
    finally:
        pdf.close()


def page_png(
    pdf_path: Path,
    page: int,
    width: int = DEFAULT_WIDTH,
    timeout: float = _DEFAULTS.render_timeout,
    max_mb: int = _DEFAULTS.render_memory_mb,
    max_pages: int = _DEFAULTS.max_pages,
) -> bytes:
    """Physical page ``page`` (1-based) of a PDF rendered as PNG bytes, ``width`` pixels wide, in
    a child process that gets ``timeout`` seconds and ``max_mb`` MB (0 = no memory limit).

    Raises PdfError when the file cannot be opened, has no such page or more than ``max_pages``
    pages (0 = no limit), or when rendering goes over its budget.
    """
    pdf_path = Path(pdf_path)
    src = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    args = [str(pdf_path.resolve()), str(page), str(width), str(max_mb), str(max_pages), str(os.getpid())]
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "sscp_rag.render", *args],
            capture_output=True,
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise PdfError(
            f"{pdf_path.name}: page {page} took longer than {timeout:g} s to render (setting render_timeout)"
        ) from exc
    except OSError as exc:
        raise PdfError(f"{pdf_path.name}: page {page} could not be rendered ({exc.strerror or exc})") from exc
    if proc.returncode == 0 and proc.stdout:
        return proc.stdout
    lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
    if proc.returncode == _EXIT_PDF_ERROR and lines:
        raise PdfError(lines[-1])
    limit = f"it needed more than {max_mb} MB (setting render_memory_mb), or " if max_mb else ""
    raise PdfError(f"{pdf_path.name}: page {page} could not be rendered ({limit}the renderer failed)")


def _render(pdf_path: Path, page: int, width: int, max_mb: int, max_pages: int) -> bytes:
    """(In the child process.) The PNG bytes of one page."""
    import pypdfium2 as pdfium
    from PIL import Image

    try:
        pdf = pdfium.PdfDocument(str(pdf_path))
    except (pdfium.PdfiumError, OSError) as exc:
        raise PdfError(f"{pdf_path.name}: cannot open the PDF ({exc})") from exc
    try:
        n = len(pdf)
        if max_pages and n > max_pages:
            raise PdfError(f"{pdf_path.name} has too many pages ({n}; at most {max_pages}, setting max_pages)")
        if not 1 <= page <= n:
            raise PdfError(f"{pdf_path.name} has {n} page(s); there is no page {page}")
        if max_mb:
            _limit_memory(max_mb)  # from here on: pdfium's library and the file are loaded
        pg = pdf[page - 1]
        try:
            points_wide = pg.get_width() or 612.0
            bitmap = pg.render(scale=max(0.1, width / points_wide))
            # A 256-colour palette keeps text sharp at a third of the size, and is fast.
            image = bitmap.to_pil().quantize(colors=256, method=Image.Quantize.FASTOCTREE)
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            return buf.getvalue()
        except pdfium.PdfiumError as exc:
            raise PdfError(f"{pdf_path.name}: page {page} could not be rendered ({exc})") from exc
        finally:
            pg.close()
    finally:
        pdf.close()


def _limit_memory(max_mb: int) -> None:
    """Let this process map at most ``max_mb`` MB more than it has mapped now."""
    import resource

    try:
        with open("/proc/self/statm") as fh:
            mapped = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    want = mapped + max_mb * 1024 * 1024
    if hard == resource.RLIM_INFINITY or want <= hard:
        resource.setrlimit(resource.RLIMIT_AS, (want, hard))


def _child_main(argv: list[str]) -> int:
    from sscp_rag.workers import die_with_parent

    path, page, width, max_mb, max_pages, parent = argv
    die_with_parent(int(parent))
    try:
        png = _render(Path(path), int(page), int(width), int(max_mb), int(max_pages))
    except PdfError as exc:
        print(" ".join(str(exc).split()), file=sys.stderr)
        return _EXIT_PDF_ERROR
    except MemoryError:
        return 1
    sys.stdout.buffer.write(png)
    sys.stdout.buffer.flush()
    return 0


def pages_pdf(pdf_path: Path, page_start: int, page_end: int | None = None) -> bytes:
    """Pages ``page_start``..``page_end`` (1-based, inclusive) of a PDF as a new PDF's bytes."""
    from pypdf import PdfReader, PdfWriter
    from pypdf.errors import PyPdfError

    page_end = page_end or page_start
    try:
        reader = PdfReader(str(pdf_path))
        n = len(reader.pages)
        if not 1 <= page_start <= page_end <= n:
            raise PdfError(f"{pdf_path.name} has {n} page(s); pages {page_start}-{page_end} are not all in it")
        writer = PdfWriter()
        for i in range(page_start - 1, page_end):
            writer.add_page(reader.pages[i])
        buf = io.BytesIO()
        writer.write(buf)
        return buf.getvalue()
    except (PyPdfError, OSError, ValueError) as exc:
        raise PdfError(f"{pdf_path.name}: cannot extract pages {page_start}-{page_end} ({exc})") from exc


def locate_pdf(file: str, *roots: Path | str | None) -> Path | None:
    """Where corpus file ``file`` (relative to a corpus root) is: under the first of ``roots``
    that holds it, never outside them. None if no root has it."""
    for root in roots:
        if not root:
            continue
        base = Path(root).resolve()
        path = (base / file).resolve()
        if path.is_relative_to(base) and path.is_file():
            return path
    return None


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
