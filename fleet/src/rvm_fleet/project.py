"""Where the project is, which inventory it uses, and which hosts a pattern and limit match.

Hosts are matched by ansible itself (``ansible PATTERN --list-hosts``) so that every limit syntax
(groups, globs, ``~regex``, ``!exclusions``, ``@file``) means exactly what it means to a playbook.
"""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from rvm_fleet.errors import UsageError


@dataclass(frozen=True)
class Project:
    root: Path
    inventory: Path

    @property
    def cache(self) -> Path:
        """The runner's private data dir: artifacts/<ident>/ per run, and the deploy lock."""
        return self.root / ".cache" / "rvm-fleet"

    def playbook(self, name: str) -> Path:
        path = self.root / name
        if not path.is_file():
            raise UsageError(f"playbook {path} not found")
        return path

    def env(self) -> dict[str, str]:
        """Environment for ansible: the project's ansible.cfg and its callback plugins.

        ansible-runner sets ANSIBLE_CALLBACK_PLUGINS to its own directory, which would hide the
        ``callback_plugins`` of ansible.cfg (rvm_deploy_summary); name both.
        """
        env = {
            "ANSIBLE_CONFIG": str(self.root / "ansible.cfg"),
            # ansible-runner turns host key checking off unless the environment names it: keep ansible.cfg's
            "ANSIBLE_HOST_KEY_CHECKING": self.setting("host_key_checking", "True"),
            # ansible-playbook from the venv rvm-fleet runs in, even when that venv is not activated
            "PATH": os.pathsep.join((str(Path(sys.executable).parent), os.environ.get("PATH", ""))),
        }
        callbacks = self.root / "plugins" / "callback"
        if callbacks.is_dir():
            env["ANSIBLE_CALLBACK_PLUGINS"] = str(callbacks)
        return env

    def setting(self, key: str, default: str) -> str:
        """A [defaults] value of the project's ansible.cfg (the environment's ANSIBLE_<KEY> wins)."""
        if f"ANSIBLE_{key.upper()}" in os.environ:
            return os.environ[f"ANSIBLE_{key.upper()}"]
        cfg = configparser.ConfigParser(interpolation=None)
        cfg.read(self.root / "ansible.cfg")
        return cfg.get("defaults", key, fallback=default)

    def fact_cache(self) -> dict[str, str]:
        """Runner settings that keep ansible.cfg's jsonfile fact cache (runner's default is per run)."""
        if self.setting("fact_caching", "") != "jsonfile":
            return {}
        where = self.setting("fact_caching_connection", "")
        return {"fact_cache_type": "jsonfile", "fact_cache": str(self.root / where)} if where else {}


def find_root(start: Path | None = None) -> Path:
    """The nearest directory at or above ``start`` holding ansible.cfg (RVM_FLEET_PROJECT wins)."""
    if os.environ.get("RVM_FLEET_PROJECT"):
        return Path(os.environ["RVM_FLEET_PROJECT"]).resolve()
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "ansible.cfg").is_file():
            return d
    raise UsageError(
        f"no ansible.cfg in {here} or above: run rvm-fleet inside the project (or set RVM_FLEET_PROJECT)"
    )


def load(inventory: str | None = None, start: Path | None = None) -> Project:
    root = find_root(start)
    if inventory is None:
        cfg = configparser.ConfigParser(interpolation=None)
        cfg.read(root / "ansible.cfg")
        inventory = cfg.get("defaults", "inventory", fallback=None)
        if not inventory:
            raise UsageError(f"{root / 'ansible.cfg'} names no [defaults] inventory: pass -i INVENTORY")
        path = root / inventory
    else:
        path = Path(inventory).resolve()
    if not path.exists():
        raise UsageError(f"inventory {path} does not exist")
    return Project(root, path)


def ansible(
    project: Project, pattern: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the venv's ``ansible PATTERN -i INVENTORY ARGS...`` in the project, output captured."""
    cmd = [str(Path(sys.executable).with_name("ansible")), pattern, "-i", str(project.inventory), *args]
    return subprocess.run(
        cmd,
        cwd=project.root,
        env={**os.environ, **project.env(), **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )


def match_hosts(project: Project, pattern: str, limit: str | None = None) -> list[str]:
    """The hosts ``pattern`` (limited by ``limit``) matches, as a playbook would see them."""
    proc = ansible(project, pattern, "--list-hosts", *(["--limit", limit] if limit else []))
    if "no hosts to target" in proc.stderr or "No hosts matched" in proc.stderr:
        return []
    if proc.returncode != 0:
        raise UsageError(
            f"could not read inventory {project.inventory}: {proc.stderr.strip() or proc.stdout.strip()}"
        )
    lines = [ln.strip() for ln in proc.stdout.splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("hosts (")]
