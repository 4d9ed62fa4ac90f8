"""Fixtures for the rvm_release tests; the helpers live in rvm_release_helpers (a unique module name,
so they never collide with another directory's conftest)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rvm_release_helpers import ModuleRun, make_bundle


@pytest.fixture
def run_module() -> ModuleRun:
    return ModuleRun()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "opt" / "rvm-edge"


@pytest.fixture
def bundles(tmp_path: Path) -> Path:
    return tmp_path / "bundles"


@pytest.fixture
def deploy(run_module: ModuleRun, root: Path, bundles: Path) -> Iterator[Callable[[str], dict[str, Any]]]:
    """Install and activate a version the way the role does (present, then current)."""

    def _deploy(version: str) -> dict[str, Any]:
        bundle = make_bundle(bundles, version)
        installed = run_module({"root": str(root), "state": "present", "bundle": str(bundle)})
        assert not installed.get("failed"), installed["msg"]
        result = run_module({"root": str(root), "state": "current", "version": version})
        assert not result.get("failed"), result["msg"]
        return result

    yield _deploy
