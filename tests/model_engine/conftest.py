"""Fixtures for the model_engine tests; helpers live in model_engine_helpers (a unique module name)."""

from __future__ import annotations

from pathlib import Path

import pytest
from model_engine_helpers import ModuleRun


@pytest.fixture
def run_module() -> ModuleRun:
    return ModuleRun()


@pytest.fixture
def engines(tmp_path: Path) -> Path:
    return tmp_path / "engines"


@pytest.fixture(autouse=True)
def _calls_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The trtexec stand-in records its calls here instead of /var/log/lab-jetson."""
    path = tmp_path / "calls.jsonl"
    monkeypatch.setenv("LAB_JETSON_CALLS", str(path))
    return path
