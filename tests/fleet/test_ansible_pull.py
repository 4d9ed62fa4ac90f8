"""ansible-pull on a lab device (roles/ansible_pull, playbooks/pull.yml; docs/artifacts-and-pull.md).

The project's repository is served by the lab's git daemon on rvm-platform. A version pin changed
there (rvm_edge_version in inventories/lab/group_vars/rvm_devices.yml, the variable the push path
reads) reaches the device through its own timer's service: no control-node run is involved once the
device is set up. The timer is not waited for: its service is started directly.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from artifact_lab import (
    DEVICE,
    OPT_IN,
    PINNED,
    SERVER,
    Published,
    back_to_pinned,
    current_release,
    in_container,
    published_fixture,  # noqa: F401  (the session fixture `published`)
)
from fleet_helpers import FIGURES, ROOT, playbook, readyz, sh

PIN_FILE = "inventories/lab/group_vars/rvm_devices.yml"
BARE = "/srv/git/rvm-fleet.git"

pytestmark = OPT_IN


def git(*args: str, cwd: Path) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, (args, proc.stderr)
    return proc.stdout


def publish_repo(work: Path) -> str:
    """Put the work clone's main branch into the lab's repository (as its git account); its commit."""
    bundle = work.parent / "repo.bundle"
    git("bundle", "create", "--quiet", str(bundle), "main", cwd=work)
    assert sh(["podman", "cp", str(bundle), f"{SERVER}:/tmp/repo.bundle"]).returncode == 0
    in_container(
        SERVER,
        f"chmod 0644 /tmp/repo.bundle && runuser -u rvm-git -- git -C {BARE} fetch --quiet --force "
        "/tmp/repo.bundle +main:refs/heads/main && rm /tmp/repo.bundle",
    )
    return git("rev-parse", "main", cwd=work).strip()


def pull(unit: str = "rvm-pull.service") -> str:
    """Start the timer's service and wait for it (a oneshot); what that run wrote to the journal."""
    proc = sh(["podman", "exec", DEVICE, "timeout", "600", "systemctl", "start", unit], timeout=660)
    run = in_container(DEVICE, f"systemctl show -P InvocationID {unit}").strip()
    log = in_container(DEVICE, f"journalctl _SYSTEMD_INVOCATION_ID={run} -o cat --no-pager")
    assert proc.returncode == 0, (proc.stderr, log[-4000:])
    return log


@pytest.fixture(scope="module")
def work_clone(published: Published, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The project at its last commit, set up for ansible-pull on the device; undone afterwards."""
    work = tmp_path_factory.mktemp("pull") / "rvm-fleet"
    git(
        "clone",
        "--quiet",
        "--no-hardlinks",
        "--branch",
        git("branch", "--show-current", cwd=ROOT).strip(),
        str(ROOT),
        str(work),
        cwd=ROOT,
    )
    git("checkout", "--quiet", "-B", "main", cwd=work)
    publish_repo(work)
    address = published.base_url.split("/")[2].split(":")[0]
    setup = {
        "ansible_pull_repo_url": f"git://{address}/rvm-fleet.git",
        "ansible_pull_extra_vars": {"rvm_edge_bundle_url": published.base_url},
    }
    playbook("-l", DEVICE, "-e", json.dumps(setup), path="playbooks/pull_setup.yml")
    try:
        yield work
    finally:
        in_container(DEVICE, "systemctl disable --now rvm-pull.timer rvm-pull-forced.timer")
        back_to_pinned()


def test_the_timers_are_installed_and_never_overlap(work_clone: Path) -> None:
    timers = in_container(DEVICE, "systemctl is-enabled rvm-pull.timer rvm-pull-forced.timer").split()
    assert timers == ["enabled", "enabled"]
    shown = in_container(DEVICE, "systemctl show -P RandomizedDelayUSec rvm-pull.timer").strip()
    assert shown not in ("", "0")
    # Another run holds the lock: the service does nothing and is not counted as failed.
    log = sh(
        [
            "podman",
            "exec",
            DEVICE,
            "flock",
            "/run/lock/rvm-pull.lock",
            "systemctl",
            "start",
            "rvm-pull-forced.service",
        ]
    )
    assert log.returncode == 0, log.stderr
    status = in_container(DEVICE, "systemctl show -P ExecMainStatus rvm-pull-forced.service").strip()
    result = in_container(DEVICE, "systemctl show -P Result rvm-pull-forced.service").strip()
    assert (status, result) == ("75", "success")
    assert current_release() == PINNED


def test_a_changed_pin_in_the_lab_repository_reaches_the_device(
    work_clone: Path, published: Published
) -> None:
    pins = work_clone / PIN_FILE
    text = pins.read_text()
    assert f'rvm_edge_version: "{PINNED}"' in text
    pins.write_text(
        text.replace(f'rvm_edge_version: "{PINNED}"', f'rvm_edge_version: "{published.version}"')
        + f'rvm_edge_bundle_sha256: "{published.sha256}"\n'
    )
    git(
        "-c",
        "user.name=lab",
        "-c",
        "user.email=lab@rvm.invalid",
        "commit",
        "--quiet",
        "-am",
        f"lab: pin {published.version}",
        cwd=work_clone,
    )
    commit = publish_repo(work_clone)

    log = pull()

    assert current_release() == published.version, log[-4000:]
    assert readyz(DEVICE)["ready"] is True
    checked_out = in_container(DEVICE, "git -C /var/lib/rvm-pull/checkout rev-parse HEAD").strip()
    assert checked_out == commit
    recap = re.search(r"rvm-lab-03\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0", log)
    assert recap and int(recap.group(1)) > 0, log[-4000:]

    # Nothing changed in the repository since: the routine run stops before the playbook.
    again = pull()
    assert "Repository has not changed, quitting" in again, again[-2000:]
    FIGURES["ansible_pull_deploy_recap_changed"] = int(recap.group(1))
