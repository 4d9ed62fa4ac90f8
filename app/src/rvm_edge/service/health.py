"""Readiness: the checks behind ``/readyz``, the deploy's health gate and the watchdog.

Each check says whether it holds and why, in words an operator reads in ``/readyz``. A check
marked ``gating: False`` is shown but does not fail readiness (a platform outage must not fail a
device's health gate: the outbox keeps the deposits). The stall checks remember when their
counter last moved, so they need one object that lives as long as the service.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from rvm_edge import __version__

FRAMES_STALL_S = 30.0
OUTBOX_STALL_S = 600.0
MIN_FREE_MB = 100.0


class Running(Protocol):
    """The parts of the running service the checks read (any may still be None while starting)."""

    pipeline: Any
    store: Any
    sender: Any
    link: Any
    recorder: Any


def free_mb(path: Path) -> float:
    try:
        st = os.statvfs(path)
    except OSError:
        return 0.0
    return st.f_bavail * st.f_frsize / 1e6


class Readiness:
    """``check()`` -> (ready, body of /readyz)."""

    def __init__(
        self,
        parts: Running,
        model_name: Callable[[], str],
        data_dir: Path,
        max_disk_mb: Callable[[], float],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._parts, self._model_name, self._data_dir, self._max_disk_mb = (
            parts,
            model_name,
            data_dir,
            max_disk_mb,
        )
        self._clock = clock
        self._last_frames = 0
        self._last_frame_at = clock()
        self._last_sent = 0
        self._last_sent_change = clock()

    def frames_processed(self) -> int:
        p = self._parts.pipeline
        return p.stats.frames_processed if p is not None else 0

    def pipeline_alive(self) -> bool:
        """The stage threads are running (or finished a finite source): the watchdog's condition."""
        p = self._parts.pipeline
        if p is None:
            return True
        return p.done.is_set() or all(t.is_alive() for t in p._threads)

    def check(self) -> tuple[bool, dict[str, Any]]:
        parts, now = self._parts, self._clock()
        checks: dict[str, dict[str, Any]] = {}
        pipeline = parts.pipeline
        loaded = pipeline is not None and pipeline.ready.is_set()
        checks["models_loaded"] = {"ok": loaded, "detail": self._model_name() or "loading"}
        frames = self.frames_processed()
        if frames != self._last_frames:
            self._last_frames, self._last_frame_at = frames, now
        finished = pipeline is not None and pipeline.done.is_set() and pipeline.failure is None
        arriving = frames > 0 and (now - self._last_frame_at < FRAMES_STALL_S or finished)
        checks["frames_arriving"] = {
            "ok": arriving,
            "detail": "source finished" if finished else f"last frame {now - self._last_frame_at:.0f}s ago",
        }
        if parts.store is not None:
            st = parts.store.status()
            sent = parts.sender.state.sent if parts.sender else 0
            if sent != self._last_sent or st.pending == 0:
                self._last_sent, self._last_sent_change = sent, now
            moving = st.pending == 0 or now - self._last_sent_change < OUTBOX_STALL_S
            checks["outbox_moving"] = {"ok": moving, "detail": f"{st.pending} pending, {st.parked} parked"}
            free = free_mb(self._data_dir)
            quota = st.image_bytes <= self._max_disk_mb() * 1e6 * 1.1
            detail = f"{free:.0f} MB free"
            if free <= MIN_FREE_MB:
                detail += f" (at or below {MIN_FREE_MB:.0f} MB: intake closed until space is freed)"
            checks["disk_ok"] = {"ok": free > MIN_FREE_MB and quota, "detail": detail}
        if parts.link is not None:
            ls = parts.link.state
            checks["platform"] = {
                "ok": ls.heartbeat_status == "ok",
                "gating": False,  # a platform outage must not fail the device's health gate
                "detail": ls.heartbeat_status,
                "maintenance": ls.maintenance,
            }
        ready = all(c["ok"] for c in checks.values() if c.get("gating", True))
        body = {
            "ready": ready,
            "checks": checks,
            "frames_processed": frames,
            "in_flight": parts.recorder.in_flight if parts.recorder else 0,
            "version": __version__,
        }
        return ready, body
