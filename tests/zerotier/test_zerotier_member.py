"""zerotier_member against the Central double on loopback: idempotence, check mode, diff, the
error replies, exact types, the self-hosted controller shape and the member not seen yet."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import ansible.module_utils
import pytest
from ansible.module_utils.testing import patch_module_args
from zt_helpers import CONTROLLER_TOKEN, FOREIGN_NWID, NWID, OTHER_TOKEN, REPO, TOKEN, Double, request

LIBRARY = REPO / "library"
if str(LIBRARY / "module_utils") not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(str(LIBRARY / "module_utils"))
if str(LIBRARY) not in sys.path:
    sys.path.insert(0, str(LIBRARY))

import zerotier_member  # noqa: E402 - after the module_utils path is set

PENDING = "c1b2c3d4e5"


def run_module(
    double: Double, args: dict[str, Any], *, check: bool = False, diff: bool = False
) -> dict[str, Any]:
    full = {
        "network_id": NWID,
        "node_id": PENDING,
        "api_url": f"{double.url}/api/v1",
        "token": TOKEN,
        "poll_s": 0.02,
        **args,
        "_ansible_check_mode": check,
        "_ansible_diff": diff,
    }
    out = io.StringIO()
    with patch_module_args(full), redirect_stdout(out), pytest.raises(SystemExit):
        zerotier_member.main()
    return json.loads(out.getvalue())


def posts(double: Double) -> int:
    return sum(1 for method, _ in double.state.requests if method == "POST")


ENROLL = {
    "authorized": True,
    "name": "rvm-lab-05",
    "description": "site=berlin",
    "tags": [[1000, 3]],
    "ip_assignments": ["10.147.17.25"],
}


def test_enroll_then_nothing_to_do(double: Double) -> None:
    first = run_module(double, ENROLL)
    assert first["changed"] is True, first
    assert sorted(first["changes"]) == ["authorized", "description", "ip_assignments", "name", "tags"]
    stored = double.state.networks[NWID].members[PENDING]
    assert (stored.authorized, stored.name, stored.description) == (True, "rvm-lab-05", "site=berlin")
    assert stored.tags == [[1000, 3]] and stored.ip_assignments == ["10.147.17.25"]
    assert first["member"]["ip_assignments"] == ["10.147.17.25"]
    before = posts(double)
    again = run_module(double, ENROLL)
    assert again["changed"] is False and again["changes"] == []
    assert posts(double) == before, "an unchanged member must not be POSTed"
    assert TOKEN not in json.dumps(first) + json.dumps(again)


def test_only_differing_fields_are_sent_and_order_is_not_a_change(double: Double) -> None:
    run_module(double, {**ENROLL, "ip_assignments": ["10.147.17.25", "fd00::25"], "tags": [[1, 1], [2, 2]]})
    same = run_module(double, {"ip_assignments": ["fd00::25", "10.147.17.25"], "tags": [[2, 2], [1, 1]]})
    assert same["changed"] is False
    renamed = run_module(double, {"name": "rvm-lab-06", "authorized": True})
    assert renamed["changes"] == ["name"]


def test_check_mode_and_diff_change_nothing(double: Double) -> None:
    before = posts(double)
    result = run_module(double, ENROLL, check=True, diff=True)
    assert result["changed"] is True
    assert posts(double) == before
    assert double.state.networks[NWID].members[PENDING].authorized is False
    assert result["diff"]["before"]["authorized"] is False and result["diff"]["after"]["authorized"] is True
    assert result["diff"]["after"]["name"] == "rvm-lab-05"
    assert result["member"]["name"] == "rvm-lab-05"


def test_deauthorize(double: Double) -> None:
    result = run_module(double, {"node_id": "a1b2c3d4e5", "authorized": False}, diff=True)
    assert result["changed"] is True
    assert result["diff"] == {"before": {"authorized": True}, "after": {"authorized": False}}
    assert double.state.networks[NWID].members["a1b2c3d4e5"].authorized is False


def test_waits_for_a_member_not_seen_yet_so_the_name_sticks(double: Double) -> None:
    node = "0a0b0c0d0e"
    original = double.state.handle
    gets = {"n": 0}

    def contact_after_two_reads(method: str, path: str, headers: dict[str, str], body: bytes) -> Any:
        reply = original(method, path, headers, body)
        if method == "GET" and path.endswith(f"/member/{node}"):
            gets["n"] += 1
            if gets["n"] == 2:  # the node reaches the controller while the module polls
                original("POST", f"/lab/network/{NWID}/contact/{node}", {}, b'{"clientVersion": "1.14.2"}')
        return reply

    double.state.handle = contact_after_two_reads  # type: ignore[method-assign]
    result = run_module(double, {**ENROLL, "node_id": node, "ip_assignments": ["10.147.17.30"]})
    assert result["changed"] is True, result
    assert result["waited_s"] >= 0
    assert gets["n"] >= 3
    stored = double.state.networks[NWID].members[node]
    assert (stored.name, stored.description, stored.authorized) == ("rvm-lab-05", "site=berlin", True)


def test_member_never_seen_fails_clearly_and_writes_nothing(double: Double) -> None:
    # A record made by a POST (pre-created) whose node never connects, and an unknown node.
    request(
        f"{double.url}/api/v1/network/{NWID}/member/0a0a0a0a0a",
        "POST",
        {"name": "early"},
        {"Authorization": f"token {TOKEN}"},
    )
    for node in ("0a0a0a0a0a", "0b0b0b0b0b"):
        before = posts(double)
        result = run_module(double, {**ENROLL, "node_id": node, "wait_for_member_s": 0})
        assert result["failed"] is True
        assert f"node {node} has not reached the controller of network {NWID}" in result["msg"]
        assert f"zerotier-cli join {NWID}" in result["msg"]
        assert posts(double) == before


def test_check_mode_does_not_wait_for_an_unseen_member(double: Double) -> None:
    result = run_module(double, {**ENROLL, "node_id": "0c0c0c0c0c", "wait_for_member_s": 600}, check=True)
    assert result["changed"] is True
    assert "has not reached the controller yet" in result["msg"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({"token": "wrong"}, "401 unauthorized: the API token (Authorization: token) was refused"),
        ({"token": OTHER_TOKEN}, "403 forbidden"),
        ({"network_id": FOREIGN_NWID}, f"network {FOREIGN_NWID}: 403 forbidden"),
        ({"network_id": "ffffffffffffffff"}, "network ffffffffffffffff: 404 not found"),
        ({"network_id": "nope"}, "network_id must be 16 lower-case hex digits"),
        ({"node_id": "XYZ"}, "node_id must be 10 lower-case hex digits"),
        ({"tags": [["1000", 1]]}, "tags: each tag must be [tag_id, value] with two integers"),
        ({"tags": [[True, 1]]}, "tags: each tag must be [tag_id, value] with two integers"),
        ({"ip_assignments": ["10.1.1.300"]}, "ip_assignments: '10.1.1.300' is not an IP address"),
        (
            {"api_url": "http://127.0.0.1:9/api/v1"},
            "cannot reach the ZeroTier API at http://127.0.0.1:9/api/v1",
        ),
        ({"token": None}, "no ZeroTier API token"),
        (
            {"token": None, "token_file": "/nonexistent/zt-token"},
            "cannot read token file /nonexistent/zt-token",
        ),
    ],
)
def test_errors(double: Double, args: dict[str, Any], expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZEROTIER_TOKEN", raising=False)
    before = posts(double)
    result = run_module(double, {**ENROLL, **args})
    assert result["failed"] is True
    assert expected in result["msg"], result["msg"]
    assert TOKEN not in json.dumps(result)
    assert posts(double) == before


def test_self_hosted_controller(double: Double, tmp_path: Path) -> None:
    secret = tmp_path / "authtoken.secret"
    secret.write_text(CONTROLLER_TOKEN + "\n")
    args = {"api_type": "controller", "api_url": double.url, "token": None, "token_file": str(secret)}
    result = run_module(double, {**args, "authorized": True, "name": "rvm-lab-07", "tags": [[1000, 2]]})
    assert result["changed"] is True, result
    assert ("POST", f"/controller/network/{NWID}/member/{PENDING}") in double.state.requests
    assert double.state.networks[NWID].members[PENDING].name == "rvm-lab-07"
    again = run_module(double, {**args, "authorized": True, "name": "rvm-lab-07", "tags": [[1000, 2]]})
    assert again["changed"] is False


def test_absent(double: Double) -> None:
    assert run_module(double, {"state": "absent"}, check=True)["changed"] is True
    assert PENDING in double.state.networks[NWID].members
    assert run_module(double, {"state": "absent"})["changed"] is True
    assert PENDING not in double.state.networks[NWID].members
    assert run_module(double, {"state": "absent"})["changed"] is False


def test_through_ansible_playbook_with_diff(double: Double, tmp_path: Path) -> None:
    """The module as a task (AnsiballZ, module_utils from ansible.cfg), token from the environment."""
    playbook = tmp_path / "enroll.yml"
    playbook.write_text(
        f"""- name: Enroll
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Authorize and name
      zerotier_member:
        network_id: "{NWID}"
        node_id: "{PENDING}"
        api_url: "{double.url}/api/v1"
        authorized: true
        name: rvm-lab-09
"""
    )
    environ = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ZEROTIER_TOKEN": TOKEN,
        "ANSIBLE_CACHE_PLUGIN": "ansible.builtin.memory",
        "ANSIBLE_FORCE_COLOR": "0",
    }
    command = [
        str(REPO / ".venv/bin/ansible-playbook"),
        "-i",
        "localhost,",
        "-c",
        "local",
        str(playbook),
        "--diff",
    ]
    command += ["-e", f"ansible_python_interpreter={sys.executable}"]
    first = subprocess.run(
        command, env=environ, capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert "changed=1" in first.stdout
    assert '"name": "rvm-lab-09"' in first.stdout or "name: rvm-lab-09" in first.stdout
    second = subprocess.run(
        command, env=environ, capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False
    )
    assert "changed=0" in second.stdout, second.stdout
    assert TOKEN not in first.stdout + first.stderr + second.stdout + second.stderr
