"""The systemd unit the lab role installs: its command line works, its sandbox is all there."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rvm_platform_sim.cli import _parser

HERE = Path(__file__).resolve().parent.parent
UNIT = HERE / "rvm-platform-sim.service"
DROP_IN = HERE / "container-sandbox.conf"

# Directives that need a mount/UTS namespace (CAP_SYS_ADMIN): the only ones the drop-in may relax.
NAMESPACE_DIRECTIVES = {
    "ProtectSystem",
    "ProtectHome",
    "PrivateTmp",
    "PrivateDevices",
    "ProtectHostname",
    "ProtectClock",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "ProtectProc",
    "ProcSubset",
}


def _directives(path: Path, section: str) -> list[tuple[str, str]]:
    """``Key=Value`` pairs of one section, repeated keys kept (systemd allows them)."""
    pairs: list[tuple[str, str]] = []
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section:
            key, _, value = line.partition("=")
            pairs.append((key, value))
    return pairs


def _service() -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for key, value in _directives(UNIT, "Service"):
        result.setdefault(key, []).append(value)
    return result


def test_exec_start_is_accepted_by_the_command_line() -> None:
    argv = shlex.split(_service()["ExecStart"][0])
    assert argv[0] == "/opt/rvm-platform-sim/venv/bin/rvm-platform-sim"
    args = _parser().parse_args(argv[1:])
    assert (args.host, args.port, args.prefix) == ("0.0.0.0", 8000, "/api/v1")
    assert args.db.startswith("/var/lib/rvm-platform-sim/")
    assert args.admin_token_file == "/etc/rvm-platform-sim/admin-token"


def test_notify_type_with_watchdog_and_clean_stop() -> None:
    service = _service()
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    assert int(service["WatchdogSec"][0]) > 0
    assert service["Restart"] == ["on-failure"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("User", "rvm-platform-sim"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("SystemCallFilter", "@system-service"),
        ("SystemCallFilter", "~@privileged @resources"),
        ("MemoryDenyWriteExecute", "yes"),
        ("StateDirectory", "rvm-platform-sim"),
        ("UMask", "0077"),
    ],
)
def test_sandbox_directive(key: str, value: str) -> None:
    assert value in _service().get(key, []), f"{key}={value} missing from {UNIT.name}"


def test_container_drop_in_relaxes_only_namespace_directives() -> None:
    relaxed = dict(_directives(DROP_IN, "Service"))
    assert set(relaxed) <= NAMESPACE_DIRECTIVES
    assert set(relaxed) == NAMESPACE_DIRECTIVES & set(_service())


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    """Verified with ExecStart pointed at this interpreter, since /opt/... exists only on the lab host."""
    unit = tmp_path / UNIT.name
    unit.write_text(
        UNIT.read_text().replace("/opt/rvm-platform-sim/venv/bin/rvm-platform-sim", sys.executable)
    )
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert UNIT.name not in result.stderr, result.stderr
