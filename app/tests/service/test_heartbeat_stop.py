"""The heartbeat thread stops at once, whenever the stop request lands in its loop.

The loop sleeps a whole heartbeat interval between exchanges; a stop must cut that sleep short
even when it arrives just before the sleep starts (the wake-up it sends must not be cleared
away). Each interleaving is forced with a hook, never with a sleep.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rvm_edge.service.heartbeat import Link
from rvm_edge.service.platform import Backoff, Reply

HOUR = 3600.0  # the heartbeat interval under test: a missed wake-up would wait all of it
DEADLINE = 20.0  # generous bound for a thread that should end at once; never a sleep
STOP_TIMEOUT = 5.0  # what stop() may take here: the fixed thread ends at once, the old one never


class FakeClient:
    """Answers the handshake and heartbeats like a healthy platform; runs a hook in each heartbeat."""

    def __init__(self) -> None:
        self.heartbeats = 0
        self.on_heartbeat: Callable[[], None] = lambda: None

    def handshake(self, body: dict[str, Any]) -> Reply:
        return Reply("ok", 200, {"data": {"identity": {"rvm_name": "RVM Lab 1"}, "policy": {}}})

    def heartbeat(self, body: dict[str, Any]) -> Reply:
        self.heartbeats += 1
        self.on_heartbeat()
        return Reply("ok", 200, {"commands": []})


class Hold:
    """A point where the link thread waits until the test lets it go."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.go = threading.Event()

    def __call__(self) -> None:
        self.reached.set()
        assert self.go.wait(DEADLINE)


class HeldClear(threading.Event):
    """The link's wake event, holding the link thread right before the sleep clears it: the
    moment between the loop's ``_stop`` check and ``_wake.clear()``."""

    def __init__(self, hold: Hold) -> None:
        super().__init__()
        self.hold = hold

    def clear(self) -> None:
        self.hold()
        super().clear()


def make_link(client: FakeClient, data_dir: Path) -> Link:
    return Link(
        client,  # type: ignore[arg-type]  # duck-typed: the two calls the loop makes
        "hw-1",
        "RVM Lab 1",
        interval_s=HOUR,
        handshake_interval_s=HOUR,
        backoff=Backoff(HOUR, HOUR),
        data_dir=str(data_dir),
        on_restart=lambda: None,
        on_policy=lambda maintenance: None,
        key_changed=lambda: False,
        zt_address="10.147.17.5",
    )


@pytest.mark.parametrize("moment", ["during the heartbeat", "between the check and the clear"])
def test_stop_ends_the_thread_at_once_whatever_the_moment(tmp_path: Path, moment: str) -> None:
    """The service stops the link with ``request_stop()`` and ``stop()``; when both land while the
    thread is still short of its sleep (a heartbeat in the air, or past the loop's check), the
    sleep that follows must not wait out the interval."""
    client = FakeClient()
    link = make_link(client, tmp_path)
    hold = Hold()
    if moment == "during the heartbeat":
        client.on_heartbeat = hold
    else:
        link._wake = HeldClear(hold)
    stop_requested = threading.Semaphore(0)
    request_stop = link.request_stop

    def counted_request_stop() -> None:
        request_stop()
        stop_requested.release()

    link.request_stop = counted_request_stop  # type: ignore[method-assign]
    link.start()
    assert hold.reached.wait(DEADLINE)
    link.request_stop()  # what Service.stop does first, for the link and the outbox together
    stopped: list[bool] = []
    stopper = threading.Thread(target=lambda: stopped.append(link.stop(timeout=STOP_TIMEOUT)))
    stopper.start()
    assert stop_requested.acquire(timeout=DEADLINE)  # the first request
    assert stop_requested.acquire(timeout=DEADLINE)  # stop()'s own: it is joining the thread now
    hold.go.set()  # every wake-up was sent before the sleep's clear
    stopper.join(DEADLINE)
    # before the fix the thread slept the whole hour and stop() gave up after STOP_TIMEOUT
    assert stopped == [True]
    assert client.heartbeats == 1 and link.state.heartbeat_status == "ok"


class SignalsSleep(threading.Event):
    """The link's wake event, which tells the test when the loop has cleared it and is about to sleep."""

    def __init__(self) -> None:
        super().__init__()
        self.sleeping = threading.Semaphore(0)

    def wait(self, timeout: float | None = None) -> bool:
        self.sleeping.release()
        return super().wait(timeout)


def test_a_wake_during_the_sleep_still_starts_the_next_heartbeat(tmp_path: Path) -> None:
    """The stop check must not turn the sleep into a no-op, nor end the loop: ``wake()`` still
    cuts the sleep short and the loop goes on with the next heartbeat."""
    client = FakeClient()
    second = threading.Event()
    client.on_heartbeat = lambda: second.set() if client.heartbeats == 2 else None
    link = make_link(client, tmp_path)
    wake = SignalsSleep()
    link._wake = wake
    link.start()
    try:
        assert wake.sleeping.acquire(timeout=DEADLINE)  # after the first heartbeat, the clear is done
        assert client.heartbeats == 1
        link.wake()
        assert second.wait(DEADLINE)
    finally:
        assert link.stop(timeout=DEADLINE) is True
