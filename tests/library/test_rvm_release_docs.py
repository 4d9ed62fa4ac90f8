"""The module's documentation is what the role author reads: it must match the real interface.

A light version of ansible-test's validate-modules: DOCUMENTATION, EXAMPLES and RETURN parse, and
every option's type, default and choices agree with the argument spec the module enforces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import rvm_release
import yaml
from rvm_release_helpers import ModuleRun


def test_documented_options_match_argument_spec() -> None:
    doc: dict[str, Any] = yaml.safe_load(rvm_release.DOCUMENTATION)
    options = doc["options"]

    assert doc["module"] == "rvm_release"
    assert set(options) == set(rvm_release.ARGUMENT_SPEC)
    for name, spec in rvm_release.ARGUMENT_SPEC.items():
        documented = options[name]
        assert documented["type"] == spec["type"], name
        assert documented.get("default") == spec.get("default"), name
        assert documented.get("choices") == spec.get("choices"), name
        assert documented["description"], name


def test_examples_use_only_documented_options() -> None:
    doc: dict[str, Any] = yaml.safe_load(rvm_release.DOCUMENTATION)
    examples = yaml.safe_load(rvm_release.EXAMPLES)

    used = [task["rvm_release"] for task in examples if "rvm_release" in task]
    assert used, "EXAMPLES must show the module"
    for task_args in used:
        assert set(task_args) <= set(doc["options"]), task_args
        assert task_args.get("state", "present") in doc["options"]["state"]["choices"]


def test_return_documents_every_result_key(run_module: ModuleRun, tmp_path: Path) -> None:
    returned: dict[str, Any] = yaml.safe_load(rvm_release.RETURN)
    result = run_module({"root": str(tmp_path), "state": "info"})

    standard = {"changed", "invocation", "rc", "warning_msgs", "warnings"}
    assert set(result) - standard == set(returned)
    facts = returned["ansible_facts"]["contains"]["rvm_release"]["contains"]
    assert set(result["ansible_facts"]["rvm_release"]) == set(facts)
