"""The zerotier-one LAB STAND-IN: its local service API and zerotier-cli output, joining through the
Central double, and the signed file:// apt repository the zerotier role installs it from."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from zt_helpers import NWID, REPO, TOKEN, Double, request, wait_for

STANDIN = REPO / "lab" / "zerotier_one"


class Daemon:
    def __init__(self, home: Path, central_url: str) -> None:
        self.home = home
        env = {
            **os.environ,
            "ZT_STANDIN_CENTRAL_URL": central_url,
            "ZT_STANDIN_POLL_S": "0.1",
            "ZT_HOME": str(home),
        }
        self.env = env
        port_file = home / "zerotier-one.port"
        port_file.unlink(missing_ok=True)  # a restart writes its new port
        self.proc = subprocess.Popen(
            [sys.executable, str(STANDIN / "src" / "zerotier-one"), "-p0", str(home)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        wait_for(lambda: port_file.exists() and port_file.read_text(), what="the daemon's port file")
        self.url = f"http://127.0.0.1:{port_file.read_text()}"
        self.token = (home / "authtoken.secret").read_text().strip()
        self.node = (home / "identity.public").read_text().split(":")[0]

    def api(self, method: str, path: str) -> tuple[int, Any, dict[str, str]]:
        return request(
            f"{self.url}{path}", method, b"{}" if method == "POST" else None, {"X-ZT1-Auth": self.token}
        )

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, str(STANDIN / "src" / "zerotier-cli"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        return done.stdout

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def daemon(tmp_path: Path, double: Double) -> Iterator[Daemon]:
    running = Daemon(tmp_path / "zt-home", double.url)
    yield running
    running.stop()


def network_status(daemon: Daemon) -> str:
    status, body, _ = daemon.api("GET", f"/network/{NWID}")
    return body.get("status", "") if status == 200 else ""


def test_status_needs_the_token_and_files_are_private(daemon: Daemon) -> None:
    assert request(f"{daemon.url}/status")[0] == 401
    status, body, _ = daemon.api("GET", "/status")
    assert status == 200 and body["address"] == daemon.node and body["version"] == "1.14.2"
    assert len(daemon.node) == 10
    assert (daemon.home / "authtoken.secret").stat().st_mode & 0o077 == 0
    assert (daemon.home / "identity.secret").stat().st_mode & 0o077 == 0


def test_join_denied_until_authorized_then_ok_with_address(daemon: Daemon, double: Double) -> None:
    status, body, _ = daemon.api("POST", f"/network/{NWID}")
    assert status == 200 and body["status"] == "REQUESTING_CONFIGURATION"
    wait_for(lambda: network_status(daemon) == "ACCESS_DENIED", what="ACCESS_DENIED")
    # The node reached the controller: Central lists it as an unauthorized member.
    status, member, _ = request(
        f"{double.url}/api/v1/network/{NWID}/member/{daemon.node}",
        headers={"Authorization": f"token {TOKEN}"},
    )
    assert status == 200 and member["config"]["authorized"] is False and member["clientVersion"] == "1.14.2"
    request(
        f"{double.url}/api/v1/network/{NWID}/member/{daemon.node}",
        "POST",
        {"config": {"authorized": True}},
        {"Authorization": f"token {TOKEN}"},
    )
    wait_for(lambda: network_status(daemon) == "OK", what="status OK")
    _, net, _ = daemon.api("GET", f"/network/{NWID}")
    assert net["assignedAddresses"] == ["10.147.17.10/24"]
    assert net["name"] == "rvm-lab"
    assert daemon.cli("info") == f"200 info {daemon.node} 1.14.2 ONLINE\n"
    lines = daemon.cli("listnetworks").splitlines()
    assert lines[0] == "200 listnetworks <nwid> <name> <mac> <status> <type> <dev> <ZT assigned ips>"
    fields = lines[1].split()
    assert fields[:3] == ["200", "listnetworks", NWID] and fields[5:] == [
        "OK",
        "PRIVATE",
        f"zt{NWID[:8]}",
        "10.147.17.10/24",
    ]
    assert json.loads(daemon.cli("-j", "listnetworks"))[0]["status"] == "OK"


def test_unknown_network_and_leave_and_restart(daemon: Daemon, double: Double, tmp_path: Path) -> None:
    assert daemon.cli("join", "ffffffffffffffff") == "200 join OK\n"
    wait_for(
        lambda: daemon.api("GET", "/network/ffffffffffffffff")[1].get("status") == "NOT_FOUND",
        what="NOT_FOUND",
    )
    assert daemon.cli("leave", "ffffffffffffffff") == "200 leave OK\n"
    assert daemon.api("GET", "/network/ffffffffffffffff")[0] == 404
    daemon.cli("join", NWID)
    node = daemon.node
    daemon.stop()
    again = Daemon(daemon.home, double.url)
    try:
        assert again.node == node, "the identity survives a restart"
        assert again.api("GET", f"/network/{NWID}")[0] == 200, "joined networks survive a restart"
    finally:
        again.stop()


@pytest.mark.skipif(
    not all(shutil.which(t) for t in ("dpkg-deb", "dpkg-scanpackages", "gpg", "apt-get")),
    reason="needs dpkg-dev, gpg, apt",
)
def test_signed_apt_repository(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(STANDIN / "build_repo.py"),
            "--out",
            str(tmp_path / "repo"),
            "--central-url",
            "http://10.0.0.1:9994",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    built = json.loads(out.stdout)
    assert len(built["fingerprint"]) == 40
    lists = tmp_path / "apt" / "lists"
    (lists / "partial").mkdir(parents=True)
    (tmp_path / "apt" / "cache" / "archives" / "partial").mkdir(parents=True)
    sources = tmp_path / "apt" / "sources.list"
    sources.write_text(f"deb [signed-by={built['key']}] file://{built['repo']} lab main\n")
    options = [
        f"-oDir::Etc::SourceList={sources}",
        "-oDir::Etc::SourceParts=/dev/null",
        f"-oDir::State::Lists={lists}",
        f"-oDir::Cache={tmp_path / 'apt' / 'cache'}",
        "-oDir::State::status=/dev/null",
    ]
    update = subprocess.run(["apt-get", *options, "update"], capture_output=True, text=True, check=False)
    assert update.returncode == 0 and "NO_PUBKEY" not in update.stderr, update.stderr
    policy = subprocess.run(
        ["apt-cache", *options, "policy", "zerotier-one"], capture_output=True, text=True, check=True
    )
    assert "Candidate: 1.14.2-lab1" in policy.stdout
    # A repository signed by another key is refused: the pin means something.
    other = tmp_path / "other"
    subprocess.run(
        [
            sys.executable,
            str(STANDIN / "build_repo.py"),
            "--out",
            str(other),
            "--central-url",
            "http://10.0.0.1:9994",
        ],
        capture_output=True,
        check=True,
    )
    sources.write_text(f"deb [signed-by={built['key']}] file://{other} lab main\n")
    refused = subprocess.run(["apt-get", *options, "update"], capture_output=True, text=True, check=False)
    assert "NO_PUBKEY" in refused.stderr, refused.stderr
    control = subprocess.run(
        ["dpkg-deb", "-f", built["deb"], "Package", "Depends"], capture_output=True, text=True, check=True
    )
    assert control.stdout.splitlines() == ["Package: zerotier-one", "Depends: python3"]
