"""Progress lines while the suite runs (one line per event, elapsed time first; no terminal tricks
so a log file reads the same), and the stop flag Ctrl-C sets for worker threads."""

from __future__ import annotations

import sys
import threading
import time

STOP = threading.Event()
_T0 = time.monotonic()


def say(msg: str) -> None:
    print(f"[{time.monotonic() - _T0:7.1f}s] {msg}", file=sys.stdout, flush=True)
