"""``python -m prodtest`` (``make prodtest``): run the stages in order, write the report.

Stages run one after another; a stage that fails is recorded as failed (with why) and the next
runs. Ctrl-C stops at once: faults are cleared (``finally``), the devices' readiness is checked,
and a report of what was measured is still written. The previous run's results.json is kept as
previous.json, and the report compares against it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import requests

from prodtest.dbstage import run_db_year
from prodtest.devfaults import run_device_faults
from prodtest.faults import clear_all, run_platform_faults
from prodtest.figures import Results
from prodtest.growth import add_across_runs
from prodtest.lab import ROOT, Lab, LabError, wait_until
from prodtest.load import run_api_load, run_device_load
from prodtest.profile import current
from prodtest.progress import STOP, say
from prodtest.report import write_report
from prodtest.scale import run_fleet_scale
from prodtest.week import run_week

OUT = Path(os.environ.get("PRODTEST_OUT", ROOT / "out" / "prodtest"))
STAGES = ("load", "api", "db", "faults", "devfaults", "week", "scale")
LOCAL_STAGES = {"db"}  # stages that need no lab
READY_WAIT_S = float(os.environ.get("PRODTEST_READY_WAIT_S", "120"))


# The lab lock every lab job takes (make lab jobs, CI rehearsals). The suite takes it itself rather than
# under `flock CMD`: Ctrl-C reaches the whole foreground group and flock would exit at once, giving the
# lock back while the suite still clears its faults. Empty: the caller holds it already.
LAB_LOCK = os.environ.get("RVM_LAB_LOCK", "/tmp/rvm-lab.lock")


def hold_lab_lock(path: str = LAB_LOCK) -> IO[str] | None:
    """The lab lock, held until the returned file is closed (at exit); None when ``path`` is empty."""
    if not path:
        return None
    handle = open(path, "a")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        say(f"prodtest: waiting for the lab lock {path} (another lab job holds it)")
        fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _interrupt(signum: int, frame: object) -> None:
    """Ctrl-C: tell worker threads (STOP) before the main thread unwinds through the finally blocks."""
    STOP.set()
    raise KeyboardInterrupt


def main() -> int:
    prof = current()
    signal.signal(signal.SIGINT, _interrupt)
    wanted = [s for s in os.environ.get("PRODTEST_STAGES", ",".join(STAGES)).split(",") if s]
    unknown = set(wanted) - set(STAGES)
    if unknown:
        raise SystemExit(f"PRODTEST_STAGES: unknown {sorted(unknown)}; expected some of {','.join(STAGES)}")
    OUT.mkdir(parents=True, exist_ok=True)
    previous = None
    if (OUT / "results.json").exists():
        shutil.copyfile(OUT / "results.json", OUT / "previous.json")
    if (OUT / "previous.json").exists():
        previous = json.loads((OUT / "previous.json").read_text())
    results = Results(profile=prof.name, started=_now())
    say(f"prodtest: profile {prof.name}, stages {','.join(wanted)}, report in {OUT}")
    lab: Lab | None = None
    rate = 0.0
    interrupted = False
    lock: IO[str] | None = None  # held until main returns: after the finally blocks' cleanup
    try:
        if set(wanted) - LOCAL_STAGES:
            lock = hold_lab_lock()
            lab = _ready_lab(results)
        steps: dict[str, Callable[[], object]] = {
            "load": lambda: run_device_load(lab, prof, results),
            "api": lambda: run_api_load(lab, prof, results),
            "db": lambda: run_db_year(prof, results),
            "faults": lambda: run_platform_faults(lab, prof, results, rate),
            "devfaults": lambda: run_device_faults(lab, prof, results),
            "week": lambda: run_week(lab, results),
            "scale": lambda: run_fleet_scale(lab, prof, results),
        }
        for name in wanted:
            t0 = time.monotonic()
            try:
                value = steps[name]()
                if name == "load" and isinstance(value, float):
                    rate = value
                results.stages[name] = f"done in {time.monotonic() - t0:.0f} s"
            except (LabError, requests.RequestException) as exc:
                results.stages[name] = f"failed: {exc}"
                say(f"prodtest: stage {name} failed: {exc}")
    except KeyboardInterrupt:
        interrupted = True
        STOP.set()
        say("prodtest: interrupted (Ctrl-C): clearing faults and checking the lab")
    except LabError as exc:
        say(f"prodtest: {exc}")
        results.stages["lab"] = f"failed: {exc}"
    finally:
        if lab is not None:
            _leave_healthy(lab, results)
    for name in wanted:
        results.stages.setdefault(name, "interrupted" if interrupted else "not run")
    results.finished = None if interrupted else _now()
    if "scale" in wanted:
        add_across_runs(results, OUT)
    report = write_report(results, OUT, previous)
    counts = {v: sum(1 for f in results.figures if f.verdict == v) for v in ("pass", "miss", "not measured")}
    say(
        f"prodtest: report {report}: {counts['pass']} pass, {counts['miss']} miss, {counts['not measured']} not measured"
    )
    if lock is not None:
        lock.close()  # the lab is the next job's once the report is written
    return 130 if interrupted else 0


def _ready_lab(results: Results) -> Lab:
    """The lab, once every device answers /readyz 200; after READY_WAIT_S the ready ones only
    (the others are named in the report), or LabError when none is ready."""
    lab = Lab()
    try:
        wait_until(
            "every device ready (/readyz 200)",
            lambda: all(lab.healthy().values()) or None,
            READY_WAIT_S,
            3,
            STOP,
        )
    except LabError:
        health = lab.healthy()
        ready = [d for d, ok in health.items() if ok]
        if not ready:
            raise LabError(
                f"no device is ready (/readyz): {health}; converge the lab first (make lab)"
            ) from None
        left_out = sorted(set(lab.devices) - set(ready))
        results.stages["lab"] = f"devices not ready, left out: {', '.join(left_out)}"
        say(
            f"prodtest: {', '.join(left_out)} not ready after {READY_WAIT_S:.0f} s: measuring {', '.join(ready)} only"
        )
        lab.devices = ready
    say(f"prodtest: lab ready: {', '.join(lab.devices)}")
    return lab


def _leave_healthy(lab: Lab, results: Results) -> None:
    """Clear every platform fault and wait (bounded) for every device to be ready again."""
    try:
        clear_all(lab)
        pause = threading.Event()
        stop_after = time.monotonic() + 120
        for _ in range(60):
            health = lab.healthy()
            if all(health.values()) or time.monotonic() > stop_after:
                break
            pause.wait(2)  # poll interval of a bounded readiness poll (STOP may already be set)
        results.stages["lab left healthy"] = "yes" if all(health.values()) else f"NO: {health}"
        say(f"prodtest: faults cleared; devices ready: {health}")
    except (LabError, OSError) as exc:
        results.stages["lab left healthy"] = f"could not check: {exc}"
        say(f"prodtest: could not clear faults / check the lab: {exc}")


if __name__ == "__main__":
    sys.exit(main())
