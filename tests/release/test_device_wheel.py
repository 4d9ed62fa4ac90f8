"""The wheel a device installs is the runtime only: no toolchain, no benchmark, nothing of the lab.

Builds the real app wheel the way the bundle builder does (``pip wheel --no-deps`` of app/) and
reads its file list, so a module moved back into app/src, or a package-discovery change that
picks up toolchain/ or benchmarks/, fails here and in ``make release``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from release_helpers import RELEASE_DIR, make_wheel

from rvm_bundle import BuildError
from rvm_bundle.appwheel import build_wheel, check_device_wheel, forbidden_entries

APP = RELEASE_DIR.parent / "app"


@pytest.fixture(scope="module")
def device_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(APP, tmp_path_factory.mktemp("wheel"), 315532800)


def test_device_wheel_holds_the_runtime_and_nothing_of_the_toolchain_or_lab(device_wheel: Path) -> None:
    names = zipfile.ZipFile(device_wheel).namelist()
    assert "rvm_edge/cli.py" in names and "rvm_edge/service/runner.py" in names
    assert forbidden_entries(device_wheel) == []
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"rvm_edge"}, f"top-level packages in the device wheel: {sorted(tops)}"
    check_device_wheel(device_wheel)  # what `make release` runs: passes


def test_a_wheel_carrying_the_toolchain_or_a_simulator_benchmark_is_refused(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path, "rvm-edge", "9.9", "py3-none-any")
    with zipfile.ZipFile(wheel, "a") as zf:
        zf.writestr("rvm_edge/bench.py", "import numpy\n")  # the device's own `rvm-edge bench`: allowed
        zf.writestr("rvm_edge/toolchain/lab.py", "")
        zf.writestr("rvm_edge/service/bench.py", "def f():\n    from rvm_platform_sim.testing import x\n")
        zf.writestr("rvm_toolchain/cli.py", "")
        zf.writestr("benchmarks/service_bench.py", "")
    assert forbidden_entries(wheel) == [
        "rvm_edge/toolchain/lab.py",
        "rvm_edge/service/bench.py",
        "rvm_toolchain/cli.py",
        "benchmarks/service_bench.py",
    ]
    with pytest.raises(BuildError, match=r"carries modules a device must not install: rvm_edge/toolchain"):
        check_device_wheel(wheel)
