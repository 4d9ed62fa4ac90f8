"""The execution environment's definition (execution-environment.yml) stays in step with the project.

The EE is built in CI (`make ee`, then the fleet's second converge runs in it). These checks fail
earlier and say why: a collection a playbook starts to use that the EE lacks, a pin that drifted
from the control lock, a build that would reach a package index.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
EE = ROOT / "execution-environment.yml"
# What runs in the EE: the playbooks, roles, lab plays and the control-node plugins (Molecule runs
# in the control venv, not in the EE).
SOURCES = ("site.yml", "playbooks", "roles", "lab", "plugins", "library")
FQCN = r"([a-z0-9_]+\.[a-z0-9_]+)\.[a-z0-9_]+"
USES = (
    re.compile(rf"^\s*-?\s*{FQCN}:", re.MULTILINE),  # a task's module
    re.compile(rf"lookup\(\s*['\"]{FQCN}"),  # a lookup
    re.compile(rf"\|\s*{FQCN}\b"),  # a filter or test
)


def definition() -> dict:
    return yaml.safe_load(EE.read_text())


def pins(text: str) -> dict[str, str]:
    found = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)$", text, re.MULTILINE)
    return {name.lower(): version for name, version in found}


def collections_used() -> set[str]:
    used: set[str] = set()
    for top in SOURCES:
        path = ROOT / top
        files = [path] if path.is_file() else [*path.rglob("*.yml"), *path.rglob("*.j2")]
        for f in files:
            if "molecule" in f.parts:
                continue
            for pattern in USES:
                used.update(pattern.findall(f.read_text(errors="replace")))
    cfg = (ROOT / "ansible.cfg").read_text()
    used.update(re.findall(rf"callbacks_enabled\s*=.*?{FQCN}", cfg))
    # YAML keys such as sysctl's net.core.somaxconn look the same: keep the names that are collections
    # of the control venv (whatever the playbooks use must be there too).
    import ansible_collections

    installed = Path(next(iter(ansible_collections.__path__)))
    return {c for c in used if c != "ansible.builtin" and (installed / c.replace(".", "/")).is_dir()}


def test_the_ee_has_every_collection_the_playbooks_use() -> None:
    reqs = yaml.safe_load((ROOT / definition()["dependencies"]["galaxy"]).read_text())
    in_ee = {".".join(Path(c["name"]).parts[-2:]) for c in reqs["collections"]}
    used = collections_used()
    assert {"ansible.posix", "community.general"} <= used  # the scan finds what we know is there
    assert used <= in_ee, f"collections the playbooks use but the EE lacks: {sorted(used - in_ee)}"


def test_every_collection_is_copied_into_the_build_context() -> None:
    """Each collection comes from the control venv's pinned `ansible` package: its glob matches one
    installed collection (MANIFEST.json), at the path the galaxy requirements name."""
    d = definition()
    reqs = yaml.safe_load((ROOT / d["dependencies"]["galaxy"]).read_text())
    copied = {f["dest"]: f["src"] for f in d["additional_build_files"]}
    for c in reqs["collections"]:
        assert c["type"] == "dir" and c["name"] in copied, c
        matches = list(ROOT.glob(copied[c["name"]]))
        assert len(matches) == 1 and (matches[0] / "MANIFEST.json").is_file(), (c, matches)


def test_the_ee_runs_the_control_nodes_ansible() -> None:
    control = pins((ROOT / "requirements" / "control.txt").read_text())
    deps = definition()["dependencies"]
    for key in ("ansible_core", "ansible_runner"):
        name, _, version = deps[key]["package_pip"].partition("==")
        assert control[name] == version, f"{key}: EE {version}, control lock {control[name]}"


def test_the_build_installs_python_from_the_wheelhouse_only(tmp_path: Path) -> None:
    """ansible-builder's Containerfile: FROM the base image CI passes (the lab's), and pip configured
    with no index before any pip install runs, so the build needs no route to PyPI."""
    builder = Path(sys.executable).with_name("ansible-builder")
    proc = subprocess.run(
        [str(builder), "create", "-f", str(EE), "-c", str(tmp_path / "ctx")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    steps = (tmp_path / "ctx" / "Containerfile").read_text().splitlines()
    assert "FROM $EE_BASE_IMAGE AS base" in steps
    no_index = next(i for i, s in enumerate(steps) if "no-index = true" in s)
    first_pip = next(i for i, s in enumerate(steps) if "pip install" in s)
    assert no_index < first_pip, steps
