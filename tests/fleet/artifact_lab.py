"""The lab's artifact server as the artifact and ansible-pull checks use it (lab/artifact_server).

One extra release, ``0.1.0-art`` (the same app under another version, built by the release builder
once per session into .cache/fleet-artifacts), published on rvm-platform beside the bundles of dist/
that site.yml put there. The checks run on one device and roll it back to the lab's pinned release
when they are done, so the final converge finds nothing to change.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from fleet_helpers import ROOT, opt_in, playbook, sh

# Passed on the lab (2026-12-06: 5 checks in 222 s, again in 186 s); outside CI's time budget for now.
OPT_IN = opt_in("RVM_FLEET_ARTIFACTS", "the artifact server and ansible-pull checks", "~4 min")

DEVICE = "rvm-lab-03"
SERVER = "rvm-platform"
PINNED = "0.1.0"
VERSION = "0.1.0-art"
ARCH = "x86_64"
SERVE_DIR = "/srv/rvm-artifacts/bundles"
CACHE = ROOT / ".cache" / "fleet-artifacts"


@dataclass(frozen=True)
class Published:
    """A bundle on the lab's artifact server, and what a deploy needs to name it."""

    version: str
    path: Path
    sha256: str
    size: int
    base_url: str  # http://<rvm-platform>:8081/bundles/
    slow_url: str  # the same files at nginx's limit_rate (lab/artifact_server)


def bundle_name(version: str) -> str:
    return f"rvm-edge-{version}-{ARCH}.tar.gz"


def in_container(host: str, script: str) -> str:
    proc = sh(["podman", "exec", host, "sh", "-c", script])
    assert proc.returncode == 0, (host, script, proc.stdout, proc.stderr)
    return proc.stdout


def server_address() -> str:
    return in_container(SERVER, "ip -4 -o addr show eth0").split()[3].split("/")[0]


def publish(path: Path, name: str) -> None:
    """Put a file on the artifact server the way site.yml publishes dist/ (root 0644)."""
    proc = sh(["podman", "cp", str(path), f"{SERVER}:{SERVE_DIR}/{name}"])
    assert proc.returncode == 0, proc.stderr
    in_container(SERVER, f"chown root:root {SERVE_DIR}/{name} && chmod 0644 {SERVE_DIR}/{name}")


def sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def current_release(device: str = DEVICE) -> str:
    return Path(in_container(device, "readlink -f /opt/rvm-edge/current").strip()).name


def installed_releases(device: str = DEVICE) -> list[str]:
    return in_container(device, "ls /opt/rvm-edge/releases").split()


def back_to_pinned(device: str = DEVICE) -> None:
    """Roll the device back to the lab's pinned release (seconds: it is still installed)."""
    if current_release(device) != PINNED:
        playbook("-l", device, "-e", f"rvm_edge_rollback_to={PINNED}", path="playbooks/rollback.yml")
    assert current_release(device) == PINNED


def build_bundle() -> Path:
    """The extra release, built once (the builder's cache makes it about half a minute)."""
    path = CACHE / bundle_name(VERSION)
    if not path.exists():
        proc = sh(
            [
                sys.executable,
                "release/build_bundle.py",
                "--arch",
                ARCH,
                "--python",
                "3.11",
                "--models",
                "app/models/lab",
                "--skip-models",
                "sam2",
                "--version",
                VERSION,
                "--out",
                str(CACHE),
            ]
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert json.loads(proc.stdout.strip().splitlines()[-1])["version"] == VERSION
    return path


@pytest.fixture(scope="session", name="published")
def published_fixture(fleet) -> Published:
    """0.1.0-art built and on the artifact server, the device on the pinned release."""
    playbook(path="lab/artifact_server/playbook.yml")
    path = build_bundle()
    publish(path, path.name)
    address = server_address()
    back_to_pinned()
    return Published(
        version=VERSION,
        path=path,
        sha256=sha256(path),
        size=path.stat().st_size,
        base_url=f"http://{address}:8081/bundles/",
        slow_url=f"http://{address}:8081/slow/bundles/",
    )
