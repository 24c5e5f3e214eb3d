"""PDF pages for people: a page as a PNG image (pypdfium2) and a page range as its own PDF (pypdf).

The app shows the page a quote comes from and offers the cited pages as a small PDF, so a reader
can check the citation against the original layout.
"""

from __future__ import annotations

import io
from pathlib import Path

from sscp_rag.errors import PdfError

DEFAULT_WIDTH = 900  # pixels: sharp in the app's source panel, small enough to render in ~0.1 s


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


def page_png(pdf_path: Path, page: int, width: int = DEFAULT_WIDTH) -> bytes:
    """Physical page ``page`` (1-based) of a PDF rendered as PNG bytes, ``width`` pixels wide.

    Raises PdfError when the file cannot be opened or has no such page.
    """
    import pypdfium2 as pdfium
    from PIL import Image

    try:
        pdf = pdfium.PdfDocument(str(pdf_path))
    except (pdfium.PdfiumError, OSError) as exc:
        raise PdfError(f"{pdf_path.name}: cannot open the PDF ({exc})") from exc
    try:
        if not 1 <= page <= len(pdf):
            raise PdfError(f"{pdf_path.name} has {len(pdf)} page(s); there is no page {page}")
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
