"""Exit codes and the one error type that means "bad usage, nothing was started"."""

from __future__ import annotations

OK = 0
DEVICE_FAILED = 1
USAGE = 2
BATCH_ABORTED = 3
CANCELED = 130


class UsageError(Exception):
    """Raised before anything starts: the CLI prints the message and exits 2."""
