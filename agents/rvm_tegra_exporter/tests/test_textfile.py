"""Atomic textfile writes: readers see the old or the new file, never a part, and no temp remains."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from rvm_tegra_exporter import textfile
from rvm_tegra_exporter.textfile import write_atomic


def test_replaces_the_file_world_readable_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "rvm_tegra.prom"
    target.write_text("old 1\n")
    write_atomic(target, "new 2\n")
    assert target.read_text() == "new 2\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rvm_tegra.prom"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "rvm_tegra.prom"
    target.write_text("old 1\n")

    def broken_fsync(_fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(textfile.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(target, "new 2\n")
    assert target.read_text() == "old 1\n"
    assert os.listdir(tmp_path) == ["rvm_tegra.prom"]
