"""The lab fleet as the suite sees it: addresses, the simulator's admin API, device metrics.

Traffic goes only to the lab's own containers (their addresses on the lab network, read from
podman) and loopback. The simulator's admin token is read from inside rvm-platform into this
process's memory and sent as a header: never on a command line, never printed.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import requests

ROOT = Path(__file__).resolve().parent.parent
PLATFORM = "rvm-platform"
MONITOR = "rvm-monitor"
SIM_PORT = 8000
EDGE_PORT = 8080
PROM_PORT = 9090
SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
T = TypeVar("T")


class LabError(Exception):
    """The lab is not in a state the suite can measure (down, not converged): the message says which."""


def sh(
    args: list[str], timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False, env=env
    )


def podman_exec(host: str, script: str, timeout: float = 60) -> str:
    proc = sh(["podman", "exec", host, "sh", "-c", script], timeout=timeout)
    if proc.returncode != 0:
        raise LabError(f"{host}: `{script[:60]}` failed ({proc.returncode}): {proc.stderr.strip()[-300:]}")
    return proc.stdout


def main_pid(device: str) -> int:
    """rvm-edge's main process on DEVICE as systemd knows it; 0 while there is none."""
    return int(podman_exec(device, "systemctl show -p MainPID --value rvm-edge").strip() or 0)


def backup_running(device: str) -> bool:
    """rvm-backup.service is a oneshot: "activating" while a backup run is in progress on DEVICE."""
    state = sh(["podman", "exec", device, "systemctl", "is-active", "rvm-backup.service"]).stdout.strip()
    return state in {"activating", "active", "deactivating", "reloading"}


def address(host: str) -> str:
    proc = sh(["podman", "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", host])
    addr = proc.stdout.split()
    if proc.returncode != 0 or not addr:
        raise LabError(f"lab host {host} is not running (make lab): {proc.stderr.strip()}")
    return addr[0]


def devices() -> list[str]:
    """The RVM devices of inventories/lab (the single source of truth for the lab's hosts)."""
    proc = sh([str(ROOT / ".venv" / "bin" / "ansible-inventory"), "-i", "inventories/lab", "--list"])
    if proc.returncode != 0:
        raise LabError(f"ansible-inventory failed: {proc.stderr.strip()[-300:]}")
    return sorted(json.loads(proc.stdout)["rvm_devices"]["hosts"])


def wait_until(
    what: str,
    probe: Callable[[], T | None],
    timeout: float,
    interval: float = 1.0,
    stop: threading.Event | None = None,
) -> T:
    """Poll ``probe`` until it returns something other than None/False, or fail after ``timeout`` s.

    Bounded in time and count; ``stop`` (Ctrl-C) ends the wait early with KeyboardInterrupt.
    """
    deadline = time.monotonic() + timeout
    halt = stop or threading.Event()
    for _ in range(int(timeout / interval) + 2):
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() >= deadline:
            break
        if halt.wait(interval):
            raise KeyboardInterrupt
    raise LabError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class Metrics:
    """One scrape of a Prometheus text page: {(name, frozenset(labels)): value}."""

    at: float
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]

    @classmethod
    def parse(cls, text: str, at: float) -> Metrics:
        samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for line in text.splitlines():
            m = SAMPLE.match(line)
            if not m or line.startswith("#"):
                continue
            labels = frozenset(LABEL.findall(m["labels"] or ""))
            try:
                samples[(m["name"], labels)] = float(m["value"])
            except ValueError:
                continue
        return cls(at, samples)

    def value(self, metric: str, /, **labels: str) -> float:
        want = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == metric and want <= ls)

    def buckets(self, metric: str, /, **labels: str) -> dict[float, float]:
        want = set(labels.items())
        out: dict[float, float] = {}
        for (n, ls), v in self.samples.items():
            if n == f"{metric}_bucket" and want <= ls:
                le = dict(ls)["le"]
                out[math.inf if le == "+Inf" else float(le)] = v
        return out

    def label_values(self, name: str, label: str) -> list[str]:
        return sorted({dict(ls)[label] for (n, ls) in self.samples if n == name and label in dict(ls)})


class Lab:
    """Addresses and clients of one lab run; one requests session per remote."""

    def __init__(self) -> None:
        self.devices = devices()
        self.addr = {h: address(h) for h in [*self.devices, PLATFORM, MONITOR]}
        self.http = requests.Session()
        self._token = podman_exec(PLATFORM, "cat /etc/rvm-platform-sim/admin-token").strip()
        if len(self._token) < 16:
            raise LabError(
                "rvm-platform: /etc/rvm-platform-sim/admin-token is missing or short (make converge)"
            )

    @property
    def sim_url(self) -> str:
        return f"http://{self.addr[PLATFORM]}:{SIM_PORT}"

    def sim(self, method: str, path: str, body: Any = None, timeout: float = 60) -> Any:
        """The simulator's admin API (``/_sim``...); raises LabError with the reply on an error status."""
        r = self.http.request(
            method,
            f"{self.sim_url}/_sim{path}",
            json=body,
            headers={"Authorization": f"Bearer {self._token}"},
            timeout=timeout,
        )
        if r.status_code >= 400:
            raise LabError(f"simulator {method} /_sim{path}: {r.status_code} {r.text[:300]}")
        return r.json() if r.content else None

    def scrape(self, device: str, timeout: float = 10) -> Metrics:
        at = time.time()
        r = self.http.get(f"http://{self.addr[device]}:{EDGE_PORT}/metrics", timeout=timeout)
        r.raise_for_status()
        return Metrics.parse(r.text, at)

    def readyz(self, device: str, timeout: float = 5) -> bool:
        try:
            return (
                self.http.get(f"http://{self.addr[device]}:{EDGE_PORT}/readyz", timeout=timeout).status_code
                == 200
            )
        except requests.RequestException:
            return False

    def prom(self, query: str, timeout: float = 10) -> list[dict[str, Any]] | None:
        """An instant query on the monitoring server's Prometheus; None when it cannot answer."""
        try:
            r = self.http.get(
                f"http://{self.addr[MONITOR]}:{PROM_PORT}/api/v1/query",
                params={"query": query},
                timeout=timeout,
            )
            body = r.json()
        except (requests.RequestException, ValueError):
            return None
        if body.get("status") != "success":
            return None
        return list(body["data"]["result"])

    def nproc(self, device: str) -> int:
        return int(podman_exec(device, "nproc").strip())

    def machine_ids(self) -> dict[str, int]:
        """Device name -> simulator machine id (the handshake sets hardware_id to the device id)."""
        return {m["hardware_id"]: int(m["id"]) for m in self.sim("GET", "/machines") if m.get("hardware_id")}

    def device_deposits(self, device: str, since: float) -> dict[str, tuple[str, int]]:
        """deposit_id -> (outbox state, send attempts) of what the device recorded since ``since``
        (epoch s), from its DB."""
        script = (
            "import json,sqlite3;"
            "c=sqlite3.connect('file:/var/lib/rvm-edge/rvm-edge.sqlite3?mode=ro',uri=True,timeout=30);"
            "print(json.dumps([list(r) for r in c.execute("
            f"'SELECT deposit_id,state,attempts FROM deposits WHERE created_at>=?',({since},))]))"
        )
        rows = json.loads(podman_exec(device, f'python3 -c "{script}"', timeout=120))
        return {d: (state, int(attempts)) for d, state, attempts in rows}

    def healthy(self) -> dict[str, bool]:
        return {d: self.readyz(d) for d in self.devices}
