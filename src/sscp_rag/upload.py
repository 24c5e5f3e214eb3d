"""Adding an uploaded PDF, with its metadata, to a corpus folder and its root manifest.json.

The upload is checked before anything is written: it must be a PDF that ingest can read (the
same reader, in a worker process, within the same page and time budgets: ``max_pages`` and
``read_timeout``), unencrypted and with at least one page; its metadata must pass the manifest's
own validation, and it must not overwrite a file unless asked to. The PDF and the manifest are
each written to a temporary file and renamed into place, so a failure leaves the corpus as it
was. Every failure is a CorpusError or PdfError with one plain sentence.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from sscp_rag.corpus import CORPUS_LOCK, MANIFEST_NAME, folder_lock, meta_from_entry
from sscp_rag.errors import CorpusError, PdfError
from sscp_rag.records import DocumentMeta
from sscp_rag.settings import Settings
from sscp_rag.workers import JobFailed, run_jobs

MAX_UPLOAD_BYTES = 200 * 1024 * 1024
MAX_NAME_CHARS = 120  # of a saved file name: file systems allow 255 bytes, with room for ".<name>.uploading"
_DEFAULTS = Settings()


def safe_pdf_name(filename: str) -> str:
    """A plain file name for an upload: no folders, only letters, digits, ``.``, ``_`` and ``-``,
    ending in ``.pdf``. Raises CorpusError when nothing usable is left."""
    base = re.split(r"[\\/]", filename or "")[-1].strip()
    stem, dot, ext = base.rpartition(".")
    if not dot or ext.lower() != "pdf":
        raise CorpusError(f"{base or 'the upload'!r} is not a .pdf file name")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip(".-_")
    stem = stem[: MAX_NAME_CHARS - len(".pdf")].rstrip(".-_")
    if not stem:
        raise CorpusError(f"{base[:80]!r} has no usable file name; rename it, e.g. scr-child-x.pdf")
    return f"{stem}.pdf"


def _page_count(path: Path, name: str, max_pages: int) -> int | str:
    """(In a worker process.) The page count of the PDF at ``path``, or why ingest could not read it."""
    from sscp_rag.pdf import read_pdf

    try:
        return read_pdf(path, name, max_pages, need_text=False).n_pages
    except PdfError as exc:
        return str(exc)


def check_pdf(
    data: bytes,
    name: str = "the upload",
    max_pages: int = _DEFAULTS.max_pages,
    timeout: float = _DEFAULTS.read_timeout,
) -> int:
    """The page count of PDF ``data``; raises PdfError if it is not a PDF that ingest can read:
    unencrypted, with 1 to ``max_pages`` pages, read within ``timeout`` seconds (0 = no limit).
    A PDF without a text layer passes (ingest skips it, saying so)."""
    if not data:
        raise PdfError(f"{name} is empty")
    if len(data) > MAX_UPLOAD_BYTES:
        raise PdfError(f"{name} is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB")
    if b"%PDF-" not in data[:1024]:
        raise PdfError(f"{name} is not a PDF (no %PDF- header)")
    try:
        with tempfile.TemporaryDirectory(prefix="sscp-upload-") as tmp:
            path = Path(tmp) / "upload.pdf"
            path.write_bytes(data)
            result = next(run_jobs(_page_count, [(path, name, max_pages)], timeout=timeout))
    except OSError as exc:
        raise PdfError(f"{name} could not be checked ({exc.strerror or exc})") from exc
    if isinstance(result, JobFailed):
        why = f"reading it took longer than {timeout:g} s (setting read_timeout)" if result.timed_out else result.reason
        raise PdfError(f"{name} is not a readable PDF: {why}")
    if isinstance(result, str):
        raise PdfError(f"{name} is not a readable PDF: {result}")
    if result < 1:
        raise PdfError(f"{name} has no pages")
    return result


def _read_root_manifest(path: Path) -> tuple[Any, list[dict[str, Any]]]:
    """(whole JSON value, its documents list) of a root manifest; a new one if it is missing."""
    if not path.exists():
        data: Any = {"documents": []}
        return data, data["documents"]
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CorpusError(f"{path}: not a valid manifest ({exc}); fix it before uploading") from exc
    docs = data.get("documents") if isinstance(data, dict) else data
    if not isinstance(docs, list):
        raise CorpusError(f"{path}: not a valid manifest (no documents list); fix it before uploading")
    return data, docs


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.uploading")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def add_pdf(
    corpus_dir: Path,
    filename: str,
    data: bytes,
    entry: dict[str, Any],
    replace: bool = False,
    settings: Settings | None = None,
) -> DocumentMeta:
    """Save PDF ``data`` as ``corpus_dir/<safe filename>`` and add (or update) its entry in
    ``corpus_dir/manifest.json``. ``entry`` holds manifest fields (title, short_title, type,
    year, date, subject, source_url, themes, ...); ``file`` is set here. The corpus must be
    re-ingested for the report to be searchable. Returns the report's metadata. ``settings``
    gives the reading budgets (``max_pages``, ``read_timeout``; defaults if not given).

    Raises CorpusError or PdfError, before writing anything, for a bad name, a bad PDF, invalid
    metadata, or an existing file when ``replace`` is false.
    """
    settings = settings or _DEFAULTS
    corpus_dir = Path(corpus_dir)
    if not corpus_dir.is_dir():
        raise CorpusError(f"corpus folder {corpus_dir} does not exist")
    name = safe_pdf_name(filename)
    check_pdf(data, name, settings.max_pages, settings.read_timeout)
    clean = {k: v for k, v in entry.items() if v not in (None, "", [], ())}
    if not str(clean.get("title", "")).strip():
        raise CorpusError("give the report a title")
    clean["file"] = name
    try:
        meta = meta_from_entry(name, clean)
    except (ValueError, TypeError) as exc:
        raise CorpusError(f"the metadata of {name} is invalid ({exc})") from exc
    clean["themes"] = list(meta.themes)
    if meta.year is not None:
        clean["year"] = meta.year
    try:
        _save(corpus_dir, name, data, clean, replace)
    except OSError as exc:  # the folder is unwritable, the name is taken by a folder, ...
        raise CorpusError(f"{name} could not be saved in {corpus_dir} ({exc.strerror or exc})") from exc
    return meta


def _save(corpus_dir: Path, name: str, data: bytes, clean: dict[str, Any], replace: bool) -> None:
    """Write the PDF and its manifest entry, under the corpus lock."""
    target = corpus_dir / name
    manifest_path = corpus_dir / MANIFEST_NAME
    busy = CorpusError(f"a fetch or another upload is writing to {corpus_dir}; try again when it has finished")
    with folder_lock(corpus_dir, CORPUS_LOCK, busy):
        if target.exists() and not replace:
            raise CorpusError(f"{name} is already in the corpus; rename the file or choose to replace it")
        whole, docs = _read_root_manifest(manifest_path)
        docs[:] = [d for d in docs if not (isinstance(d, dict) and d.get("file") == name)]
        docs.append({"file": name, **{k: v for k, v in clean.items() if k != "file"}})
        text = json.dumps(whole, indent=2, ensure_ascii=False) + "\n"
        previous = target.read_bytes() if target.exists() else None
        try:
            _write_atomic(target, data)
            _write_atomic(manifest_path, text.encode("utf-8"))
        except OSError as exc:
            with contextlib.suppress(OSError):  # put the corpus back as it was
                if previous is None:
                    target.unlink(missing_ok=True)
                else:
                    _write_atomic(target, previous)
            raise CorpusError(f"{name} could not be saved in {corpus_dir} ({exc.strerror or exc})") from exc
