"""lab/labctl.py add/remove: an extra device for the enrollment test, never a host of inventories/lab.

The refusals are checked without touching a container (podman is replaced by fakes); the fleet test
(tests/fleet/test_zerotier.py) adds and removes a real one.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import pytest

LABCTL = Path(__file__).resolve().parents[2] / "lab" / "labctl.py"


@pytest.fixture
def labctl(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.syspath_prepend(str(LABCTL.parent))  # as when it runs as a script: lab/ first (datavol)
    spec = importlib.util.spec_from_file_location("labctl_extra", LABCTL)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["labctl_extra"] = module
    spec.loader.exec_module(module)
    calls: list[list[str]] = []
    monkeypatch.setattr(module, "require_tools", lambda: None)
    monkeypatch.setattr(module, "inventory_hosts", lambda: [module.LabHost("rvm-lab-01", ("rvm_devices",))])
    monkeypatch.setattr(module, "run", lambda args, **_: calls.append(list(args)))
    # a device's data partition: named, not made (the real one is a loop mount on this machine, which
    # a unit test must not leave behind; tests/test_labctl.py makes and removes one in a tmp folder)
    monkeypatch.setattr(module.datavol, "ensure", lambda name: tmp_path / name / "data")
    module.calls = calls
    return module


def test_add_refuses_a_host_of_the_inventory(labctl) -> None:
    with pytest.raises(labctl.LabError, match="rvm-lab-01 is in inventories/lab already"):
        labctl.cmd_add(argparse.Namespace(name="rvm-lab-01"))
    assert labctl.calls == []


def test_add_refuses_a_container_it_did_not_make(labctl, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(labctl, "container_state", lambda name: {"extra": "", "managed": "container"})
    with pytest.raises(labctl.LabError, match="rvm-lab-09 exists and is not an extra lab device"):
        labctl.cmd_add(argparse.Namespace(name="rvm-lab-09"))
    assert labctl.calls == []


def test_remove_refuses_a_lab_host(labctl, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(labctl, "container_state", lambda name: {"extra": "", "managed": "container"})
    with pytest.raises(labctl.LabError, match="rvm-lab-01 is not an extra lab device"):
        labctl.cmd_remove(argparse.Namespace(name="rvm-lab-01"))
    assert labctl.calls == []


def test_remove_removes_an_extra_device(labctl, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(labctl, "container_state", lambda name: {"extra": "yes", "managed": "container"})
    forgotten: list[str] = []
    monkeypatch.setattr(labctl, "forget_facts", lambda names: forgotten.extend(names))
    labctl.cmd_remove(argparse.Namespace(name="rvm-lab-04"))
    assert labctl.calls == [["podman", "rm", "--force", "--time", "10", "rvm-lab-04"]]
    assert forgotten == ["rvm-lab-04"]


def test_devices_get_tun_and_only_the_platform_publishes_the_central_double(labctl, tmp_path: Path) -> None:
    labctl.create_container(labctl.LabHost("rvm-lab-04", ("rvm_devices",)), "img", extra=True)
    labctl.create_container(labctl.LabHost("rvm-platform", ("platform_simulators",)), "img")
    device, platform = labctl.calls
    assert "/dev/net/tun" in device and "--publish" not in device
    assert f"{tmp_path}/rvm-lab-04/data:{labctl.datavol.DEST}" in device  # its own data partition
    assert "--volume" in platform and not any(labctl.datavol.DEST in a for a in platform)
    assert f"{labctl.EXTRA_LABEL}=yes" in device
    assert platform[platform.index("--publish") + 1] == "127.0.0.1:9994:9994"  # loopback only
