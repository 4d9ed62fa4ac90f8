"""Commit-or-rollback of a deploy, decided on the device (issue 16): the pure part, no I/O.

Why: a deploy whose control node dies during the health gate must not leave the device on an
ungated release. At the switch the role arms a *pending commit* (which release, the one before it,
and a deadline on two clocks: the kernel's boot clock, which no NTP step or `date -s` moves, decides
within the boot that armed it; the wall clock, which survives a reboot, decides after one). The play's
health gate commits it. A device-side guard reads the same record and rolls back when the deadline
passes or the service fails while the commit is pending. This module only decides; the module and
the guard that read and write the record, switch releases and restart the service are thin shells
around it (the shape of rvm_health_gate_core).

Why two clocks: a Jetson without an RTC battery boots with a stale clock and NTP steps it, often
right when a deploy's gate runs. On the wall clock alone a step forward rolls a good release back,
and a step back (from a clock that ran ahead) leaves an ungated release in place for as long as the
step. Records from before the boot clock have only the wall-clock deadline and are read as before.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from typing import Literal

Action = Literal["wait", "rollback", "clear", "none"]


class PendingError(ValueError):
    """A pending-commit record that cannot be trusted (the guard then leaves the device alone)."""


@dataclass(frozen=True)
class Clock:
    """Now, as the decisions read it: the wall clock (epoch seconds) and, when known, the boot it
    belongs to with the kernel's boot clock (CLOCK_BOOTTIME seconds: never stepped, counts suspend)."""

    wall: float
    boot_id: str = ""
    since_boot: float = 0.0


def as_clock(now: float | Clock) -> Clock:
    """A bare number is a wall-clock time with no boot clock (how callers without one say now)."""
    return now if isinstance(now, Clock) else Clock(float(now))


@dataclass(frozen=True)
class Pending:
    """A switch that still waits for its health gate to commit it."""

    release: str
    previous: str
    deadline: float  # epoch seconds (wall clock: survives a reboot; decides after one)
    token: str  # the deploy run that armed it; only that run commits it
    holder: str  # who armed it, as the update lock names runs
    boot_id: str = ""  # the boot that armed it ("" in records from before the boot clock)
    boot_deadline: float = 0.0  # CLOCK_BOOTTIME seconds of that boot (decides within it)

    def seconds_left(self, now: float | Clock) -> float:
        """Until the deadline (negative once past): by the boot clock in the boot that armed it,
        else by the wall clock."""
        clock = as_clock(now)
        if self.boot_id and clock.boot_id == self.boot_id:
            return self.boot_deadline - clock.since_boot
        return self.deadline - clock.wall

    def renewed(self, now: float | Clock, timeout_s: float, token: str, holder: str) -> Pending:
        """The same switch adopted by another run, with a deadline ``timeout_s`` from now."""
        clock = as_clock(now)
        return replace(
            self,
            deadline=clock.wall + timeout_s,
            token=token,
            holder=holder,
            boot_id=clock.boot_id,
            boot_deadline=clock.since_boot + timeout_s if clock.boot_id else 0.0,
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Pending:
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise PendingError(f"pending commit is not JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise PendingError("pending commit is not a JSON object")
        missing = sorted({"release", "previous", "deadline", "token", "holder"} - set(raw))
        if missing:
            raise PendingError(f"pending commit lacks {', '.join(missing)}")
        if not isinstance(raw["deadline"], (int, float)) or isinstance(raw["deadline"], bool):
            raise PendingError(f"pending commit deadline is not a number: {raw['deadline']!r}")
        strings = ("release", "previous", "token", "holder")
        bad = [key for key in strings if not isinstance(raw[key], str) or not raw[key]]
        if bad:
            raise PendingError(f"pending commit has empty or non-text {', '.join(bad)}")
        boot_id = raw.get("boot_id", "")
        boot_deadline = raw.get("boot_deadline", 0.0)
        if not isinstance(boot_id, str):
            raise PendingError(f"pending commit boot_id is not text: {boot_id!r}")
        if not isinstance(boot_deadline, (int, float)) or isinstance(boot_deadline, bool):
            raise PendingError(f"pending commit boot_deadline is not a number: {boot_deadline!r}")
        return cls(
            raw["release"],
            raw["previous"],
            float(raw["deadline"]),
            raw["token"],
            raw["holder"],
            boot_id,
            float(boot_deadline),
        )


@dataclass(frozen=True)
class Outcome:
    """How the last pending commit ended, kept so a late commit can be refused with the reason."""

    release: str
    result: Literal["committed", "rolled back"]
    at: float
    reason: str = ""


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str


def arm(
    release: str, previous: str, now: float | Clock, timeout_s: float, token: str, holder: str
) -> Pending:
    """The record written when `current` moves to *release*; refused when there is no way back."""
    if not previous:
        raise PendingError(f"no release to fall back to from {release}: a first install is not armed")
    if previous == release:
        raise PendingError(f"{release} is already current: nothing to arm")
    if timeout_s <= 0:
        raise PendingError(f"commit timeout must be > 0 s, got {timeout_s}")
    return Pending(release, previous, 0.0, token, holder).renewed(now, timeout_s, token, holder)


def decide(pending: Pending | None, now: float | Clock, current: str, service_failed: bool) -> Decision:
    """What the guard does on one look: wait, roll back, or clear a record that no longer applies."""
    if pending is None:
        return Decision("none", "no pending commit")
    if current != pending.release:
        # an operator's rollback.yml (or a newer deploy) moved `current` away: nothing to guard
        return Decision("clear", f"current is {current or 'none'}, not the pending {pending.release}")
    if service_failed:
        return Decision("rollback", f"the service failed while {pending.release} waited for its commit")
    left = pending.seconds_left(now)
    if left <= 0:
        return Decision(
            "rollback", f"{pending.release} was not committed by its deadline ({-left:.0f} s ago)"
        )
    return Decision("wait", f"{left:.0f} s left to commit {pending.release}")


def commit(pending: Pending | None, last: Outcome | None, release: str, token: str) -> tuple[bool, str]:
    """The health gate's commit: (changed, message). Raises PendingError when it must be refused."""
    if pending is None:
        if last is not None and last.release == release and last.result == "rolled back":
            raise PendingError(
                f"{release} was rolled back by the device ({last.reason}); not committed. "
                "Deploy again to try it again."
            )
        if last is not None and last.release == release and last.result == "committed":
            return False, f"{release} is already committed"
        raise PendingError(f"no pending commit for {release} on this device")
    if pending.release != release:
        raise PendingError(f"the pending commit is for {pending.release}, not {release}")
    if pending.token != token:
        raise PendingError(f"the pending commit of {release} was armed by another run ({pending.holder})")
    return True, f"{release} committed"
