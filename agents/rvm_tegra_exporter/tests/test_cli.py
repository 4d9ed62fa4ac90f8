"""The exporter as systemd runs it: a real process, a fake tegrastats on PATH, a fake sysfs tree."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tegra_fixtures import ORIN_NANO_IDLE, ORIN_NANO_LOAD

SRC = Path(__file__).resolve().parent.parent / "src"


def fake_tegrastats(directory: Path, lines: list[str], then: str) -> Path:
    """A tegrastats stand-in: records its arguments and each start, prints lines, then runs `then`."""
    script = directory / "tegrastats"
    printed = "\n".join(f"printf '%s\\n' '{line}'" for line in lines)
    script.write_text(
        f'#!/bin/sh\necho "$@" > "{directory}/args"\necho $$ >> "{directory}/starts"\n{printed}\n{then}\n'
    )
    script.chmod(0o755)
    return script


def exporter_command(jetson: dict[str, Path], *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "rvm_tegra_exporter",
        "--textfile-dir",
        str(jetson["textfile"]),
        "--thermal-root",
        str(jetson["thermal"]),
        "--nvpmodel-status",
        str(jetson["status"]),
        "--nvpmodel-conf",
        str(jetson["conf"]),
        *extra,
    ]


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(SRC)}


def wait_for(condition: Callable[[], bool], deadline_s: float = 10.0) -> None:
    end = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.05)


def metrics(jetson: dict[str, Path]) -> str:
    path = jetson["textfile"] / "rvm_tegra.prom"
    return path.read_text() if path.exists() else ""


@pytest.fixture
def service(jetson: dict[str, Path]) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(*extra: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            exporter_command(jetson, *extra), env=environment(), stderr=subprocess.PIPE, text=True
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_one_round_on_an_orin_nano(jetson: dict[str, Path]) -> None:
    bin_dir = jetson["root"] / "bin"
    bin_dir.mkdir()
    tegrastats = fake_tegrastats(bin_dir, [ORIN_NANO_IDLE], "sleep 60")
    started = time.monotonic()
    done = subprocess.run(
        exporter_command(jetson, "--once", "--interval", "0.25", "--tegrastats", str(tegrastats)),
        env=environment(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 20, "the exporter waited for tegrastats instead of stopping it"
    assert (bin_dir / "args").read_text().split() == ["--interval", "250"]
    text = metrics(jetson)
    for line in [
        f"rvm_tegra_ram_used_bytes {2272 * 1024 * 1024}",
        f"rvm_tegra_swap_total_bytes {3810 * 1024 * 1024}",
        "rvm_tegra_gpu_load_ratio 0.0",
        'rvm_tegra_rail_power_watts{rail="VDD_IN"} 4.673',
        'rvm_tegra_rail_power_average_watts{rail="VDD_CPU_GPU_CV"} 0.482',
        'rvm_tegra_rail_power_watts{rail="VDD_SOC"} 1.445',
        'rvm_tegra_thermal_zone_temp_celsius{zone="thermal_zone0",type="cpu-thermal"} 54.875',
        'rvm_tegra_thermal_zone_trip_celsius{zone="thermal_zone10",type="tj-thermal",trip="0",trip_type="hot"} 95.5',
        'rvm_tegra_power_mode_info{mode="MAXN_SUPER",mode_id="2"} 1',
        'rvm_tegra_exporter_collector_error{source="tegrastats"} 0',
        'rvm_tegra_exporter_collector_error{source="thermal"} 0',
        'rvm_tegra_exporter_collector_error{source="nvpmodel"} 0',
    ]:
        assert line in text.splitlines(), f"{line!r} missing from\n{text}"
    assert 'zone="thermal_zone2",type="cv0-thermal"} -256' not in text
    assert "# TYPE rvm_tegra_rail_power_watts gauge" in text


def test_not_a_jetson_writes_what_exists_and_exits_zero(tmp_path: Path) -> None:
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rvm_tegra_exporter",
            "--once",
            "--textfile-dir",
            str(textfile),
            "--tegrastats",
            str(tmp_path / "no-tegrastats"),
            "--thermal-root",
            str(tmp_path / "no-thermal"),
            "--nvpmodel-status",
            str(tmp_path / "no-status"),
        ],
        env=environment(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert (textfile / "rvm_tegra.prom").read_text() == ""


def test_a_bad_line_flags_the_error_and_keeps_the_last_figures(jetson: dict[str, Path], service) -> None:
    bin_dir = jetson["root"] / "bin"
    bin_dir.mkdir()
    tegrastats = fake_tegrastats(bin_dir, [ORIN_NANO_LOAD, "garbled output"], "sleep 60")
    proc = service("--interval", "0.2", "--tegrastats", str(tegrastats))
    wait_for(lambda: 'rvm_tegra_exporter_collector_error{source="tegrastats"} 1' in metrics(jetson))
    assert 'rvm_tegra_rail_power_watts{rail="VDD_IN"} 11.245' in metrics(jetson)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert "not a tegrastats line" in proc.stderr.read()


def test_tegrastats_that_exits_is_flagged_and_started_again(jetson: dict[str, Path], service) -> None:
    bin_dir = jetson["root"] / "bin"
    bin_dir.mkdir()
    tegrastats = fake_tegrastats(bin_dir, [ORIN_NANO_IDLE], "exit 1")
    proc = service("--interval", "0.2", "--tegrastats", str(tegrastats))
    wait_for(lambda: (bin_dir / "starts").exists() and len((bin_dir / "starts").read_text().split()) >= 3)
    assert 'rvm_tegra_exporter_collector_error{source="tegrastats"} 1' in metrics(jetson)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


def test_sigterm_stops_the_service_and_its_tegrastats(jetson: dict[str, Path], service) -> None:
    bin_dir = jetson["root"] / "bin"
    bin_dir.mkdir()
    tegrastats = fake_tegrastats(bin_dir, [ORIN_NANO_IDLE], "exec sleep 60")
    proc = service("--interval", "0.2", "--tegrastats", str(tegrastats))
    wait_for(lambda: "rvm_tegra_rail_power_watts" in metrics(jetson))
    child = int((bin_dir / "starts").read_text().split()[0])
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


def test_without_tegrastats_it_refreshes_sysfs_figures_every_interval(
    jetson: dict[str, Path], service
) -> None:
    proc = service("--interval", "0.2", "--tegrastats", "/nonexistent/tegrastats")
    wait_for(lambda: "rvm_tegra_thermal_zone_temp_celsius" in metrics(jetson))
    assert "rvm_tegra_ram_used_bytes" not in metrics(jetson)
    (jetson["thermal"] / "thermal_zone0" / "temp").write_text("71000\n")
    wait_for(lambda: 'type="cpu-thermal"} 71.0' in metrics(jetson))
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


@pytest.mark.parametrize(
    ("args", "message"), [(["--interval", "0"], "--interval must be a positive"), ([], "does not exist")]
)
def test_bad_arguments_exit_2_with_a_reason(tmp_path: Path, args: list[str], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rvm_tegra_exporter", "--textfile-dir", str(tmp_path / "absent"), *args],
        env=environment(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert message in done.stderr
