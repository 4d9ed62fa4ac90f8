"""A deploy.yml pushed to one device while its /readyz is polled: the machinery the "bad input
pushed" device faults share (prodtest.badconfig, prodtest.badmodel), and the mid-deploy faults
(prodtest.middeploy), which inject their fault from a hook that runs while the play runs.

Such a push must be refused before anything changes. The figures that say so come from here: the
longest stretch the device was not ready while the play ran (our budget: none), whether its
service process, config and release are the ones it had, and whether the update lock was given back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prodtest.lab import ROOT, Lab, LabError, podman_exec, sh
from prodtest.progress import STOP

PLAY_TIMEOUT_S = 600
POLL_S = 0.25
LOCK = "/run/lock/rvm-edge-update.lock"
STOP_GRACE_S = 15  # a play given up gets SIGTERM, then SIGKILL after this long

# Runs in the caller's thread while the play runs, with the play's process (its own process group):
# it may inject a fault, wait on the device, or give the play up with stop_play().
Hook = Callable[["subprocess.Popen[str]"], None]


@dataclass
class Pushed:
    """One push: the play's outcome, the polls, and the device before and after."""

    device: str
    returncode: int
    output: str
    play_s: float
    samples: list[tuple[float, bool]]
    before: dict[str, str]
    after: dict[str, str]
    lock: str
    failed_task: str = field(init=False)
    refusal: str = field(init=False)

    def __post_init__(self) -> None:
        self.failed_task, self.refusal = first_failure(self.output)

    @property
    def longest_not_ready_s(self) -> float:
        return longest_not_ready(self.samples)

    @property
    def unchanged(self) -> bool:
        return self.before == self.after

    def raw(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "returncode": self.returncode,
            "play_s": self.play_s,
            "polls": len(self.samples),
            "not_ready_polls": sum(1 for _, ok in self.samples if not ok),
            "longest_not_ready_s": self.longest_not_ready_s,
            "before": self.before,
            "after": self.after,
            "lock": self.lock,
            "failed_task": self.failed_task,
            "refusal": self.refusal[:1500],
        }


def device_state(device: str) -> dict[str, str]:
    """What must not change: the service's main PID, the config's content, the running release."""
    out = podman_exec(
        device,
        "systemctl show -p MainPID --value rvm-edge; sha256sum < /etc/rvm-edge/config.yml;"
        " readlink /opt/rvm-edge/current",
    ).split("\n")
    return {"pid": out[0].strip(), "config_sha256": out[1].split()[0], "release": out[2].strip()}


def _poll_ready(lab: Lab, device: str, done: threading.Event, samples: list[tuple[float, bool]]) -> None:
    """Bounded by the play's own timeout: the caller sets ``done`` when the play ends."""
    deadline = time.monotonic() + PLAY_TIMEOUT_S + 30
    while not done.is_set() and not STOP.is_set() and time.monotonic() < deadline:
        samples.append((time.monotonic(), lab.readyz(device, timeout=2)))
        done.wait(POLL_S)


def playbook_argv(
    device: str,
    extra_vars: dict[str, Any],
    playbook: str = "playbooks/deploy.yml",
    inventory: str | None = None,
) -> list[str]:
    """``ansible-playbook PLAYBOOK [-i INVENTORY] -l DEVICE -e EXTRA_VARS``; ansible.cfg's inventory
    (inventories/lab) unless another is named."""
    argv = [str(ROOT / ".venv" / "bin" / "ansible-playbook"), playbook]
    if inventory is not None:
        argv += ["-i", inventory]
    return [*argv, "-l", device, "-e", json.dumps(extra_vars)]


def play_env() -> dict[str, str]:
    return {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}


def stop_play(play: subprocess.Popen[str]) -> bool:
    """Give a running play up as an operator's dying run would: SIGTERM to its process group (its ssh
    and workers too), SIGKILL after STOP_GRACE_S. True when it was still running."""
    if play.poll() is not None:
        return False
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(play.pid, sig)
        except ProcessLookupError:
            break
        try:
            play.wait(timeout=STOP_GRACE_S)
            break
        except subprocess.TimeoutExpired:
            continue
    return True


def _play_with_hook(argv: list[str], during: Hook) -> tuple[int, str]:
    """The play in its own process group with its log in a file (no pipe to fill while the hook
    runs); bounded by PLAY_TIMEOUT_S whatever the hook does, and never left running."""
    t_end = time.monotonic() + PLAY_TIMEOUT_S
    with tempfile.TemporaryFile("w+") as log:
        play = subprocess.Popen(
            argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True, env=play_env(),
            start_new_session=True,
        )  # fmt: skip
        try:
            during(play)
            play.wait(timeout=max(1.0, t_end - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        finally:
            stop_play(play)
        log.seek(0)
        return play.returncode, log.read()


def push(
    lab: Lab,
    device: str,
    extra_vars: dict[str, Any],
    inventory: str | None = None,
    during: Hook | None = None,
) -> Pushed:
    """``deploy.yml -l DEVICE -e EXTRA_VARS`` with /readyz polled every POLL_S seconds meanwhile;
    ``inventory`` instead of ansible.cfg's, ``during`` run while the play runs (a fault injected)."""
    before = device_state(device)
    samples: list[tuple[float, bool]] = []
    done = threading.Event()
    poller = threading.Thread(target=_poll_ready, args=(lab, device, done, samples), daemon=True)
    argv = playbook_argv(device, extra_vars, inventory=inventory)
    poller.start()
    t0 = time.monotonic()
    try:
        if during is None:
            proc = sh(argv, PLAY_TIMEOUT_S, env=play_env())
            returncode, output = proc.returncode, proc.stdout
        else:
            returncode, output = _play_with_hook(argv, during)
    finally:
        done.set()
        poller.join(timeout=10)
    play_s = time.monotonic() - t0
    if not samples:
        raise LabError(f"{device}: /readyz was never polled during the play")
    lock = podman_exec(device, f"test -e {LOCK} && echo held || echo free").strip()
    return Pushed(device, returncode, output, play_s, samples, before, device_state(device), lock)


def longest_not_ready(samples: list[tuple[float, bool]]) -> float:
    """The longest stretch of consecutive not-ready samples, in seconds (0 when always ready)."""
    worst, start = 0.0, None
    for t, ok in samples:
        if not ok and start is None:
            start = t
        elif ok and start is not None:
            worst, start = max(worst, t - start), None
    if start is not None and samples:
        worst = max(worst, samples[-1][0] - start)
    return worst


def first_failure(output: str) -> tuple[str, str]:
    """The task that failed first in an ansible-playbook log, and its result block ('' when none)."""
    lines = output.splitlines()
    task = ""
    for i, line in enumerate(lines):
        if line.startswith("TASK ["):
            task = line
        elif line.startswith("fatal: ["):
            block = [line]
            for more in lines[i + 1 :]:
                if more.startswith(("TASK [", "PLAY ", "RUNNING HANDLER")):
                    break
                block.append(more)
            return task, "\n".join(block)
    return "", ""
