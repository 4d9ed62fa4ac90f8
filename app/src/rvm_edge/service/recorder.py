"""Where pipeline results become durable deposits: the pipeline's recording sink.

The recorder only records: it decides which items are kept (not an empty intake unless
``record_empty``, nothing in the platform's maintenance mode, nothing while the data partition is
full: ``has_space``, the disk guard's), encodes the frame the deposit
carries, and commits data + image (+ the offline transaction) in one SQLite transaction. What
others make of a recorded deposit (metrics, the dashboard's recent list) they get from the
:class:`Recorded` event it hands its listeners after the commit.

``in_flight`` counts items between their decision and their durable commit: the deploy waits
for it to reach 0 before restarting the service.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from rvm_edge.decision import ReasonCode
from rvm_edge.messages import Deposit, ItemResult
from rvm_edge.service.deposit import (
    IMAGE_TYPE,
    ModelInfo,
    OfflinePricing,
    deposit_data,
    encode_image,
    new_deposit_id,
)
from rvm_edge.service.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recorded:
    """One deposit, committed: what the recorder's listeners (metrics, dashboard) are told."""

    deposit_id: str
    deposit: Deposit
    timestamp: str
    offline: bool
    timings_ms: dict[str, float]  # encode_ms, commit_ms, record_ms (encode + data + commit)


class Recorder:
    """The pipeline sink: commits each finished item to the store before acknowledging it."""

    def __init__(
        self,
        store: Store,
        hardware_id: str,
        model: ModelInfo,
        max_image_bytes: int,
        pricing: OfflinePricing | None = None,
        record_empty: bool = False,
        listeners: Iterable[Callable[[Recorded], None]] = (),
        has_space: Callable[[], bool] = lambda: True,
    ) -> None:
        self.store, self.hardware_id, self.model = store, hardware_id, model
        self.max_image_bytes = max_image_bytes
        self.pricing = pricing or OfflinePricing()
        self.record_empty = record_empty
        self.accepting = True  # False in the platform's maintenance mode: nothing is recorded
        self.listeners = list(listeners)
        self.has_space = has_space
        self._lock = threading.Lock()
        self._in_flight: set[int] = set()
        self.recorded = 0
        self.skipped = 0
        self.failed = 0
        self.no_space = 0  # items not recorded because the data partition was full (intake closed)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def _wanted(self, result: ItemResult) -> bool:
        return self.accepting and (self.record_empty or result.decision.code is not ReasonCode.EMPTY)

    def _refuse_no_space(self, result: ItemResult, why: str) -> None:
        self.no_space += 1
        if self.no_space == 1 or self.no_space % 100 == 0:  # the guard logs the closing itself
            log.error(
                "item not recorded: the data partition is full",
                extra={"frame": result.frame_index, "why": why},
            )

    def on_result(self, result: ItemResult) -> None:
        if self._wanted(result):
            with self._lock:
                self._in_flight.add(result.frame_index)

    def on_deposit(self, deposit: Deposit) -> None:
        r = deposit.result
        try:
            if not self._wanted(r):
                self.skipped += 1
                return
            if not self.has_space():
                self._refuse_no_space(r, "below the free-space floor")
                return
            self._record(deposit)
        except sqlite3.OperationalError as exc:
            if not disk_full(exc):
                self.failed += 1
                log.exception("could not record item", extra={"frame": r.frame_index})
                raise
            # the transaction rolled back whole: nothing half-written; the intake is closed as
            # if the guard had seen it first (a restart would only meet the same full disk)
            self._refuse_no_space(r, str(exc))
        except Exception:
            self.failed += 1
            log.exception("could not record item", extra={"frame": r.frame_index})
            raise
        finally:
            with self._lock:
                self._in_flight.discard(r.frame_index)

    def _record(self, deposit: Deposit) -> None:
        r = deposit.result
        d = r.decision
        t0 = time.perf_counter()
        # the pipeline holds the frame until every sink has had this deposit: no copy needed
        encoded = encode_image(r.frame.image, self.max_image_bytes) if r.frame is not None else None
        t1 = time.perf_counter()
        deposit_id = new_deposit_id()
        data = deposit_data(deposit_id, self.hardware_id, deposit, self.model, {"encode_ms": (t1 - t0) * 1e3})
        offline_items = self.pricing.items(d)
        t2 = time.perf_counter()
        self.store.record(
            deposit_id,
            d.verdict.value,
            d.reason,
            data,
            encoded,
            IMAGE_TYPE if encoded else None,
            frame_index=r.frame_index,
            material=d.material,
            offline_items=offline_items,
            timestamp=data["timestamp"],
        )
        t3 = time.perf_counter()
        self.recorded += 1
        event = Recorded(
            deposit_id,
            deposit,
            data["timestamp"],
            offline_items is not None,
            {"encode_ms": (t1 - t0) * 1e3, "commit_ms": (t3 - t2) * 1e3, "record_ms": (t3 - t0) * 1e3},
        )
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:  # the deposit is committed: a listener's failure must not undo that
                log.exception("a listener of recorded deposits failed", extra={"deposit_id": deposit_id})
        log.info(
            "deposit recorded",
            extra={"deposit_id": deposit_id, "decision": d.verdict.value, "frame": r.frame_index},
        )

    def counts(self) -> dict[str, Any]:
        return {
            "recorded": self.recorded,
            "not_recorded": self.skipped,
            "not_recorded_disk_full": self.no_space,
            "record_failed": self.failed,
            "in_flight": self.in_flight,
        }


SQLITE_FULL = 13  # sqlite3 names it from Python 3.11 on; the device runtime may be 3.10


def disk_full(exc: sqlite3.OperationalError) -> bool:
    """SQLite's SQLITE_FULL: "database or disk is full" (the code where Python gives it)."""
    return getattr(exc, "sqlite_errorcode", None) == SQLITE_FULL or "database or disk is full" in str(exc)
