"""What a fetch run did: :class:`FetchSummary`, and the lines ``sscp-rag fetch`` prints."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FetchedFile:
    file: str  # relative to dest
    title: str
    type: str
    source_url: str


@dataclass(frozen=True)
class Failure:
    url: str
    title: str
    reason: str


@dataclass
class FetchSummary:
    """What a fetch run did; printed by the CLI."""

    dest: str = ""
    manifest: str = ""
    start_pages: list[str] = field(default_factory=list)
    pages_read: list[str] = field(default_factory=list)
    start_failures: list[Failure] = field(default_factory=list)  # start pages that could not be read
    page_failures: list[Failure] = field(default_factory=list)  # other pages that could not be read
    new: list[FetchedFile] = field(default_factory=list)
    updated: list[FetchedFile] = field(default_factory=list)
    unchanged: list[FetchedFile] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    robots_skipped: list[str] = field(default_factory=list)
    duplicates: int = 0  # repeated links to a document already found
    pages_not_followed: int = 0  # linked pages beyond FetchOptions.max_pages
    max_files: int = 0  # the cap on PDFs a run (FetchOptions.max_files)
    files_not_fetched: int = 0  # PDF links beyond that cap
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every start page was read (file failures are listed, not fatal)."""
        return not self.start_failures

    def as_dict(self) -> dict[str, Any]:
        def files(items: list[FetchedFile]) -> list[dict[str, str]]:
            return [dataclasses.asdict(f) for f in items]

        def fails(items: list[Failure]) -> list[dict[str, str]]:
            return [dataclasses.asdict(f) for f in items]

        return {
            "version": 1,
            "dest": self.dest,
            "manifest": self.manifest,
            "start_pages": self.start_pages,
            "pages_read": self.pages_read,
            "start_failures": fails(self.start_failures),
            "page_failures": fails(self.page_failures),
            "new": files(self.new),
            "updated": files(self.updated),
            "unchanged": files(self.unchanged),
            "failed": fails(self.failed),
            "robots_skipped": self.robots_skipped,
            "duplicates": self.duplicates,
            "pages_not_followed": self.pages_not_followed,
            "files_not_fetched": self.files_not_fetched,
            "seconds": round(self.seconds, 3),
            "ok": self.ok,
        }


def summary_lines(summary: FetchSummary) -> list[str]:
    """The summary as readable lines (what ``sscp-rag fetch`` prints)."""
    lines = [
        f"Fetched into {summary.dest} ({summary.seconds:.1f} s): {len(summary.new)} new, "
        f"{len(summary.updated)} updated, {len(summary.unchanged)} unchanged, {len(summary.failed)} failed, "
        f"{len(summary.robots_skipped)} skipped by robots.txt"
        + (f", {summary.duplicates} duplicate link(s) ignored" if summary.duplicates else "")
    ]
    lines.append(f"  pages read: {len(summary.pages_read)}")
    for label, items in (("new", summary.new), ("updated", summary.updated)):
        for f in items:
            lines.append(f"  {label}: {f.file} [{f.type}] {f.title}")
    if summary.unchanged:
        lines.append(f"  unchanged: {', '.join(f.file for f in summary.unchanged)}")
    for f in summary.failed:
        lines.append(f"  failed: {f.title or f.url}: {f.reason}\n          {f.url}")
    for url in summary.robots_skipped:
        lines.append(f"  skipped (robots.txt): {url}")
    for f in summary.start_failures:
        lines.append(f"  start page failed: {f.url}: {f.reason}")
    for f in summary.page_failures:
        lines.append(f"  page failed: {f.url}: {f.reason}")
    if summary.pages_not_followed:
        lines.append(f"  {summary.pages_not_followed} linked page(s) not followed (page limit)")
    if summary.files_not_fetched:
        lines.append(
            f"  cap of {summary.max_files} PDFs a run reached: {summary.files_not_fetched} more PDF link(s) "
            "not fetched (raise it with --max-files)"
        )
    if summary.new or summary.updated:
        lines.append(f"Next: sscp-rag ingest --corpus {summary.dest}")
    return lines
