"""The node-exporter textfile (rvm_backup.prom): gauges rendered from state.json in Prometheus' text
exposition format and replaced atomically, because node-exporter reads *.prom files whenever it is scraped.
The metric names are a contract with the monitoring role's alert rules and the fleet test."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

from rvm_backup.files import atomic_write

METRICS_FILE = "rvm_backup.prom"
METRICS: tuple[tuple[str, str], ...] = (
    ("rvm_backup_last_run_timestamp_seconds", "Unix time at which the last rvm-backup run finished."),
    (
        "rvm_backup_last_success_timestamp_seconds",
        "Unix time at which the last successful rvm-backup run finished (0: none yet).",
    ),
    ("rvm_backup_last_run_success", "1 if the last rvm-backup run passed every step, else 0."),
    ("rvm_backup_last_duration_seconds", "Wall-clock duration of the last rvm-backup run."),
    ("rvm_backup_last_added_bytes", "Bytes the last completed restic backup added to the repository."),
    ("rvm_backup_last_files_processed", "Files the last completed restic backup processed."),
    ("rvm_backup_snapshots", "Snapshots of this host in the repository after the last retention pass."),
    ("rvm_backup_last_check_success", "1 if the last restic check (a 1/N data subset) passed, else 0."),
)
_SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{.*\})?\s+(\S+)")


def metric_values(state: dict[str, Any]) -> dict[str, float]:
    """The gauges, from state.json (which already holds this run)."""
    return {
        "rvm_backup_last_run_timestamp_seconds": state.get("last_run_timestamp", 0),
        "rvm_backup_last_success_timestamp_seconds": state.get("last_success_timestamp") or 0,
        "rvm_backup_last_run_success": 1 if state.get("last_run_ok") else 0,
        "rvm_backup_last_duration_seconds": state.get("last_run_seconds", 0),
        "rvm_backup_last_added_bytes": state.get("last_added_bytes", 0),
        "rvm_backup_last_files_processed": state.get("last_files_processed", 0),
        "rvm_backup_snapshots": state.get("snapshots") or 0,
        "rvm_backup_last_check_success": 1 if state.get("last_check_ok") else 0,
    }


def label_value(text: str) -> str:
    """Escape a Prometheus label value."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(host: str, values: dict[str, float]) -> str:
    """The Prometheus text exposition format, with HELP and TYPE for each gauge."""
    lines = []
    for name, help_text in METRICS:
        lines += [
            f"# HELP {name} {help_text}",
            f"# TYPE {name} gauge",
            f'{name}{{host="{label_value(host)}"}} {values[name]}',
        ]
    return "\n".join(lines) + "\n"


def write_metrics(textfile_dir: str, host: str, state: dict[str, Any]) -> Path:
    """Replace the textfile atomically (node-exporter never reads half a file); returns its path."""
    path = Path(textfile_dir) / METRICS_FILE
    atomic_write(path, render_metrics(host, metric_values(state)), 0o644)
    return path


def parse_metrics(text: str) -> dict[str, float]:
    """name -> value of the samples in a textfile this program wrote (comments skipped)."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.fullmatch(line)
        if match and not line.startswith("#"):
            values[match.group(1)] = float(match.group(2))
    return values


def read_metrics(path: Path) -> dict[str, float]:
    """The values of the .prom file, for `status` (empty when there is none yet)."""
    with contextlib.suppress(OSError):
        return parse_metrics(path.read_text(encoding="utf-8"))
    return {}
