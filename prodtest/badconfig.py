"""Device fault: a bad config pushed. An operator's wrong value reaches deploy.yml; the device must
refuse it before anything changes and keep serving with the config it has.

The value (``source.kind: webcam``) passes the role's argument spec (``rvm_edge_source`` is a free
dict) and only the release's own ``rvm-edge check-config`` knows it is wrong, so the refusal comes
from the template's ``validate:`` on the device: the deepest line of defence. While the play runs,
/readyz is polled every 0.25 s; the figures are the longest stretch not ready (our budget: none),
whether the service was restarted, whether the config file and the release stayed the same, and
whether the update lock was given back.
"""

from __future__ import annotations

import json
import os
import threading
import time

from prodtest.figures import Figure, Results
from prodtest.lab import ROOT, Lab, LabError, podman_exec, sh
from prodtest.progress import STOP, say

STAGE = "Device faults"
BAD_SOURCE = {"kind": "webcam", "device": "0"}
EXPECTED = "source.kind"  # check-config names the key it refuses
PLAY_TIMEOUT_S = 600
POLL_S = 0.25
LOCK = "/run/lock/rvm-edge-update.lock"


def _state(device: str) -> dict[str, str]:
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


def run_bad_config(lab: Lab, device: str, results: Results) -> dict[str, object]:
    say(f"device faults: a bad config (source.kind webcam) pushed to {device} with deploy.yml")
    before = _state(device)
    samples: list[tuple[float, bool]] = []
    done = threading.Event()
    poller = threading.Thread(target=_poll_ready, args=(lab, device, done, samples), daemon=True)
    env = {**os.environ, "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "ANSIBLE_FORCE_COLOR": "0"}
    argv = [
        str(ROOT / ".venv" / "bin" / "ansible-playbook"), "playbooks/deploy.yml", "-l", device,
        "-e", json.dumps({"rvm_edge_source": BAD_SOURCE}),
    ]  # fmt: skip
    poller.start()
    t0 = time.monotonic()
    try:
        proc = sh(argv, PLAY_TIMEOUT_S, env=env)
    finally:
        done.set()
        poller.join(timeout=10)
    play_s = time.monotonic() - t0
    after = _state(device)
    lock_left = podman_exec(device, f"test -e {LOCK} && echo held || echo free").strip()
    task, refusal = first_failure(proc.stdout)
    said = " ".join(refusal.split())
    refused = proc.returncode != 0 and "Render the config" in task and EXPECTED in said
    down = longest_not_ready(samples)
    raw: dict[str, object] = {
        "device": device,
        "returncode": proc.returncode,
        "refused_naming_the_key": refused,
        "play_s": play_s,
        "polls": len(samples),
        "not_ready_polls": sum(1 for _, ok in samples if not ok),
        "longest_not_ready_s": down,
        "before": before,
        "after": after,
        "lock": lock_left,
        "failed_task": task,
        "refusal": refusal[:1500],
    }
    if not samples:
        raise LabError("bad config: /readyz was never polled during the play")
    say(
        f"device faults: bad config {'refused' if refused else 'NOT refused'} after {play_s:.0f} s; "
        f"longest not ready {down:.2f} s over {len(samples)} polls; lock {lock_left}"
    )
    results.add(
        Figure(
            "dev.badconfig.refused", "bad config: refused by the release's check-config, naming source.kind", float(refused), "yes=1", 1, ">=",
            stage=STAGE,
        ),
        Figure(
            "dev.badconfig.not_ready_s", "bad config: longest stretch not ready while it was pushed", down, "s",
            30.0, stage=STAGE, note=f"our budget 0 s; {len(samples)} polls every {POLL_S} s",
        ),
        Figure(
            "dev.badconfig.unchanged", "bad config: same service process, config and release afterwards",
            float(before == after), "yes=1", 1, ">=", stage=STAGE,
            note=f"release {after['release'].rsplit('/', 1)[-1]}",
        ),
        Figure(
            "dev.badconfig.lock_free", "bad config: the update lock given back", float(lock_left == "free"),
            "yes=1", 1, ">=", stage=STAGE,
        ),
    )  # fmt: skip
    return raw
