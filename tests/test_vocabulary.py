"""The review vocabulary is one set of rules that ingest and fetch both apply, and the corpus
manifest is read and written in one place (no model, no index: fast)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sscp_rag.corpus import infer_meta
from sscp_rag.corpus_manifest import load_manifests, read_manifest, write_atomic
from sscp_rag.errors import CorpusError
from sscp_rag.fetch import describe_link, infer_review_type
from sscp_rag.vocabulary import PSEUDONYM, normalise_type, pseudonym


@pytest.mark.parametrize(
    ("title", "rtype"),
    [
        ("SUDI Infographic", "infographic"),
        ("Child Death Review Partnership SUDI thematic review", "SUDI"),
        ("Thematic Review of Surrey SCRs", "thematic"),
        ("7 Minute Briefing: Neglect", "7-minute briefing"),
        ("Domestic Homicide Review Adult C", "DHR"),
        ("Local Child Safeguarding Practice Review Child Q", "LCSPR"),
        ("Serious Case Review Child G", "SCR"),
    ],
)
def test_ingest_and_fetch_infer_the_same_review_type(title: str, rtype: str) -> None:
    assert infer_review_type(title) == rtype
    assert infer_meta("report.pdf", f"{title}\nSome text on the first page.").type == rtype


def test_the_pseudonym_rule_is_the_union_and_read_the_same_everywhere() -> None:
    for name in ("Child Q", "Baby LL", "Family M", "Adult B", "Young Person C"):
        assert pseudonym(f"Review of {name} (2021)") == name
        assert PSEUDONYM.search(f"what did the {name} review say")
    assert pseudonym("Young\nPerson C") == "Young Person C"  # spacing normalised
    assert pseudonym("a child I worked with") == ""
    assert infer_meta("adult-b-dhr.pdf", "Domestic Homicide Review: Adult B\n").subject == "Adult B"
    assert describe_link("Safeguarding review Adult B 2021", "https://x/a.pdf")["subject"] == "Adult B"
    # A review named after an adult is not taken for a child practice review by its year.
    assert infer_review_type("Adult B report 2021") == "other"
    assert infer_review_type("Child B report 2021") == "LCSPR"


def test_type_aliases_normalise_and_unknown_types_are_refused() -> None:
    assert normalise_type("Serious Case Review") == "SCR"
    assert normalise_type(" 7MB ") == "7-minute briefing"
    with pytest.raises(ValueError, match="unknown review type"):
        normalise_type("novel")


def test_one_manifest_reader_and_writer(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    empty = read_manifest(path)  # no file yet: an empty manifest to add to
    assert empty.documents == [] and not path.exists()
    empty.documents.append({"file": "scr-child-q.pdf", "title": "Child Q", "type": "serious case review"})
    write_atomic(path, empty.to_bytes())
    assert json.loads(path.read_text(encoding="utf-8")) == {"documents": empty.documents}
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left
    assert load_manifests(tmp_path)["scr-child-q.pdf"].type == "SCR"

    path.write_text('{"documents": {"file": "x.pdf"}}', encoding="utf-8")
    with pytest.raises(CorpusError, match="not a valid manifest"):
        read_manifest(path)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(CorpusError, match="not a valid manifest"):
        load_manifests(tmp_path)


def test_a_failed_atomic_write_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "manifest.json"
    path.write_bytes(b"old")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("sscp_rag.corpus_manifest.os.replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, b"new")
    assert path.read_bytes() == b"old" and list(tmp_path.iterdir()) == [path]
