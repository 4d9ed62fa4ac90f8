"""Ansible callback: the control-node half of the converge fast path (docs/converge.md).

Why a callback: it is the one place that sees every task result of every host, and it runs once
per run, in the controller, before any play.

- At the start of the run it hashes what decides the run's effect on every host, the same for all of
  them: the project's files (ansible.cfg's directory, less what the playbooks never read: tests, docs,
  the app's sources, caches and venvs; release bundles by their .sha256), the inventory sources
  outside the project, the extra vars (merged as Ansible merges them) and the ansible-core
  version. ``RVM_CONVERGE_RUN_DIGEST`` carries it to playbooks/converge_check.yml, which adds
  each host's own facts and the fleet's membership.
- During the run it notes, per host, every path a file module wrote (template, copy, file,
  lineinfile, blockinfile, replace, ini_file) and every unit a service module touched. At each play's
  start it writes them to ``RVM_CONVERGE_DIR/<host>.json``, which playbooks/converge_record.yml reads
  to keep the host's record.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ansible import constants as C
from ansible import context
from ansible.module_utils.ansible_release import __version__ as ansible_version
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.callback import CallbackBase
from ansible.utils.vars import load_extra_vars

DOCUMENTATION = r"""
name: rvm_converge
type: aggregate
short_description: the converge fast path's run digest and the files and units each host's converge manages
description:
  - Sets C(RVM_CONVERGE_RUN_DIGEST) and C(RVM_CONVERGE_DIR) for playbooks/converge_check.yml and
    playbooks/converge_record.yml (docs/converge.md).
requirements:
  - enabled in callbacks_enabled
"""

FILE_MODULES = {
    "ansible.builtin.template",
    "ansible.builtin.copy",
    "ansible.builtin.file",
    "ansible.builtin.lineinfile",
    "ansible.builtin.blockinfile",
    "ansible.builtin.replace",
    "community.general.ini_file",
}
# copy/template with force: false (the task's own argument: an unchanged copy reports the file
# module's arguments, whose `force` means something else).
SEED_MODULES = {"ansible.builtin.template", "ansible.builtin.copy"}
UNIT_MODULES = {"ansible.builtin.systemd", "ansible.builtin.systemd_service", "ansible.builtin.service"}
# Never read by a playbook (the bundles under dist/ count by their .sha256 files).
SKIP_DIRS = {
    ".git", ".cache", "out", "app", "toolchain", "tests", "docs", "fleet", "prodtest", "benchmarks",
    "molecule", "__pycache__", "node_modules", ".pytest_cache", ".ruff_cache", ".mypy_cache",
}  # fmt: skip


def project_files(root: Path) -> list[Path]:
    """Every file under ``root`` a playbook may read, in a stable order."""
    found: list[Path] = []
    for here, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith(".venv"))
        rel = Path(here).relative_to(root)
        for name in sorted(files):
            if rel.parts[:1] == ("dist",) and not name.endswith(".sha256"):
                continue
            if name.endswith((".pyc", ".swp")):
                continue
            found.append(Path(here) / name)
    return found


def digest_files(digest: Any, root: Path, paths: list[Path]) -> None:
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError:
            continue  # a socket, a dangling link: nothing a playbook reads
        digest.update(str(path.relative_to(root) if path.is_relative_to(root) else path).encode())
        digest.update(b"\0" + hashlib.sha256(data).digest())


def defines_nothing(path: Path) -> bool:
    """An inventory file with no host, group or variable (ansible-runner's ``/runner/inventory``
    placeholder when the real inventory comes with -i, as rvm-fleet --ee passes it) cannot change
    what a run does: leaving it out keeps an EE run's intent equal to a venv run's."""
    try:
        return path.read_text().strip() in ("", "all: {}", "{}")
    except (OSError, UnicodeDecodeError):
        return False


def run_digest(root: Path) -> str:
    """The project, the inventory sources outside it, the extra vars and ansible-core's version."""
    digest = hashlib.sha256(f"ansible-core {ansible_version}\0".encode())
    digest_files(digest, root, project_files(root))
    args = context.CLIARGS
    for source in args.get("inventory") or ():
        path = Path(source).resolve()
        if path.exists() and not path.is_relative_to(root):
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            digest_files(digest, root, [f for f in files if not defines_nothing(f)])
    digest.update(b"extra\0" + extra_vars().encode())
    return digest.hexdigest()


def extra_vars() -> str:
    """The extra vars as Ansible merges them (-e k=v, JSON, YAML, @FILE), less the fast path's own
    (rvm_converge_force must not make the next run's intent differ), as canonical JSON."""
    try:
        merged = load_extra_vars(DataLoader())
    except Exception:  # a vaulted @FILE needs secrets the callback has not: hash the text
        return json.dumps(list(context.CLIARGS.get("extra_vars") or ()))
    kept = {k: v for k, v in merged.items() if not k.startswith("rvm_converge_")}
    return json.dumps(kept, sort_keys=True, default=str)


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "rvm_converge"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self.managed: dict[str, dict[str, set[str]]] = {}
        self.dir: str | None = None

    def v2_playbook_on_start(self, playbook: Any) -> None:
        root = Path(C.CONFIG_FILE).parent if C.CONFIG_FILE else Path(playbook._basedir)
        self.dir = tempfile.mkdtemp(prefix="rvm-converge-")
        os.environ["RVM_CONVERGE_DIR"] = self.dir
        os.environ["RVM_CONVERGE_RUN_DIGEST"] = run_digest(root.resolve())

    def v2_playbook_on_play_start(self, play: Any) -> None:
        if self.dir is None:
            return
        for host, managed in self.managed.items():
            data = {kind: sorted(values) for kind, values in managed.items()}
            Path(self.dir, f"{host}.json").write_text(json.dumps(data))

    def v2_playbook_on_stats(self, stats: Any) -> None:
        if self.dir:
            for f in Path(self.dir).glob("*.json"):
                f.unlink()
            os.rmdir(self.dir)

    def v2_runner_on_ok(self, result: Any) -> None:
        if "results" not in result._result:  # a loop's items come one by one below
            self._note(result)

    def v2_runner_item_on_ok(self, result: Any) -> None:
        self._note(result)

    def _note(self, result: Any) -> None:
        res = result._result
        if res.get("_ansible_delegated_vars") or res.get("censored") or res.get("skipped"):
            return  # another host's file, a secret's (no_log) or nothing done
        task = result._task
        action = getattr(task, "resolved_action", None) or task.action
        args = (res.get("invocation") or {}).get("module_args") or {}
        managed = self.managed.setdefault(result._host.get_name(), {"files": set(), "units": set()})
        if action in FILE_MODULES:
            if action in SEED_MODULES and str(task.args.get("force", True)).lower() in ("false", "no"):
                return  # written once, then the service's own (a seed, not configuration)
            path = res.get("dest") or res.get("path") or args.get("dest") or args.get("path")
            if isinstance(path, str) and path.startswith("/"):
                managed["files"].add(path)
        elif action in UNIT_MODULES and isinstance(args.get("name"), str):
            managed["units"].add(args["name"])
