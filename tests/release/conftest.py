"""Fixtures for the bundle builder; the helpers live in release_helpers (a unique module name)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from release_helpers import LAB, Project, make_wheel, write_models


@pytest.fixture
def project(tmp_path: Path) -> Project:
    cp = LAB.cp
    index = tmp_path / "index"
    index.mkdir()
    make_wheel(index, "fakenum", "2.0", f"{cp}-{cp}-manylinux_2_28_x86_64")
    make_wheel(index, "fakeyaml", "6.0", "py3-none-any", ("fakedep>=1",))
    make_wheel(index, "fakedep", "1.5", "py3-none-any")
    make_wheel(index, "fakeonly-arm", "1.0", f"{cp}-{cp}-manylinux_2_28_aarch64")
    wheels = tmp_path / "appwheel"
    wheels.mkdir()
    app_wheel = make_wheel(wheels, "rvm-edge", "0.3.0", "py3-none-any", ("fakenum>=2", "fakeyaml"))
    lock = tmp_path / "runtime.txt"
    lock.write_text(
        "# lock\nfakenum==2.0\nfakeyaml==6.0\nfakedep==1.5\nfakeonly-arm==1.0 ; platform_machine == 'aarch64'\n"
    )
    (tmp_path / "app").mkdir()
    models = tmp_path / "models"
    write_models(models)
    return Project(tmp_path, app_wheel, lock, models, index, tmp_path / "cache", tmp_path / "dist")


@pytest.fixture
def build_cli(capsys: pytest.CaptureFixture[str]) -> Callable[[list[str]], tuple[int, str, str]]:
    from build_bundle import main

    def run(argv: list[str]) -> tuple[int, str, str]:
        rc = main(argv)
        captured = capsys.readouterr()
        return rc, captured.out, captured.err

    return run
