"""ZeroTier in the lab fleet (issue 12, docs/zerotier.md), on the session's one converge.

Every lab host ran the zerotier role in site.yml: it joined the lab network through the zerotier-one
LAB STAND-IN and authorized itself at the ZeroTier Central LAB STAND-IN. So inventories/lab-zerotier
(the inventory plugin against that double) lists the same fleet. Then a fourth device, outside
inventories/lab, goes the way a new RVM goes: it joins and waits unauthorized, playbooks/enroll.yml
authorizes it with its name, site and address, the plugin lists it in its site group, `site.yml -l`
converges it through the plugin inventory, and its deposits reach the platform simulator. The
fourth device and its member are removed at the end, and the servers' firewalls set back.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from fleet_helpers import (
    FIGURES,
    LABCTL,
    ROOT,
    Recap,
    lab_attachment,
    lab_inventory,
    playbook,
    sh,
    sim_get,
)

ZT_INVENTORY = "inventories/lab-zerotier"
PENDING = "lab/zerotier_central/pending.zerotier.yml"
NETWORK = "8056c2e21c000001"
CENTRAL = "http://127.0.0.1:9994/api/v1"
NEW = "rvm-lab-04"
LAB_GROUPS = ("rvm_devices", "monitoring_servers", "backup_servers", "platform_simulators")
# The servers whose firewalls admit devices by inventory group (platform API, backup sftp).
SERVERS = "rvm-platform,rvm-backup"


def inventory(source: str) -> dict:
    """`ansible-inventory --list`, with its {"__ansible_unsafe": s} wrappers (plugin data) undone."""
    proc = sh(["ansible-inventory", "-i", source, "--list"])
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout, object_hook=lambda d: d.get("__ansible_unsafe", d) if len(d) == 1 else d)


def members(data: dict, group: str) -> set[str]:
    return set(data.get(group, {}).get("hosts", []))


def lab_address(host: str) -> str:
    return lab_attachment(host)[1]


def central(method: str, path: str) -> int:
    """One request to the Central double with the lab's token (read from .lab/, never printed)."""
    token = (ROOT / ".lab" / "zerotier-central-token").read_text().strip()
    request = urllib.request.Request(
        f"{CENTRAL}{path}", method=method, headers={"Authorization": f"token {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return reply.status


def test_the_plugin_lists_the_lab_fleet(fleet: Recap) -> None:
    """inventories/lab-zerotier builds the lab's hosts and groups from the members, at their addresses."""
    plain = lab_inventory()
    data = inventory(ZT_INVENTORY)
    for group in LAB_GROUPS:
        assert members(data, group) == members(plain, group), group
    hostvars = data["_meta"]["hostvars"]
    assert set(hostvars) == set(plain["_meta"]["hostvars"])
    assert members(data, "site_lab") == set(hostvars)
    for host, hv in hostvars.items():
        assert hv["zt_authorized"] is True, host
        assert hv["ansible_host"] == lab_address(host), host  # the stand-in's "ZeroTier IP"
        assert re.fullmatch(r"[0-9a-f]{10}", hv["zt_node_id"]), hv
    token = (ROOT / ".lab" / "zerotier-central-token").read_text().strip()
    assert token not in json.dumps(data)


def test_each_host_is_on_the_network_at_its_management_address(fleet: Recap) -> None:
    """zerotier-cli on every host: the lab network OK, at the address its listeners bind to."""
    for host in sorted(lab_inventory()["_meta"]["hostvars"]):
        proc = sh(["podman", "exec", host, "zerotier-cli", "-j", "listnetworks"])
        assert proc.returncode == 0, (host, proc.stderr)
        (network,) = [n for n in json.loads(proc.stdout) if n["id"] == NETWORK]
        assert network["status"] == "OK", (host, network)
        assert f"{lab_address(host)}/" in " ".join(network["assignedAddresses"]), (host, network)
        # the role's local facts, which runs without the zerotier role read (rvm_mgmt_address)
        info = json.loads(sh(["podman", "exec", host, "zerotier-cli", "-j", "info"]).stdout)
        kept = json.loads(sh(["podman", "exec", host, "cat", "/etc/ansible/facts.d/zerotier.fact"]).stdout)
        assert kept["node_id"] == info["address"], (host, kept, info)
        assert kept["mgmt_address"] == lab_address(host), (host, kept)
        assert kept["addresses"][NETWORK] == sorted(a.split("/")[0] for a in network["assignedAddresses"])
    # node-exporter and rvm-edge's HTTP/metrics listener bind to rvm_mgmt_address, the ZeroTier
    # address (in the lab the stand-in's address is the container's own: they coincide by design).
    address = lab_address("rvm-lab-01")
    listeners = sh(["podman", "exec", "rvm-lab-01", "ss", "-Hltn"]).stdout
    for port in (9100, 8080):
        assert f"{address}:{port} " in listeners, (port, listeners)


@pytest.fixture
def new_device(fleet: Recap) -> Iterator[str]:
    """A fourth device outside inventories/lab; removed with its member, the servers' firewalls reset."""
    made = sh([*LABCTL, "add", NEW])
    assert made.returncode == 0, made.stdout + made.stderr
    try:
        yield NEW
    finally:
        removed = sh([*LABCTL, "remove", NEW])
        # Its member (enrolled or not): every member that is not a host of inventories/lab.
        lab = set(lab_inventory()["_meta"]["hostvars"])
        for host, hv in inventory(PENDING)["_meta"]["hostvars"].items():
            if host not in lab:
                central("DELETE", f"/network/{NETWORK}/member/{hv['zt_node_id']}")
        # The servers' firewalls from inventories/lab again (without the fourth device).
        playbook("-l", SERVERS, "--tags", "hardening_configure", path="playbooks/hardening.yml")
        assert removed.returncode == 0, removed.stdout + removed.stderr
        assert sh(["podman", "container", "exists", NEW]).returncode == 1


def test_a_new_device_is_enrolled_converged_and_delivers(new_device: str, tmp_path: Path) -> None:
    start = time.monotonic()
    address = lab_address(new_device)
    # 1. The bare device installs zerotier-one and joins (the role, with no Central token): it stops
    #    at ACCESS_DENIED and names its node id for the operator.
    bare = tmp_path / "bare.ini"
    bare.write_text(f"{new_device}\n")
    joined = sh(
        [
            "ansible-playbook", "-i", "inventories/lab", "-i", str(bare), "site.yml", "-l", new_device,
            "--tags", "zerotier", "-e", "zerotier_central_token=",
            "-e", f"ansible_ssh_private_key_file={ROOT}/.lab/ssh/id_ed25519",
        ]
    )  # fmt: skip
    assert joined.returncode != 0, joined.stdout[-3000:]
    said = " ".join(joined.stdout.split())  # the message may be folded over lines
    refusal = re.search(
        rf"node ([0-9a-f]{{10}}) \({new_device}\) is not authorized on network {NETWORK}", said
    )
    assert refusal, joined.stdout[-3000:]
    node_id = refusal.group(1)
    assert "playbooks/enroll.yml" in said
    FIGURES["zerotier_join_s"] = round(time.monotonic() - start, 1)

    # 2. It is listed as an unauthorized member, under its node id, without an address.
    pending = inventory(PENDING)
    assert node_id in members(pending, "zt_unauthorized"), pending.get("zt_unauthorized")
    assert "ansible_host" not in pending["_meta"]["hostvars"][node_id]
    assert new_device not in inventory(ZT_INVENTORY)["_meta"]["hostvars"]

    # 3. enroll.yml authorizes it with its name, site and address.
    recap, out, _ = playbook(
        "-i", ZT_INVENTORY, "-e", f"enroll_node_id={node_id}", "-e", f"enroll_name={new_device}",
        "-e", "enroll_site=lab", "-e", f"enroll_ip={address}", path="playbooks/enroll.yml",
    )  # fmt: skip
    assert recap["localhost"]["changed"] == 1, out[-2000:]
    assert f"site.yml -l {new_device}" in out

    # 4. The plugin lists it in its site group (and as a device), at that address.
    data = inventory(ZT_INVENTORY)
    assert new_device in members(data, "site_lab") and new_device in members(data, "rvm_devices")
    assert data["_meta"]["hostvars"][new_device]["ansible_host"] == address
    assert data["_meta"]["hostvars"][new_device]["zt_node_id"] == node_id

    # 5. The servers admit it (firewalls by inventory group; its machine on the platform), then
    #    `site.yml -l` converges it through the plugin inventory.
    facts = sh(["ansible", "-i", ZT_INVENTORY, new_device, "-m", "ansible.builtin.setup"])
    assert facts.returncode == 0, facts.stdout[-2000:]
    playbook(
        "-i", ZT_INVENTORY, "-l", SERVERS, "--tags", "hardening_configure", path="playbooks/hardening.yml"
    )
    playbook("-i", ZT_INVENTORY, "--tags", "rvm_platform_sim_machines", path="playbooks/platform_sim.yml")
    converge_start = time.monotonic()
    recap, _, elapsed = playbook("-i", ZT_INVENTORY, "-l", new_device)
    FIGURES["zerotier_new_device_converge_s"] = round(elapsed, 1)
    assert set(recap) == {new_device}, recap
    assert recap[new_device]["failed"] == 0 and recap[new_device]["unreachable"] == 0, recap

    # 6. Its deposits arrive at the platform simulator.
    machine = {m["name"]: m["id"] for m in sim_get("machines")}[new_device]  # type: ignore[union-attr]
    deadline = time.monotonic() + 120
    count = 0
    while count == 0 and time.monotonic() < deadline:  # items pass its camera: poll with a bound
        count = sum(1 for d in sim_get("deposits") if d["machine_id"] == machine)  # type: ignore[union-attr]
        if count == 0:
            time.sleep(2)
    FIGURES["zerotier_first_deposit_after_converge_s"] = round(time.monotonic() - converge_start - elapsed, 1)
    FIGURES["zerotier_enrollment_total_s"] = round(time.monotonic() - start, 1)
    assert count > 0, f"no deposit from {new_device} within 120 s"
