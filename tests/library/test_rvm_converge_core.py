"""The converge record's decisions (library/module_utils/rvm_converge_core.py): when a host may skip
a run, and that every kind of drift an operator could cause by hand makes it converge again."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ansible.module_utils.rvm_converge_core import build, check, dpkg_state, load, save

INTENT = "a" * 64
ACTIVE = {"ActiveState": "active", "UnitFileState": "enabled"}


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A host's managed files, and its package database in place of /var/lib/dpkg/status."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "app.conf").write_text("port: 8080\n")
    (tmp_path / "etc" / "app.conf").chmod(0o640)
    (tmp_path / "etc" / "conf.d").mkdir()
    os.symlink("app.conf", tmp_path / "etc" / "current.conf")
    (tmp_path / "dpkg-status").write_text("Package: python3\n")
    monkeypatch.setattr("ansible.module_utils.rvm_converge_core.DPKG_STATUS", str(tmp_path / "dpkg-status"))
    return tmp_path


def record_of(host: Path, units: dict | None = None) -> dict:
    files = [str(host / "etc" / n) for n in ("app.conf", "conf.d", "current.conf", "gone.conf")]
    return build(INTENT, files, units if units is not None else {"rvm-edge.service": ACTIVE})


def test_unchanged_host_is_current(host: Path) -> None:
    current, reason = check(record_of(host), INTENT, 3600, {"rvm-edge.service": ACTIVE})
    assert current, reason
    assert "unchanged since" in reason


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda h: (h / "etc" / "app.conf").write_text("port: 9090\n"), "drift: {h}/etc/app.conf"),
        (lambda h: (h / "etc" / "app.conf").chmod(0o644), "drift: {h}/etc/app.conf"),
        (lambda h: (h / "etc" / "app.conf").unlink(), "drift: {h}/etc/app.conf"),
        (lambda h: (h / "etc" / "conf.d").rmdir(), "drift: {h}/etc/conf.d"),
        (lambda h: (h / "etc" / "gone.conf").write_text("x"), "drift: {h}/etc/gone.conf"),
        (lambda h: os.remove(h / "etc" / "current.conf") or os.symlink("x", h / "etc" / "current.conf"),
         "drift: {h}/etc/current.conf"),
        (lambda h: (h / "dpkg-status").write_text("Package: python3\nPackage: telnetd\n"), "packages"),
    ],
)  # fmt: skip
def test_drift_on_the_host_makes_it_converge(host: Path, change, expected: str) -> None:
    record = record_of(host)
    change(host)
    current, reason = check(record, INTENT, 3600, {"rvm-edge.service": ACTIVE})
    assert not current
    assert expected.format(h=host) in reason


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ({"ActiveState": "failed", "UnitFileState": "enabled"}, "rvm-edge.service is failed, was active"),
        ({"ActiveState": "active", "UnitFileState": "disabled"}, "is disabled, was enabled"),
        ({}, "rvm-edge.service is unknown, was active"),
    ],
)
def test_a_unit_stopped_or_disabled_by_hand_makes_it_converge(host: Path, now: dict, expected: str) -> None:
    current, reason = check(record_of(host), INTENT, 3600, {"rvm-edge.service": now})
    assert not current and expected in reason


def test_a_oneshot_that_ran_and_exited_is_no_drift(host: Path) -> None:
    oneshot = {"ActiveState": "inactive", "UnitFileState": "static"}
    record = record_of(host, {"rvm-backup.service": oneshot})
    assert check(record, INTENT, 3600, {"rvm-backup.service": {**oneshot, "ActiveState": "active"}})[0]


def test_other_intent_age_or_no_record_makes_it_converge(host: Path) -> None:
    record = record_of(host)
    assert check(None, INTENT, 3600, {})[1] == "no converge record"
    assert "intent changed" in check(record, "b" * 64, 3600, {"rvm-edge.service": ACTIVE})[1]
    old = check(record, INTENT, 3600, {"rvm-edge.service": ACTIVE}, now=record["recorded_at"] + 7200)
    assert not old[0] and "2.0 h old" in old[1]


def test_large_files_are_compared_by_size_and_mtime(host: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ansible.module_utils.rvm_converge_core.HASH_LIMIT", 4)
    record = record_of(host)
    assert "sha1" not in record["files"][str(host / "etc" / "app.conf")]
    os.utime(host / "etc" / "app.conf", (1, 1))
    assert not check(record, INTENT, 3600, {"rvm-edge.service": ACTIVE})[0]


def test_the_record_survives_a_round_trip_root_only(host: Path) -> None:
    path = host / "var" / "lib" / "rvm-fleet" / "converge.json"
    record = record_of(host)
    save(str(path), record)
    assert load(str(path)) == record
    assert path.stat().st_mode & 0o777 == 0o600
    path.write_text("{torn")
    assert load(str(path)) is None
    assert dpkg_state(str(host / "nothing")) is None
