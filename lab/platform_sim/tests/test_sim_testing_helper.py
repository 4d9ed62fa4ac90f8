"""rvm_platform_sim.testing: the helper other projects' tests use to run a simulator."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rvm_platform_sim.testing import AdminError, start_simulator


def test_start_admin_call_and_clean_stop(tmp_path: Path) -> None:
    with start_simulator(tmp_path, token="helper-token-0123456789") as sim:
        assert sim.edge_base_url.endswith("/api/v1")
        machine = sim.admin("POST", "/machines", {"name": "RVM Lab 9"})
        assert machine["name"] == "RVM Lab 9"
        assert sim.admin("GET", f"/machines/{machine['id']}")["api_key"] == machine["api_key"]
        assert sim.stop() == 0


def test_admin_errors_carry_status_and_body(tmp_path: Path) -> None:
    with start_simulator(tmp_path) as sim:
        with pytest.raises(AdminError) as caught:
            sim.admin("PUT", "/faults", {"error_rate": 7})
        assert caught.value.status == 422
        assert list(caught.value.body["errors"]) == ["error_rate"]
        with pytest.raises(AdminError) as missing:
            sim.admin("GET", "/machines/42")
        assert missing.value.status == 404


def test_a_simulator_that_cannot_start_fails_fast(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="exited with status 2"):
        start_simulator(tmp_path, extra_args=["--prefix", "/bad prefix"])
    assert time.monotonic() - started < 15


def test_kill_and_restart_on_the_same_database(tmp_path: Path) -> None:
    first = start_simulator(tmp_path)
    machine = first.admin("POST", "/machines", {})
    first.kill()
    assert first.process.returncode == -9
    with start_simulator(tmp_path, db_path=first.db_path) as second:
        assert second.admin("GET", "/machines") == [machine]
        assert second.token == first.token
