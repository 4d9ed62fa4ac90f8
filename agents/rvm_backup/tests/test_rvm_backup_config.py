"""Config validation: `check-config` is Ansible's `validate:` for the template, and every subcommand
refuses a bad config with every problem at once (exit 2) before touching anything."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from rvm_backup_helpers import DEVICE_PYTHON, Device


@pytest.mark.parametrize("command", ["run", "check-config"])
def test_a_bad_config_lists_every_problem_with_its_key_path(device: Device, command: str) -> None:
    config = device.config(check_subsets=0, tags="rvm-edge", colour="blue", timeout_s=True)
    del config["host"]
    config["retention"].update(keep_daily="7", keep_last=-1, keep_yearly=1)
    config["sqlite"][0]["copy"] = "staging/rvm-edge.sqlite3"
    device.config_path.write_text(json.dumps(config))
    path = device.config_path

    result = device.rvm_backup(command)

    assert result.returncode == 2
    assert result.stdout == ""
    for problem in (
        f'{path}: retention.keep_daily: expected an integer >= 0, got "7"',
        f"{path}: retention.keep_last: expected an integer >= 0, got -1",
        f"{path}: retention.keep_yearly: unknown key",
        f"{path}: check_subsets: expected an integer >= 1, got 0",
        f"{path}: host: missing",
        f"{path}: colour: unknown key",
        f'{path}: tags: expected a non-empty list, got "rvm-edge"',
        f'{path}: sqlite[0].copy: expected an absolute path (a string starting with /), got "staging/rvm-edge.sqlite3"',
        f"{path}: timeout_s: expected an integer >= 1, got true",
    ):
        assert problem in result.stderr
    assert "9 problem(s)" in result.stderr
    for untouched in (device.state_dir, device.textfile_dir, device.repository, device.copy.parent):
        assert not untouched.exists()


def test_check_config_accepts_a_good_file_wherever_ansible_puts_it(device: Device, tmp_path: Path) -> None:
    staged = tmp_path / "ansible-tmp-1764590000.12-source"  # validate: runs on a temp copy without .json
    shutil.copy(device.config_path, staged)

    after = device.rvm_backup("check-config", config=staged)
    before = subprocess.run(
        [DEVICE_PYTHON, str(device.driver), "--config", str(staged), "check-config"],
        capture_output=True,
        text=True,
    )

    assert after.returncode == 0, after.stderr
    assert after.document == {"config": str(staged), "ok": True}
    assert before.returncode == 0, before.stderr
    assert not device.state_dir.exists()


def test_a_config_that_is_not_json_is_a_config_error(device: Device) -> None:
    device.config_path.write_text('{"repository": "/srv/restic",\n  "host": }\n')

    result = device.rvm_backup("check-config")

    assert result.returncode == 2
    assert f"{device.config_path}: line 2 column" in result.stderr


def test_a_missing_config_is_a_config_error(device: Device, tmp_path: Path) -> None:
    result = device.rvm_backup("run", config=tmp_path / "nowhere.json")

    assert result.returncode == 2
    assert f"{tmp_path / 'nowhere.json'}: cannot read the config" in result.stderr
