"""Running the Streamlit app as a local server: start it on 127.0.0.1, wait until it is healthy,
stop it. Used by the browser test and the screenshot script (and usable from a launcher)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx

from sscp_rag.errors import SscpRagError

APP_PATH = Path(__file__).resolve().parents[2] / "app.py"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def app_command(port: int, app_path: Path = APP_PATH) -> list[str]:
    """The command that serves the app on 127.0.0.1:``port`` only, without opening a browser."""
    return [
        sys.executable, "-m", "streamlit", "run", str(app_path),
        "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
    ]  # fmt: skip


def wait_healthy(url: str, timeout: float = 120.0, proc: subprocess.Popen | None = None) -> float:
    """Seconds until ``url``/_stcore/health answers ok; raises SscpRagError on timeout or if
    ``proc`` exits first."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            raise SscpRagError(f"the app server exited with code {proc.returncode} before it was ready")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/_stcore/health", timeout=2.0).status_code == 200:
                return time.perf_counter() - t0
        time.sleep(0.2)
    raise SscpRagError(f"the app at {url} was not healthy after {timeout:.0f} s")


@contextlib.contextmanager
def running_app(
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    log_path: Path | None = None,
    app_path: Path = APP_PATH,
    timeout: float = 120.0,
) -> Iterator[str]:
    """Serve the app in a subprocess while the block runs; yields its URL. ``env`` entries
    (e.g. SSCP_RAG_INDEX_DIR) are added to this process's environment. The server is always
    terminated (then killed if it does not stop) when the block exits."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        app_command(port, app_path),
        cwd=app_path.parent,
        env={**os.environ, **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_healthy(url, timeout, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        if log_path:
            log.close()
