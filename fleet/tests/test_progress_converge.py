"""site.yml's fast path as rvm-fleet reports it: each host's verdict from the check's own result
events, in the run record and the summary line an operator reads."""

from __future__ import annotations

from rvm_fleet.display import summary_line
from rvm_fleet.progress import Progress
from rvm_fleet.runs import RunRecord


def check_event(host: str, current: bool, reason: str) -> dict:
    return {
        "event": "runner_on_ok",
        "event_data": {
            "host": host,
            "task": "May this host skip the run?",
            "task_action": "rvm_converge_state",
            "res": {"changed": False, "current": current, "reason": reason},
        },
    }


def test_the_verdicts_reach_the_record_and_the_summary() -> None:
    progress = Progress(["dev-a", "dev-b"])
    progress.feed({"event": "playbook_on_play_start", "event_data": {"play": "Converge fast path"}})
    progress.feed(check_event("dev-a", True, "unchanged since its converge 3 min ago"))
    progress.feed(check_event("dev-b", False, "drift: /etc/rvm-edge/config.yml"))
    # the record play's own result later in the run must not overwrite the verdict
    progress.feed(check_event("dev-b", True, "recorded"))
    detail = progress.as_dict()
    assert detail["converge"] == {
        "dev-a": {"current": True, "reason": "unchanged since its converge 3 min ago"},
        "dev-b": {"current": False, "reason": "drift: /etc/rvm-edge/config.yml"},
    }
    record = RunRecord("r1", "converge", [], "site.yml", None, "me@here", 0.0, 12.5, "successful", 0)
    record.detail = detail
    lines = summary_line(record).splitlines()
    assert lines[1:] == [
        "  1 host(s) current (skipped), 1 converged",
        "  dev-b: drift: /etc/rvm-edge/config.yml",
    ]


def test_a_run_without_the_fast_path_says_nothing_of_it() -> None:
    record = RunRecord("r2", "deploy", [], "playbooks/deploy.yml", None, "me@here", 0.0, 3.0, "successful", 0)
    record.detail = Progress(["dev-a"]).as_dict()
    assert len(summary_line(record).splitlines()) == 1
