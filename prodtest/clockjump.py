"""Device fault: the wall clock jumps an hour forward, then back. A Jetson without an RTC battery
boots with a stale clock and NTP moves it later; an operator runs `date -s`. The device must stay
ready, keep recording and delivering, and lose or duplicate nothing.

LAB STAND-IN for the jump: a lab container shares the host's kernel clock (and may not set it), so
the jump is given to rvm-edge alone with libfaketime (Debian's package, fetched by the control node
and copied in: the lab reaches nothing outside itself). A runtime drop-in preloads it into the
service with the offset read from a file once a second; the monotonic clock is left alone, as a
real jump leaves it. The drop-in lives under /run and is removed afterwards (the service restarts
twice: once to take the library, once to drop it; neither is part of the measurement).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from prodtest.figures import Figure, Results
from prodtest.lab import ROOT, Lab, LabError, podman_exec, sh, wait_until
from prodtest.progress import STOP, say
from prodtest.push import POLL_S, longest_not_ready

STAGE = "Device faults"
JUMP_S = 3600
HOLD_S = 45  # each clock held this long while /readyz is polled and deposits are counted
CACHE = ROOT / ".cache" / "prodtest"
OFFSET_FILE = "/run/rvm-prodtest-faketime"
DROPIN = "/run/systemd/system/rvm-edge.service.d/50-prodtest-faketime.conf"
LIBRARY = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
DROPIN_TEXT = f"""[Service]
Environment=LD_PRELOAD={LIBRARY}
Environment=FAKETIME_TIMESTAMP_FILE={OFFSET_FILE}
Environment=FAKETIME_CACHE_DURATION=1
Environment=FAKETIME_DONT_FAKE_MONOTONIC=1
"""


def faketime_deb() -> Path:
    """Debian's libfaketime .deb, downloaded once on the control node into .cache/prodtest."""
    CACHE.mkdir(parents=True, exist_ok=True)
    found = sorted(CACHE.glob("libfaketime_*.deb"))
    if not found:
        proc = subprocess.run(
            ["apt-get", "download", "libfaketime"], cwd=CACHE, capture_output=True, text=True, check=False
        )
        found = sorted(CACHE.glob("libfaketime_*.deb"))
        if not found:
            raise LabError(f"apt-get download libfaketime failed: {(proc.stdout + proc.stderr)[-800:]}")
    return found[-1]


def newest_deposit_offset(device: str) -> float | None:
    """How far ahead of the control node's clock the device's newest deposit was stamped (s)."""
    out = podman_exec(
        device,
        "python3 -c \"import sqlite3;c=sqlite3.connect('file:/var/lib/rvm-edge/rvm-edge.sqlite3?mode=ro',"
        "uri=True,timeout=30);print(c.execute('SELECT max(created_at) FROM deposits').fetchone()[0])\"",
    ).strip()
    return None if out in ("", "None") else float(out) - time.time()


def _hold(lab: Lab, device: str, seconds: float) -> dict[str, object]:
    """Poll /readyz every POLL_S for ``seconds``; the deposits recorded and the heartbeat's age meanwhile."""
    samples: list[tuple[float, bool]] = []
    ages: list[float] = []
    before = lab.scrape(device).value("rvm_edge_deposits_recorded_total")
    end = time.monotonic() + seconds
    while time.monotonic() < end and not STOP.is_set():
        samples.append((time.monotonic(), lab.readyz(device, timeout=2)))
        if len(samples) % 8 == 0:
            ages.append(lab.scrape(device).value("rvm_edge_heartbeat_age_seconds"))
        STOP.wait(POLL_S)  # the poll's pace; Ctrl-C ends the hold at once
    recorded = lab.scrape(device).value("rvm_edge_deposits_recorded_total") - before
    return {
        "polls": len(samples),
        "longest_not_ready_s": longest_not_ready(samples),
        "deposits_recorded": recorded,
        "max_heartbeat_age_s": max(ages) if ages else None,
        "device_clock_offset_s": newest_deposit_offset(device),
    }


def _jump(device: str, offset_s: int) -> None:
    podman_exec(device, f"echo '{offset_s:+d}' > {OFFSET_FILE}")


def _service(lab: Lab, device: str, script: str, what: str) -> None:
    podman_exec(device, script)
    wait_until(f"{device} ready {what}", lambda: lab.readyz(device, timeout=2) or None, 120, 0.5, STOP)


def run_clock_jump(lab: Lab, device: str, results: Results) -> dict[str, object]:
    deb = faketime_deb()
    say(f"device faults: clock jumps on {device} (libfaketime stand-in: +{JUMP_S} s, then back)")
    if sh(["podman", "cp", str(deb), f"{device}:/tmp/{deb.name}"]).returncode != 0:
        raise LabError(f"could not copy {deb.name} into {device}")
    raw: dict[str, object] = {}
    try:
        podman_exec(device, f"dpkg -i /tmp/{deb.name} >/dev/null && echo '+0' > {OFFSET_FILE}")
        podman_exec(device, f"mkdir -p {Path(DROPIN).parent} && cat > {DROPIN} <<'EOF'\n{DROPIN_TEXT}EOF")
        _service(lab, device, "systemctl daemon-reload && systemctl restart rvm-edge", "with libfaketime")
        raw["steady"] = _hold(lab, device, 15)
        _jump(device, JUMP_S)
        raw["forward"] = _hold(lab, device, HOLD_S)
        _jump(device, 0)
        raw["back"] = _hold(lab, device, HOLD_S)
    finally:
        _service(
            lab,
            device,
            f"rm -f {DROPIN} {OFFSET_FILE}; systemctl daemon-reload; systemctl restart rvm-edge;"
            f" dpkg --purge libfaketime >/dev/null; rm -f /tmp/{deb.name}",
            "without libfaketime",
        )
    fwd, back = raw["forward"], raw["back"]
    assert isinstance(fwd, dict) and isinstance(back, dict)
    offset = fwd["device_clock_offset_s"]
    took = offset is not None and abs(float(offset) - JUMP_S) < 120
    down = max(float(fwd["longest_not_ready_s"]), float(back["longest_not_ready_s"]))
    ages = [a for a in (fwd["max_heartbeat_age_s"], back["max_heartbeat_age_s"]) if a is not None]
    say(
        f"device faults: clock +{JUMP_S} s {'seen' if took else 'NOT seen'} in the deposits (offset {offset}); "
        f"longest not ready {down:.2f} s; deposits {fwd['deposits_recorded']:.0f} ahead, {back['deposits_recorded']:.0f} back"
    )
    results.add(
        Figure(
            "dev.clock.jump_seen", "clock jump: the device's deposits stamped an hour ahead (the jump took)", float(took),
            "yes=1", 1, ">=", stage=STAGE, note=f"newest deposit {offset:.0f} s ahead" if offset is not None else "",
        ),
        Figure(
            "dev.clock.not_ready_s", "clock jump: longest stretch not ready, an hour ahead and back", down, "s", 30.0,
            stage=STAGE, note="our budget 0 s",
        ),
        Figure(
            "dev.clock.deposits", "clock jump: deposits recorded while an hour ahead and after going back",
            float(min(fwd["deposits_recorded"], back["deposits_recorded"])), "count", 1, ">=", stage=STAGE,
        ),
        Figure(
            "dev.clock.heartbeat_age_s", "clock jump: largest heartbeat age reported (an hour if it read the wall clock)",
            max(ages) if ages else -1.0, "s", 300.0, stage=STAGE, note="RvmHeartbeatStale fires above 300 s",
        ),
    )  # fmt: skip
    return raw
