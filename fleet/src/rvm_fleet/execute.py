"""Run one playbook through ansible-runner's ``run_async`` and turn its events into a result.

The runner thread calls event_handler/status_handler; the main thread redraws the display and
owns SIGINT: Ctrl-C sets an Event that cancel_callback reports, and runner then stops
ansible-playbook. Exit codes: see rvm_fleet.errors.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import ansible_runner

from rvm_fleet import ee, errors, runs
from rvm_fleet.display import Display
from rvm_fleet.progress import Progress
from rvm_fleet.project import Project

SECRET = re.compile(r"TOKEN|PASS|SECRET|KEY|AUTH", re.IGNORECASE)


def exit_code(status: str, progress: Progress, rc: int | None) -> int:
    if status == "canceled":
        return errors.CANCELED
    if progress.aborted:
        return errors.BATCH_ABORTED
    if progress.failed_hosts or status != "successful" or rc:
        return errors.DEVICE_FAILED
    return errors.OK


def run_playbook(
    project: Project,
    record: runs.RunRecord,
    planned: list[str],
    display: Display,
    extravars: dict[str, Any] | None = None,
    envvars: dict[str, str] | None = None,
    image: str | None = None,
) -> runs.RunRecord:
    """Run ``record.playbook`` (limited to ``record.limit``) and return the finished record; inside
    the execution environment ``image`` when one is named (rvm_fleet.ee)."""
    artifacts = project.cache / "artifacts"
    runs.save(artifacts, record)
    progress = Progress(planned)
    guard = threading.Lock()
    cancel = threading.Event()
    finished = threading.Event()
    state = {"status": "starting"}

    def on_event(event: dict[str, Any]) -> bool:
        with guard:
            progress.feed(event)
            display.event(event, progress)
        return True  # keep it in artifacts/<ident>/job_events

    def on_status(data: dict[str, Any], runner_config: Any) -> None:
        state["status"] = data.get("status", state["status"])

    # runner writes env/extravars into private_data_dir: one per run, so that two runs (a converge
    # beside a deploy) never read each other's; the artifacts all go to one artifacts/ directory.
    private = project.cache / "private" / record.ident
    private.mkdir(parents=True, exist_ok=True)
    env = {**project.env(), **(envvars or {})}
    if image:
        where = ee.runner_settings(project, image, private, artifacts)
        env.pop("PATH")  # the control venv's bin is not in the container; the EE's ansible is on its PATH
    else:
        where = {"inventory": str(project.inventory)}
    previous = signal.signal(signal.SIGINT, lambda *_: cancel.set())
    try:
        display.start(progress, record)
        thread, runner = ansible_runner.run_async(
            private_data_dir=str(private),
            artifact_dir=str(artifacts),
            project_dir=str(project.root),
            playbook=record.playbook,
            limit=record.limit,
            extravars=extravars or {},
            envvars=env,
            **where,
            ident=record.ident,
            quiet=True,
            **project.fact_cache(),
            event_handler=on_event,
            status_handler=on_status,
            cancel_callback=cancel.is_set,
            finished_callback=lambda _runner: finished.set(),
        )
        while thread.is_alive():
            thread.join(0.1)
            with guard:
                display.refresh(progress, cancel.is_set())
    finally:
        signal.signal(signal.SIGINT, previous)
        shutil.rmtree(private, ignore_errors=True)
    scrub_command(artifacts / record.ident / "command")
    record.ended = time.time()
    record.status = runner.status
    record.exit_code = exit_code(runner.status, progress, runner.rc)
    record.failed_hosts = progress.failed_hosts
    record.detail = {**record.detail, "rc": runner.rc, **progress.as_dict()}
    runs.save(artifacts, record)
    display.stop(progress, record)
    return record


def scrub_command(path: Path) -> None:
    """Drop the environment runner copies into artifacts/<ident>/command (it holds whatever the
    operator's shell had, ZEROTIER_TOKEN included); keep the command line, cwd and ANSIBLE_* settings."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    env = data.get("env") or {}
    data["env"] = {k: v for k, v in env.items() if k.startswith("ANSIBLE_") and not SECRET.search(k)}
    path.write_text(json.dumps(data))


def artifact_dir(project: Project, ident: str) -> Path:
    return project.cache / "artifacts" / ident
