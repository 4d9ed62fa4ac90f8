"""The mid-deploy faults' pure parts (prodtest.middeploy): the partition's nftables table, where the
control node is, reading the device's pending commit and its guard's lines, and the end verdict."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from prodtest.lab import LabError
from prodtest.middeploy import (
    HEAL,
    TABLE,
    EndState,
    PendingCommit,
    gateway_for,
    guard_rollbacks,
    nft_argv,
    partition_ruleset,
    readiness,
    rollback_of,
)
from prodtest.push import playbook_argv, stop_play

NETWORKS = [
    {"name": "podman", "subnets": [{"subnet": "10.88.0.0/16", "gateway": "10.88.0.1"}]},
    {"name": "rvm-lab", "subnets": [{"subnet": "10.89.0.0/24", "gateway": "10.89.0.1"}]},
]


def test_the_partition_drops_only_the_control_node_both_ways_before_the_firewall() -> None:
    rules = partition_ruleset("10.89.0.1")
    addresses = {word for word in rules.split() if word.count(".") == 3}
    assert addresses == {"10.89.0.1"}
    assert "ip saddr 10.89.0.1 drop" in rules and "ip daddr 10.89.0.1 drop" in rules
    assert rules.count("hook input priority filter - 10") == 1
    assert rules.count("hook output priority filter - 10") == 1
    # its own table, replaced if a run left one; the hardening role's table is never named
    assert set(re.findall(r"table inet (\S+)", rules)) == {TABLE}
    assert "policy drop" not in rules and "flush ruleset" not in rules


def test_the_partition_is_loaded_and_healed_inside_the_device_namespace() -> None:
    assert nft_argv("rvm-lab-02") == ["podman", "exec", "-i", "rvm-lab-02", "nft", "-f", "-"]
    assert f"nft delete table inet {TABLE}" in HEAL and "flush ruleset" not in HEAL


@pytest.mark.parametrize("bad", ["127.0.0.1", "0.0.0.0", "not-an-address"])
def test_no_partition_against_loopback_or_nothing(bad: str) -> None:
    with pytest.raises((LabError, ValueError)):
        partition_ruleset(bad)


def test_ipv6_control_node_uses_ip6_matches() -> None:
    rules = partition_ruleset("fd00::1")
    assert "ip6 saddr fd00::1 drop" in rules and "ip saddr" not in rules


def test_the_control_node_is_the_gateway_of_the_devices_subnet() -> None:
    assert gateway_for(NETWORKS, "10.89.0.7") == "10.89.0.1"
    with pytest.raises(LabError, match="no podman network"):
        gateway_for(NETWORKS, "192.168.5.5")


def test_pending_commit_is_read_and_a_damaged_one_is_an_error() -> None:
    text = json.dumps(
        {
            "release": "0.1.0-midrestart",
            "previous": "0.1.0",
            "deadline": 1765050000.5,
            "token": "t",
            "holder": "h",
        }
    )
    assert PendingCommit.parse(text) == PendingCommit("0.1.0-midrestart", "0.1.0", 1765050000.5)
    for bad in ("{", '{"release": "x"}', '{"release": "x", "previous": "y", "deadline": "soon"}'):
        with pytest.raises(LabError, match="cannot be read"):
            PendingCommit.parse(bad)


def test_only_the_guards_lines_count_and_the_newest_rollback_of_that_commit_wins() -> None:
    pending = PendingCommit("0.1.0-partition", "0.1.0", 100.0)
    jsonl = "\n".join(
        [
            json.dumps({"by": "alice@control", "action": "deploy", "from": "0.1.0", "to": "0.1.0-partition"}),
            '{"by": "rvm-edge-commit-guard@rvm-lab-02", "torn',
            json.dumps({"by": "rvm-edge-commit-guard@rvm-lab-02", "from": "0.1.0-other", "to": "0.1.0"}),
            json.dumps(
                {"by": "rvm-edge-commit-guard@rvm-lab-02", "from": "0.1.0-partition", "to": "0.1.0", "n": 1}
            ),
            json.dumps(
                {"by": "rvm-edge-commit-guard@rvm-lab-02", "from": "0.1.0-partition", "to": "0.1.0", "n": 2}
            ),
        ]
    )
    lines = guard_rollbacks(jsonl)
    assert len(lines) == 3
    line = rollback_of(lines, pending)
    assert line is not None and line["n"] == 2
    assert rollback_of(lines[:1], pending) is None


def test_one_healthy_release_means_that_release_ready_nothing_pending_and_no_lock() -> None:
    good = EndState("0.1.0", ready=True, pending=False, lock_held=False)
    assert good.on_one_healthy("0.1.0")
    assert not good.on_one_healthy("0.1.0-midrestart")
    assert not EndState("0.1.0", ready=False, pending=False, lock_held=False).on_one_healthy("0.1.0")
    assert not EndState("0.1.0", ready=True, pending=True, lock_held=False).on_one_healthy("0.1.0")
    assert not EndState("0.1.0", ready=True, pending=False, lock_held=True).on_one_healthy("0.1.0")


def test_the_inside_poll_lines_become_samples_and_noise_is_skipped() -> None:
    text = "100.000 1\n100.250 0\nTraceback (most recent call last)\n100.5x 1\n100.750 1\n"
    assert readiness(text) == [(100.0, True), (100.25, False), (100.75, True)]


def test_playbook_argv_names_the_inventory_only_when_asked() -> None:
    default = playbook_argv("rvm-lab-02", {"rvm_edge_version": "0.1.0"})
    assert "-i" not in default and default[-4:] == ["-l", "rvm-lab-02", "-e", '{"rvm_edge_version": "0.1.0"}']
    zt = playbook_argv(
        "rvm-lab-02", {}, playbook="playbooks/rollback.yml", inventory="inventories/lab-zerotier"
    )
    assert zt[1:4] == ["playbooks/rollback.yml", "-i", "inventories/lab-zerotier"]


def test_a_play_given_up_is_ended_and_one_that_ended_is_left_alone() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], text=True, start_new_session=True
    )
    assert stop_play(child) is True
    assert child.returncode is not None and child.returncode < 0
    assert stop_play(child) is False
