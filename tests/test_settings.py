"""Settings: defaults, environment and CLI overrides, validation, and docs that match the code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sscp_rag.errors import ConfigError
from sscp_rag.settings import Settings, settings_markdown

ROOT = Path(__file__).resolve().parent.parent


def test_environment_overrides_defaults_and_explicit_overrides_win():
    env = {"SSCP_RAG_TOP_K": "7", "SSCP_RAG_FUSION": "score", "SSCP_RAG_MERGE_ADJACENT": "false"}
    s = Settings.from_env(env)
    assert (s.top_k, s.fusion, s.merge_adjacent) == (7, "score", False)
    s2 = Settings.from_env(env, top_k=3, index_dir="elsewhere")
    assert s2.top_k == 3 and s2.index_dir == Path("elsewhere")
    assert s2.with_overrides(top_k=None).top_k == 3


@pytest.mark.parametrize(
    "env",
    [
        {"SSCP_RAG_TOP_K": "many"},
        {"SSCP_RAG_FUSION": "average"},
        {"SSCP_RAG_CHUNK_OVERLAP": "500"},
        {"SSCP_RAG_MERGE_ADJACENT": "perhaps"},
    ],
)
def test_invalid_values_raise_config_error_naming_the_setting(env):
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    name = next(iter(env)).removeprefix("SSCP_RAG_").lower()
    assert name in str(info.value)


def test_every_setting_is_documented_and_docs_match_the_code():
    for name, help_, _ in Settings.describe():
        assert help_.strip(), f"setting {name} has no description"
    assert (ROOT / "docs" / "settings.md").read_text(encoding="utf-8") == settings_markdown(), (
        "docs/settings.md is out of date: run `sscp-rag settings --markdown > docs/settings.md`"
    )


def test_cli_reports_bad_setting_in_environment_without_traceback():
    env = {**os.environ, "SSCP_RAG_TOP_K": "lots"}
    proc = subprocess.run(
        [sys.executable, "-m", "sscp_rag.cli", "settings"], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert "error: setting top_k: cannot use 'lots'" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
