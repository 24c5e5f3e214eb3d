"""How a fetch run crawls and downloads: :class:`FetchOptions`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from sscp_rag import __version__
from sscp_rag.errors import ConfigError
from sscp_rag.http import (
    ROBOTS_AGENT,
    normalise_host,
)
from sscp_rag.settings import Settings

_SETTINGS = Settings()  # the defaults of the settings the CLI passes on (fetch_max_files, ...)


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class FetchOptions:
    """How :func:`fetch` crawls and downloads. Field metadata ``help`` documents each one."""

    max_bytes: int = _opt(50 * 1024 * 1024, "Largest PDF downloaded, in bytes; larger files are refused.")
    max_page_bytes: int = _opt(5 * 1024 * 1024, "Largest HTML page read, in bytes.")
    delay: float = _opt(1.0, "Least seconds between two requests to one host (robots.txt Crawl-delay raises it).")
    timeout: float = _opt(30.0, "Seconds to wait to connect and between bytes of a response.")
    deadline: float = _opt(
        _SETTINGS.fetch_deadline,
        "Most seconds one request may take in all (connecting, headers and the whole body), however "
        "steadily the server drips bytes; each redirect hop and retry is a request of its own.",
    )
    retries: int = _opt(2, "Extra attempts after a connection error, timeout, 429 or 5xx.")
    backoff: float = _opt(1.0, "Seconds before the first retry; doubles for each further retry.")
    max_pages: int = _opt(60, "Most linked HTML pages followed (one level deep) in one run.")
    max_files: int = _opt(
        _SETTINGS.fetch_max_files, "Most PDFs fetched in one run; further PDF links are counted in the summary."
    )
    allow_hosts: tuple[str, ...] = _opt(
        (), "Hosts besides the start pages' own whose links and redirects are followed (e.g. a CDN)."
    )
    contact: str = _opt("", "URL or e-mail put in the User-Agent so site owners can reach you.")
    progress: bool = _opt(True, "Show a progress bar while downloading.")

    @property
    def user_agent(self) -> str:
        return f"{ROBOTS_AGENT}/{__version__} (+{self.contact or 'safeguarding review archive'})"

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.max_page_bytes < 1 or self.max_files < 1:
            raise ConfigError("the size caps and max_files must be positive")
        if self.delay < 0 or self.timeout <= 0 or self.deadline <= 0 or self.retries < 0 or self.backoff < 0:
            raise ConfigError("delay, retries and backoff must be >= 0, the timeout and deadline > 0")
        hosts = (self.allow_hosts,) if isinstance(self.allow_hosts, str) else self.allow_hosts
        try:
            object.__setattr__(self, "allow_hosts", tuple(dict.fromkeys(normalise_host(h) for h in hosts)))
        except ValueError as exc:
            raise ConfigError(f"allowed hosts: {exc}") from None

    @classmethod
    def describe(cls) -> list[tuple[str, str, Any]]:
        """(name, help, default) for every option."""
        return [(f.name, f.metadata["help"], f.default) for f in dataclasses.fields(cls)]
