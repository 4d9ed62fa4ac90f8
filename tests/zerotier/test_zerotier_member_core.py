"""The pure plan and the bounded wait of zerotier_member, without a server (fake clock)."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import pytest
from zt_helpers import REPO

sys.path.insert(0, str(REPO / "library" / "module_utils"))
import zerotier_member_core as core


@dataclass
class FakeMember:
    authorized: bool = False
    name: str = ""
    description: str = ""
    hidden: bool = False
    ip_assignments: tuple[str, ...] = ()
    tags: tuple[tuple[int, int], ...] = ()
    seen: bool = True


def test_plan_only_what_differs() -> None:
    member = FakeMember(
        authorized=True, name="a", ip_assignments=("10.0.0.2", "10.0.0.1"), tags=((2, 2), (1, 1))
    )
    desired = core.desired_from_params(
        {
            "authorized": True,
            "name": "b",
            "ip_assignments": ["10.0.0.1", "10.0.0.2"],
            "tags": [[1, 1], [2, 2]],
        }
    )
    result = core.plan(member, desired)
    assert result.changes == {"name": "b"}
    assert result.before["name"] == "a" and result.after["name"] == "b"
    assert "description" not in result.before  # not managed by the task: not in the diff


def test_plan_against_no_member_and_ipv6_normalized() -> None:
    desired = core.desired_from_params({"authorized": True, "ip_assignments": ["FD00:0:0::1"]})
    assert core.plan(None, desired).changes == {"authorized": True, "ip_assignments": ["fd00::1"]}


@pytest.mark.parametrize(
    "params",
    [
        {"authorized": "true"},
        {"hidden": 1},
        {"name": 5},
        {"tags": [[1]]},
        {"tags": [[1, 2.5]]},
        {"ip_assignments": [5]},
    ],
)
def test_wrong_types_rejected(params: dict) -> None:
    with pytest.raises(core.MemberError):
        core.desired_from_params(params)


def test_wait_is_bounded_and_returns_once_seen() -> None:
    now = [0.0]
    reads = [None, FakeMember(seen=False), FakeMember(seen=True, name="x")]

    def sleep(s: float) -> None:
        now[0] += s

    member, waited = core.wait_until_seen(lambda: reads.pop(0), lambda: now[0], sleep, 300, 2)
    assert member is not None and member.name == "x" and waited == 4.0

    member, waited = core.wait_until_seen(lambda: None, lambda: now[0], sleep, 300, 7)
    assert member is None and 300 <= waited < 301


def test_unapplied_names_a_dropped_field() -> None:
    todo = core.plan(FakeMember(), core.desired_from_params({"name": "keep-me", "authorized": True}))
    assert core.unapplied(todo, FakeMember(authorized=True, name="")) == ["name"]
