"""The monitoring server's alert and recording rules, proven with Prometheus' own `promtool`.

promtool compares annotations exactly, so the unit tests run against copies of the rule files with
the annotations removed (the expressions, `for` and labels are what they test); a separate test
checks every alert carries summary, description and runbook, and that every alert has a unit test
in which it fires and one in which it does not.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROLE_FILES = Path(__file__).resolve().parents[2] / "roles" / "monitoring_server" / "files"
RULES = ROLE_FILES / "rules"
TESTS = ROLE_FILES / "tests"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool missing: run lab/host-setup.sh (Debian package prometheus)"
)


def rule_groups() -> list[dict]:
    return [g for f in sorted(RULES.glob("*.yml")) for g in yaml.safe_load(f.read_text())["groups"]]


def alert_names() -> set[str]:
    return {r["alert"] for g in rule_groups() for r in g["rules"] if "alert" in r}


@pytest.fixture(scope="module")
def stripped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """rules/ without annotations and tests/ beside it, so the tests' ../rules paths still hold."""
    root = tmp_path_factory.mktemp("promtool")
    (root / "rules").mkdir()
    for f in RULES.glob("*.yml"):
        data = yaml.safe_load(f.read_text())
        for group in data["groups"]:
            for rule in group["rules"]:
                rule.pop("annotations", None)
        (root / "rules" / f.name).write_text(yaml.safe_dump(data, sort_keys=False))
    shutil.copytree(TESTS, root / "tests")
    return root


@needs_promtool
def test_rule_files_pass_promtool_check() -> None:
    proc = subprocess.run(
        [PROMTOOL, "check", "rules", *map(str, sorted(RULES.glob("*.yml")))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_promtool
@pytest.mark.parametrize("test_file", sorted(p.name for p in TESTS.glob("*_test.yml")))
def test_promtool_unit_tests_pass(stripped: Path, test_file: str) -> None:
    proc = subprocess.run(
        [PROMTOOL, "test", "rules", test_file],
        cwd=stripped / "tests",
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]


def test_every_alert_has_summary_description_and_runbook() -> None:
    missing = [
        (r["alert"], key)
        for g in rule_groups()
        for r in g["rules"]
        if "alert" in r
        for key in ("summary", "description", "runbook")
        if not r.get("annotations", {}).get(key)
    ]
    assert not missing, missing
    for g in rule_groups():
        for r in g["rules"]:
            if "alert" in r:
                anchor = r["annotations"]["runbook"].split("#", 1)[1]
                assert anchor == r["alert"].lower(), (r["alert"], anchor)


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for f in TESTS.glob("*_test.yml"):
        for case in yaml.safe_load(f.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert alert_names() - firing == set(), "never tested firing"
    assert alert_names() - quiet == set(), "never tested not firing"


def test_every_alert_routes_to_a_severity_the_alertmanager_knows() -> None:
    severities = {r["labels"]["severity"] for g in rule_groups() for r in g["rules"] if "alert" in r}
    assert severities <= {"critical", "warning", "escalation"}, severities
