"""The data partition's guard: the device frees its own space before the partition fills, and closes
its intake while it is full anyway.

Why: when the partition is full, SQLite's commit fails (SQLITE_FULL). Before this guard the recorder
then failed the pipeline, the service restarted into the same full disk, again and again until
systemd's start limit, and the item being decided had no record. Now:

- below ``low_mb`` free (twice readiness's floor) the guard clears the images of deposits the
  platform already has, oldest first (``Store.prune_images``; every record is kept), until
  ``low_mb`` is free again or no such image is left: what the device wrote, the device frees
  itself, and loses nothing doing it. Images not yet sent are left alone (they are evidence the
  platform has not seen; the quota, ``storage.max_disk_mb``, is what bounds them);
- at or below ``min_free_mb`` (readiness's floor, ``health.MIN_FREE_MB``) the intake is closed: the
  recorder records nothing, as in the platform's maintenance mode (a real machine shows "out of
  service" and gives the item back), readiness fails naming the free space and the alert fires. The
  outbox keeps sending (its updates are small) and nothing already recorded is touched;
- the intake opens again as soon as the space is back (the recorder asks before each item), without
  a restart.

What fills the partition besides the device (another process, a ballast) the guard cannot free:
the device then stays not ready until someone does, and loses nothing meanwhile.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

from rvm_edge.service.health import MIN_FREE_MB, free_mb
from rvm_edge.service.store import Store

log = logging.getLogger(__name__)


class DiskGuard:
    """``has_space()`` for the recorder (per item), ``check()`` for the housekeeping loop."""

    def __init__(
        self,
        store: Store,
        data_dir: Path,
        retention_s: Callable[[], float],
        min_free_mb: float = MIN_FREE_MB,
        free: Callable[[Path], float] = free_mb,
    ) -> None:
        self.store, self.data_dir, self.retention_s = store, data_dir, retention_s
        self.min_free_mb, self.low_mb = min_free_mb, 2 * min_free_mb
        self._free = free
        self.closed = False
        self.cleared = 0  # images cleared for space since the start (records kept)

    def free_mb(self) -> float:
        return self._free(self.data_dir)

    def has_space(self) -> bool:
        """Whether a deposit may be recorded now: more than the floor is free."""
        return self.free_mb() > self.min_free_mb

    def _make_room(self, free: float) -> float:
        """Clear sent images worth what is missing to the low mark; the free megabytes after."""
        image_bytes = self.store.status().image_bytes
        if image_bytes <= 0:
            return free
        want = int((self.low_mb - free) * 1e6)
        cleared = self.store.prune_images(max(0, image_bytes - want), self.retention_s(), ("sent",))
        if not cleared:
            return free
        self.cleared += cleared
        after = self.free_mb()
        log.warning(
            "data partition low: images cleared for space (records kept)",
            extra={"count": cleared, "free_mb_before": round(free, 1), "free_mb": round(after, 1)},
        )
        return after

    def check(self) -> float:
        """Free space for the device's own images when it runs low; log the intake closing and
        opening. Returns the free megabytes after it acted."""
        free = self.free_mb()
        if free < self.low_mb:
            try:
                free = self._make_room(free)
            except (sqlite3.Error, OSError) as exc:  # housekeeping: never the reason the service stops
                log.error("data partition low: could not free space: %s", exc, extra={"error": str(exc)})
        closed = free <= self.min_free_mb
        if closed != self.closed:
            self.closed = closed
            if closed:
                log.error(
                    "data partition full: intake closed until space is freed",
                    extra={
                        "free_mb": round(free, 1),
                        "floor_mb": self.min_free_mb,
                        "data_dir": str(self.data_dir),
                    },
                )
            else:
                log.warning("data partition has space again: intake open", extra={"free_mb": round(free, 1)})
        return free
