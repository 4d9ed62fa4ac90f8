"""Bundles from the lab's artifact server (rvm_edge_bundle_url; docs/artifacts-and-pull.md).

A device downloads the bundle itself, resumes a download that was cut off, and refuses one whose
sha256 is not the bundle's: nothing is unpacked and the running release stays current.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from artifact_lab import (
    DEVICE,
    OPT_IN,
    PINNED,
    SERVER,
    Published,
    back_to_pinned,
    bundle_name,
    current_release,
    in_container,
    installed_releases,
    publish,
    published_fixture,  # noqa: F401  (the session fixture `published`)
    sha256,
)
from fleet_helpers import FIGURES, readyz, sh

PART = f"/var/cache/rvm-edge/{bundle_name('0.1.0-art')}.part"
ACCESS_LOG = "/var/log/nginx/artifacts.log"

pytestmark = OPT_IN


def deploy(**extra: object) -> subprocess.CompletedProcess[str]:
    """playbooks/deploy.yml on the one device, with the given variables (a short lab health window)."""
    extra = {"rvm_edge_health_window_s": 3, **extra}
    return sh(["ansible-playbook", "playbooks/deploy.yml", "-l", DEVICE, "-e", json.dumps(extra)])


def flat(proc: subprocess.CompletedProcess[str]) -> str:
    """The run's output with its line wrapping undone (messages are folded YAML)."""
    return " ".join((proc.stdout + proc.stderr).split())


def upload_dir_files() -> list[str]:
    return in_container(DEVICE, "ls -A /var/cache/rvm-edge").split()


def test_a_truncated_artifact_is_refused_and_never_becomes_current(
    published: Published, tmp_path: Path
) -> None:
    bad = tmp_path / bundle_name("0.1.0-bad")
    bad.write_bytes(published.path.read_bytes()[: published.size // 2])
    publish(bad, bad.name)

    proc = deploy(
        rvm_edge_version="0.1.0-bad",
        rvm_edge_bundle_url=published.base_url,
        rvm_edge_bundle_sha256=published.sha256,
    )

    assert proc.returncode != 0
    assert (
        f"Refused {published.base_url}{bad.name}: sha256 {sha256(bad)} "
        f"({published.size // 2} bytes), expected {published.sha256}"
    ) in flat(proc), proc.stdout[-3000:]
    assert current_release() == PINNED
    assert "0.1.0-bad" not in installed_releases()
    assert upload_dir_files() == []  # the bad download is gone: the next run starts afresh
    assert readyz(DEVICE)["ready"] is True


def test_a_missing_artifact_stops_the_deploy_before_anything_changes(published: Published) -> None:
    proc = deploy(
        rvm_edge_version="9.9.9",
        rvm_edge_bundle_url=published.base_url,
        rvm_edge_bundle_sha256=published.sha256,
    )

    assert proc.returncode != 0
    assert f"cannot get {published.base_url}{bundle_name('9.9.9')}: HTTP 404" in flat(proc)
    assert current_release() == PINNED


def test_an_interrupted_download_resumes_and_the_release_reaches_the_device(
    published: Published,
) -> None:
    log_lines = int(in_container(SERVER, f"wc -l < {ACCESS_LOG}").strip())
    try:
        # The link drops after 2 s: curl stops (nginx serves /slow/ at 20 MB/s, the bundle is 180 MB).
        cut = deploy(
            rvm_edge_version=published.version,
            rvm_edge_bundle_url=published.slow_url,
            rvm_edge_bundle_sha256=published.sha256,
            rvm_edge_bundle_download_timeout_s=2,
            rvm_edge_bundle_download_retries=0,
        )
        assert cut.returncode != 0
        assert "the partial download stays in" in flat(cut), cut.stdout[-3000:]
        kept = int(in_container(DEVICE, f"stat -c %s {PART}").strip())
        assert 0 < kept < published.size
        assert current_release() == PINNED

        resumed = deploy(
            rvm_edge_version=published.version,
            rvm_edge_bundle_url=published.slow_url,
            rvm_edge_bundle_sha256=published.sha256,
        )
        assert resumed.returncode == 0, resumed.stdout[-4000:]

        # The second request asked for the rest only, and got exactly that.
        name = bundle_name(published.version)
        requests = in_container(SERVER, f"tail -n +{log_lines + 1} {ACCESS_LOG}").splitlines()
        gets = [r for r in requests if f'"GET /slow/bundles/{name} ' in r]
        assert len(gets) == 2, requests
        resume = re.search(r'" (\d{3}) (\d+) range="bytes=(\d+)-"', gets[1])
        assert resume, gets[1]
        status, sent, start = (int(g) for g in resume.groups())
        assert (status, start, sent) == (206, kept, published.size - kept)

        assert current_release() == published.version
        assert readyz(DEVICE)["ready"] is True
        assert upload_dir_files() == []
        FIGURES["artifact_resumed_from_mb"] = round(kept / 1048576, 1)
    finally:
        back_to_pinned()
