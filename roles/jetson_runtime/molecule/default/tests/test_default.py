"""What an operator would check on a Jetson after jetson_runtime (here: the lab Jetson stand-in)."""

from __future__ import annotations

import json
import re
import subprocess
import time

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


def calls(host: pytest.FixtureRequest) -> list[dict]:
    text = host.file("/var/log/lab-jetson/calls.jsonl").content_string
    return [json.loads(line) for line in text.splitlines()]


def zram_swaps(host: pytest.FixtureRequest) -> list[list[str]]:
    """NAME SIZE PRIO LABEL of each zram swap, from swapon --show (the stand-in's view on the lab)."""
    out = host.check_output("swapon --show=NAME,SIZE,PRIO,LABEL --noheadings --bytes --raw")
    return [line.split() for line in out.splitlines() if line.startswith("/dev/zram")]


def test_one_zram_swap_of_a_quarter_of_the_ram_in_place_of_nvzramconfig(host: pytest.FixtureRequest) -> None:
    mem_kib = int(re.search(r"^MemTotal:\s+(\d+) kB", host.file("/proc/meminfo").content_string, re.M)[1])
    disksize = mem_kib * 25 // 100 // 1024 * 1048576  # 25% in whole MiB
    [[name, size, prio, label]] = zram_swaps(host)
    assert (int(size), prio, label) == (disksize - 4096, "100", "rvm-zram")  # the swap header takes a page
    listing = host.check_output("zramctl --output NAME,DISKSIZE,ALGORITHM --noheadings --bytes --raw")
    assert listing.split() == [name, str(disksize), "lzo-rle"]
    assert host.file("/etc/default/rvm-zram").content_string.splitlines()[-3:] == [
        "RVM_ZRAM_SIZE=25%",
        "RVM_ZRAM_ALGORITHM=lzo-rle",
        "RVM_ZRAM_PRIORITY=100",
    ]
    assert host.service("rvm-zram").is_enabled and host.service("rvm-zram").is_running
    assert not host.service("nvzramconfig").is_enabled
    assert host.run("rvm-zram check").rc == 0


def test_nvidia_zram_was_replaced_new_device_first(host: pytest.FixtureRequest) -> None:
    log = [(c["tool"], c["argv"]) for c in calls(host)]
    nvidia_swapon = log.index(("swapon", ["-p", "5", "/dev/zram0"]))  # nvzramconfig in prepare
    ours = next(
        i for i, (tool, argv) in enumerate(log) if tool == "swapon" and argv[:2] == ["--priority", "100"]
    )
    first_swapoff = next(i for i, (tool, _) in enumerate(log) if tool == "swapoff")
    assert nvidia_swapon < ours < first_swapoff
    assert log[ours - 2][0] == "zramctl" and log[ours - 2][1][:1] == ["--find"]
    assert log[ours - 1] == ("mkswap", ["--label", "rvm-zram", log[ours][1][2]])


def wait_for_boot(host: pytest.FixtureRequest, timeout_s: float = 120) -> None:
    """Until systemd has finished starting the units (right after a restart it is not even on the bus)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = host.run("systemctl is-system-running").stdout.strip()
        if state in ("running", "degraded"):
            return
        time.sleep(1)
    raise AssertionError(f"the container did not finish booting in {timeout_s} s (last state: {state!r})")


def test_at_boot_rvm_zram_replaces_nvzramconfig_enabled_again(host: pytest.FixtureRequest) -> None:
    """A power cycle (zram is gone, as /run is) after a package upgrade enabled nvzramconfig again."""
    host.run_expect([0], "systemctl enable nvzramconfig")
    booted = time.time()
    try:
        subprocess.run(["podman", "restart", "rvm-molecule-jetson"], check=True, timeout=180)
        wait_for_boot(host)
        [[_, _, prio, label]] = zram_swaps(host)
        assert (prio, label) == ("100", "rvm-zram")
        since_boot = [(c["tool"], c["argv"]) for c in calls(host) if c["time"] >= booted]
        nvidia = [argv[-1] for tool, argv in since_boot if tool == "swapon" and argv[:2] == ["-p", "5"]]
        assert nvidia, since_boot  # nvzramconfig ran at this boot...
        assert [argv for tool, argv in since_boot if tool == "swapoff"] == [
            [n] for n in nvidia
        ]  # ...then went
        assert host.run("rvm-zram check").rc == 0
    finally:
        host.run("systemctl disable nvzramconfig")
