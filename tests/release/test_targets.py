"""The real runtime lock, judged for each device the fleet has."""

from __future__ import annotations

from pathlib import Path

import pytest

from rvm_bundle import BuildError
from rvm_bundle.lockfile import read_pins
from rvm_bundle.target import Target

LOCK = Path(__file__).resolve().parents[2] / "app" / "requirements" / "runtime.txt"


def pins(arch: str, python: str) -> dict[str, str]:
    return {p.name: p.version for p in read_pins(LOCK, Target.make(arch, python))}


def test_jetson_gets_the_python_310_pins_and_no_openvino() -> None:
    jetson = pins("aarch64", "3.10")
    lab = pins("x86_64", "3.11")
    assert "openvino" not in jetson
    assert "openvino" in lab
    assert jetson["numpy"] != lab["numpy"], "the lock pins a different numpy for Python 3.10"
    assert "coloredlogs" in jetson
    assert "coloredlogs" not in lab


def test_jetson_accepts_manylinux2014_aarch64_but_no_x86_wheel() -> None:
    jetson = Target.make("aarch64", "3.10")
    from packaging.tags import Tag

    assert Tag("cp310", "cp310", "manylinux2014_aarch64") in jetson.tags
    assert Tag("cp310", "cp310", "manylinux_2_35_aarch64") in jetson.tags
    assert Tag("cp310", "cp310", "manylinux_2_36_aarch64") not in jetson.tags, "JetPack 6 has glibc 2.35"
    assert Tag("cp310", "cp310", "manylinux2014_x86_64") not in jetson.tags
    assert Tag("cp311", "cp311", "manylinux2014_aarch64") not in jetson.tags
    assert Tag("py3", "none", "any") in jetson.tags


@pytest.mark.parametrize(
    ("arch", "python", "message"),
    [("armv7l", "3.10", "--arch"), ("aarch64", "3", "--python"), ("aarch64", "python3.10", "--python")],
)
def test_unknown_targets_are_refused(arch: str, python: str, message: str) -> None:
    with pytest.raises(BuildError, match=message):
        Target.make(arch, python)
