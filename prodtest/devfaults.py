"""Device faults: kill -9 of rvm-edge once, then a burst of kills past systemd's start limit, then a
bad config pushed (prodtest.badconfig), then a release with a corrupt model (prodtest.badmodel),
then the wall clock an hour ahead and back (prodtest.clockjump), then the data partition low and
full (prodtest.diskfull), then the device's power cut and a network partition from the control node,
each in the middle of a deploy's health gate (prodtest.middeploy); each ends with the device ready again without a person, and the recovery time measured.

The unit's own restart (RestartSec=) handles one kill; the burst leaves the unit failed by the
start limit, and rvm-edge-recover.service (OnFailure=) must bring it back after its cool-down.
"Nothing lost" is checked by deposit_id after the recovery (prodtest.faults.device_consistency).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from prodtest.badconfig import run_bad_config
from prodtest.badmodel import run_bad_model
from prodtest.clockjump import run_clock_jump
from prodtest.diskfull import run_disk_full
from prodtest.faults import consistency_figures, device_consistency
from prodtest.figures import Figure, Results
from prodtest.lab import Lab, LabError, main_pid, podman_exec, wait_until
from prodtest.middeploy import run_mid_deploy_partition, run_mid_deploy_restart
from prodtest.profile import Profile
from prodtest.progress import STOP, say

STAGE = "Device faults"
TARGET_S = 30.0  # the seed's automatic recovery; our own budget is 10 s (in the note)
UNIT = "rvm-edge"
TEXTFILE = "/var/lib/prometheus/node-exporter/rvm_edge_recovery.prom"


def kill_main(device: str) -> None:
    podman_exec(device, f"systemctl kill -s KILL --kill-whom=main {UNIT}")


def start_limit_burst(device: str) -> int:
    return int(podman_exec(device, f"systemctl show -p StartLimitBurst --value {UNIT}").strip())


def recoveries(device: str) -> int:
    """rvm-edge-recover's count of restarts after the start limit (node-exporter's textfile)."""
    out = podman_exec(device, f"cat {TEXTFILE} 2>/dev/null || true")
    return sum(
        int(float(line.split()[-1]))
        for line in out.splitlines()
        if line.startswith("rvm_edge_recoveries_total")
    )


def _recovered(lab: Lab, device: str, prof: Profile, t0: float | None = None) -> float:
    """Seconds from ``t0`` (monotonic; default now) until /readyz answers 200 again (bounded)."""
    t0 = time.monotonic() if t0 is None else t0
    wait_until(
        f"{device} ready again",
        lambda: lab.readyz(device, timeout=2) or None,
        prof.drain_timeout_s,
        0.5,
        STOP,
    )
    return time.monotonic() - t0


def run_kills(lab: Lab, device: str, prof: Profile, results: Results) -> dict[str, object]:
    """One kill -9, then StartLimitBurst + 1 in a row (the unit failed by its start limit)."""
    raw: dict[str, object] = {}
    say(f"device faults: kill -9 of rvm-edge on {device}")
    pid = main_pid(device)
    kill_main(device)
    wait_until(
        "the kill to take the device down",
        lambda: not lab.readyz(device, timeout=2) or None,
        30,
        0.2,
        STOP,
    )
    single = _recovered(lab, device, prof)
    raw["single_kill"] = {"pid": pid, "recovered_s": single}
    say(f"device faults: ready again {single:.1f} s after the kill")
    burst = start_limit_burst(device) + 1
    say(f"device faults: {burst} kills in a row on {device} (StartLimitBurst + 1)")
    pids: list[int] = []
    before = recoveries(device)
    t_last = time.monotonic()
    for i in range(burst):
        last = pids[-1] if pids else pid
        new = wait_until(
            f"kill {i + 1}: a new main process",
            lambda last=last: ((p := main_pid(device)) not in (0, last) and p) or None,
            120,
            0.2,
            STOP,
        )
        pids.append(new)
        t_last = time.monotonic()
        kill_main(device)
    state = podman_exec(device, f"systemctl is-failed {UNIT} || true").strip()
    t_burst = _recovered(lab, device, prof, t_last)
    recovered_by = recoveries(device) - before
    raw["burst"] = {
        "kills": burst,
        "pids": pids,
        "state_after_burst": state,
        "recovered_s": t_burst,
        "recoveries": recovered_by,
    }
    say(f"device faults: after the burst the unit was {state!r}; ready again after {t_burst:.1f} s")
    results.add(
        Figure(
            "dev.kill.recovered_s",
            "kill -9: ready again after",
            single,
            "s",
            TARGET_S,
            stage=STAGE,
            note="our budget 10 s",
        ),
        Figure(
            "dev.burst.recovered_s",
            f"{burst} kills past the start limit: ready again after the last",
            t_burst,
            "s",
            TARGET_S,
            stage=STAGE,
            note=f"unit {state} right after the burst",
        ),
        Figure(
            "dev.burst.recoveries",
            "restarts by rvm-edge-recover (the start limit was hit)",
            float(recovered_by),
            "count",
            1,
            ">=",
            stage=STAGE,
        ),
    )
    return raw


FAULTS = ("kill", "badconfig", "badmodel", "clock", "disk", "midrestart", "partition")


def wanted_faults() -> list[str]:
    """``PRODTEST_DEVFAULTS`` (a comma list, in the suite's order whatever the list's): default all."""
    asked = [f for f in os.environ.get("PRODTEST_DEVFAULTS", ",".join(FAULTS)).split(",") if f]
    unknown = sorted(set(asked) - set(FAULTS))
    if unknown:
        raise LabError(f"PRODTEST_DEVFAULTS: unknown {unknown}; expected some of {','.join(FAULTS)}")
    return [f for f in FAULTS if f in asked]


def run_device_faults(lab: Lab, prof: Profile, results: Results) -> None:
    device = os.environ.get("PRODTEST_FAULT_DEVICE", lab.devices[-1])
    if device not in lab.devices:
        raise LabError(f"PRODTEST_FAULT_DEVICE={device!r} is not a lab device ({', '.join(lab.devices)})")
    faults = wanted_faults()
    since = time.time()
    raw: dict[str, object] = {"device": device, "faults": faults}
    results.raw[STAGE] = raw
    runs: dict[str, Callable[[], dict[str, object]]] = {
        "kill": lambda: run_kills(lab, device, prof, results),
        "badconfig": lambda: run_bad_config(lab, device, results),
        "badmodel": lambda: run_bad_model(lab, device, results),
        "clock": lambda: run_clock_jump(lab, device, results),
        "disk": lambda: run_disk_full(lab, device, prof.fault_s, results),
        "midrestart": lambda: run_mid_deploy_restart(lab, device, results),
        "partition": lambda: run_mid_deploy_partition(lab, device, results),
    }
    try:
        for name in faults:
            raw[name] = runs[name]()
    finally:
        # never leave the device down: whatever happened, ask systemd for the service again
        podman_exec(
            device,
            f"systemctl is-active -q {UNIT} || (systemctl reset-failed {UNIT}; systemctl start --no-block {UNIT})",
        )
    per_device = device_consistency(lab, [device], since, prof)
    raw["consistency"] = per_device
    results.add(*consistency_figures(per_device, STAGE, "dev"))
