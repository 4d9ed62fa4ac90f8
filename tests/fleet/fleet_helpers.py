"""Helpers every fleet test shares: run a command or a playbook against the lab, read the lab inventory,
ask the platform simulator. A unique module name (not conftest) so test files can import it by name."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LABCTL = [sys.executable, str(ROOT / "lab" / "labctl.py")]
RECAP = re.compile(
    r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)",
    re.M,
)
# Figures (seconds, counts) that fleet tests measure; printed once as JSON when the session ends.
FIGURES: dict[str, float] = {}
# The deploy report (rvm_deploy_summary's JSON) of the session's first converge, which conftest.py writes.
FIRST_DEPLOY_REPORT = ROOT / ".cache" / "fleet-first-converge-deploy.json"

Recap = dict[str, dict[str, int]]


def sh(args: list[str], timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}
    return subprocess.run(
        args, cwd=ROOT, capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


def playbook(*extra: str, path: str = "site.yml") -> tuple[Recap, str, float]:
    """Run a playbook against the lab; fail the test with the output's tail when it fails."""
    start = time.monotonic()
    proc = sh(["ansible-playbook", path, *extra])
    elapsed = time.monotonic() - start
    recap = {
        m["host"]: {k: int(m[k]) for k in ("ok", "changed", "unreachable", "failed")}
        for m in RECAP.finditer(proc.stdout)
    }
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return recap, proc.stdout, elapsed


def lab_inventory() -> dict:
    return json.loads(sh(["ansible-inventory", "-i", "inventories/lab", "--list"]).stdout)


def lab_hosts() -> list[str]:
    data = lab_inventory()
    return sorted(h for h in data["_meta"]["hostvars"]) or sorted(
        {h for g in data.values() if isinstance(g, dict) for h in g.get("hosts", [])}
    )


def devices() -> list[str]:
    return sorted(lab_inventory()["rvm_devices"]["hosts"])


def sim_get(path: str) -> object:
    """GET the simulator's admin API from inside rvm-platform: the token never leaves the container."""
    script = (
        'curl -fsS -H "Authorization: Bearer $(cat /etc/rvm-platform-sim/admin-token)" '
        f"http://127.0.0.1:8000/_sim/{path}"
    )
    proc = sh(["podman", "exec", "rvm-platform", "sh", "-c", script])
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def readyz(device: str) -> dict:
    proc = sh(["podman", "exec", device, "curl", "-fsS", "http://127.0.0.1:8080/readyz"])
    assert proc.returncode == 0, (device, proc.stderr)
    return json.loads(proc.stdout)


def lab_attachment(host: str) -> tuple[str, str, str]:
    """The lab network a container is on, and its address and MAC there."""
    proc = sh(["podman", "inspect", host])
    assert proc.returncode == 0, (host, proc.stderr)
    lab_net, settings = next(iter(json.loads(proc.stdout)[0]["NetworkSettings"]["Networks"].items()))
    return lab_net, settings["IPAddress"], settings["MacAddress"]


def power_on(host: str, attachment: tuple[str, str, str]) -> None:
    """Stand-in for a board's power-on: start a stopped lab container again with the address and MAC it
    had (a device keeps its DHCP reservation and ZeroTier address; podman would hand out the next free
    address), then apply the persisted net.* sysctls, which systemd-sysctl does at boot on a device and
    the lab image masks.

    `podman container cleanup` first: a container whose PID 1 has just ended is "stopped" until
    conmon's cleanup has torn its network down, and until then its address is still leased (to
    itself), so a start that asks for that address fails "requested IP address ... is not
    available" (seen in CI). The cleanup waits for the container's lock and is a no-op once done."""
    lab_net, ip, mac = attachment
    for args in (
        ["podman", "container", "cleanup", host],
        ["podman", "network", "disconnect", lab_net, host],
        ["podman", "network", "connect", "--ip", ip, "--mac-address", mac, lab_net, host],
        ["podman", "start", host],
    ):
        proc = sh(args)
        assert proc.returncode == 0, (args, proc.stderr)
    sysctls = "grep -h '^net\\.' /etc/sysctl.d/*.conf | xargs -r sysctl -q -w"
    proc = sh(["podman", "exec", host, "sh", "-c", sysctls])
    assert proc.returncode == 0, (host, proc.stderr)


def opt_in(variable: str, what: str, why: str) -> pytest.MarkDecorator:
    """Skip a fleet check unless `variable=1`: it passes on the lab but costs CI more minutes than its
    budget has (docs/ci.md); the skip says what it is, why it is left out and how to run it."""
    return pytest.mark.skipif(
        os.environ.get(variable) != "1", reason=f"{what}: {why}; to run it set {variable}=1"
    )
