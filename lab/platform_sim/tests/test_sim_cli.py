"""The command line and the process: settings errors, prefixes, persistence, systemd notify."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import SimServer


def _run_cli(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rvm_platform_sim", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={k: v for k, v in {**os.environ, **(env or {})}.items() if v is not None},
    )


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text("0123456789abcdef0123\n")
    return path


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (
            ["--admin-token-file", "/nonexistent/token"],
            "--admin-token-file /nonexistent/token: cannot read it",
        ),
        (["--prefix", "/api v1"], "--prefix '/api v1'"),
        (["--admin-prefix", "/"], "--admin-prefix must not be the root"),
        (["--admin-prefix", "/api/v1"], "must be separate from the edge API"),
        (["--port", "70000"], "--port 70000"),
        (["--db", "/nonexistent/dir/sim.sqlite3"], "directory /nonexistent/dir does not exist"),
    ],
)
def test_bad_settings_exit_2_naming_the_option(
    tmp_path: Path, token_file: Path, extra: list[str], needle: str
) -> None:
    args = ["--db", str(tmp_path / "db"), "--admin-token-file", str(token_file), "--port", "0", *extra]
    result = _run_cli(args)
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr


def test_weak_token_is_refused(tmp_path: Path) -> None:
    weak = tmp_path / "weak"
    weak.write_text("secret\n")
    result = _run_cli(["--db", str(tmp_path / "db"), "--admin-token-file", str(weak)])
    assert result.returncode == 2
    assert "at least 16 characters" in result.stderr


def test_no_token_at_all_says_how_to_give_one(tmp_path: Path) -> None:
    result = _run_cli(["--db", str(tmp_path / "db")], env={"CREDENTIALS_DIRECTORY": ""})
    assert result.returncode == 2
    assert "LoadCredential=admin-token" in result.stderr


def test_token_from_the_systemd_credentials_directory(
    tmp_path: Path, sim_factory: Callable[..., SimServer]
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "admin-token").write_text("from-credentials-dir-0123\n")
    server = sim_factory(extra_args=[], env={"CREDENTIALS_DIRECTORY": str(creds)}, token_arg=False)
    reply = server.http.get(
        f"{server.base_url}/_sim/machines",
        headers={"Authorization": "Bearer from-credentials-dir-0123"},
        timeout=10,
    )
    assert reply.status_code == 200


def test_custom_prefixes(sim_factory: Callable[..., SimServer]) -> None:
    server = sim_factory(extra_args=["--prefix", "platform/api/v2/", "--admin-prefix", "/lab-admin"])
    assert (server.prefix, server.admin_prefix) == ("/platform/api/v2", "/lab-admin")
    machine = server.create_machine()
    reply = server.http.post(
        f"{server.base_url}/platform/api/v2/edge/heartbeat",
        headers={"X-RVM-API-KEY": machine["api_key"]},
        json={},
    )
    assert reply.status_code == 200
    old = server.http.post(
        f"{server.base_url}/api/v1/edge/heartbeat", headers={"X-RVM-API-KEY": machine["api_key"]}
    )
    assert old.status_code == 404


def test_data_survives_a_restart(
    tmp_path: Path, sim_factory: Callable[..., SimServer], deposit_form: Callable[..., dict[str, Any]]
) -> None:
    db = tmp_path / "persist.sqlite3"
    first = sim_factory(db=db)
    machine = first.create_machine()
    first.admin_ok("POST", f"/machines/{machine['id']}/commands", json={"action": "RESTART"})
    assert first.edge("deposit", machine["api_key"], files=deposit_form()).status_code == 201
    assert first.stop() == 0
    second = sim_factory(db=db)
    assert len(second.admin_ok("GET", "/deposits")) == 1
    assert [
        c["action"] for c in second.edge("heartbeat", machine["api_key"], json_body={}).json()["commands"]
    ] == ["RESTART"]


def test_port_in_use_exits_1(tmp_path: Path, token_file: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _run_cli(
            ["--db", str(tmp_path / "db"), "--admin-token-file", str(token_file), "--port", str(port)]
        )
    assert result.returncode == 1
    assert "cannot listen" in result.stdout


def test_systemd_notify_ready_watchdog_and_stopping(
    tmp_path: Path, sim_factory: Callable[..., SimServer]
) -> None:
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(address)
        listener.settimeout(20)
        server = sim_factory(env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"})
        received: list[str] = []

        def wait_for(prefix: str) -> None:
            while not any(m.startswith(prefix) for m in received):
                received.extend(listener.recv(4096).decode().splitlines())

        wait_for("READY=1")
        assert any(
            m.startswith(f"STATUS=listening on 127.0.0.1:{server.base_url.rsplit(':', 1)[1]}")
            for m in received
        )
        wait_for("WATCHDOG=1")
        server.process.send_signal(signal.SIGTERM)
        wait_for("STOPPING=1")
        assert server.process.wait(timeout=15) == 0
