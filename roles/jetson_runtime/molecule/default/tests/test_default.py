"""What an operator would check on a Jetson after jetson_runtime (here: the lab Jetson stand-in)."""

from __future__ import annotations

import json

import pytest

testinfra_hosts = ["podman://rvm-molecule-jetson"]


def test_nvidia_apt_source_names_common_and_t234_for_r36_4_with_the_pinned_key(
    host: pytest.FixtureRequest,
) -> None:
    source = host.file("/etc/apt/sources.list.d/nvidia-l4t-apt-source.list").content_string
    keyring = "signed-by=/usr/share/keyrings/nvidia-l4t-archive-keyring.asc"
    assert f"deb [{keyring}] file:///srv/jetson-lab-repo/common r36.4 main" in source
    assert f"deb [{keyring}] file:///srv/jetson-lab-repo/t234 r36.4 main" in source


def test_minimal_runtime_installed_not_the_whole_jetpack(host: pytest.FixtureRequest) -> None:
    for name in (
        "cuda-cudart-12-6",
        "libcudnn9-cuda-12",
        "libnvinfer10",
        "libnvinfer-bin",
        "python3-libnvinfer",
    ):
        assert host.package(name).is_installed, name
    assert not host.package("nvidia-jetpack").is_installed
    assert host.file("/usr/src/tensorrt/bin/trtexec").mode == 0o755
    assert host.check_output("python3 -c 'import tensorrt; print(tensorrt.__version__)'") == "10.3.0"


def test_power_mode_selected_by_name_and_fan_profile(host: pytest.FixtureRequest) -> None:
    assert host.file("/var/lib/nvpmodel/status").content_string.split() == ["pmode:0002", "fmode:cool"]
    calls = [
        json.loads(line) for line in host.file("/var/log/lab-jetson/calls.jsonl").content_string.splitlines()
    ]
    assert {"tool": "nvpmodel", "argv": ["-m", "2"]} in [
        {"tool": c["tool"], "argv": c["argv"]} for c in calls
    ]


def test_jetson_clocks_runs_as_a_unit_and_restores_on_stop(host: pytest.FixtureRequest) -> None:
    unit = host.service("jetson-clocks")
    assert unit.is_enabled and unit.is_running  # oneshot + RemainAfterExit: active (exited)
    assert host.file("/var/lib/lab-jetson/clocks").content_string.strip() == "maximum"
    assert host.file("/var/lib/jetson-clocks/l4t_dfs.conf").content_string.strip() == "clocks=dynamic"
    host.run_expect([0], "systemctl stop jetson-clocks")
    try:
        assert host.file("/var/lib/lab-jetson/clocks").content_string.strip() == "dynamic"
    finally:
        host.run_expect([0], "systemctl start jetson-clocks")


def test_facts_name_the_backend_release_board_and_gpu_access(host: pytest.FixtureRequest) -> None:
    facts = json.loads(host.file("/var/tmp/jetson_runtime_facts.json").content_string)
    assert facts["rvm_inference_backend"] == "tensorrt"
    assert facts["jetson_runtime_l4t_release"] == "36.4.3"
    assert (
        facts["jetson_runtime_board"] == "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super"
    )
    assert facts["rvm_gpu_device_allow"] == [
        "/dev/nvgpu/igpu0/ctrl rw",
        "/dev/nvhost-ctrl-gpu rw",
        "/dev/nvhost-prof-gpu rw",
        "/dev/nvmap rw",
    ]
    assert facts["rvm_gpu_groups"] == ["video"]
