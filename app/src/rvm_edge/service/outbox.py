"""The durable outbox: record an item (committed before it is acknowledged), send in order.

Delivery rules, and why:

- ``record`` commits the deposit (data + image) in one fsynced SQLite transaction and only then
  returns: the item is acknowledged to the intake after that, so a kill -9 or power cut at any
  later moment loses nothing.
- One sender thread sends the oldest pending deposit, one at a time: the platform sees deposits
  in the order they were decided.
- The attempt is committed *before* the request. A deposit is marked sent only after a 2xx
  reply. So a deposit is sent twice only when a request left but its reply never came back (a
  dropped connection, a crash in between); its ``deposit_id`` lets the platform spot that.
- Transient failures (connection, timeout, 5xx, malformed reply) wait with exponential backoff
  and jitter and open the shared circuit breaker; a 422 parks the deposit (kept, shown in
  ``outbox status``, requeued by ``outbox flush``); 401/403 pause sending without dropping.
- Accepted items recorded while the platform is unreachable also queue an offline transaction,
  replayed through ``sync-offline`` in batches once deposits are through.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rvm_edge.service.deposit import placeholder_jpeg, shrink_encoded
from rvm_edge.service.platform import Backoff, PlatformClient, Reply
from rvm_edge.service.store import DepositRow, Store

log = logging.getLogger(__name__)
# An idle sender sleeps until a deposit is recorded; this only bounds the sleep in case the
# database changed some other way (it does not today: `outbox flush` runs with the service stopped).
IDLE_RECHECK_S = 60.0


@dataclass
class SenderState:
    """What the sender knows about the link; read by readiness, metrics and the dashboard."""

    link: str = "unknown"  # unknown | up | down | auth | blocked | disabled
    last_error: str | None = None
    last_sent_at: float | None = None
    sent: int = 0
    duplicates_possible: int = 0
    parked: int = 0
    send_ms: list[float] = field(default_factory=list)


class Sender:
    """Drains the outbox into the platform on its own thread."""

    def __init__(
        self,
        store: Store,
        client: PlatformClient,
        backoff: Backoff,
        max_image_bytes: int = 5 * 1024 * 1024,
        offline_batch: int = 50,
        on_auth_failure: Callable[[], bool] | None = None,
        sleep: Callable[[threading.Event, float], bool] | None = None,
    ) -> None:
        self.store, self.client, self.backoff = store, client, backoff
        self.max_image_bytes, self.offline_batch = max_image_bytes, offline_batch
        self._on_auth_failure = on_auth_failure or (lambda: False)
        self._sleep = sleep or (lambda ev, s: ev.wait(s))
        self.state = SenderState()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._woken = threading.Event()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="rvm-outbox", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        self._stop.set()
        self._woken.set()
        with self.store.changed:
            self.store.changed.notify_all()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop and wait; False when a request is still in the air after ``timeout``."""
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def wake(self) -> None:
        """Something changed (new key, link back): retry now instead of after the backoff."""
        self.backoff.reset()
        self._woken.set()

    # -- the loop ----------------------------------------------------------------------------
    def _wait(self, seconds: float) -> None:
        self._woken.clear()
        deadline = time.monotonic() + seconds
        while not self._stop.is_set() and not self._woken.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._sleep(self._woken, left)  # wake() and request_stop() set the event

    def _run(self) -> None:
        while not self._stop.is_set():
            with self.store.changed:
                seen = self.store.records
            try:
                progressed = self.step()
            except Exception:  # a bug must not silently stop delivery: log, back off, go on
                log.exception("outbox sender step failed")
                progressed = False
                self._wait(self.backoff.next())
                continue
            if progressed is None:  # nothing to send: sleep until a new record (none missed:
                with self.store.changed:  # one recorded since `seen` ends the wait at once)
                    self.store.changed.wait_for(
                        lambda seen=seen: self.store.records != seen or self._stop.is_set(), IDLE_RECHECK_S
                    )
            elif progressed is False:
                delay = self.backoff.next()
                if self.state.link == "down":
                    delay = max(delay, self.client.breaker.retry_in())
                self._wait(delay)

    def step(self) -> bool | None:
        """Send the next deposit (or offline batch). True: sent; False: failed; None: nothing to do."""
        row = self.store.next_pending()
        if row is not None:
            return self._send_deposit(row)
        batch = self.store.pending_offline(self.offline_batch)
        if batch:
            return self._send_offline(batch)
        return None

    def _send_deposit(self, row: DepositRow) -> bool:
        data = row.data
        image, image_type = row.image, row.image_type or "image/jpeg"
        if image is None:
            image, image_type = placeholder_jpeg(), "image/jpeg"
            data = json.dumps({**json.loads(data), "image_pruned": True}, separators=(",", ":"))
        elif len(image) > self.max_image_bytes:
            image, image_type = shrink_encoded(image, self.max_image_bytes), "image/jpeg"
        if self.client.breaker.state == "open":  # not sent, so no attempt is recorded
            self._link("down", self.state.last_error or "circuit open")
            return False
        if row.attempts > 0:
            self.state.duplicates_possible += 1
            log.warning(
                "resending a deposit whose earlier attempt got no reply: the platform may see it twice",
                extra={"deposit_id": row.deposit_id, "attempts": row.attempts},
            )
        self.store.mark_attempt(row.seq)
        t0 = time.perf_counter()
        reply = self.client.deposit(image, image_type, row.status, data)
        ms = (time.perf_counter() - t0) * 1e3
        if reply.ok or reply.status in (200, 201):  # 2xx: stored, even if the body was garbled
            self.store.mark_sent(row.seq)
            self.state.sent += 1
            self.state.last_sent_at = time.time()
            self.state.send_ms = [*self.state.send_ms[-199:], ms]
            self._link("up", None)
            self.backoff.reset()
            log.info("deposit delivered", extra={"deposit_id": row.deposit_id, "status": reply.status})
            return True
        return self._failed(reply, row)

    def _failed(self, reply: Reply, row: DepositRow | None) -> bool:
        did = row.deposit_id if row else None
        if reply.kind == "invalid" and row is not None:
            self.store.mark_failed(row.seq, reply.error, park=True)
            self.state.parked += 1
            log.error(
                "deposit refused by the platform: parked (see `rvm-edge outbox status`)",
                extra={"deposit_id": did, "status": reply.status, "error": reply.error},
            )
            return True  # move on to the next one
        if row is not None:
            self.store.mark_failed(row.seq, reply.error)
        if reply.kind == "auth":
            self._link("auth", reply.error)
            if self._on_auth_failure():
                self.backoff.reset()
                return False
            log.error("platform refuses the API key; waiting for a new key file", extra={"deposit_id": did})
        elif reply.kind == "blocked":
            self._link("blocked", reply.error)
            log.error(
                "platform says this machine is blocked; deposits stay queued", extra={"deposit_id": did}
            )
        else:
            self._link("down", reply.error)
            log.warning(
                "deposit not delivered, will retry",
                extra={"deposit_id": did, "status": reply.status, "kind": reply.kind, "error": reply.error},
            )
        return False

    def _send_offline(self, batch: list[Any]) -> bool:
        seqs = [int(r["seq"]) for r in batch]
        txs = [{"timestamp": r["timestamp"], "items": json.loads(r["items"])} for r in batch]
        reply = self.client.sync_offline(txs)
        if reply.ok:
            self.store.mark_offline(seqs, "sent")
            self.backoff.reset()
            log.info("offline transactions synced", extra={"count": len(seqs)})
            return True
        if reply.kind == "invalid":
            self.store.mark_offline(seqs, "parked", reply.error)
            log.error("offline batch refused: parked", extra={"count": len(seqs), "error": reply.error})
            return True
        return self._failed(reply, None)

    def _link(self, link: str, error: str | None) -> None:
        if link != self.state.link:
            log.info("platform link %s", link, extra={"link": link, "error": error})
        self.state.link, self.state.last_error = link, error


def backoff_from(initial: float, maximum: float, seed: int | None = None) -> Backoff:
    return Backoff(initial, maximum, random.Random(seed))
