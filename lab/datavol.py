"""A lab device's data partition: a size-limited ext4 filesystem in a sparse file, loop-mounted on
the control node and bind-mounted at ``/var/lib/rvm-edge`` in the device's container.

Why: a lab container's directories live on the control node's own disk, so "the data partition is
full" (a production-test device fault, docs/prodtest.md) could only be made by filling the control
node's disk, which would hurt everything else on it. A real device keeps its data on a partition of
its own; this gives each lab device one. The file is sparse (it takes only what is written) and
``-m 0`` reserves nothing for root, so the service account sees the same free space as root.

The volume lives under ``.cache/lab-data/`` (git-ignored, and outside what the converge fast path
hashes): ``<name>.ext4`` and its mount point ``<name>/``; the container gets ``<name>/data`` so the
filesystem's root (``lost+found``, and the ballast a fault writes) stays outside the device's view.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_ROOT = ROOT / ".cache" / "lab-data"
SIZE = "2G"
DEST = "/var/lib/rvm-edge"


class VolumeError(Exception):
    """The volume could not be made or mounted; the message says which file and why."""


def image(name: str) -> Path:
    return DATA_ROOT / f"{name}.ext4"


def mountpoint(name: str) -> Path:
    return DATA_ROOT / name


def _run(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise VolumeError(f"{' '.join(argv)} failed: {(proc.stderr or proc.stdout).strip()}")


def ensure(name: str) -> Path:
    """Make the volume once and mount it (again after a reboot); the directory to bind at DEST."""
    mp, img = mountpoint(name), image(name)
    if not os.path.ismount(mp):
        if not img.exists():
            DATA_ROOT.mkdir(parents=True, exist_ok=True)
            tmp = img.with_suffix(".tmp")
            _run(["truncate", "-s", SIZE, str(tmp)])
            _run(["mkfs.ext4", "-q", "-F", "-m", "0", "-L", name[:16], str(tmp)])
            tmp.rename(img)
        mp.mkdir(parents=True, exist_ok=True)
        try:
            _run(["mount", "-o", "loop,noatime", str(img), str(mp)])
        except VolumeError as exc:
            raise VolumeError(
                f"{exc}; the lab's devices need loop devices for their data partitions "
                "(modprobe loop, or a machine whose kernel has them)"
            ) from None
    data = mp / "data"
    data.mkdir(exist_ok=True)
    return data


def remove(name: str) -> bool:
    """Unmount (the loop device goes with it: mount -o loop sets autoclear) and delete the volume."""
    mp, img = mountpoint(name), image(name)
    found = img.exists() or mp.exists()
    if os.path.ismount(mp):
        _run(["umount", str(mp)])
    img.unlink(missing_ok=True)
    if mp.exists():
        shutil.rmtree(mp)  # unmounted by now: what is left is the empty mount point
    return found


def names() -> list[str]:
    """Every lab device that has a volume (made by any `up` or `add` of this checkout)."""
    if not DATA_ROOT.is_dir():
        return []
    return sorted(
        {p.stem for p in DATA_ROOT.glob("*.ext4")} | {p.name for p in DATA_ROOT.iterdir() if p.is_dir()}
    )
