"""The state of a run, built only from ansible-runner events: batches, devices, results.

Ansible starts a play once per ``serial`` batch, so every play a host runs in is a batch (opened by
the play's first host event: a play no host matched is none), except a play that only sorts the
hosts for the plays after it (deploy.yml's first play puts each device in "in service" or "new"):
it opens none, and only its failures show on a device.
A batch's progress counts host results (ok, changed, failed, skipped, unreachable); its total is
the batch's hosts times the tasks per host the first batch took (unknown while the first runs).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# The name playbooks/deploy.yml gives its sorting play (keep the two in step).
SORTING_PLAY_PREFIX = "Sort the devices"

RESULT_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_skipped": "skipped",
    "runner_on_unreachable": "unreachable",
}


@dataclass
class Device:
    host: str
    batch: int = 0
    state: str = "pending"  # pending, running, ok, changed, failed, unreachable
    task: str = ""
    ok: int = 0
    changed: int = 0
    failed: int = 0
    skipped: int = 0
    message: str = ""


@dataclass
class Batch:
    number: int
    hosts: list[str] = field(default_factory=list)
    done: int = 0
    total: int | None = None


@dataclass
class Progress:
    planned: list[str]
    devices: dict[str, Device] = field(default_factory=dict)
    batches: list[Batch] = field(default_factory=list)
    play: str = ""
    task: str = ""
    stats: dict[str, dict[str, int]] = field(default_factory=dict)
    # site.yml's fast path (playbooks/converge_check.yml): each host's verdict, {current, reason}
    converge: dict[str, dict[str, Any]] = field(default_factory=dict)
    no_hosts_remaining: bool = False
    _tasks_per_host: int | None = None
    sorting: bool = False  # inside a sorting play: no batch is open
    _due: bool = False  # a play began: its first host event opens its batch

    def __post_init__(self) -> None:
        for h in self.planned:
            self.devices.setdefault(h, Device(h))

    def feed(self, event: dict[str, Any]) -> None:
        """Update from one runner event (the dict ansible-runner passes to event_handler)."""
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        if kind == "playbook_on_play_start":
            self._close_batch()
            self.play = data.get("play", "")
            self.sorting = self.play.startswith(SORTING_PLAY_PREFIX)
            self._due = not self.sorting
        elif kind == "playbook_on_task_start":
            self.task = data.get("task", "")
        elif self.sorting and (kind == "runner_on_start" or RESULT_EVENTS.get(kind) in ("ok", "skipped")):
            pass  # a device being sorted is still pending: its batch comes later
        elif kind == "runner_on_start":
            dev = self._device(data.get("host", ""))
            if dev.state == "pending":
                dev.state = "running"
            dev.task = data.get("task", "")
        elif kind in RESULT_EVENTS:
            self._result(data, RESULT_EVENTS[kind], kind == "runner_on_failed" and data.get("ignore_errors"))
        elif kind == "playbook_on_no_hosts_remaining":
            self.no_hosts_remaining = True
        elif kind == "playbook_on_stats":
            self._close_batch()
            for key in ("ok", "changed", "failures", "dark", "skipped", "rescued", "ignored"):
                for host, n in (data.get(key) or {}).items():
                    self.stats.setdefault(host, {})[key] = n

    def _device(self, host: str) -> Device:
        dev = self.devices.setdefault(host, Device(host))
        if self._due:
            self.batches.append(Batch(len(self.batches) + 1))
            self._due = False
        if self.batches and dev.batch == 0 and not self.sorting:
            dev.batch = self.batches[-1].number
            self.batches[-1].hosts.append(host)
            self._set_total(self.batches[-1])
        return dev

    def _set_total(self, batch: Batch) -> None:
        if self._tasks_per_host is not None:
            batch.total = max(batch.done, self._tasks_per_host * len(batch.hosts))

    def _result(self, data: dict[str, Any], outcome: str, ignored: Any) -> None:
        dev = self._device(data.get("host", ""))
        dev.task = data.get("task", dev.task)
        res = data.get("res") or {}
        if str(data.get("task_action", "")).endswith("rvm_converge_state") and dev.host not in self.converge:
            self.converge[dev.host] = {"current": bool(res.get("current")), "reason": res.get("reason", "")}
        if self.batches and not self.sorting:
            self.batches[-1].done += 1
        if outcome == "ok":
            if res.get("changed"):
                dev.changed += 1
            else:
                dev.ok += 1
            if dev.state not in ("failed", "unreachable"):
                dev.state = "changed" if dev.changed else "ok"
        elif outcome == "skipped":
            dev.skipped += 1
            if dev.state in ("pending", "running"):
                dev.state = "ok"
        elif ignored:
            dev.ok += 1
        else:
            dev.failed += 1
            dev.state = outcome
            dev.message = str(res.get("msg") or res.get("stderr") or "")[:300]

    def _close_batch(self) -> None:
        if not self.batches or self.sorting:
            return
        batch = self.batches[-1]
        if self._tasks_per_host is None and batch.hosts:
            self._tasks_per_host = max(1, batch.done // len(batch.hosts))
        batch.total = batch.done

    @property
    def failed_hosts(self) -> list[str]:
        return sorted(h for h, d in self.devices.items() if d.state in ("failed", "unreachable"))

    @property
    def never_started(self) -> list[str]:
        """Planned hosts no batch reached: what a play stopped by max_fail_percentage leaves."""
        return [h for h in self.planned if self.devices[h].batch == 0]

    @property
    def aborted(self) -> bool:
        return bool(self.failed_hosts) and bool(self.never_started)

    def as_dict(self) -> dict[str, Any]:
        return {
            "batches": [asdict(b) for b in self.batches],
            "devices": [asdict(d) for d in self.devices.values()],
            "failed_hosts": self.failed_hosts,
            "never_started": self.never_started,
            "aborted": self.aborted,
            "stats": self.stats,  # the play recap per host: ok, changed, failures, dark, skipped, ...
            "converge": self.converge,
        }
