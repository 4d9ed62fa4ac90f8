"""The lab's Jetson (issue 13): rvm-lab-03 carries the Jetson LAB STAND-IN (lab/jetson, host_vars
`lab_jetson: true`), so the one fleet converge runs jetson_runtime's Jetson path there and its CPU path on
the other devices; every device then gets its engines built by model_engines before the switch, named
in its config and checked by rvm-edge at start.

What this cannot show: TensorRT. The stand-in packages carry the real names but no GPU code, and an x86
container cannot run a TensorRT engine, so rvm-lab-03's rvm-edge runs OpenVINO engines (its host_vars
say so); the TensorRT build is tested against the trtexec stand-in in tests/model_engine.
"""

from __future__ import annotations

import json
import time

import pytest
import yaml
from fleet_helpers import FIGURES, Recap, devices, readyz, sh

JETSON = "rvm-lab-03"
VENV = "/opt/rvm-edge/current/venv"


def on(host: str, *argv: str) -> str:
    proc = sh(["podman", "exec", host, *argv], timeout=120)
    assert proc.returncode == 0, (host, argv, proc.stdout, proc.stderr)
    return proc.stdout


def config(host: str) -> dict:
    return yaml.safe_load(on(host, "cat", "/etc/rvm-edge/config.yml"))


def test_the_marked_device_took_the_jetson_path_and_the_others_the_cpu_path(fleet: Recap | None) -> None:
    assert JETSON in devices()
    packages = on(
        JETSON, "dpkg-query", "-W", "-f", "${Package} ${Version}\\n", "python3-libnvinfer", "libnvinfer-bin"
    )
    assert set(packages.splitlines()) == {  # dpkg-query lists them in its database's order
        "python3-libnvinfer 10.3.0.30-1+cuda12.5",
        "libnvinfer-bin 10.3.0.30-1+cuda12.5",
    }, packages
    source = on(JETSON, "cat", "/etc/apt/sources.list.d/nvidia-l4t-apt-source.list")
    assert "/common r36.4 main" in source and "/t234 r36.4 main" in source and "signed-by=" in source
    # `nvpmodel -q` prints the fan mode first, as the real one does on JetPack 6
    assert "NV Power Mode: MAXN_SUPER" in on(JETSON, "nvpmodel", "-q").splitlines()
    assert on(JETSON, "systemctl", "is-active", "jetson-clocks.service").strip() == "active"
    rules = on(JETSON, "cat", "/etc/udev/rules.d/70-rvm-camera.rules")
    assert 'ATTRS{idVendor}=="046d", ATTRS{idProduct}=="0825"' in rules and 'SYMLINK+="rvm-camera"' in rules
    # the release venv sees python3-libnvinfer's module (system site packages on a Jetson)
    assert (
        on(JETSON, f"{VENV}/bin/python", "-c", "import tensorrt; print(tensorrt.__version__)").strip()
        == "10.3.0"
    )
    unit = on(JETSON, "systemctl", "cat", "rvm-edge.service")
    assert "DeviceAllow=/dev/nvmap rw" in unit and "DeviceAllow=/dev/nvgpu/igpu0/ctrl rw" in unit
    for cpu in (d for d in devices() if d != JETSON):
        assert "nvmap" not in on(cpu, "systemctl", "cat", "rvm-edge.service")
        assert "include-system-site-packages = false" in on(cpu, "cat", f"{VENV}/pyvenv.cfg")


@pytest.mark.parametrize("host", [JETSON, "rvm-lab-01"])
def test_each_device_runs_engines_built_for_it_and_named_in_its_config(
    fleet: Recap | None, host: str
) -> None:
    models = config(host)["models"]
    assert models["backend"] == "openvino" and models["engines"], models
    for name, engine in models["engines"].items():
        key = json.loads(on(host, "cat", engine.rsplit("/", 1)[0] + "/key.json"))
        fields = key["fields"]
        assert (fields["backend"], key["engine"]) == ("openvino", engine.rsplit("/", 1)[1])
        assert fields["device"].startswith("jetson:" if host == JETSON else "cpu:x86_64:"), fields
        FIGURES.setdefault("engines", {})[f"{host}/{name}"] = {"size": key["size"], "build_s": key["build_s"]}
    assert readyz(host)["ready"] is True
    verified = on(host, f"{VENV}/bin/rvm-edge", "models", "verify")  # the device's config by default
    assert all(f"ok   {engine} (" in verified for engine in models["engines"].values()), verified


def test_a_tampered_engine_is_refused_by_models_verify_and_at_start(fleet: Recap | None) -> None:
    name, engine = next(iter(config(JETSON)["models"]["engines"].items()))
    backup = f"/root/{name}.engine-backup"
    on(JETSON, "cp", "-p", engine, backup)
    try:
        on(JETSON, "sh", "-c", f"printf x >> {engine}")
        proc = sh(["podman", "exec", JETSON, f"{VENV}/bin/rvm-edge", "models", "verify"])
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert f"FAIL {engine}: corrupt engine" in proc.stderr and "rebuild it on the device" in proc.stderr
        since = on(JETSON, "date", "+%Y-%m-%d %H:%M:%S").strip()
        sh(["podman", "exec", JETSON, "systemctl", "restart", "--no-block", "rvm-edge"])
        deadline, journal = time.monotonic() + 60, ""
        while time.monotonic() < deadline and f"{engine}: corrupt engine" not in journal:
            journal = on(JETSON, "journalctl", "-u", "rvm-edge", "--since", since, "--no-pager", "-o", "cat")
        assert f"{engine}: corrupt engine" in journal, journal[-3000:]
    finally:
        on(JETSON, "cp", "-p", backup, engine)
        on(JETSON, "rm", "-f", backup)
        on(JETSON, "systemctl", "reset-failed", "rvm-edge")
        on(JETSON, "systemctl", "restart", "rvm-edge")
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        proc = sh(["podman", "exec", JETSON, "curl", "-fsS", "http://127.0.0.1:8080/readyz"])
        if proc.returncode == 0 and json.loads(proc.stdout).get("ready"):
            break
    assert readyz(JETSON)["ready"] is True
