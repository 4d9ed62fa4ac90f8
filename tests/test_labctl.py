"""The lab tool's answers to bad input, and the image cache key (no containers are touched here)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LABCTL = ROOT / "lab" / "labctl.py"


def load_labctl():
    if str(LABCTL.parent) not in sys.path:  # as when it runs as a script: lab/ first on the path
        sys.path.insert(0, str(LABCTL.parent))
    spec = importlib.util.spec_from_file_location("labctl", LABCTL)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["labctl"] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def run_labctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(LABCTL), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )


def test_inventory_hosts_come_from_the_lab_inventory() -> None:
    hosts = {h.name: h.groups for h in load_labctl().inventory_hosts()}
    assert {"rvm-lab-01", "rvm-lab-02", "rvm-lab-03", "rvm-monitor", "rvm-backup", "rvm-platform"} == set(
        hosts
    )
    assert hosts["rvm-lab-02"] == ("rvm_devices",)
    assert hosts["rvm-monitor"] == ("monitoring_servers",)


def test_only_devices_get_a_data_partition_and_the_shape_that_says_so() -> None:
    labctl = load_labctl()
    hosts = {h.name: h for h in labctl.inventory_hosts()}
    assert hosts["rvm-lab-01"].shape == labctl.DEVICE_SHAPE != labctl.SHAPE
    assert hosts["rvm-monitor"].shape == labctl.SHAPE
    assert labctl.data_volume(hosts["rvm-monitor"]) == []  # nothing mounted for a server


@pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/dev/loop-control").exists(), reason="needs root and loop devices"
)
def test_a_data_partition_is_a_size_limited_filesystem_made_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_labctl()
    import datavol

    monkeypatch.setattr(datavol, "DATA_ROOT", tmp_path / "lab-data")
    try:
        data = datavol.ensure("rvm-lab-test")
        st = os.statvfs(data)
        size_gb = st.f_blocks * st.f_frsize / 1e9
        assert 1.8 < size_gb < 2.2  # its own filesystem of SIZE, not the control node's disk
        # nothing reserved for root (-m 0; ext4 keeps only its own 16 MB): the service sees what root sees
        assert st.f_bavail > 0.98 * st.f_bfree
        (data / "kept").write_text("x")
        assert datavol.ensure("rvm-lab-test") == data  # a second `up` mounts nothing new
        assert (data / "kept").read_text() == "x"
        assert datavol.names() == ["rvm-lab-test"]
        assert datavol.image("rvm-lab-test").stat().st_blocks * 512 < 100e6  # sparse on the disk
    finally:
        assert datavol.remove("rvm-lab-test")
    assert not os.path.ismount(tmp_path / "lab-data" / "rvm-lab-test")
    assert datavol.names() == []


def test_shell_refuses_a_host_not_in_the_inventory() -> None:
    proc = run_labctl("shell", "rvm-lab-99")
    assert proc.returncode == 1
    assert "'rvm-lab-99' is not a lab host" in proc.stderr
    assert "rvm-lab-01" in proc.stderr  # the message lists what exists
    assert "Traceback" not in proc.stderr


def test_missing_tools_are_named_with_the_install_command(tmp_path: Path) -> None:
    # A PATH with python and ansible-inventory but no podman/mmdebstrap/runc.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("ansible-inventory",):
        found = shutil.which(tool) or str(Path(sys.executable).with_name(tool))
        assert found, f"{tool} must be on PATH for this test"
        (bindir / tool).symlink_to(found)
    env = {**os.environ, "PATH": str(bindir)}
    proc = run_labctl("up", env=env)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "apt-get install -y podman mmdebstrap runc" in lines[0]


def test_image_tag_changes_only_with_the_recipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    labctl = load_labctl()
    recipe = tmp_path / "image"
    shutil.copytree(ROOT / "lab" / "image", recipe)
    monkeypatch.setattr(labctl, "IMAGE_DIR", recipe)
    first = labctl.recipe_hash()
    assert labctl.recipe_hash() == first, "the tag must be stable for an unchanged recipe"
    (recipe / "packages.txt").write_text((recipe / "packages.txt").read_text() + "less\n")
    assert labctl.recipe_hash() != first, "a new package must give a new image"


def test_packages_ignore_comments() -> None:
    packages = load_labctl().read_packages()
    assert "systemd" in packages
    assert not any(p.startswith("#") or not p for p in packages)


def test_recreated_containers_lose_their_cached_facts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A new container gets a new address; a cached fact would point other hosts at the old one.
    labctl = load_labctl()
    monkeypatch.setattr(labctl, "FACT_CACHE", tmp_path)
    for name in ("s1_rvm-platform", "s1_rvm-lab-01", "rvm-monitor"):
        (tmp_path / name).write_text("{}")
    labctl.forget_facts(["rvm-platform", "rvm-monitor", "rvm-lab-99"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s1_rvm-lab-01"]


def test_ssh_key_is_made_once_and_its_path_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """lab/run-molecule.sh asks for the key before any lab exists: the role scenarios log in with it."""
    labctl = load_labctl()
    key = tmp_path / ".lab" / "ssh" / "id_ed25519"
    monkeypatch.setattr(labctl, "SSH_KEY", key)
    assert labctl.main(["ssh-key"]) == 0
    assert capsys.readouterr().out.strip() == str(key)
    first = (key.parent / "id_ed25519.pub").read_text()
    assert first.startswith("ssh-ed25519 ") and oct(key.stat().st_mode & 0o777) == "0o600"
    assert labctl.main(["ssh-key"]) == 0
    assert (key.parent / "id_ed25519.pub").read_text() == first  # kept, not replaced


def test_another_checkouts_lab_is_named_and_this_ones_is_not() -> None:
    labctl = load_labctl()
    own = f"{labctl.SSH_KEY}.pub"
    states = {
        "rvm-lab-01": {"key": own},
        "rvm-backup": {"key": "/elsewhere/rvm-fleet/.lab/ssh/id_ed25519.pub"},
        "rvm-monitor": {"key": ""},
        "gone": None,
    }
    assert labctl.foreign(states, own) == ["rvm-backup", "rvm-monitor"]
    assert labctl.foreign({"rvm-lab-01": {"key": own}}, own) == []


def test_check_free_passes_where_no_podman_is_installed(tmp_path: Path) -> None:
    """A fresh CI machine: .ci/run asks before anything is installed."""
    (tmp_path / "python3").symlink_to(sys.executable)
    proc = run_labctl("check-free", env={"PATH": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert "podman is not installed" in proc.stdout


def test_a_degraded_boot_is_named_with_its_failed_units(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    labctl = load_labctl()
    answers = {
        "is-system-running": "degraded\n",
        "list-units": "systemd-journald-audit.socket loaded failed failed Journal Audit Socket\n"
        "rvm-edge.service loaded failed failed rvm-edge\n",
    }

    def fake_run(args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(args, 0, answers[args[4]], "")

    monkeypatch.setattr(labctl, "run", fake_run)
    assert labctl.wait_booted("rvm-lab-02", float("inf")) == "degraded"
    err = capsys.readouterr().err
    assert "rvm-lab-02 booted degraded, failed: systemd-journald-audit.socket, rvm-edge.service" in err
    assert "journalctl -b -u systemd-journald-audit.socket" in err


def test_a_clean_boot_says_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    labctl = load_labctl()
    monkeypatch.setattr(
        labctl, "run", lambda args, check=True: subprocess.CompletedProcess(args, 0, "running\n", "")
    )
    assert labctl.wait_booted("rvm-lab-02", float("inf")) == "running"
    assert capsys.readouterr().err == ""
