"""The node-exporter textfile: the exact text node-exporter parses, the values after a good and a failed
run, label escaping, and an atomic replace (a scrape never reads half a file). The metric names are a
contract: the monitoring role's alert rules and the fleet test read them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rvm_backup.metrics import (
    METRICS,
    METRICS_FILE,
    metric_values,
    parse_metrics,
    render_metrics,
    write_metrics,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
ALERT_RULES = REPO_ROOT / "roles" / "monitoring_server" / "files" / "rules"
STATE_AFTER_A_GOOD_RUN = {
    "last_run_timestamp": 1764590400.25,
    "last_run_ok": True,
    "last_run_seconds": 3.5,
    "last_success_timestamp": 1764590400.25,
    "last_added_bytes": 40960,
    "last_files_processed": 12,
    "snapshots": 5,
    "last_check_ok": True,
}


def test_the_textfile_has_help_type_and_one_sample_per_gauge() -> None:
    text = render_metrics("rvm-01", metric_values(STATE_AFTER_A_GOOD_RUN))

    lines = text.splitlines()
    assert text.endswith("\n") and len(lines) == 3 * len(METRICS)
    assert lines[:3] == [
        "# HELP rvm_backup_last_run_timestamp_seconds Unix time at which the last rvm-backup run finished.",
        "# TYPE rvm_backup_last_run_timestamp_seconds gauge",
        'rvm_backup_last_run_timestamp_seconds{host="rvm-01"} 1764590400.25',
    ]
    assert parse_metrics(text) == {
        "rvm_backup_last_run_timestamp_seconds": 1764590400.25,
        "rvm_backup_last_success_timestamp_seconds": 1764590400.25,
        "rvm_backup_last_run_success": 1,
        "rvm_backup_last_duration_seconds": 3.5,
        "rvm_backup_last_added_bytes": 40960,
        "rvm_backup_last_files_processed": 12,
        "rvm_backup_snapshots": 5,
        "rvm_backup_last_check_success": 1,
    }


def test_no_run_yet_and_a_failed_run_read_as_failures_not_as_missing_series() -> None:
    assert set(metric_values({}).values()) == {0}
    failed = STATE_AFTER_A_GOOD_RUN | {"last_run_ok": False, "last_run_timestamp": 1764594000.0}

    values = metric_values(failed)

    assert values["rvm_backup_last_run_success"] == 0
    assert values["rvm_backup_last_success_timestamp_seconds"] == 1764590400.25
    assert values["rvm_backup_last_run_timestamp_seconds"] == 1764594000.0


def test_a_host_label_with_quotes_backslashes_and_newlines_is_escaped() -> None:
    text = render_metrics('odd"host\\\nname', metric_values({}))

    assert 'rvm_backup_snapshots{host="odd\\"host\\\\\\nname"} 0\n' in text
    assert parse_metrics(text)["rvm_backup_snapshots"] == 0


def test_every_backup_metric_the_alert_rules_use_is_written() -> None:
    used = {
        name
        for rules in ALERT_RULES.glob("*.yml")
        for name in re.findall(r"\brvm_backup_[a-z_]+", rules.read_text(encoding="utf-8"))
    }

    assert used, f"no alert rule in {ALERT_RULES} reads a backup metric"
    assert used <= {name for name, _ in METRICS}


def test_the_textfile_is_replaced_atomically(tmp_path: Path) -> None:
    old = write_metrics(str(tmp_path), "rvm-01", {})
    assert old == tmp_path / METRICS_FILE
    with open(old, encoding="utf-8") as scrape_in_progress:
        write_metrics(str(tmp_path), "rvm-01", STATE_AFTER_A_GOOD_RUN)
        assert parse_metrics(scrape_in_progress.read())["rvm_backup_last_run_success"] == 0

    assert parse_metrics(old.read_text())["rvm_backup_last_run_success"] == 1
    assert old.stat().st_mode & 0o777 == 0o644, "node-exporter runs as its own user"
    assert [path.name for path in tmp_path.iterdir()] == [METRICS_FILE], "no temporary file is left"


def test_a_textfile_directory_that_cannot_be_written_raises_and_leaves_nothing(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")

    with pytest.raises(OSError):
        write_metrics(str(blocked), "rvm-01", {})

    assert [path.name for path in tmp_path.iterdir()] == ["not-a-directory"]
