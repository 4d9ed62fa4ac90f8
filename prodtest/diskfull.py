"""Device fault: the data partition full.

LAB: each lab device's ``/var/lib/rvm-edge`` is a partition of its own (``lab/datavol.py``: a 2 GiB
ext4 filesystem, loop-mounted on the control node). The fault fills it from the control node with a
ballast file beside the device's data, outside the directory the device sees (``fallocate``: the
blocks are reserved, no bytes written), as a log or a core dump of another program would. Two phases,
against the device's disk guard (``app/src/rvm_edge/service/diskguard.py``):

1. **Low**: the ballast leaves the partition below the guard's low mark (200 MB) but above
   readiness's floor (100 MB), short by less than the images of deposits the platform already has.
   The device must make room itself (clear those images, records kept) and stay ready throughout.
2. **Full**: first the device's own sent images are used up (the ballast leaves it below its low
   mark again and again until fewer than ``KEEP_SENT_MB`` remain: a device that can still free its
   way above the floor rightly keeps recording, which a run on 2026-12-07 after the full profile's
   hour of deposits showed: 20 of 40 items recorded "while full"); then the ballast leaves 50 MB,
   more than what remains for the device to free. The device must close
   its intake (``/readyz`` 503 naming the free space, items refused and counted, nothing recorded),
   keep its process (no crash loop: before the guard the next commit failed the pipeline and the
   service restarted into the same full disk), keep sending its outbox; then, the ballast removed
   (the cause going away), be ready again by itself, without a restart, and record again.

Nothing is lost: the devfaults stage checks every deposit by ``deposit_id`` at its end.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

from prodtest.figures import Figure, Results
from prodtest.lab import ROOT, Lab, LabError, main_pid, sh, wait_until
from prodtest.progress import STOP, say
from prodtest.push import POLL_S, longest_not_ready

STAGE = "Device faults"
DATA_ROOT = ROOT / ".cache" / "lab-data"  # lab/datavol.py's
BALLAST = "prodtest-ballast"
FLOOR_MB = 100.0  # app: health.MIN_FREE_MB, readiness's floor and where the intake closes
LOW_MB = 200.0  # app: DiskGuard.low_mb, where the device starts freeing space
FULL_FREE_MB = 50.0
MARGIN_MB = 10.0  # writes beside the images (journal, WAL, metadata) while the partition is full
# Phase 2 is a real "full" only while what the device may still clear cannot lift it to the floor:
MAX_SENT_LEFT_MB = FLOOR_MB - FULL_FREE_MB - MARGIN_MB
MIN_NEED_MB = 2.0  # a device holding fewer sent images than this cannot show phase 1
KEEP_SENT_MB = MAX_SENT_LEFT_MB / 2  # phase 2's preparation aims here, well inside the limit
DRAIN_LEAVE_MB = 120.0  # what each round of phase 2's preparation leaves free (between floor and low)
DRAIN_ROUNDS = 12
TARGET_S = 30.0
MB = 1e6


def mountpoint(device: str) -> Path:
    return DATA_ROOT / device


def free_mb(mp: Path) -> float:
    st = os.statvfs(mp)
    return st.f_bavail * st.f_frsize / MB


def ballast_size(free_now_mb: float, leave_mb: float) -> int:
    """Bytes to reserve so that ``leave_mb`` stays free (whole 4 KiB blocks; never negative)."""
    return max(0, int((free_now_mb - leave_mb) * MB) // 4096 * 4096)


def phase_low_leave_mb(sent_image_mb: float) -> float | None:
    """What phase 1 leaves free: short of the low mark by most of what the device can clear (never at
    or below the floor); None when the device holds too few sent images to show anything."""
    need = min(0.8 * sent_image_mb, LOW_MB - FLOOR_MB - 20.0)
    if need < MIN_NEED_MB:
        return None
    return LOW_MB - need


def fill(mp: Path, leave_mb: float) -> int:
    """Reserve the partition down to ``leave_mb`` free; the ballast's size in bytes."""
    path = mp / BALLAST
    path.unlink(missing_ok=True)
    size = ballast_size(free_mb(mp), leave_mb)
    proc = sh(["fallocate", "-l", str(size), str(path)])
    if proc.returncode != 0:
        raise LabError(f"fallocate {path}: {proc.stderr.strip()}")
    return size


def clear(mp: Path) -> None:
    (mp / BALLAST).unlink(missing_ok=True)


def _sample(lab: Lab, device: str) -> dict[str, float]:
    m = lab.scrape(device, timeout=5)
    return {
        "recorded": m.value("rvm_edge_deposits_recorded_total"),
        "refused": m.value("rvm_edge_items_not_recorded_disk_full_total"),
        "pending": m.value("rvm_edge_outbox_depth"),
        "image_bytes": m.value("rvm_edge_outbox_image_bytes"),
    }


def _sent_image_mb(device: str) -> float:
    """Megabytes of images the device holds for deposits the platform already has."""
    script = (
        "import sqlite3;"
        "c=sqlite3.connect('file:/var/lib/rvm-edge/rvm-edge.sqlite3?mode=ro',uri=True,timeout=30);"
        "print(c.execute(\"SELECT COALESCE(SUM(image_bytes),0) FROM deposits WHERE state='sent'\").fetchone()[0])"
    )
    proc = sh(["podman", "exec", device, "python3", "-c", script], timeout=120)
    if proc.returncode != 0:
        raise LabError(f"{device}: reading its store failed: {proc.stderr.strip()[-300:]}")
    return int(proc.stdout.strip() or 0) / MB


def _poll(
    lab: Lab, device: str, seconds: float, until: Callable[[], bool] | None = None
) -> list[tuple[float, bool]]:
    """/readyz every POLL_S for ``seconds`` (or until ``until()`` is true); Ctrl-C ends it at once."""
    samples: list[tuple[float, bool]] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end and not STOP.is_set():
        samples.append((time.monotonic(), lab.readyz(device, timeout=2)))
        if until is not None and until():
            break
        STOP.wait(POLL_S)
    return samples


def run_phase_low(lab: Lab, device: str, mp: Path, results: Results) -> dict[str, object]:
    sent_mb = _sent_image_mb(device)
    leave = phase_low_leave_mb(sent_mb)
    if leave is None:
        say(f"device faults: disk low not measured: {device} holds only {sent_mb:.1f} MB of sent images")
        results.add(
            Figure(
                "dev.disklow.freed_s", "disk low: the device made room itself within", None, "s", TARGET_S,
                stage=STAGE, note=f"only {sent_mb:.1f} MB of sent images to clear",
            ),
        )  # fmt: skip
        return {"sent_image_mb": sent_mb, "measured": False}
    before = _sample(lab, device)
    pid = main_pid(device)
    size = fill(mp, leave)
    t0 = time.monotonic()
    say(f"device faults: data partition of {device} left {free_mb(mp):.0f} MB free (low mark {LOW_MB:.0f})")
    try:
        samples = _poll(lab, device, 60, lambda: free_mb(mp) >= LOW_MB - 2)
        freed_s = time.monotonic() - t0 if free_mb(mp) >= LOW_MB - 2 else None
        after = _sample(lab, device)
        free_after = free_mb(mp)
    finally:
        clear(mp)
    down = longest_not_ready(samples)
    cleared_mb = (before["image_bytes"] - after["image_bytes"]) / MB
    same = main_pid(device) == pid
    say(
        f"device faults: disk low: {free_after:.0f} MB free again after "
        f"{'-' if freed_s is None else f'{freed_s:.1f} s'}, {cleared_mb:.1f} MB of sent images cleared, "
        f"longest not ready {down:.2f} s"
    )
    results.add(
        Figure(
            "dev.disklow.freed_s", "disk low: the device made room itself within", freed_s, "s", TARGET_S,
            stage=STAGE, note=f"{cleared_mb:.1f} MB of sent images cleared (records kept); our budget 10 s",
        ),
        Figure(
            "dev.disklow.not_ready_s", "disk low: longest stretch not ready", down, "s", TARGET_S, stage=STAGE,
            note=f"our budget 0 s; {len(samples)} polls",
        ),
        Figure(
            "dev.disklow.same_process", "disk low: the same service process throughout", float(same),
            "yes=1", 1, ">=", stage=STAGE,
        ),
    )  # fmt: skip
    return {
        "measured": True,
        "sent_image_mb": sent_mb,
        "ballast_bytes": size,
        "left_free_mb": leave,
        "freed_s": freed_s,
        "free_after_mb": free_after,
        "cleared_mb": cleared_mb,
        "longest_not_ready_s": down,
        "polls": len(samples),
        "same_process": same,
    }


def use_up_sent_images(lab: Lab, device: str, mp: Path) -> float:
    """Leave the device below its low mark until it has (nearly) no sent images left to clear: the
    megabytes of them that remain. Each round the guard clears what brings it back to the low mark."""
    left = _sent_image_mb(device)
    for _ in range(DRAIN_ROUNDS):
        if left < KEEP_SENT_MB or STOP.is_set():
            break
        say(f"device faults: {device} still holds {left:.0f} MB of sent images; leaving it low to clear them")
        fill(mp, DRAIN_LEAVE_MB)
        with contextlib.suppress(LabError):
            wait_until(
                f"{device} back at its low mark, or out of sent images",
                lambda: free_mb(mp) >= LOW_MB - 2 or _sent_image_mb(device) < KEEP_SENT_MB or None,
                60,
                1.0,
                STOP,
            )
        now = _sent_image_mb(device)
        if now >= left - 1:  # nothing more it may clear (kept by retention): stop trying
            left = now
            break
        left = now
    clear(mp)
    return left


def run_phase_full(lab: Lab, device: str, mp: Path, hold_s: float, results: Results) -> dict[str, object]:
    sent_left = use_up_sent_images(lab, device, mp)
    if sent_left >= MAX_SENT_LEFT_MB:
        say(
            f"device faults: disk full not measured: {device} keeps {sent_left:.0f} MB of sent images it may clear"
        )
        results.add(
            Figure(
                "dev.diskfull.recorded_while_full", "disk full: deposits recorded while full", None, "count", 0,
                "==", stage=STAGE, note=f"{sent_left:.0f} MB of sent images left that would lift it above the floor",
            ),
        )  # fmt: skip
        return {"measured": False, "sent_image_mb_left": sent_left}
    before = _sample(lab, device)
    pid = main_pid(device)
    size = fill(mp, FULL_FREE_MB)
    t_fill = time.monotonic()
    say(f"device faults: data partition of {device} left {free_mb(mp):.0f} MB free for {hold_s:.0f} s")
    try:
        seen_s = None
        with contextlib.suppress(LabError):
            wait_until(
                f"{device} not ready", lambda: not lab.readyz(device, timeout=2) or None, 30, 0.1, STOP
            )
            seen_s = time.monotonic() - t_fill
        mid = _sample(lab, device)
        held = _poll(lab, device, hold_s)
        during = _sample(lab, device)
        pid_during = main_pid(device)
    finally:
        clear(mp)
    t_clear = time.monotonic()
    ready_s = None
    with contextlib.suppress(LabError):
        wait_until(
            f"{device} ready after the ballast went",
            lambda: lab.readyz(device, timeout=2) or None,
            120,
            0.25,
            STOP,
        )
        ready_s = time.monotonic() - t_clear
    wait_until(
        f"{device} recording again",
        lambda: _sample(lab, device)["recorded"] > during["recorded"] or None,
        60,
        0.5,
        STOP,
    )
    after = _sample(lab, device)
    refused = during["refused"] - before["refused"]
    recorded_while_full = during["recorded"] - mid["recorded"]
    sent_while_full = max(0.0, mid["pending"] - during["pending"])
    same = pid_during == pid == main_pid(device)
    not_ready_all = all(not ok for _, ok in held)
    say(
        f"device faults: disk full: not ready after {'-' if seen_s is None else f'{seen_s:.2f} s'}, "
        f"{refused:.0f} items refused, {recorded_while_full:.0f} recorded while full, "
        f"ready {'-' if ready_s is None else f'{ready_s:.1f} s'} after the space came back, same process {same}"
    )
    results.add(
        Figure(
            "dev.diskfull.closed_s", "disk full: intake closed (not ready) within", seen_s, "s", 10.0,
            stage=STAGE, note=f"{FULL_FREE_MB:.0f} MB left free, floor {FLOOR_MB:.0f} MB",
        ),
        Figure(
            "dev.diskfull.recorded_while_full", "disk full: deposits recorded while full", recorded_while_full,
            "count", 0, "==", stage=STAGE, note=f"{refused:.0f} items refused and counted; not ready on every poll: {not_ready_all}",
        ),
        Figure(
            "dev.diskfull.same_process", "disk full: the same service process throughout (no crash loop)",
            float(same), "yes=1", 1, ">=", stage=STAGE,
        ),
        Figure(
            "dev.diskfull.recovered_s", "disk full: ready again after the space came back", ready_s, "s",
            TARGET_S, stage=STAGE, note="without a restart; our budget 10 s",
        ),
        Figure(
            "dev.diskfull.outbox_sent_while_full", "disk full: outbox deposits sent while full", sent_while_full,
            "count", None, stage=STAGE, note=f"pending {mid['pending']:.0f} -> {during['pending']:.0f}",
        ),
    )  # fmt: skip
    return {
        "sent_image_mb_left": sent_left,
        "ballast_bytes": size,
        "left_free_mb": FULL_FREE_MB,
        "closed_s": seen_s,
        "held_s": hold_s,
        "polls_while_full": len(held),
        "not_ready_on_every_poll": not_ready_all,
        "refused": refused,
        "recorded_while_full": recorded_while_full,
        "pending": [before["pending"], mid["pending"], during["pending"], after["pending"]],
        "recovered_s": ready_s,
        "same_process": same,
    }


def run_disk_full(lab: Lab, device: str, hold_s: float, results: Results) -> dict[str, object]:
    mp = mountpoint(device)
    if not os.path.ismount(mp):
        say(f"device faults: disk full not measured: {device} has no data partition of its own ({mp})")
        results.add(
            Figure(
                "dev.diskfull.recovered_s", "disk full: ready again after the space came back", None, "s",
                TARGET_S, stage=STAGE, note="no data partition: a lab made before shape 3 (`make lab-down lab`)",
            ),
        )  # fmt: skip
        return {"measured": False, "why": f"{mp} is not a mount point"}
    try:
        return {
            "low": run_phase_low(lab, device, mp, results),
            "full": run_phase_full(lab, device, mp, hold_s, results),
        }
    finally:
        clear(mp)  # whatever happened, the partition is the device's again
