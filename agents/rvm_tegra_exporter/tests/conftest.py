"""The fake Jetson fixture of the rvm-tegra-exporter tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from tegra_fixtures import make_jetson


@pytest.fixture
def jetson(tmp_path: Path) -> dict[str, Path]:
    """A fake Orin Nano: thermal zones (one powered off) with trip points, nvpmodel files, a textfile dir."""
    return make_jetson(tmp_path)
