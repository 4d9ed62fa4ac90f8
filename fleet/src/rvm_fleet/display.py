"""How a run looks: a live rich view on a terminal, plain lines in a pipe, nothing but JSON with --json.

The live view is one progress bar per batch and a device table, redrawn from the Progress model.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Protocol, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn
from rich.progress import Progress as Bars
from rich.table import Table

from rvm_fleet.progress import RESULT_EVENTS, Progress
from rvm_fleet.runs import RunRecord

STATE_STYLE = {
    "ok": "green",
    "changed": "yellow",
    "failed": "bold red",
    "unreachable": "bold red",
    "running": "cyan",
}


class Display(Protocol):
    def start(self, progress: Progress, record: RunRecord) -> None: ...
    def event(self, event: dict[str, Any], progress: Progress) -> None: ...
    def refresh(self, progress: Progress, canceling: bool) -> None: ...
    def stop(self, progress: Progress, record: RunRecord) -> None: ...


def summary_line(record: RunRecord) -> str:
    failed = f" failed: {', '.join(record.failed_hosts)}" if record.failed_hosts else ""
    line = f"{record.ident}: {record.status} (exit {record.exit_code}, {record.duration_s} s){failed}"
    verdicts = record.detail.get("converge") or {}
    if verdicts:  # site.yml's fast path: who skipped the run, and why the others did not
        current = sorted(h for h, v in verdicts.items() if v["current"])
        pending = {h: v["reason"] for h, v in sorted(verdicts.items()) if not v["current"]}
        line += f"\n  {len(current)} host(s) current (skipped), {len(pending)} converged"
        line += "".join(f"\n  {h}: {why}" for h, why in pending.items())
    return line


class JsonDisplay:
    """--json: silent while running, the finished run record as one JSON document at the end."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out

    def start(self, progress: Progress, record: RunRecord) -> None:
        pass

    def event(self, event: dict[str, Any], progress: Progress) -> None:
        pass

    def refresh(self, progress: Progress, canceling: bool) -> None:
        pass

    def stop(self, progress: Progress, record: RunRecord) -> None:
        json.dump(record.as_dict(), self.out, indent=1)
        self.out.write("\n")


class PlainDisplay:
    """Not a terminal: one line per batch start and per device result that matters."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.out = out
        self._canceling = False
        self._announced = 0  # the last batch number said

    def _say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def start(self, progress: Progress, record: RunRecord) -> None:
        self._say(f"run {record.ident}: {record.playbook} on {len(progress.planned)} host(s)")

    def event(self, event: dict[str, Any], progress: Progress) -> None:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        if kind == "playbook_on_play_start" and progress.sorting:
            self._say(f"before the batches: {data.get('play', '')}")
        if progress.batches and progress.batches[-1].number > self._announced:
            self._announced = progress.batches[-1].number  # a batch opens at its play's first host event
            self._say(f"batch {self._announced}: {progress.play}")
        if kind in RESULT_EVENTS:
            dev = progress.devices.get(data.get("host", ""))
            if dev and dev.state in ("failed", "unreachable") and RESULT_EVENTS[kind] != "ok":
                self._say(f"{dev.host}: {dev.state} in '{dev.task}': {dev.message}")
        elif kind == "playbook_on_stats":
            for dev in progress.devices.values():
                self._say(f"{dev.host}: {dev.state} ok={dev.ok} changed={dev.changed} failed={dev.failed}")

    def refresh(self, progress: Progress, canceling: bool) -> None:
        if canceling and not self._canceling:
            self._canceling = True
            self._say("canceling: asking ansible-runner to stop the playbook")

    def stop(self, progress: Progress, record: RunRecord) -> None:
        self._say(summary_line(record))


def device_table(progress: Progress) -> Table:
    table = Table(expand=False)
    for col in ("device", "batch", "state", "task", "ok", "changed", "failed", "message"):
        table.add_column(col)
    for d in progress.devices.values():
        style = STATE_STYLE.get(d.state, "")
        table.add_row(
            d.host,
            str(d.batch or "-"),
            f"[{style}]{d.state}[/]" if style else d.state,
            d.task,
            str(d.ok),
            str(d.changed),
            str(d.failed),
            d.message[:60],
        )
    return table


class LiveDisplay:
    """A terminal: rich progress bars (one per batch) above a device table, redrawn in place."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self.bars = Bars(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=self.console
        )
        self.tasks: dict[int, TaskID] = {}
        self.live: Live | None = None
        self.canceling = False

    def _view(self, progress: Progress) -> Group:
        note = "[bold yellow]canceling…[/]" if self.canceling else f"task: {progress.task}"
        return Group(self.bars, device_table(progress), note)

    def start(self, progress: Progress, record: RunRecord) -> None:
        self.console.print(f"run {record.ident}: {record.playbook}")
        self.live = Live(self._view(progress), console=self.console, refresh_per_second=8)
        self.live.start()

    def event(self, event: dict[str, Any], progress: Progress) -> None:
        pass

    def refresh(self, progress: Progress, canceling: bool) -> None:
        self.canceling = canceling
        for b in progress.batches:
            if b.number not in self.tasks:
                self.tasks[b.number] = self.bars.add_task(f"batch {b.number}", total=None)
            self.bars.update(self.tasks[b.number], completed=b.done, total=b.total)
        if self.live:
            self.live.update(self._view(progress))

    def stop(self, progress: Progress, record: RunRecord) -> None:
        self.refresh(progress, False)
        if self.live:
            self.live.stop()
        self.console.print(summary_line(record))


def choose(as_json: bool, out: TextIO = sys.stdout) -> Display:
    if as_json:
        return JsonDisplay(out)
    if out.isatty():
        return LiveDisplay()
    return PlainDisplay(out)
