"""Config validation without a subprocess: every problem of a document, each with its key path, in one pass
(the role's `validate:` shows them all at once), and what a good document becomes."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from rvm_backup.config import DEFAULT_TIMEOUT_S, SqliteEntry, load_config, parse_config, problems_of
from rvm_backup.errors import ConfigError

GOOD: dict[str, Any] = {
    "repository": "sftp:rvm-backup-rvm-01@10.0.0.5:/repo",
    "password_file": "/etc/rvm-backup/password",
    "host": "rvm-01",
    "tags": ["rvm-edge"],
    "sqlite": [
        {
            "source": "/var/lib/rvm-edge/rvm-edge.sqlite3",
            "copy": "/var/lib/rvm-backup/staging/rvm-edge.sqlite3",
        }
    ],
    "paths": ["/etc/rvm-edge", "/var/lib/rvm-edge"],
    "excludes": ["/var/lib/rvm-edge/*.sqlite3"],
    "retention": {"keep_last": 3, "keep_hourly": 24, "keep_daily": 7, "keep_weekly": 4, "keep_monthly": 6},
    "check_subsets": 7,
    "textfile_dir": "/var/lib/prometheus/node-exporter",
    "state_dir": "/var/lib/rvm-backup",
    "restic": "/usr/bin/restic",
}


def document(**changes: Any) -> dict[str, Any]:
    raw = copy.deepcopy(GOOD)
    raw.update(changes)
    return raw


def test_a_good_document_becomes_a_config_with_the_optional_keys_defaulted() -> None:
    config = parse_config("/etc/rvm-backup/config.json", document())

    assert config.path == "/etc/rvm-backup/config.json"
    assert config.sqlite == (SqliteEntry(GOOD["sqlite"][0]["source"], GOOD["sqlite"][0]["copy"]),)
    assert config.tags == ("rvm-edge",)
    assert (config.sftp_command, config.timeout_s) == ("", DEFAULT_TIMEOUT_S)
    assert list(config.retention) == ["keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly"]


def test_every_problem_is_listed_with_its_key_path() -> None:
    raw = document(check_subsets=0, tags="rvm-edge", colour="blue", timeout_s=True, excludes=[3])
    del raw["host"]
    raw["retention"].update(keep_daily="7", keep_last=-1, keep_yearly=1)
    raw["sqlite"] = [{"source": "/a.sqlite3", "copy": "staging/a.sqlite3", "mode": "wal"}, "b"]

    problems = problems_of(raw)

    assert sorted(problems) == sorted(
        [
            "colour: unknown key (known keys: repository, password_file, host, tags, sqlite, paths, excludes, "
            "retention, check_subsets, textfile_dir, state_dir, restic, sftp_command, timeout_s)",
            "host: missing",
            'tags: expected a non-empty list, got "rvm-edge"',
            "sqlite[0].mode: unknown key (known keys: source, copy)",
            'sqlite[0].copy: expected an absolute path (a string starting with /), got "staging/a.sqlite3"',
            'sqlite[1]: expected a JSON object, got "b"',
            "excludes[0]: expected a non-empty string, got 3",
            "retention.keep_yearly: unknown key (known keys: keep_last, keep_hourly, keep_daily, keep_weekly, "
            "keep_monthly)",
            "retention.keep_last: expected an integer >= 0, got -1",
            'retention.keep_daily: expected an integer >= 0, got "7"',
            "check_subsets: expected an integer >= 1, got 0",
            "timeout_s: expected an integer >= 1, got true",
        ]
    )


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"tags": []}, "tags: expected a non-empty list, got []"),
        ({"tags": ["a,b"]}, 'tags[0]: expected a non-empty string without commas, got "a,b"'),
        ({"repository": ""}, 'repository: expected a non-empty string, got ""'),
        ({"sftp_command": None}, "sftp_command: expected a string, got null"),
        (
            {"retention": {"keep_last": 1, "keep_hourly": 0, "keep_daily": 0, "keep_weekly": 0}},
            "retention.keep_monthly: missing",
        ),
        ({"paths": "/etc"}, 'paths: expected a list, got "/etc"'),
        (
            {"state_dir": "x" * 80},
            'state_dir: expected an absolute path (a string starting with /), got "xxxx',
        ),
    ],
)
def test_one_wrong_value_gives_one_specific_problem(changes: dict[str, Any], problem: str) -> None:
    problems = problems_of(document(**changes))

    assert len(problems) == 1 and problems[0].startswith(problem), problems
    assert len(problems[0]) < 200, "a long value is shortened in the message"


def test_a_document_that_is_not_an_object_is_one_problem() -> None:
    assert problems_of(["repository"]) == ['top level: expected a JSON object, got ["repository"]']


def test_a_copy_may_neither_be_its_live_database_nor_shared() -> None:
    live = "/var/lib/rvm-edge/rvm-edge.sqlite3"
    raw = document(
        sqlite=[
            {"source": live, "copy": "/var/lib/rvm-edge/./rvm-edge.sqlite3"},
            {"source": "/var/lib/rvm-edge/a.sqlite3", "copy": "/srv/copy.sqlite3"},
            {"source": "/var/lib/rvm-edge/b.sqlite3", "copy": "/srv//copy.sqlite3"},
        ]
    )

    assert problems_of(raw) == [
        f'sqlite[0].copy: must differ from sqlite[0].source, got "{live}"',
        'sqlite[2].copy: used by another sqlite entry too, got "/srv/copy.sqlite3"',
    ]


def test_load_config_names_the_file_in_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text('{"repository": "r"}')

    with pytest.raises(ConfigError) as raised:
        load_config(str(path))

    assert len(raised.value.problems) == 11
    assert all(problem.startswith(f"{path}: ") for problem in raised.value.problems)
    assert f"{path}: host: missing" in raised.value.problems


def test_a_file_that_is_not_json_or_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"host": "a",\n  "tags": ]}')
    binary = tmp_path / "binary.json"
    binary.write_bytes(b'{"host": "\xff"}')

    with pytest.raises(ConfigError) as not_json:
        load_config(str(broken))
    with pytest.raises(ConfigError) as not_utf8:
        load_config(str(binary))

    assert not_json.value.problems[0].startswith(f"{broken}: line 2 column 11: not valid JSON")
    assert not_utf8.value.problems[0].startswith(f"{binary}: cannot read the config")
