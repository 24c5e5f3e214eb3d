"""PDF extraction, cleaning and chunking on real PDFs: made here with reportlab, and the real
public PDFs in ../shared/corpus-real."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pdfmaker as pm
import pytest
from conftest import DEMO_CORPUS, REAL_CORPUS
from pypdf import PdfReader

from sscp_rag.chunking import chunk_document, join_pages, make_splitter, section_blocks
from sscp_rag.corpus import infer_meta
from sscp_rag.encoder import HashingEncoder
from sscp_rag.ingest import chunk_corpus
from sscp_rag.pdf import read_pdf
from sscp_rag.settings import Settings


def ws(text: str) -> str:
    """Whitespace-normalised text."""
    return " ".join(text.split())


def words(text: str) -> list[str]:
    """Lower-case alphanumeric words (ligatures and other compatibility characters folded)."""
    return [w for w in re.split(r"[^0-9a-z]+", unicodedata.normalize("NFKC", text).lower()) if w]


def squash(text: str) -> str:
    """Only the letters and digits, lower-cased: what survives any spacing, hyphenation or
    line-break difference between raw and cleaned text."""
    return "".join(words(text))


@pytest.fixture(scope="module")
def splitter(hashing_encoder: HashingEncoder):
    s = Settings()
    return make_splitter(hashing_encoder.tokenizer, s.chunk_tokens, s.chunk_overlap)


def test_two_column_page_reads_left_column_then_right(tmp_path: Path) -> None:
    left = [pm.sentences(f"left{i}x", 3) for i in range(3)]
    right = [pm.sentences(f"right{i}x", 3) for i in range(3)]
    path = pm.two_column_pdf(tmp_path / "two.pdf", left, right, header="Thematic Review | Fictional")
    page = read_pdf(path, "two.pdf").pages[0].text
    flat = ws(page)
    # Each paragraph comes out whole (no line of one column spliced into the other) ...
    for para in left + right:
        assert ws(para) in flat, para[:60]
    # ... and the whole left column precedes the right column.
    assert flat.index(ws(left[-1])) < flat.index(ws(right[0]))
    assert [flat.index(ws(p)) for p in left + right] == sorted(flat.index(ws(p)) for p in left + right)


def test_running_header_footer_dropped_and_hyphenation_rejoined(tmp_path: Path) -> None:
    header = "Serious Case Review: Child T | Fictional test report"
    body = pm.wrap([pm.sentences("hdr", 8)])
    pages = [
        [
            "1. Introduction",
            *body[:6],
            "The partnership asked the safe-",
            "guarding board to commission the review.",
            "Work was multi-agency from the start and the multi-",
            "agency group met monthly.",
            *body[6:10],
            "Later the practi-",
        ],
        ["tioners met the family at home.", *body[10:14], "2. Key events", *body[:4]],
        ["3. Analysis", *body[4:12]],
    ]
    path = pm.text_pdf(tmp_path / "scr.pdf", pages, header=header, footer="Page {n} of {m}")
    raw = [p.extract_text() for p in PdfReader(str(path)).pages]
    assert "Page 2 of 3" in raw[1] and header in raw[1]  # the raw text has them ...
    ex = read_pdf(path, "scr.pdf")
    text = "\n".join(p.text for p in ex.pages)
    assert "Page " not in text and "of 3" not in text  # ... the cleaned text does not
    assert "Fictional test report" not in text
    assert "the safeguarding board to commission" in ws(text)  # "safe-" + "guarding" rejoined
    assert "safe- guarding" not in text and "safe-guarding" not in text
    assert "the multi-agency group met monthly" in ws(text)  # spelled with a hyphen elsewhere: kept
    # a word split over a page break is rejoined and stays on the first page
    assert ws(ex.pages[0].text).endswith("Later the practitioners")
    assert ws(ex.pages[1].text).startswith("met the family at home.")
    assert "2. Key events" in ex.pages[1].headings and "3. Analysis" in ex.pages[2].headings


def test_header_and_page_numbers_dropped_from_a_two_page_document(tmp_path: Path) -> None:
    header = "7 Minute Briefing: Safer Sleep | Fictional"
    path = pm.one_column_pdf(
        tmp_path / "7mb.pdf", [pm.sentences(f"b{i}", 5) for i in range(8)], header=header, per_page=30
    )
    ex = read_pdf(path, "7mb.pdf")
    assert ex.n_pages == 2
    for page in ex.pages:
        assert "Safer Sleep | Fictional" not in page.text
        assert not re.search(r"Page \d of 2", page.text)


def test_chunk_across_a_page_break_cites_the_page_range(tmp_path: Path, splitter) -> None:
    paras = [f"{i}.1 {pm.sentences(f'pb{i}s', 8)}" for i in range(1, 11)]
    path = pm.one_column_pdf(tmp_path / "lcspr-child-q.pdf", paras, header="LCSPR Child Q | Fictional", per_page=30)
    ex = read_pdf(path, "lcspr-child-q.pdf")
    assert ex.n_pages >= 3
    doc = join_pages(ex.pages)
    chunks = chunk_document(infer_meta("lcspr-child-q.pdf", ex.first_page_raw), doc, splitter)
    crossing = [c for c in chunks if c.page_start < c.page_end]
    assert crossing, "no chunk runs over a page break"
    for c in chunks:
        assert doc.text[c.char_start : c.char_end] == c.text
        cited = " ".join(doc.page_text(p) for p in range(c.page_start, c.page_end + 1))
        assert ws(c.text) in ws(cited)
    for c in crossing:
        # The part before the break is on the first cited page, the rest on the last one.
        head = doc.text[c.char_start : doc.page_starts[c.page_end - 1]]
        tail = doc.text[doc.page_starts[c.page_end - 1] : c.char_end]
        assert squash(head) and squash(head) in squash(ex.raw_pages[c.page_start - 1])
        assert squash(tail) and squash(tail) in squash(ex.raw_pages[c.page_end - 1])
        assert squash(tail) not in squash(ex.raw_pages[c.page_start - 1])


def test_table_cells_are_extracted_in_row_order(tmp_path: Path) -> None:
    rows = [
        ["Agency", "Contact", "Decision"],
        ["Health visiting", "12 March 2019", "No further action"],
        ["Children's social care", "2 April 2019", "Section 47 enquiry"],
        ["Police", "9 April 2019", "Referral to MARAC"],
    ]
    path = pm.table_pdf(tmp_path / "table.pdf", pm.sentences("tab", 3), rows, pm.sentences("after", 2))
    page = read_pdf(path, "table.pdf").pages[0]
    text = ws(page.text)
    at = text.index("(tab2)")
    for cell in [cell for row in rows for cell in row] + ["(after0)"]:
        at = text.index(cell, at)  # every cell, in reading order, between the two paragraphs
    assert not {"Contact", "Decision", "Health visiting"} & set(page.headings)  # cells are not headings


@pytest.mark.slow
def test_every_real_chunk_is_on_the_pages_it_cites() -> None:
    if not REAL_CORPUS.is_dir():
        pytest.skip(f"the real PDFs are not here: {REAL_CORPUS} is absent")
    docs, skipped = chunk_corpus(Settings(corpus_dir=REAL_CORPUS))
    assert not skipped, skipped  # all 21 carry a text layer
    assert len(docs) == len(list(REAL_CORPUS.glob("*.pdf")))
    problems: list[str] = []
    n_chunks = n_segments = 0
    for d in docs:
        # The raw text the check uses is pypdf's own: re-read a page of each file independently.
        probe = d.pdf.n_pages // 2
        assert PdfReader(str(d.file.path)).pages[probe].extract_text() == d.pdf.raw_pages[probe]
        raw = [squash(t) for t in d.pdf.raw_pages]
        starts = d.doc.page_starts
        for c in d.chunks:
            n_chunks += 1
            where = f"{d.file.rel} chunk {c.seq} (pp. {c.page_start}-{c.page_end})"
            # 1. The chunk is a slice of the cleaned text of exactly the pages it cites.
            cited = " ".join(d.doc.page_text(p) for p in range(c.page_start, c.page_end + 1))
            if d.doc.text[c.char_start : c.char_end] != c.text or ws(c.text) not in ws(cited):
                problems.append(f"{where}: not in the cleaned text of its pages")
                continue
            # 2. Each cited page holds a part of the chunk, and that part is in pypdf's raw text
            #    of that page: every word, and every run of six words in order (only spacing,
            #    hyphenation and dropped header/footer lines may differ).
            for p in range(c.page_start, c.page_end + 1):
                end = starts[p] if p < len(starts) else len(d.doc.text)
                part = words(d.doc.text[max(c.char_start, starts[p - 1]) : min(c.char_end, end)])
                n_segments += 1
                if not part:
                    problems.append(f"{where}: cites page {p} but has no text on it")
                    continue
                missing = [w for w in part if w not in raw[p - 1]]
                runs = ["".join(part[i : i + 6]) for i in range(max(1, len(part) - 5))]
                found = sum(r in raw[p - 1] for r in runs) / len(runs)
                if missing or found < 0.95:
                    problems.append(f"{where}: page {p}: missing words {missing[:5]}, {found:.0%} of 6-word runs")
        # 3. Nothing but running headers, footers and page numbers is dropped: every raw line
        #    missing from its cleaned page recurs (digits aside) on several pages, or is a page number.
        keys = [{re.sub(r"\d+", "#", ln.strip().lower()) for ln in t.splitlines()} for t in d.pdf.raw_pages]
        for i, text in enumerate(d.pdf.raw_pages):
            clean = squash(d.doc.page_text(i + 1))
            for line in text.splitlines():
                if squash(line) and squash(line) not in clean:
                    key = re.sub(r"\d+", "#", line.strip().lower())
                    if not re.fullmatch(r"(page )?#( of #)?", key) and sum(key in k for k in keys) < 2:
                        problems.append(f"{d.file.rel} p. {i + 1}: dropped a line that is not running: {line!r}")
    assert n_chunks > 1000 and n_segments > n_chunks
    assert not problems, f"{len(problems)} problems in {n_chunks} chunks:\n" + "\n".join(problems[:20])


def test_chunks_by_section_never_straddle_a_heading_unless_packed(splitter, hashing_encoder: HashingEncoder) -> None:
    """chunk_by_section: a chunk that holds a heading inside it is a whole block of short sections
    packed under the size limit; every other chunk lies within one section."""
    ex = read_pdf(DEMO_CORPUS / "scr-child-g.pdf", "scr-child-g.pdf")
    doc = join_pages(ex.pages)
    meta = infer_meta("scr-child-g.pdf", ex.first_page_raw)
    size = Settings().chunk_tokens

    def n_tokens(text: str) -> int:
        return len(hashing_encoder.tokenizer.tokenize(text))

    blocks = section_blocks(doc, n_tokens, size)
    assert blocks[0][0] == 0 and blocks[-1][1] == len(doc.text)
    assert all(a1 == b0 for (_, a1), (b0, _) in zip(blocks, blocks[1:]))  # contiguous, in order
    inner = [at for at, _ in doc.headings if 0 < at < len(doc.text)]
    assert {a for a, _ in blocks[1:]} <= set(inner)  # blocks start only at headings

    by_section = chunk_document(meta, doc, splitter, by_section=True)
    plain = chunk_document(meta, doc, splitter)
    assert len(by_section) > 10 and len(plain) > 10

    def straddles(c) -> bool:
        return any(c.char_start < at < c.char_end and doc.text[c.char_start : at].strip() for at in inner)

    assert any(straddles(c) for c in plain)  # the option changes something on this report
    for c in by_section:
        assert doc.text[c.char_start : c.char_end] == c.text
        if straddles(c):
            block = next((a, b) for a, b in blocks if a <= c.char_start < b)
            assert c.char_end <= block[1] and n_tokens(doc.text[block[0] : block[1]]) <= size, c.text[:120]
