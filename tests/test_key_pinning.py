"""The apt signing-key pin of the zerotier and jetson_runtime roles, run as written through
ansible-playbook on this machine: many hosts check the key at once on the control node.

Every host of a play runs the fingerprint check on the control node at the same moment. gpg's first
run makes ~/.gnupg, and parallel first runs raced for it: a fresh control node's first converge failed
one host with "can't create directory '/root/.gnupg': File exists". The check now reads the key in a
throwaway GnuPG home: the right key passes on every host, another key is refused, and the operator's
home gets no ~/.gnupg.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
HOSTS = 12
ROLES = ("jetson_runtime", "zerotier")  # the two roles that pin an apt key on the control node

pytestmark = pytest.mark.skipif(
    not PLAYBOOK.exists() or shutil.which("gpg") is None, reason="needs ansible-playbook and gpg"
)


def make_key(home: Path, name: str) -> tuple[Path, str]:
    """An ed25519 signing key made in its own GnuPG home: (armored public key file, fingerprint)."""
    home.mkdir(mode=0o700, parents=True)
    gpg = ["gpg", "--homedir", str(home), "--batch"]
    subprocess.run([*gpg, "--passphrase", "", "--quick-gen-key", name, "ed25519", "sign", "never"],
                   check=True, capture_output=True, timeout=120)  # fmt: skip
    listing = subprocess.run([*gpg, "--with-colons", "--list-keys"], check=True, capture_output=True,
                             text=True, timeout=60).stdout  # fmt: skip
    fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    armored = home.parent / f"{name}.asc"
    armored.write_bytes(subprocess.run([*gpg, "--armor", "--export", name], check=True, capture_output=True,
                                       timeout=60).stdout)  # fmt: skip
    return armored, fingerprint


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    base = tmp_path_factory.mktemp("keys")
    return {name: make_key(base / name, name) for name in ("pinned", "other")}


def pin_tasks(role: str) -> list[dict[str, Any]]:
    """The role's fetch, fingerprint and pin tasks, as written (the rest of install.yml installs)."""
    tasks = yaml.safe_load((ROOT / "roles" / role / "tasks" / "install.yml").read_text())
    names = ("Fetch", "Read the key's fingerprints", "Check the key is the pinned one")
    picked = [t for t in tasks if str(t.get("name", "")).startswith(names)]
    assert len(picked) == 3, [t.get("name") for t in tasks]
    return picked


def run(tmp_path: Path, role: str, key: Path, fingerprint: str) -> subprocess.CompletedProcess[str]:
    prefix = role + "_apt_key_"
    hosts = {f"host{i:02d}": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
             for i in range(HOSTS)}  # fmt: skip
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    play = [{"name": "Pin", "hosts": "all", "gather_facts": False,
             "vars": {prefix + "url": f"file://{key}", prefix + "fingerprint": fingerprint},
             "tasks": pin_tasks(role)}]  # fmt: skip
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "GNUPG"))}
    env |= {"HOME": str(home), "ANSIBLE_FORKS": str(HOSTS), "ANSIBLE_LOCAL_TEMP": str(tmp_path / "at"),
            "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_LOCALHOST_WARNING": "False"}  # fmt: skip
    return subprocess.run(
        [str(PLAYBOOK), "-i", str(tmp_path / "hosts.yml"), str(tmp_path / "play.yml")],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=False, timeout=300,
    )  # fmt: skip


@pytest.mark.parametrize("role", ROLES)
def test_every_host_checks_the_pin_at_once_and_the_operators_home_stays_untouched(
    tmp_path: Path, keys: dict[str, tuple[Path, str]], role: str
) -> None:
    key, fingerprint = keys["pinned"]
    proc = run(tmp_path, role, key, fingerprint)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert proc.stdout.count(": ok=3 ") == HOSTS and proc.stdout.count("failed=0") == HOSTS
    assert not (tmp_path / "home" / ".gnupg").exists()


@pytest.mark.parametrize("role", ROLES)
def test_a_key_that_is_not_the_pinned_one_is_refused_on_every_host(
    tmp_path: Path, keys: dict[str, tuple[Path, str]], role: str
) -> None:
    key, _ = keys["other"]
    proc = run(tmp_path, role, key, keys["pinned"][1])
    assert proc.returncode != 0
    refused = [line for line in proc.stdout.splitlines() if line.startswith("fatal: [host")]
    assert len(refused) == HOSTS and all("is not the pinned key" in line for line in refused), proc.stdout[
        -3000:
    ]
