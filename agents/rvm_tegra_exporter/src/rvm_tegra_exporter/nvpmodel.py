"""The Jetson power mode by name (15W, 25W, MAXN_SUPER, ...).

nvpmodel keeps the active mode's number in ``/var/lib/nvpmodel/status`` (``pmode:0002
fmode:quiet``) and the names in ``/etc/nvpmodel.conf`` (``< POWER_MODEL ID=2 NAME=MAXN_SUPER >``).
Numbers differ between boards, so the name is what an operator can compare across a fleet.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_STATUS = Path("/var/lib/nvpmodel/status")
DEFAULT_CONF = Path("/etc/nvpmodel.conf")
_STATUS = re.compile(r"pmode:\s*(\d+)")
_MODEL = re.compile(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=([^\s>]+)")


class PowerModeError(ValueError):
    """The status file exists but names no mode, or names one the conf does not define."""


@dataclass(frozen=True)
class PowerMode:
    """The active mode: its number and its name from the conf."""

    mode_id: int
    name: str


def parse_status(text: str) -> int:
    """Return the mode number of a status file's text."""
    match = _STATUS.search(text)
    if match is None:
        raise PowerModeError(f"no 'pmode:<id>' in nvpmodel status {text.strip()[:80]!r}")
    return int(match.group(1))


def parse_conf(text: str) -> dict[int, str]:
    """Return {mode number: name} from an nvpmodel.conf text."""
    return {int(m.group(1)): m.group(2) for m in _MODEL.finditer(text)}


def read_power_mode(status: Path = DEFAULT_STATUS, conf: Path = DEFAULT_CONF) -> PowerMode | None:
    """The active mode, or None where there is no nvpmodel (not a Jetson)."""
    if not status.exists():
        return None
    mode_id = parse_status(status.read_text(encoding="ascii", errors="replace"))
    names = parse_conf(conf.read_text(encoding="ascii", errors="replace")) if conf.exists() else {}
    if mode_id not in names:
        raise PowerModeError(f"power mode {mode_id} of {status} is not defined in {conf}")
    return PowerMode(mode_id, names[mode_id])
