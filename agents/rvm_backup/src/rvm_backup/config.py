"""The config file (JSON, templated by the backup role): a small schema checker that reports EVERY problem
with its key path, so a bad template is fixed in one pass, and the frozen `Config` the other modules read.

The checker is hand-written because the driver is standard library only (it runs as root outside the
rvm-edge release and its virtualenv): no jsonschema, no pydantic.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rvm_backup.errors import ConfigError

DEFAULT_CONFIG = "/etc/rvm-backup/config.json"
DEFAULT_TIMEOUT_S = 3600
KEEP_KEYS = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly")


@dataclasses.dataclass(frozen=True)
class SqliteEntry:
    """One live database and where its consistent copy goes (the copy's directory is backed up)."""

    source: str
    copy: str


@dataclasses.dataclass(frozen=True)
class Config:
    """The validated config file; `path` is kept so that messages can name it."""

    path: str
    repository: str
    password_file: str
    host: str
    tags: tuple[str, ...]
    sqlite: tuple[SqliteEntry, ...]
    paths: tuple[str, ...]
    excludes: tuple[str, ...]
    retention: dict[str, int]
    check_subsets: int
    textfile_dir: str
    state_dir: str
    restic: str
    sftp_command: str
    timeout_s: int


# A checker takes the key path and the value, and returns the problems (each "keypath: what is wrong").
Checker = Callable[[str, Any], list[str]]


@dataclasses.dataclass(frozen=True)
class Field:
    """A key of a config object: how to check its value, and whether it may be left out."""

    check: Checker
    required: bool = True


def show(value: Any) -> str:
    """The offending value as JSON (so "7" and 7 look different), shortened to keep the message readable."""
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _scalar(expected: str, accept: Callable[[Any], bool]) -> Checker:
    """A checker for a single value: one problem naming what was expected and what was found."""

    def check(keypath: str, value: Any) -> list[str]:
        return [] if accept(value) else [f"{keypath}: expected {expected}, got {show(value)}"]

    return check


def _is_int(value: Any) -> bool:
    """JSON integers only: booleans are ints in Python but `true` is no retention count."""
    return isinstance(value, int) and not isinstance(value, bool)


def _int_at_least(minimum: int) -> Checker:
    """An integer bound from below (keep_* >= 0, check_subsets >= 1, timeout_s >= 1)."""
    return _scalar(f"an integer >= {minimum}", lambda v: _is_int(v) and v >= minimum)


STRING = _scalar("a non-empty string", lambda v: isinstance(v, str) and v != "")
ANY_STRING = _scalar("a string", lambda v: isinstance(v, str))
ABS_PATH = _scalar(
    "an absolute path (a string starting with /)", lambda v: isinstance(v, str) and v[:1] == "/"
)
TAG = _scalar("a non-empty string without commas", lambda v: isinstance(v, str) and v != "" and "," not in v)


def _list_of(item: Checker, non_empty: bool = False) -> Checker:
    """A JSON list whose items are each checked (problems name the index, e.g. sqlite[0].source)."""

    def check(keypath: str, value: Any) -> list[str]:
        if not isinstance(value, list) or (non_empty and not value):
            what = "a non-empty list" if non_empty else "a list"
            return [f"{keypath}: expected {what}, got {show(value)}"]
        return [
            problem for index, element in enumerate(value) for problem in item(f"{keypath}[{index}]", element)
        ]

    return check


def _object(fields: dict[str, Field]) -> Checker:
    """A JSON object with exactly these keys: unknown and missing keys are problems too (typos are silent)."""

    def check(keypath: str, value: Any) -> list[str]:
        prefix = f"{keypath}." if keypath else ""
        if not isinstance(value, dict):
            where = keypath or "top level"
            return [f"{where}: expected a JSON object, got {show(value)}"]
        problems = [
            f"{prefix}{key}: unknown key (known keys: {', '.join(fields)})"
            for key in value
            if key not in fields
        ]
        for key, field in fields.items():
            if key in value:
                problems += field.check(f"{prefix}{key}", value[key])
            elif field.required:
                problems.append(f"{prefix}{key}: missing")
        return problems

    return check


CONFIG_SCHEMA = _object(
    {
        "repository": Field(STRING),
        "password_file": Field(ABS_PATH),
        "host": Field(STRING),
        "tags": Field(_list_of(TAG, non_empty=True)),
        "sqlite": Field(_list_of(_object({"source": Field(ABS_PATH), "copy": Field(ABS_PATH)}))),
        "paths": Field(_list_of(ABS_PATH)),
        "excludes": Field(_list_of(STRING)),
        "retention": Field(_object({key: Field(_int_at_least(0)) for key in KEEP_KEYS})),
        "check_subsets": Field(_int_at_least(1)),
        "textfile_dir": Field(ABS_PATH),
        "state_dir": Field(ABS_PATH),
        "restic": Field(STRING),
        "sftp_command": Field(ANY_STRING, required=False),
        "timeout_s": Field(_int_at_least(1), required=False),
    }
)


def sqlite_problems(entries: list[dict[str, str]]) -> list[str]:
    """Copies must be distinct files and never the live database, or a run would overwrite data."""
    problems: list[str] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        copy = os.path.normpath(entry["copy"])
        if copy == os.path.normpath(entry["source"]):
            problems.append(
                f"sqlite[{index}].copy: must differ from sqlite[{index}].source, got {show(copy)}"
            )
        if copy in seen:
            problems.append(f"sqlite[{index}].copy: used by another sqlite entry too, got {show(copy)}")
        seen.add(copy)
    return problems


def problems_of(raw: Any) -> list[str]:
    """Every problem of a parsed config document (empty: usable). Pure, so it is unit-tested directly."""
    problems = CONFIG_SCHEMA("", raw)
    return problems or sqlite_problems(raw["sqlite"])


def read_config_json(path: str) -> Any:
    """The file's JSON; unreadable or malformed files are config errors (exit 2), not crashes."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            [f"{path}: cannot read the config: {getattr(exc, 'strerror', None) or exc}"]
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            [f"{path}: line {exc.lineno} column {exc.colno}: not valid JSON: {exc.msg}"]
        ) from None


def parse_config(path: str, raw: Any) -> Config:
    """A `Config` from a parsed document, or a ConfigError listing every problem, each prefixed by `path`."""
    problems = problems_of(raw)
    if problems:
        raise ConfigError([f"{path}: {problem}" for problem in problems])
    return Config(
        path=path,
        repository=raw["repository"],
        password_file=raw["password_file"],
        host=raw["host"],
        tags=tuple(raw["tags"]),
        sqlite=tuple(SqliteEntry(source=e["source"], copy=e["copy"]) for e in raw["sqlite"]),
        paths=tuple(raw["paths"]),
        excludes=tuple(raw["excludes"]),
        retention={key: raw["retention"][key] for key in KEEP_KEYS},
        check_subsets=raw["check_subsets"],
        textfile_dir=raw["textfile_dir"],
        state_dir=raw["state_dir"],
        restic=raw["restic"],
        sftp_command=raw.get("sftp_command", ""),
        timeout_s=raw.get("timeout_s", DEFAULT_TIMEOUT_S),
    )


def load_config(path: str) -> Config:
    """Validate everything before doing anything, so a bad template never half-runs a backup."""
    return parse_config(path, read_config_json(path))
