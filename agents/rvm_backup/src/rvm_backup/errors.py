"""The two kinds of failure and the exit statuses they map to (shared by every module, so it imports none)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2


class ConfigError(Exception):
    """The config cannot be used; carries every problem found so the operator fixes them in one pass."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class BackupError(Exception):
    """A failed step. The message is what the operator reads, so it never holds secrets or raw noise."""

    def __init__(self, message: str, step: str = "") -> None:
        super().__init__(message)
        self.step = step
        self.seconds = 0.0
