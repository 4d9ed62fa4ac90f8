"""Fixtures for the rvm-backup tests; the helpers live in rvm_backup_helpers (a unique module name, so they
never collide with another test directory's). The unit tests import the package from src/, which
agents/conftest.py puts on sys.path; the end-to-end tests run the zipapp built from it, as devices do."""

from __future__ import annotations

from pathlib import Path

import pytest

from rvm_backup_helpers import Device, build_driver, make_template_repository, restic_binary


@pytest.fixture(scope="session")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The zipapp, built once per session from the package's sources."""
    return build_driver(tmp_path_factory.mktemp("zipapp") / "rvm-backup.pyz")


@pytest.fixture(scope="session")
def template_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised repository with a fast key, copied by every test that does not test `restic init`."""
    restic_binary()
    return make_template_repository(tmp_path_factory.mktemp("template"))


@pytest.fixture
def device(tmp_path: Path, driver: Path) -> Device:
    """A fresh device: config, etc files, no database and no repository yet."""
    restic_binary()
    return Device(tmp_path / "device", driver)


@pytest.fixture
def ready_device(device: Device, template_repository: Path) -> Device:
    """A device with a live database (40 deposits) and an initialised repository."""
    device.use_repository(template_repository)
    device.create_database(40)
    return device
