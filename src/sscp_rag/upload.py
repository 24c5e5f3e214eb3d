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
import re
import tempfile
from pathlib import Path
from typing import Any

from sscp_rag.corpus_manifest import MANIFEST_NAME, corpus_lock, meta_from_entry, read_manifest, write_atomic
from sscp_rag.errors import CorpusError, PdfError
from sscp_rag.records import DocumentMeta
from sscp_rag.settings import Settings
from sscp_rag.workers import JobFailed, run_jobs

MAX_UPLOAD_BYTES = 200 * 1024 * 1024
MAX_NAME_CHARS = 120  # of a saved file name: file systems allow 255 bytes
_TMP_PREFIX = ".upload-"  # hidden, so a listing of the corpus never takes a half-written file for a PDF
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
    with corpus_lock(corpus_dir, busy):
        if target.exists() and not replace:
            raise CorpusError(f"{name} is already in the corpus; rename the file or choose to replace it")
        try:
            manifest = read_manifest(manifest_path)
        except CorpusError as exc:
            raise CorpusError(f"{exc}; fix it before uploading") from exc
        docs = manifest.documents
        docs[:] = [d for d in docs if not (isinstance(d, dict) and d.get("file") == name)]
        docs.append({"file": name, **{k: v for k, v in clean.items() if k != "file"}})
        previous = target.read_bytes() if target.exists() else None
        try:
            write_atomic(target, data, prefix=_TMP_PREFIX)
            write_atomic(manifest_path, manifest.to_bytes(), prefix=_TMP_PREFIX)
        except OSError as exc:
            with contextlib.suppress(OSError):  # put the corpus back as it was
                if previous is None:
                    target.unlink(missing_ok=True)
                else:
                    write_atomic(target, previous, prefix=_TMP_PREFIX)
            raise CorpusError(f"{name} could not be saved in {corpus_dir} ({exc.strerror or exc})") from exc
