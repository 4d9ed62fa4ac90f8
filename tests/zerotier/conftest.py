"""Fixtures for the ZeroTier tests: a fresh Central double per test on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from zt_helpers import Double


@pytest.fixture
def double() -> Iterator[Double]:
    running = Double()
    yield running
    running.close()
