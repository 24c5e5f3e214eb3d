"""The import arrows of the design hold: the contracts in pyproject.toml's [tool.importlinter]
(Ingest and Store do not import Retrieval, Store does not import Ingest, Fetch imports neither,
the base modules import only each other, no import cycle), checked by import-linter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept() -> None:
    # lint-imports in a child process: it builds its own import graph from the source files and
    # its cache stays out of this run.
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint), "--no-cache", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout
