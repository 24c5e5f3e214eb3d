"""Control characters in PDF text (a hostile PDF can hold any bytes in its text) and in a typed
question: dropped as text is extracted, and never able to break the Word export."""

from __future__ import annotations

import html
import io
import re
import zipfile
from pathlib import Path

import pdfmaker as pm

from sscp_rag.export import answer_to_docx, answer_to_markdown
from sscp_rag.pdf import read_pdf
from sscp_rag.records import Answer, Quote, ReportSection, Source

C0 = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

CONTROL_LINES = [
    "Child Q was seen\x01 by the\x07 health visitor\x0b twice in the winter term of that year.",
    "The school nurse\x1b]52;c;aGVsbG8=\x07 made a referral that was never followed up by anyone.",
]


def test_control_characters_are_dropped_as_text_is_extracted(tmp_path: Path) -> None:
    pdf = read_pdf(pm.raw_text_pdf(tmp_path / "ctl.pdf", CONTROL_LINES), "ctl.pdf")
    text = pdf.pages[0].text
    assert not C0.search(text) and not any(C0.search(t) for t in pdf.raw_pages)
    assert "Child Q was seen by the health visitor twice" in " ".join(text.split())
    assert "The school nurse]52;c;aGVsbG8= made a referral" in text  # the escape is inert text now


def test_word_export_drops_what_xml_cannot_hold() -> None:
    """A question typed with a vertical tab, and report text with C0 controls (as indexes built
    before extraction dropped them hold), still export."""
    ans = Answer(
        question="what about\x0b neglect?",
        standalone_query="what about\x0b neglect?",
        abstained=False,
        message="From 1 report, in their own words:",
        sections=(ReportSection("SCR\x07 Child Q", "q.pdf", (Quote("She was\x01 seen\x0c twice.", 1),)),),
        sources=(Source(1, "q.pdf", "Review\x02 of Child Q", "SCR\x07 Child Q", "SCR", 2022, 3, 3, "x\x01y"),),
    )
    docx = answer_to_docx(ans)
    body = html.unescape(zipfile.ZipFile(io.BytesIO(docx)).read("word/document.xml").decode("utf-8"))
    assert "what about neglect?" in body and "She was seen twice." in body and "SCR Child Q" in body
    assert not C0.search(re.sub(r"<[^>]+>", "", body))
    assert answer_to_markdown(ans)  # the Markdown export is text: it never failed, and still works
