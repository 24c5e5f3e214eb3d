"""Adding an uploaded PDF to a corpus, and re-ingesting it with progress reports."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pdfmaker as pm
import pytest
from conftest import HASHING
from pypdf import PdfReader, PdfWriter
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

from sscp_rag.corpus import CORPUS_LOCK, folder_lock
from sscp_rag.encoder import HashingEncoder
from sscp_rag.errors import CorpusError, PdfError, SscpRagError
from sscp_rag.index import load_index
from sscp_rag.ingest import build_index
from sscp_rag.settings import Settings
from sscp_rag.upload import add_pdf, check_pdf, safe_pdf_name


def _pdf_bytes(tmp_path: Path, lines: list[str], name: str = "src.pdf") -> bytes:
    path = tmp_path / name
    c = canvas.Canvas(str(path), pagesize=A4)
    y = 800
    for line in lines:
        c.drawString(60, y, line)
        y -= 20
    c.showPage()
    c.save()
    return path.read_bytes()


ENTRY = {"title": "Serious Case Review: Baby R", "short_title": "SCR Baby R", "type": "serious case review",
         "year": 2022, "subject": "Baby R", "themes": ["co-sleeping", "neglect"], "source_url": ""}  # fmt: skip


def test_add_pdf_saves_the_file_and_merges_the_manifest(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    other = {"file": "old.pdf", "title": "Old", "type": "SCR", "pages": 3}
    (corpus / "manifest.json").write_text(json.dumps({"documents": [other]}))
    data = _pdf_bytes(tmp_path, ["Serious Case Review: Baby R"])
    meta = add_pdf(corpus, "C:\\Users\\me\\Baby R (final).PDF", data, ENTRY)
    assert meta.file == "Baby-R-final.pdf" and meta.type == "SCR" and meta.themes == ("safer-sleep", "neglect")
    assert (corpus / "Baby-R-final.pdf").read_bytes() == data
    docs = json.loads((corpus / "manifest.json").read_text())["documents"]
    assert docs[0] == other  # other entries are kept as they were
    assert docs[1] == {"file": "Baby-R-final.pdf", "title": "Serious Case Review: Baby R",
                       "short_title": "SCR Baby R", "type": "serious case review", "year": 2022,
                       "subject": "Baby R", "themes": ["safer-sleep", "neglect"]}  # fmt: skip
    assert sorted(p.name for p in corpus.iterdir()) == [".corpus.lock", "Baby-R-final.pdf", "manifest.json"]

    # the same name again is refused unless replacing; replacing updates the one entry
    with pytest.raises(CorpusError, match="already in the corpus"):
        add_pdf(corpus, "Baby-R-final.pdf", data, ENTRY)
    add_pdf(corpus, "Baby-R-final.pdf", data, {**ENTRY, "year": 2023}, replace=True)
    docs = json.loads((corpus / "manifest.json").read_text())["documents"]
    assert [d["file"] for d in docs] == ["old.pdf", "Baby-R-final.pdf"] and docs[1]["year"] == 2023


def test_an_upload_during_a_fetch_into_the_same_folder_is_refused(tmp_path: Path) -> None:
    """Fetch and upload both rewrite manifest.json: while one holds the folder, the other must not
    write, or one side's entries would be lost."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    data = _pdf_bytes(tmp_path, ["Serious Case Review: Baby R"])
    with folder_lock(corpus, CORPUS_LOCK, CorpusError("held by the test, as a running fetch holds it")):
        with pytest.raises(CorpusError, match="a fetch or another upload is writing to"):
            add_pdf(corpus, "baby-r.pdf", data, ENTRY)
    assert sorted(p.name for p in corpus.iterdir()) == [".corpus.lock"]
    add_pdf(corpus, "baby-r.pdf", data, ENTRY)  # once the fetch is done
    assert (corpus / "baby-r.pdf").read_bytes() == data


def test_bad_uploads_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    good = _pdf_bytes(tmp_path, ["A report"])
    writer = PdfWriter(clone_from=PdfReader(tmp_path / "src.pdf"))
    writer.encrypt("secret")
    enc = tmp_path / "enc.pdf"
    with enc.open("wb") as fh:
        writer.write(fh)
    cases = [
        ("notes.txt", good, ENTRY, CorpusError, "not a .pdf"),
        ("x.pdf", b"", ENTRY, PdfError, "empty"),
        ("x.pdf", b"hello, I am text", ENTRY, PdfError, "not a PDF"),
        ("x.pdf", b"%PDF-1.7\n garbage", ENTRY, PdfError, "not a readable PDF"),
        ("x.pdf", enc.read_bytes(), ENTRY, PdfError, "encrypted"),
        ("x.pdf", good, {**ENTRY, "type": "novel"}, CorpusError, "unknown review type"),
        ("x.pdf", good, {**ENTRY, "title": " "}, CorpusError, "title"),
        ("(!).pdf", good, ENTRY, CorpusError, "no usable file name"),
    ]
    for name, data, entry, err, msg in cases:
        with pytest.raises(err, match=msg):
            add_pdf(corpus, name, data, entry)
    assert list(corpus.iterdir()) == []
    (corpus / "manifest.json").write_text("{broken")
    with pytest.raises(CorpusError, match="not a valid manifest"):
        add_pdf(corpus, "x.pdf", good, ENTRY)
    assert sorted(p.name for p in corpus.iterdir()) == [".corpus.lock", "manifest.json"]  # the lock, no PDF
    with pytest.raises(CorpusError, match="does not exist"):
        add_pdf(tmp_path / "nope", "x.pdf", good, ENTRY)


def test_safe_names_and_page_counts(tmp_path: Path) -> None:
    assert safe_pdf_name("../../etc/passwd.pdf") == "passwd.pdf"
    assert safe_pdf_name("SCR Child D.Pdf") == "SCR-Child-D.pdf"
    assert check_pdf(_pdf_bytes(tmp_path, ["one"])) == 1


def test_uploaded_report_is_indexed_with_progress_reports(tmp_path: Path, hashing_encoder: HashingEncoder) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    add_pdf(corpus, "baby-r.pdf", _pdf_bytes(tmp_path, [
        "Serious Case Review: Baby R",
        "The review found that safer sleep advice was given once and never repeated to the father.",
        "Health visitors should repeat safer sleep advice whenever the family's circumstances change.",
    ]), ENTRY)  # fmt: skip
    settings = Settings(corpus_dir=corpus, index_dir=tmp_path / "index", **HASHING)
    calls: list[tuple[str, int, int]] = []
    summary = build_index(settings, progress=False, embedder=hashing_encoder, on_progress=lambda *a: calls.append(a))
    assert summary.documents == 1
    reads = [c for c in calls if c[0] == "Reading PDFs"]
    assert reads and reads[-1][1:] == (1, 1)
    embeds = [c for c in calls if c[0] == "Embedding chunks"]
    assert embeds and embeds[-1][1] == embeds[-1][2] == summary.embedded
    index = load_index(settings, embedder=hashing_encoder)
    meta = index.by_file["baby-r.pdf"].meta
    assert (meta.short_title, meta.type, meta.year, meta.inferred) == ("SCR Baby R", "SCR", 2022, False)


# --------------------------------------------------------------------------------------------
# hostile uploads


def test_upload_of_a_pdf_whose_catalog_is_a_bare_reference_is_refused(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    data = pm.bare_reference_pdf(tmp_path / "bare.pdf").read_bytes()
    with pytest.raises(PdfError, match="x.pdf is not a readable PDF: corrupt PDF"):
        check_pdf(data, "x.pdf")
    with pytest.raises(PdfError, match="not a readable PDF"):
        add_pdf(corpus, "x.pdf", data, ENTRY)
    assert list(corpus.iterdir()) == []


def test_upload_with_a_very_long_name_or_an_unwritable_target_gives_one_message(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    data = pm.simple_report(tmp_path / "src.pdf", "long", "Serious Case Review: Baby R", paragraphs=2).read_bytes()
    meta = add_pdf(corpus, "r" * 300 + ".pdf", data, ENTRY)  # a 304-character name: too long for the disk
    assert len(meta.file) <= 120 and meta.file.endswith(".pdf")
    assert (corpus / meta.file).read_bytes() == data
    # a folder where the PDF would go: replacing it fails with the module's error, not an OSError
    (corpus / "taken.pdf").mkdir()
    with pytest.raises(CorpusError, match="taken.pdf could not be saved"):
        add_pdf(corpus, "taken.pdf", data, ENTRY, replace=True)
    docs = json.loads((corpus / "manifest.json").read_text())["documents"]
    assert [d["file"] for d in docs] == [meta.file]  # the manifest is as it was


def mutants(seed_pdf: bytes, n: int, seed: int = 20240611) -> list[bytes]:
    """``n`` deterministic mutations of a real PDF: byte flips, truncations, splices, deletions, and
    objects turned into bare references to other objects."""
    rng = random.Random(seed)
    objects = [m.end() for m in re.finditer(rb"\d+ 0 obj\s*", seed_pdf)]
    out = []
    for i in range(n):
        data = bytearray(seed_pdf)
        kind = i % 5
        if kind == 0:  # flip a few bytes anywhere (often in the object syntax or the xref table)
            for _ in range(rng.randint(1, 12)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == 1:  # cut short, keeping the end-of-file marker sometimes
            data = data[: rng.randrange(16, len(data))]
            if rng.random() < 0.5:
                data += b"\n%%EOF\n"
        elif kind == 2:  # splice a chunk of the file somewhere else
            a = rng.randrange(len(data))
            b = min(len(data), a + rng.randint(1, 400))
            at = rng.randrange(len(data))
            data[at:at] = data[a:b]
        elif kind == 3:  # delete a span
            a = rng.randrange(len(data))
            del data[a : a + rng.randint(1, 200)]
        else:  # an object that is nothing but a reference to another one
            at = rng.choice(objects)
            data[at:at] = b"%d 0 R " % rng.randint(1, len(objects))
        out.append(bytes(data))
    return out


def test_fuzzed_pdfs_through_the_upload_check_raise_only_domain_errors(tmp_path: Path) -> None:
    seed = pm.simple_report(tmp_path / "seed.pdf", "fuzz", "Serious Case Review: Child F", paragraphs=2).read_bytes()
    outcomes = {"accepted": 0, "refused": 0}
    for i, data in enumerate(mutants(seed, 250)):
        try:
            n = check_pdf(data, f"m{i}.pdf")
        except SscpRagError as exc:
            assert "\n" not in str(exc) and str(exc).startswith(f"m{i}.pdf"), str(exc)
            outcomes["refused"] += 1
        else:
            assert n >= 1
            outcomes["accepted"] += 1
    assert outcomes["accepted"] and outcomes["refused"]  # the mutations both break and spare files
