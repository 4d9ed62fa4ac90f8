"""A production test's release says its own version, and the broken one carries the bug."""

from __future__ import annotations

from pathlib import Path

from prodtest.releases import BUG, app_version, source


def test_a_release_source_says_its_version_and_only_the_broken_one_has_the_bug(tmp_path: Path) -> None:
    version = f"{app_version()}.post1"
    good = source(version, tmp_path / "good")
    bad = source(version, tmp_path / "bad", broken=True)
    for tree in (good, bad):
        assert f'version = "{version}"' in (tree / "pyproject.toml").read_text()
        assert f'__version__ = "{version}"' in (tree / "src" / "rvm_edge" / "__init__.py").read_text()
        assert not (tree / "tests").exists() and not (tree / "models").exists()
    assert BUG not in (good / "src" / "rvm_edge" / "service" / "runner.py").read_text()
    assert BUG in (bad / "src" / "rvm_edge" / "service" / "runner.py").read_text()
