"""Build small real PDFs with reportlab (and pypdf), good and bad, for ingest tests.

Text pages are drawn line by line on a canvas, so a test controls exactly where a line breaks
(a hyphenated word split across lines, a paragraph that runs over a page break) and what the
running header and footer say. Tables and two-column pages use reportlab's platypus layout.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Sequence
from pathlib import Path

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.lib.utils import ImageReader
from reportlab.pdfgen import canvas
from reportlab.platypus import BaseDocTemplate, Frame, PageTemplate, Paragraph, Spacer, Table, TableStyle

PAGE_W, PAGE_H = A4
MARGIN = 2 * cm
LINE_HEIGHT = 13
FONT = "Helvetica"
FONT_SIZE = 10
WRAP_WIDTH = 88  # characters per line of 10 pt Helvetica within the margins
LINES_PER_PAGE = 52

Lines = Sequence[str]


def wrap(paragraphs: Sequence[str], width: int = WRAP_WIDTH) -> list[str]:
    """Paragraphs wrapped into lines, with an empty line between paragraphs."""
    lines: list[str] = []
    for i, para in enumerate(paragraphs):
        if i:
            lines.append("")
        lines.extend(textwrap.wrap(para, width=width) or [""])
    return lines


def paginate(lines: Lines, per_page: int = LINES_PER_PAGE) -> list[list[str]]:
    """Lines cut into pages of ``per_page`` lines (a paragraph may run over a page break)."""
    return [list(lines[i : i + per_page]) for i in range(0, len(lines), per_page)] or [[]]


def _running(c: canvas.Canvas, header: str | None, footer: str | None, n: int, m: int) -> None:
    c.setFont(FONT, 8)
    if header:
        c.drawString(MARGIN, PAGE_H - 1.2 * cm, header.format(n=n, m=m))
    if footer:
        c.drawCentredString(PAGE_W / 2, 1.2 * cm, footer.format(n=n, m=m))


def text_pdf(
    path: Path,
    pages: Sequence[Lines],
    header: str | None = None,
    footer: str | None = "Page {n} of {m}",
    title: str = "Test document",
) -> Path:
    """A one-column PDF with exactly the given lines on each page.

    ``header`` and ``footer`` are drawn on every page; ``{n}`` and ``{m}`` become the page number
    and the page count (so the default footer reads "Page 3 of 7").
    """
    c = canvas.Canvas(str(path), pagesize=A4, invariant=1)
    c.setTitle(title)
    m = len(pages)
    for n, lines in enumerate(pages, start=1):
        _running(c, header, footer, n, m)
        c.setFont(FONT, FONT_SIZE)
        y = PAGE_H - MARGIN - LINE_HEIGHT
        for line in lines:
            if line:
                c.drawString(MARGIN, y, line)
            y -= LINE_HEIGHT
        c.showPage()
    c.save()
    return path


def one_column_pdf(
    path: Path,
    paragraphs: Sequence[str],
    header: str | None = None,
    footer: str | None = "Page {n} of {m}",
    per_page: int = LINES_PER_PAGE,
) -> Path:
    """Paragraphs wrapped and paginated onto as many one-column pages as they need."""
    return text_pdf(path, paginate(wrap(paragraphs), per_page), header=header, footer=footer)


def _a4_doc(path: Path) -> BaseDocTemplate:
    """An A4 platypus document with the usual margins, byte-reproducible (``invariant``)."""
    return BaseDocTemplate(
        str(path),
        pagesize=A4,
        leftMargin=MARGIN,
        rightMargin=MARGIN,
        topMargin=MARGIN,
        bottomMargin=MARGIN,
        invariant=1,
    )


def two_column_pdf(
    path: Path,
    left: Sequence[str],
    right: Sequence[str],
    header: str | None = None,
    footer: str | None = "Page {n} of {m}",
) -> Path:
    """One page laid out in two columns by platypus frames: ``left`` fills the left column and
    ``right`` (after a frame break) the right one."""
    from reportlab.platypus import FrameBreak

    styles = getSampleStyleSheet()
    doc = _a4_doc(path)
    gap = 0.8 * cm
    colw = (doc.width - gap) / 2
    frames = [
        Frame(doc.leftMargin, doc.bottomMargin, colw, doc.height, id="L"),
        Frame(doc.leftMargin + colw + gap, doc.bottomMargin, colw, doc.height, id="R"),
    ]

    def on_page(c: canvas.Canvas, d: BaseDocTemplate) -> None:
        _running(c, header, footer, d.page, 1)

    doc.addPageTemplates([PageTemplate(id="two", frames=frames, onPage=on_page)])
    story: list = [Paragraph(p, styles["BodyText"]) for p in left]
    story.append(FrameBreak())
    story += [Paragraph(p, styles["BodyText"]) for p in right]
    doc.build(story)
    return path


def table_pdf(path: Path, intro: str, rows: Sequence[Sequence[str]], outro: str = "") -> Path:
    """One page: a paragraph, a gridded table of ``rows`` (first row = header), a paragraph."""
    styles = getSampleStyleSheet()
    doc = _a4_doc(path)
    doc.addPageTemplates(
        [PageTemplate(id="one", frames=[Frame(doc.leftMargin, doc.bottomMargin, doc.width, doc.height, id="F")])]
    )
    table = Table([list(r) for r in rows])
    table.setStyle(
        TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.black), ("FONTNAME", (0, 0), (-1, 0), "Helvetica-Bold")])
    )
    story = [Paragraph(intro, styles["BodyText"]), Spacer(1, 12), table, Spacer(1, 12)]
    if outro:
        story.append(Paragraph(outro, styles["BodyText"]))
    doc.build(story)
    return path


# --------------------------------------------------------------------------------------------
# bad inputs


def encrypted_pdf(path: Path, source: Path, password: str = "secret") -> Path:
    """``source`` re-saved with a user password, so it cannot be opened without it."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(str(source)))
    writer.encrypt(password)
    with path.open("wb") as fh:
        writer.write(fh)
    return path


def corrupt_pdf(path: Path) -> Path:
    """A PDF header, garbage, and an end-of-file marker: looks like a PDF, is not one."""
    garbage = bytes((i * 37 + 11) % 256 for i in range(3000))
    path.write_bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + garbage + b"\nstartxref\n999999\n%%EOF\n")
    return path


def truncated_pdf(path: Path, source: Path) -> Path:
    """The first half of a real PDF (a download cut short)."""
    data = source.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def empty_file(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def png_renamed(path: Path) -> Path:
    """A real PNG image saved under a .pdf name."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(buf, format="PNG")
    path.write_bytes(buf.getvalue())
    return path


def text_renamed(path: Path) -> Path:
    """A plain text file saved under a .pdf name."""
    path.write_text("Minutes of the safeguarding partnership meeting.\nNot a PDF at all.\n", encoding="utf-8")
    return path


def image_only_pdf(path: Path, pages: int = 2) -> Path:
    """A PDF whose pages hold only an image and shapes: no text layer (like a scan)."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (300, 200), "white")
    draw = ImageDraw.Draw(img)
    for i in range(0, 200, 12):  # stripes that look like lines of text on a scan
        draw.rectangle([20, i + 4, 280 - (i % 5) * 20, i + 8], fill="black")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    buf.seek(0)
    reader = ImageReader(buf)
    c = canvas.Canvas(str(path), pagesize=A4, invariant=1)
    for _ in range(pages):
        c.drawImage(reader, MARGIN, PAGE_H / 2, width=PAGE_W - 2 * MARGIN, height=PAGE_H / 3)
        c.setFillColor(colors.lightgrey)
        c.rect(MARGIN, MARGIN, 5 * cm, 3 * cm, fill=1)
        c.circle(PAGE_W / 2, 5 * cm, 2 * cm, fill=0)
        c.showPage()
    c.save()
    return path


# --------------------------------------------------------------------------------------------
# text to fill pages

_SENTENCES = (
    "The health visitor completed the new birth visit and recorded that the home was warm and tidy.",
    "Children's social care received a referral from the school about bruising to the child's arm.",
    "The police attended a domestic incident at the family home and shared a notification the next day.",
    "A strategy discussion was held but the general practitioner was not invited to contribute.",
    "Professionals accepted the mother's explanation without checking it against the history.",
    "The review found that information was held by several agencies but was never brought together.",
    "Workers changed frequently and each new worker started the assessment again from the beginning.",
    "The child's voice was not recorded in the plan, and nobody asked what daily life was like at home.",
    "Escalation policies existed but practitioners did not use them when decisions were not followed.",
    "The partnership should assure itself that the learning from this review is embedded in practice.",
)


def sentences(tag: str, n: int) -> str:
    """``n`` realistic sentences, each ending with a marker word ``(<tag><i>)`` so text is
    traceable to its file and place; the starting sentence varies with the tag."""
    first = sum(map(ord, tag)) % len(_SENTENCES)
    return " ".join(f"{_SENTENCES[(first + i) % len(_SENTENCES)][:-1]} ({tag}{i})." for i in range(n))


def simple_report(path: Path, tag: str, title: str, paragraphs: int = 6, header: str | None = None) -> Path:
    """A plausible short report: a title line, numbered paragraphs, a running footer."""
    paras = [title] + [f"{i}.1 {sentences(f'{tag}p{i}s', 4)}" for i in range(1, paragraphs + 1)]
    return one_column_pdf(path, paras, header=header or f"{title} | Fictional test report")


# --------------------------------------------------------------------------------------------
# hostile inputs: raw PDF bytes, small files that cost a reader or renderer dearly


def raw_pdf(objects: Sequence[bytes], root: int = 1) -> bytes:
    """A PDF of ``objects`` (the bodies of objects 1..n) with a correct cross-reference table."""
    out = io.BytesIO()
    out.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (i, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.writelines(b"%010d 00000 n \n" % off for off in offsets)
    out.write(b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, root, xref))
    return out.getvalue()


def raw_stream(data: bytes, extra: bytes = b"", compress: bool = True) -> bytes:
    """A stream object's body (Flate-compressed unless ``compress`` is false)."""
    import zlib

    if compress:
        data = zlib.compress(data, 9)
        extra += b" /Filter /FlateDecode"
    return b"<< /Length %d%s >>\nstream\n%s\nendstream" % (len(data), extra, data)


_HELVETICA = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
_CATALOG = b"<< /Type /Catalog /Pages 2 0 R >>"


def _page(contents: int, font: int, extra: bytes = b"") -> bytes:
    return (
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 %d 0 R >> %s>> "
        b"/Contents %d 0 R >>" % (font, extra, contents)
    )


def _pdf_string(text: bytes) -> bytes:
    return b"(" + text.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def raw_text_pdf(path: Path, lines: Sequence[str]) -> Path:
    """One page showing ``lines`` byte for byte (Latin-1), so text can hold what reportlab would
    not write: control characters and terminal escape sequences, as a hostile PDF can."""
    shown = b" ".join(_pdf_string(ln.encode("latin-1")) + b" '" for ln in lines)
    content = b"BT /F1 10 Tf 72 770 Td 14 TL " + shown + b" ET"
    path.write_bytes(raw_pdf([_CATALOG, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>", _page(4, 5),
                              raw_stream(content, compress=False), _HELVETICA]))  # fmt: skip
    return path


def form_fanout_pdf(path: Path, draws: int = 5000, form_ops: int = 2000) -> Path:
    """~1.2 KB: one page that draws one form XObject ``draws`` times; the form shows
    ``form_ops`` strings. pypdf re-reads the form for every draw (~17 min), pdfium parses every
    copy (a minute and gigabytes)."""
    form = raw_stream(
        b"BT /F1 10 Tf 20 20 Td (abuse) Tj ET\n" * form_ops,
        b" /Type /XObject /Subtype /Form /BBox [0 0 595 842] /Resources << /Font << /F1 6 0 R >> >>",
    )
    path.write_bytes(raw_pdf([_CATALOG, b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                              _page(4, 6, b"/XObject << /Fx 5 0 R >> "), raw_stream(b"q /Fx Do Q\n" * draws),
                              form, _HELVETICA]))  # fmt: skip
    return path


def shared_content_pdf(path: Path, pages: int = 200, ops: int = 20000) -> Path:
    """~34 KB: ``pages`` pages that all point at one content stream of ``ops`` text operations
    (1.5 s of pypdf per page, the same work again for each page)."""
    content = raw_stream(b"BT /F1 10 Tf 72 720 Td (Shared text line) Tj ET\n" * ops)
    kids = b" ".join(b"%d 0 R" % (5 + i) for i in range(pages))
    objects = [_CATALOG, b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages), content, _HELVETICA]
    objects += [_page(3, 4)] * pages
    path.write_bytes(raw_pdf(objects))
    return path


def many_pages_pdf(path: Path, pages: int = 50000) -> Path:
    """~300 KB: a page tree that lists one page object ``pages`` times."""
    kids = b" ".join([b"3 0 R"] * pages)
    content = raw_stream(b"BT /F1 10 Tf 72 720 Td (Page text of a long report) Tj ET\n", compress=False)
    path.write_bytes(raw_pdf([_CATALOG, b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, pages),
                              _page(4, 5), content, _HELVETICA]))  # fmt: skip
    return path


def bare_reference_pdf(path: Path) -> Path:
    """A PDF whose catalog object is nothing but a reference to another object (pypdf raises
    AttributeError opening it)."""
    path.write_bytes(raw_pdf([b"2 0 R", _CATALOG.replace(b"2 0 R", b"3 0 R"), b"<< /Type /Pages /Kids [] /Count 0 >>"]))
    return path
