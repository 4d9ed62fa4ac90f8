"""The rvm_health_gate decision: is a freshly (re)started systemd service healthy, or idle?

Why a file of its own: the decision is timing logic (fail fast, deadlines, a watch window, a grace
for short not-ready spells) and is only trustworthy if it is tested against many scripted
sequences. So it does no I/O itself. It is driven through five callables (``probe_http``,
``read_unit``, ``read_journal``, ``clock``, ``sleep``): the module wires urllib, systemctl,
journalctl and the monotonic clock; the tests wire a scripted HTTP server, a scripted unit and a
fake clock, and run a 120 s timeout in milliseconds. It imports nothing from Ansible and only the
standard library, because it runs on the device's system Python (3.10 or later).

Why the unit is read as well as ``/readyz``: a crash-looping service never answers ready, and a
gate that only polls HTTP waits out its whole timeout before saying so. systemd already knows:
``NRestarts`` grows, the ``InvocationID`` and ``MainPID`` change, or the unit ends ``failed``
(start limit hit). Reading those on every poll lets the gate fail within one poll of the first
restart, with the exit status in the message.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

MODES = ("ready", "idle")
# What the gate reads from ``systemctl show``; LoadState too, so a misspelt unit fails at once
# instead of looking like a service that never starts.
UNIT_PROPERTIES = (
    "LoadState",
    "ActiveState",
    "SubState",
    "NRestarts",
    "InvocationID",
    "MainPID",
    "Result",
    "ExecMainStatus",
    "ExecMainCode",
)
# A unit in these states has (or is about to have) a process: a failing /readyz is "not yet".
STARTING_OR_RUNNING = frozenset({"activating", "active", "reloading"})
# A unit in these states is serving; ready needs one of them (Type=notify: READY=1 was sent).
SERVING = frozenset({"active", "reloading"})
# How much of a /readyz body a message quotes: enough to see the failing check, not a page.
SNIPPET_CHARS = 200
# siginfo codes as ``systemctl show`` prints ExecMainCode (CLD_EXITED, CLD_KILLED, CLD_DUMPED).
# The names are accepted too, so a systemd that prints them is read the same.
_CLD_CODES = {
    "1": "exited",
    "2": "killed",
    "3": "dumped",
    "exited": "exited",
    "killed": "killed",
    "dumped": "dumped",
}


class GateError(Exception):
    """The gate cannot run (bad parameters, systemctl unusable); not a verdict on the service."""


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """One line of at most ``limit`` characters, so a message quoting a body stays readable."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _as_int(value: Any) -> int | None:
    """An integer field of a JSON body or a systemd property; anything else (bool, text) is None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


@dataclass(frozen=True)
class Probe:
    """One look at the readiness URL.

    ``status`` is None when no HTTP answer came (refused, timed out, reset); ``body`` is None
    unless the answer was a JSON object, so an HTML error page or a truncated body is simply
    "not ready" rather than an exception. ``detail`` is what a message quotes.
    """

    status: int | None
    body: dict[str, Any] | None
    detail: str

    @property
    def answered(self) -> bool:
        return self.status is not None

    @property
    def ready(self) -> bool:
        """The app's own verdict: HTTP 200 and ``"ready": true`` in a JSON object."""
        return self.status == 200 and self.body is not None and self.body.get("ready") is True

    @property
    def frames_processed(self) -> int | None:
        return _as_int(self.body.get("frames_processed")) if self.body is not None else None

    @property
    def in_flight(self) -> int | None:
        return _as_int(self.body.get("in_flight")) if self.body is not None else None

    def describe(self) -> str:
        return f"{self.status} {self.detail}" if self.answered else self.detail


def parse_answer(status: int, raw: bytes) -> Probe:
    """Read an HTTP answer; never raises, because a garbled answer is a state, not a crash."""
    text = raw.decode("utf-8", errors="replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        return Probe(status, None, snippet(text) or "(empty body)")
    if not isinstance(parsed, dict):
        return Probe(status, None, snippet(text))
    return Probe(status, parsed, snippet(json.dumps(parsed, separators=(",", ":"))))


def unreachable(reason: str) -> Probe:
    """No HTTP answer at all; ``reason`` says why (never the URL, which may carry a token)."""
    return Probe(None, None, reason)


def parse_show(text: str) -> dict[str, str]:
    """``systemctl show`` output (``Key=value`` lines) as a dict; values may contain ``=``."""
    props: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            props[key.strip()] = value.strip()
    return props


@dataclass(frozen=True)
class UnitState:
    """The properties of one ``systemctl show`` read, with the few the gate reasons about typed."""

    props: Mapping[str, str]

    def _get(self, key: str) -> str:
        return self.props.get(key, "")

    @property
    def load_state(self) -> str:
        return self._get("LoadState")

    @property
    def active_state(self) -> str:
        return self._get("ActiveState")

    @property
    def result(self) -> str:
        return self._get("Result")

    @property
    def invocation_id(self) -> str:
        return self._get("InvocationID")

    @property
    def n_restarts(self) -> int | None:
        """None where systemd is too old to count (before v235) or the value is unreadable."""
        return _as_int(self._get("NRestarts"))

    @property
    def main_pid(self) -> int:
        return _as_int(self._get("MainPID")) or 0

    @property
    def serving(self) -> bool:
        return self.active_state in SERVING

    def exit_description(self) -> str | None:
        """How the main process last ended (``status=1``, ``signal=SEGV``), or None while it runs.

        systemd clears these when it starts the next process, so the gate remembers the last one it
        saw: after a quick restart the current read may no longer carry it.
        """
        code = _CLD_CODES.get(self._get("ExecMainCode").lower())
        status = _as_int(self._get("ExecMainStatus"))
        if code is None or status is None:
            return None
        if code == "exited":
            return f"status={status}"
        try:
            name = signal.Signals(status).name.removeprefix("SIG")
        except ValueError:
            name = str(status)
        return f"signal={name}" + (" (core dumped)" if code == "dumped" else "")

    def describe(self) -> str:
        sub = self._get("SubState")
        return f"{self.active_state or 'unknown'} ({sub})" if sub else self.active_state or "unknown"


class UnitWatch:
    """Follows a unit across reads and says when it restarted, failed or stopped.

    A restart shows in any of three ways, and each alone can be missed: ``NRestarts`` counts only
    systemd's automatic restarts (and is absent before systemd 235), the ``InvocationID`` changes
    on every start (a manual restart too), and ``MainPID`` changes when the process is replaced.
    """

    def __init__(self, unit: str, baseline: UnitState) -> None:
        self.unit = unit
        self.baseline_restarts = baseline.n_restarts
        self.state = baseline
        self.invocations: list[str] = []
        self.pids: list[int] = []
        self.seen_running = False
        self.last_exit: str | None = None
        self._note(baseline)

    def _note(self, state: UnitState) -> None:
        self.state = state
        self.last_exit = state.exit_description() or self.last_exit
        if state.active_state not in STARTING_OR_RUNNING:
            return  # e.g. the old process still deactivating: its ids are not this run's
        self.seen_running = True
        if state.invocation_id and state.invocation_id not in self.invocations:
            self.invocations.append(state.invocation_id)
        if state.main_pid and (not self.pids or self.pids[-1] != state.main_pid):
            self.pids.append(state.main_pid)

    @property
    def restarts(self) -> int:
        """Restarts since the baseline, by the strongest of the three signs."""
        counted = 0
        if self.baseline_restarts is not None and self.state.n_restarts is not None:
            counted = max(0, self.state.n_restarts - self.baseline_restarts)
        return max(counted, len(self.invocations) - 1, len(self.pids) - 1)

    def exit_note(self) -> str:
        return f"last exit: {self.last_exit}" if self.last_exit else "last exit not seen"

    def problem(self, elapsed: float) -> str | None:
        """Why the unit can no longer become (or stay) healthy, or None."""
        state = self.state
        if state.load_state and state.load_state != "loaded":
            return f"{self.unit} is not a loaded unit (LoadState={state.load_state})"
        if state.active_state == "failed":
            after = f" after {plural(self.restarts, 'restart')}" if self.restarts else ""
            return f"{self.unit} failed (Result={state.result or 'unknown'}{after}; {self.exit_note()})"
        if self.restarts:
            return (
                f"{self.unit} restarted {plural(self.restarts, 'time')} in {elapsed:.1f} s"
                f" ({self.exit_note()})"
            )
        if state.active_state == "inactive" and self.seen_running:
            return f"{self.unit} stopped (inactive, Result={state.result or 'unknown'}; {self.exit_note()})"
        return None

    def observe(self, state: UnitState, elapsed: float) -> str | None:
        self._note(state)
        return self.problem(elapsed)


@dataclass(frozen=True)
class GateConfig:
    """The module's parameters, checked; times in seconds."""

    unit: str
    mode: str = "ready"
    timeout_s: float = 120
    window_s: float = 60
    unready_grace_s: float = 10
    min_frames: int = 1
    poll_s: float = 0.5
    journal_lines: int = 30

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> GateConfig:
        """Refuse values that would make the gate meaningless, naming the parameter."""
        url = str(params["url"])
        if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
            raise GateError("parameter url: expected an http:// or https:// URL")
        unit = str(params["unit"])
        if not unit or unit.startswith("-") or any(c.isspace() for c in unit):
            raise GateError(f"parameter unit: not a systemd unit name: {unit!r}")
        if params["mode"] not in MODES:
            raise GateError(f"parameter mode: expected one of {', '.join(MODES)}, got {params['mode']!r}")
        for name in ("timeout_s", "window_s", "unready_grace_s", "min_frames", "journal_lines"):
            if params[name] < 0:
                raise GateError(f"parameter {name}: must be >= 0, got {params[name]}")
        for name in ("poll_s", "request_timeout_s"):
            if params[name] <= 0:
                raise GateError(f"parameter {name}: must be > 0, got {params[name]}")
        return cls(
            unit=unit,
            mode=params["mode"],
            timeout_s=params["timeout_s"],
            window_s=params["window_s"],
            unready_grace_s=params["unready_grace_s"],
            min_frames=params["min_frames"],
            poll_s=params["poll_s"],
            journal_lines=params["journal_lines"],
        )


@dataclass(frozen=True)
class GateIO:
    """Everything the gate observes or waits with; the module wires real ones, tests fakes.

    ``read_unit`` returns the ``systemctl show`` properties (raising GateError when it cannot);
    ``read_journal(n)`` the last n journal lines of the unit; ``clock`` is monotonic seconds.
    """

    probe_http: Callable[[], Probe]
    read_unit: Callable[[], Mapping[str, str]]
    read_journal: Callable[[int], list[str]]
    clock: Callable[[], float]
    sleep: Callable[[float], None]


@dataclass
class GateResult:
    """What the module returns; ``failed`` with ``msg`` saying why."""

    msg: str = ""
    failed: bool = False
    ready: bool = False
    idle: bool | None = None
    reason: str | None = None
    ready_after_s: float | None = None
    window_s: float = 0.0
    elapsed_s: float = 0.0
    restarts: int = 0
    frames_processed: int | None = None
    in_flight: int | None = None
    readyz: dict[str, Any] | None = None
    unit_state: dict[str, str] = field(default_factory=dict)
    journal: list[str] | None = None

    def as_dict(self) -> dict[str, Any]:
        """Module return values: ``idle``/``reason`` only in idle mode, ``journal`` only on failure."""
        out: dict[str, Any] = {
            "changed": False,
            "msg": self.msg,
            "ready": self.ready,
            "ready_after_s": self.ready_after_s,
            "window_s": round(self.window_s, 3),
            "elapsed_s": round(self.elapsed_s, 3),
            "restarts": self.restarts,
            "frames_processed": self.frames_processed,
            "in_flight": self.in_flight,
            "readyz": self.readyz,
            "unit_state": dict(self.unit_state),
        }
        if self.idle is not None:
            out["idle"] = self.idle
            out["reason"] = self.reason
        if self.failed:
            out["failed"] = True
            out["journal"] = self.journal or []
        return out


class _Gate:
    """One run: the clock origin and the latest unit read and /readyz probe, which messages quote."""

    def __init__(self, config: GateConfig, io: GateIO) -> None:
        self.config = config
        self.io = io
        self.start = io.clock()
        self.state = self.read_unit()
        self.probe: Probe | None = None

    def elapsed(self) -> float:
        return self.io.clock() - self.start

    def read_unit(self) -> UnitState:
        self.state = UnitState(dict(self.io.read_unit()))
        return self.state

    def look(self) -> Probe:
        self.probe = self.io.probe_http()
        return self.probe

    def healthy(self) -> bool:
        """Ready means the unit serves and /readyz says ready with enough frames behind it."""
        probe = self.probe
        if probe is None or not probe.ready or not self.state.serving:
            return False
        frames = probe.frames_processed
        return frames is not None and frames >= self.config.min_frames

    def pause(self, until: float) -> None:
        """Sleep one poll, but never past ``until`` (elapsed seconds), so deadlines hold."""
        self.io.sleep(max(0.0, min(self.config.poll_s, until - self.elapsed())))

    def last_readyz(self) -> str:
        answer = self.probe.describe() if self.probe is not None else "not asked"
        if self.state.serving:
            return f"last /readyz: {answer}"
        return f"last /readyz: {answer}; unit {self.state.describe()}"

    def journal(self) -> list[str]:
        """The unit's last journal lines, so the operator sees why; a broken journal is one line."""
        lines = self.config.journal_lines
        if lines <= 0:
            return []
        try:
            return self.io.read_journal(lines)
        except GateError as exc:
            return [f"(journal not available: {exc})"]

    def finish(self, result: GateResult, failure: str | None) -> GateResult:
        result.elapsed_s = self.elapsed()
        result.unit_state = dict(self.state.props)
        if self.probe is not None:
            result.readyz = self.probe.body
            result.frames_processed = self.probe.frames_processed
            result.in_flight = self.probe.in_flight
        if failure is not None:
            result.failed = True
            result.msg = failure
            result.journal = self.journal()
        return result


def _wait_ready(gate: _Gate, watch: UnitWatch) -> str | None:
    """Poll until healthy; a failure message when the unit gives up or the timeout passes."""
    config = gate.config
    problem = watch.problem(0.0)
    while problem is None:
        gate.look()
        if gate.healthy():
            return None
        if gate.elapsed() >= config.timeout_s:
            frames = plural(config.min_frames, "frame")
            return (
                f"{config.unit} not ready with >= {frames} processed after {config.timeout_s:g} s"
                f" ({gate.last_readyz()})"
            )
        gate.pause(config.timeout_s)
        problem = watch.observe(gate.read_unit(), gate.elapsed())
    return problem


def _watch_window(gate: _Gate, watch: UnitWatch, ready_at: float) -> str | None:
    """After the first ready answer: no restart, no leaving active, no long not-ready spell."""
    config = gate.config
    window_end = ready_at + config.window_s
    unready_since: float | None = None
    into = f"the {config.window_s:g} s window"
    while gate.elapsed() < window_end:
        gate.pause(window_end)
        state = gate.read_unit()
        problem = watch.observe(state, gate.elapsed())
        if problem is None and not state.serving:
            problem = f"{config.unit} left active ({state.describe()}; {watch.exit_note()})"
        if problem is not None:
            return f"{problem}, {gate.elapsed() - ready_at:.1f} s into {into}"
        gate.look()
        now = gate.elapsed()
        if gate.healthy():
            unready_since = None
            continue
        unready_since = now if unready_since is None else unready_since
        if now - unready_since > config.unready_grace_s:
            return (
                f"{config.unit} not ready for {now - unready_since:.1f} s during {into}"
                f" (grace {config.unready_grace_s:g} s; {gate.last_readyz()})"
            )
    if not gate.healthy():
        return f"{config.unit} not ready at the end of {into} ({gate.last_readyz()})"
    return None


def gate_ready(config: GateConfig, io: GateIO) -> GateResult:
    """``mode: ready``: wait until healthy, failing fast on a restart or failure, then watch."""
    gate = _Gate(config, io)
    watch = UnitWatch(config.unit, gate.state)
    result = GateResult()
    failure = _wait_ready(gate, watch)
    if failure is None:
        ready_at = gate.elapsed()
        result.ready_after_s = round(ready_at, 3)
        if config.window_s > 0:
            failure = _watch_window(gate, watch, ready_at)
        result.window_s = gate.elapsed() - ready_at
        result.ready = failure is None
    result.restarts = watch.restarts
    if failure is None:
        result.msg = f"{config.unit} ready after {result.ready_after_s:.1f} s" + (
            f", no restart in the {config.window_s:g} s window that followed" if config.window_s > 0 else ""
        )
    return gate.finish(result, failure)


def gate_idle(config: GateConfig, io: GateIO) -> GateResult:
    """``mode: idle``: wait until nothing is between decision and durable commit.

    A unit that is not serving, or a /readyz that does not answer, has nothing in flight that a
    stop could cut in half, so that is idle at once: the gate must never block a stop of a service
    that is already down.
    """
    gate = _Gate(config, io)
    result = GateResult(idle=False)
    not_running = f"{config.unit} is not running"
    if not gate.state.serving:
        result.idle, result.reason = True, not_running
        result.msg = f"{not_running} ({gate.state.describe()})"
        return gate.finish(result, None)
    while True:
        probe = gate.look()
        result.ready = probe.ready
        if not probe.answered:
            result.idle, result.reason = True, not_running
            result.msg = f"{not_running} (/readyz: {probe.detail})"
            return gate.finish(result, None)
        if probe.body is not None and "in_flight" not in probe.body:
            result.idle = True
            result.reason = "/readyz reports no in_flight (a release without it); treated as 0"
            result.msg = f"{config.unit} idle: {result.reason}"
            return gate.finish(result, None)
        if probe.in_flight == 0:
            result.idle, result.reason = True, "no items in flight"
            result.msg = f"{config.unit} idle after {gate.elapsed():.1f} s: no items in flight"
            return gate.finish(result, None)
        if gate.elapsed() >= config.timeout_s:
            break
        gate.pause(config.timeout_s)
    count = probe.in_flight
    reason = (
        f"{plural(count, 'item')} still in flight on {config.unit} after {config.timeout_s:g} s"
        if count is not None
        else f"in_flight unknown on {config.unit} after {config.timeout_s:g} s ({gate.last_readyz()})"
    )
    result.reason = reason
    return gate.finish(result, reason)


def run_gate(config: GateConfig, io: GateIO) -> GateResult:
    """Run the gate in the configured mode."""
    return gate_idle(config, io) if config.mode == "idle" else gate_ready(config, io)
