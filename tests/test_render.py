"""PDF pages as PNG images (pypdfium2) and as page-range PDFs (pypdf), from real reportlab PDFs."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from pypdf import PdfReader
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from sscp_rag.errors import PdfError
from sscp_rag.render import locate_pdf, page_count, page_png, pages_pdf


def _pdf(path: Path, pages: int) -> Path:
    c = canvas.Canvas(str(path), pagesize=A4)
    for i in range(1, pages + 1):
        c.setFont("Helvetica", 28)
        c.drawString(72, 760, f"This is page {i}")
        if i == 2:
            c.rect(0, 0, A4[0] / 2, A4[1], fill=1)  # page 2: left half black
        c.showPage()
    c.save()
    return path


def test_page_png_renders_the_asked_page_at_the_asked_width(tmp_path: Path) -> None:
    pdf = _pdf(tmp_path / "r.pdf", 3)
    assert page_count(pdf) == 3
    img = Image.open(io.BytesIO(page_png(pdf, 2, width=400)))
    assert img.format == "PNG" and img.width == 400
    assert img.height == pytest.approx(400 * A4[1] / A4[0], abs=2)
    grey = img.convert("L")  # (the PNG is palette-quantised: white may come out as 254)
    assert grey.getpixel((50, img.height // 2)) < 10  # the black half is page 2's
    assert grey.getpixel((350, img.height // 2)) > 245
    page1 = Image.open(io.BytesIO(page_png(pdf, 1, width=400))).convert("L")
    assert page1.getpixel((50, img.height // 2)) > 245


def test_pages_pdf_extracts_the_cited_range(tmp_path: Path) -> None:
    pdf = _pdf(tmp_path / "r.pdf", 4)
    reader = PdfReader(io.BytesIO(pages_pdf(pdf, 2, 3)))
    assert [p.extract_text().strip() for p in reader.pages] == ["This is page 2", "This is page 3"]
    assert len(PdfReader(io.BytesIO(pages_pdf(pdf, 4))).pages) == 1


def test_bad_pages_and_files_raise_pdf_errors(tmp_path: Path) -> None:
    pdf = _pdf(tmp_path / "r.pdf", 2)
    with pytest.raises(PdfError, match="no page 3"):
        page_png(pdf, 3)
    with pytest.raises(PdfError, match="not all in it"):
        pages_pdf(pdf, 2, 3)
    junk = tmp_path / "junk.pdf"
    junk.write_bytes(b"not a pdf at all")
    with pytest.raises(PdfError, match="cannot open"):
        page_png(junk, 1)
    with pytest.raises(PdfError):
        pages_pdf(junk, 1)


def test_locate_pdf_stays_inside_its_roots(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    (b / "sub").mkdir(parents=True)
    a.mkdir()
    _pdf(b / "sub" / "r.pdf", 1)
    _pdf(tmp_path / "outside.pdf", 1)
    assert locate_pdf("sub/r.pdf", None, a, b) == (b / "sub" / "r.pdf").resolve()
    assert locate_pdf("missing.pdf", a, b) is None
    assert locate_pdf("../outside.pdf", a) is None
