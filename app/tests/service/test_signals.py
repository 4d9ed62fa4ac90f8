"""A stop or reload signal is acted on wherever it lands in the main loop.

The main loop keeps taking the non-reentrant lock of its ``_wake`` event (``clear()``,
``wait()``; ``_reload.clear()`` likewise). When the signal handler itself set those events, a signal landing while
the main thread held one of the locks hung the service for good: SIGTERM was ignored until the
unit's SIGKILL (seen as ``test_outage_with_deposits_flowing_loses_and_duplicates_nothing[reset]``
timing out in ``svc.wait(20)`` under load, about one stop in thirty). Here the moment is forced:
the signal is sent while the main thread holds the lock, in a child process, so the old code
hangs that child (and the test says so) instead of the test run.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

CHILD = """
import os, signal, threading, time
from rvm_edge.service.runner import Service

svc = Service.__new__(Service)  # install_signals() needs only these three events
svc.shutdown, svc._wake, svc._reload = threading.Event(), threading.Event(), threading.Event()
svc.install_signals()
flag = svc._reload if {hup} else svc.shutdown
with svc._wake._cond:  # the main thread inside _wake.clear() / _wake.wait(), as in Service.loop()
    os.kill(os.getpid(), {signum})
    deadline = time.monotonic() + 10
    while not flag.is_set() and time.monotonic() < deadline:
        pass  # the old handler ran at one of these bytecodes and waited on the lock held here
print("acted" if flag.is_set() and svc._wake.wait(10) else "not acted")
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
def test_signal_landing_while_the_main_thread_holds_the_lock(sig: signal.Signals) -> None:
    code = CHILD.format(hup=sig == signal.SIGHUP, signum=int(sig))
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{sig.name} landing while the main loop held its event's lock hung the service")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "acted", proc.stdout + proc.stderr
