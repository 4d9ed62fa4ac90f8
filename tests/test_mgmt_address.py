"""A host's management address in runs that leave the zerotier role out, with real ansible-playbook
runs on this machine.

On a real fleet a host's ZeroTier address is not its LAN address. A run of the zerotier role knows it
(``zerotier_mgmt_address``); a later ``-l`` run of the servers' firewalls, or a backup play, must still
name each peer and the backup server by it, or the firewall admits the devices' LAN addresses and the
devices back up to an address where the server's sshd does not listen. The zerotier role keeps the
address as a local fact for those runs. Here three local "hosts" each see their own
/etc/ansible/facts.d (a private mount namespace per host, through its Python interpreter), a fourth is
a device that is down, and the repository's own tasks run as written: the zerotier role's facts.yml,
the firewall's gather and nftables template, the backup role's gather and vars, group_vars/all.yml.
"""

from __future__ import annotations

import json
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
NWID = "8056c2e21c000001"
ZT = {"peer": "10.147.17.21", "backup": "10.147.17.31"}
FACTS_DIR = Path("/etc/ansible/facts.d")

pytestmark = pytest.mark.skipif(
    not PLAYBOOK.exists() or os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs ansible-playbook, root and unshare (each host's own facts.d is a private bind mount)",
)


def task(path: str, name: str) -> dict[str, Any]:
    """One task of the repository, as written (a file it includes found beside it, as in the role)."""
    for t in yaml.safe_load((ROOT / path).read_text()):
        if t.get("name") == name:
            if "ansible.builtin.include_tasks" in t:
                t["ansible.builtin.include_tasks"] = str(
                    (ROOT / path).parent / t["ansible.builtin.include_tasks"]
                )
            return t
    raise AssertionError(f"{path} has no task named {name!r}")


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    """An inventory of three local hosts, each with its own facts.d, and the project's group_vars."""
    inv = tmp_path / "inventory"
    (inv / "group_vars").mkdir(parents=True)
    shutil.copy(ROOT / "group_vars" / "all.yml", inv / "group_vars" / "all.yml")
    hosts: dict[str, Any] = {}
    for name in ("server", "peer", "backup"):
        facts = tmp_path / "hosts" / name
        facts.mkdir(parents=True)
        wrapper = tmp_path / f"python-{name}"
        wrapper.write_text(
            "#!/bin/sh\n"
            f"exec unshare --mount --propagation private sh -c 'mount --bind {facts} {FACTS_DIR} && "
            f'exec {sys.executable} "$@"\' python "$@"\n'
        )
        wrapper.chmod(0o755)
        hosts[name] = {
            "ansible_connection": "local",
            "ansible_python_interpreter": str(wrapper),
            "zerotier_networks": [NWID],
        }
    # A device that is down (nothing listens on port 1), never gathered: the servers' firewall play must
    # go on without its facts, and admit it at the address the inventory reaches it at.
    offline = {
        "ansible_host": "127.0.0.1",
        "ansible_port": 1,
        "ansible_connection": "ssh",
        "zerotier_networks": [NWID],
    }
    devices = {"peer": hosts.pop("peer"), "offline": offline}
    (inv / "hosts.yml").write_text(
        yaml.safe_dump({"all": {"hosts": hosts, "children": {"devices": {"hosts": devices}}}})
    )
    FACTS_DIR.mkdir(parents=True, exist_ok=True)  # the mount point; each host sees its own directory
    return tmp_path


def playbook(fleet: Path, plays: list[dict[str, Any]], *args: str) -> str:
    """ansible-playbook in a fresh process (no fact cache: a later run knows only what it gathers)."""
    book = fleet / "play.yml"
    book.write_text(yaml.safe_dump(plays, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env |= {"ANSIBLE_ROLES_PATH": str(ROOT / "roles"), "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_STDOUT_CALLBACK": "default", "ANSIBLE_LOCALHOST_WARNING": "False"}  # fmt: skip
    proc = subprocess.run(
        [str(PLAYBOOK), "-i", str(fleet / "inventory"), str(book), *args],
        capture_output=True, text=True, env=env, cwd=fleet, check=False, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return proc.stdout


def join(fleet: Path) -> None:
    """The zerotier role's facts.yml on the peer and the backup server, as after joining."""
    playbook(fleet, [{
        "name": "ZeroTier facts", "hosts": "peer,backup", "gather_facts": False,
        "tasks": [{"name": "The role's facts", "ansible.builtin.include_role": {
            "name": "zerotier", "tasks_from": "facts.yml"},
            "vars": {"__zerotier_node_id": "{{ 'a1b2c3d4e5' if inventory_hostname == 'peer' else 'f6e5d4c3b2' }}",
                     "__zerotier_addresses": {NWID: ["fd80::1", f"{{{{ {ZT} [inventory_hostname] }}}}"]}}}],
    }])  # fmt: skip


def written(fleet: Path, name: str) -> str:
    return (fleet / f"{name}.out").read_text().strip()


def firewall_sources(fleet: Path) -> list[str]:
    """The sources a -l server run of the firewall writes into a rule for group:devices: the role's
    own gather, then its nftables template (with the offline device among the peers: the template
    task must still run, or no file is written)."""
    gather = task("roles/hardening/tasks/firewall.yml",
                  "Gather the facts of the hosts the rules name, where they are not known yet (--limit)")  # fmt: skip
    rules = fleet / "nftables.conf"
    playbook(fleet, [{
        "name": "The servers' firewall", "hosts": "server", "gather_facts": True,
        "vars": {"_hardening_firewall_rules": [{"name": "platform API", "port": 8000, "from": ["group:devices"]}],
                 "_hardening_nft_table": "rvm_filter", "_hardening_nft_drop_counter": "input_dropped",
                 "hardening_firewall_control_nodes": [], "hardening_firewall_mgmt_networks": [],
                 "hardening_firewall_extra_rules": []},
        "tasks": [gather, {"name": "The rules", "ansible.builtin.template": {
            "src": str(ROOT / "roles/hardening/templates/nftables.conf.j2"), "dest": str(rules), "mode": "0600"}}],
    }], "-l", "server")  # fmt: skip
    (line,) = [x for x in rules.read_text().splitlines() if "tcp dport 8000 accept" in x]
    return line.split("{")[1].split("}")[0].replace(",", " ").split()


def backup_address(fleet: Path) -> str:
    """Where the backup role sends a device, after its own gather of the backup server."""
    gather = task("roles/backup/tasks/preflight.yml",
                  "Read the backup server's address (its network and local facts, the ZeroTier address included)")  # fmt: skip
    playbook(fleet, [{
        "name": "A device's backups", "hosts": "server", "gather_facts": False,
        "vars": {"backup_server": "backup", "backup_server_address": ""},
        "tasks": [
            {"name": "The backup role's vars", "ansible.builtin.include_vars": str(ROOT / "roles/backup/vars/main.yml")},
            gather,
            {"name": "Where the backups go", "ansible.builtin.copy": {
                "content": "{{ _backup_address }}\n", "dest": str(fleet / "backup.out"), "mode": "0644"}},
        ],
    }], "-l", "server")  # fmt: skip
    return written(fleet, "backup")


def test_the_zerotier_role_keeps_its_facts_on_the_host(fleet: Path) -> None:
    join(fleet)
    kept = json.loads((fleet / "hosts" / "peer" / "zerotier.fact").read_text())
    assert kept == {"node_id": "a1b2c3d4e5", "mgmt_address": ZT["peer"],
                    "addresses": {NWID: sorted(["fd80::1", ZT["peer"]])}}  # fmt: skip
    assert not (fleet / "hosts" / "server" / "zerotier.fact").exists()
    before = (fleet / "hosts" / "peer" / "zerotier.fact").read_text()
    join(fleet)
    assert (fleet / "hosts" / "peer" / "zerotier.fact").read_text() == before


def test_a_limited_run_names_peers_and_the_backup_server_by_their_zerotier_address(fleet: Path) -> None:
    join(fleet)
    assert firewall_sources(fleet) == ["127.0.0.1", ZT["peer"]]  # offline, peer (sorted by name)
    assert backup_address(fleet) == ZT["backup"]


def test_without_the_local_facts_the_default_ipv4_address_stands_in(fleet: Path) -> None:
    """A host that never ran the zerotier role (and the lab before it had ZeroTier)."""
    offline, lan = firewall_sources(fleet)
    assert offline == "127.0.0.1" and lan not in ZT.values()
    assert backup_address(fleet) == lan


def test_the_backup_role_without_the_projects_group_vars_uses_the_default_ipv4_address(fleet: Path) -> None:
    """The role on its own (its Molecule scenario, another project): no rvm_mgmt_address anywhere."""
    join(fleet)
    (fleet / "inventory" / "group_vars" / "all.yml").unlink()
    address = backup_address(fleet)
    assert address and address not in ZT.values()
