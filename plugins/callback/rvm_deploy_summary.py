"""Ansible callback: the deploy/rollback summary at the end of a playbook run.

Why a callback: a failed batch stops the play (max_fail_percentage), so no later task or play would
get to print the summary; the stats event always arrives. It reads the ``rvm_edge_deploy_report``
fact the rvm_edge role sets on every host (from, to, result, seconds) and times each serial batch
(Ansible starts the play again for every batch). With ``RVM_DEPLOY_REPORT=FILE`` in the
environment the same figures are also written there as JSON, for scripts and the fleet scenario.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: rvm_deploy_summary
type: aggregate
short_description: summary of rvm-edge deploys and rollbacks per batch and per host
description:
  - At the end of the run, a table of every serial batch (hosts, seconds, failures) and every host
    that reported C(rvm_edge_deploy_report) (action, from, to, result, seconds).
  - Set C(RVM_DEPLOY_REPORT) to a file path to also write the figures as JSON.
requirements:
  - enabled in callbacks_enabled
"""

REPORT_FACT = "rvm_edge_deploy_report"


@dataclass
class Batch:
    """One serial batch: the hosts that ran tasks in it and how long it took."""

    play: str
    started: float
    ended: float | None = None
    hosts: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def to_json(self, index: int) -> dict[str, Any]:
        # Sorted: hosts in a batch run in parallel, so the order their results arrive in is chance,
        # and a report people compare between runs must not change with it.
        return {
            "batch": index,
            "play": self.play,
            "hosts": sorted(self.hosts),
            "failed": sorted(self.failed),
            "seconds": round((self.ended or time.time()) - self.started, 1),
        }


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "rvm_deploy_summary"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[Batch] = []
        self.reports: dict[str, dict[str, Any]] = {}
        self.deploy_plays: set[str] = set()  # plays in which some host reported (site.yml has others)

    # -- events ------------------------------------------------------------------------------------
    def v2_playbook_on_play_start(self, play: Any) -> None:
        now = time.time()
        if self.batches and self.batches[-1].ended is None:
            self.batches[-1].ended = now
        self.batches.append(Batch(play=play.get_name().strip(), started=now))

    def _seen(self, result: Any, failed: bool = False) -> None:
        if not self.batches:
            return
        host = result._host.get_name()
        batch = self.batches[-1]
        if host not in batch.hosts:
            batch.hosts.append(host)
        if failed and host not in batch.failed and not result._result.get("ignore_errors"):
            batch.failed.append(host)
        report = (result._result.get("ansible_facts") or {}).get(REPORT_FACT)
        if isinstance(report, dict):
            self.reports[host] = dict(report)
            self.deploy_plays.add(batch.play)

    def v2_runner_on_ok(self, result: Any) -> None:
        self._seen(result)

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._seen(result, failed=not ignore_errors)

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._seen(result, failed=True)

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._seen(result)

    def v2_playbook_on_stats(self, stats: Any) -> None:
        if self.batches and self.batches[-1].ended is None:
            self.batches[-1].ended = time.time()
        if not self.reports:
            return  # not a deploy or rollback run: nothing to summarise
        ours = [b for b in self.batches if b.hosts and b.play in self.deploy_plays]
        batches = [b.to_json(i + 1) for i, b in enumerate(ours)]
        hosts = [{"host": h, **r} for h, r in sorted(self.reports.items())]
        missing = sorted({h for b in batches for h in b["hosts"]} - set(self.reports))
        self._display.banner("RVM-EDGE DEPLOY SUMMARY")
        for line in self.render(batches, hosts, missing):
            self._display.display(line)
        path = os.environ.get("RVM_DEPLOY_REPORT")
        if path:
            with open(path, "w", encoding="utf-8") as fh:
                json.dump({"batches": batches, "hosts": hosts, "no_report": missing}, fh, indent=2)
            self._display.display(f"deploy report written to {path}")

    # -- rendering ---------------------------------------------------------------------------------
    @staticmethod
    def render(batches: list[dict[str, Any]], hosts: list[dict[str, Any]], missing: list[str]) -> list[str]:
        """Two plain tables (batches, hosts) that read well in a terminal and in CI logs."""
        lines = [f"{'batch':>5}  {'seconds':>8}  {'hosts':<40} failed"]
        for b in batches:
            lines.append(
                f"{b['batch']:>5}  {b['seconds']:>8.1f}  {', '.join(b['hosts'])[:40]:<40} "
                f"{', '.join(b['failed']) or '-'}"
            )
        lines.append("")
        lines.append(f"{'host':<18} {'action':<9} {'from':<14} {'to':<14} {'seconds':>8}  result")
        for h in hosts:
            extra = ""
            if h.get("rollback_s") not in (None, ""):
                extra = f" (failed after {h.get('failed_after_s')} s, rollback {h['rollback_s']} s)"
            lines.append(
                f"{h['host']:<18} {h.get('action', ''):<9} {h.get('from') or '-'!s:<14} "
                f"{h.get('to') or '-'!s:<14} {float(h.get('seconds') or 0):>8.1f}  {h.get('result', '')}{extra}"
            )
        for host in missing:
            lines.append(f"{host:<18} stopped before it reported (see its failure above)")
        return lines
