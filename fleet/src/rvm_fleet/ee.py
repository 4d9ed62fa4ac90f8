"""Run a playbook inside the project's execution environment (``rvm-fleet --ee IMAGE``).

The same playbooks, inventory and ansible.cfg as a venv run, through ansible-runner's process
isolation on podman, as AWX / Automation Controller runs them. Two choices keep every path the
playbooks use valid inside the container:

- the project is mounted at its own host path and is the working directory, so ``ANSIBLE_CONFIG``,
  the inventory, role paths, ``.lab/`` and the fact cache are the same strings inside and out;
- runner's ``/runner/artifacts`` is rvm-fleet's artifacts directory, so the events and history of an
  EE run sit where every other run's do.

The container uses the host's network: a control node reaches its fleet over the host's ZeroTier
interface, and the lab's services (ZeroTier Central's stand-in) on the host's loopback. It runs as
the caller (root stays root: the lab's ssh key is readable only by its owner).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

from rvm_fleet.errors import UsageError
from rvm_fleet.project import Project

ENGINE = "podman"
# runner reads its inventory from /runner/inventory in a container; the real one comes with -i.
# A valid empty inventory there keeps ansible from warning that it could not parse it.
EMPTY_INVENTORY = "all: {}\n"


def check_image(image: str) -> None:
    """Refuse before anything starts: no podman, or no such image on this machine."""
    if shutil.which(ENGINE) is None:
        raise UsageError(f"--ee {image}: {ENGINE} is not installed on this control node")
    found = subprocess.run([ENGINE, "image", "exists", image], capture_output=True, text=True, check=False)
    if found.returncode != 0:
        raise UsageError(
            f"--ee {image}: no such image on this control node (build it with `make ee`, or pull it)"
        )


def user_option() -> str:
    """Root stays root (rootful podman); anyone else keeps their uid (rootless podman)."""
    return "--user=0" if os.getuid() == 0 else "--userns=keep-id"


def runner_settings(project: Project, image: str, private: Path, artifacts: Path) -> dict[str, Any]:
    """ansible-runner keyword arguments that run the playbook inside ``image``."""
    mounts = [f"{project.root}:{project.root}", f"{artifacts}:/runner/artifacts"]
    inventory = project.inventory.resolve()
    if not inventory.is_relative_to(project.root):
        where = inventory if inventory.is_dir() else inventory.parent
        mounts.append(f"{where}:{where}:ro")
    (private / "inventory").mkdir(parents=True, exist_ok=True)
    (private / "inventory" / "hosts.yml").write_text(EMPTY_INVENTORY)
    return {
        "process_isolation": True,
        "process_isolation_executable": ENGINE,
        "container_image": image,
        "container_volume_mounts": mounts,
        "container_workdir": str(project.root),
        "container_options": ["--network=host", user_option()],
        "cmdline": f"-i {shlex.quote(str(inventory))}",
    }
