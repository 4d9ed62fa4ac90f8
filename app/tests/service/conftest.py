"""Fixtures for the service tests: the MyRVM simulator (a real server in its own process), a
machine registered on it, and clean-up of ``rvm-edge run`` processes a test started.

The simulator lives in lab/platform_sim; ``make -C app test-service`` installs it into the venv.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.helpers import API_KEY, ServiceProcess

testing = pytest.importorskip(
    "rvm_platform_sim.testing", reason="platform simulator not installed: run `make -C app test-service`"
)


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Any]:
    workdir = tmp_path / "sim"
    workdir.mkdir()
    with testing.start_simulator(workdir) as s:
        yield s


@pytest.fixture
def machine(sim: Any) -> dict[str, Any]:
    return sim.admin("POST", "/machines", {"name": "RVM Lab 1", "api_key": API_KEY})


@pytest.fixture
def services() -> Iterator[list[ServiceProcess]]:
    """Collects started services and kills any still running at the end of the test."""
    started: list[ServiceProcess] = []
    yield started
    for s in started:
        if s.process.poll() is None:
            s.process.kill()
            s.process.wait(10)
        s.notify.close()
