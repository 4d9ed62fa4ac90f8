"""The zerotier_member plan: which member fields differ from what the task wants, and nothing else.

Why a file of its own (the house pattern of rvm_health_gate_core): idempotence is a comparison, and
a comparison is only trustworthy when it is tested on many member shapes without a server. So this
file does no I/O. It checks the task's values to the exact types the API accepts, compares them
with the member the API returned (IP assignments and tags as sets: their order carries no
meaning), and returns only the fields to POST, with the before/after for the diff. The wait for a
member that has not reached the controller yet is here too, driven through injected ``read``,
``clock`` and ``sleep``, so a 300 s wait is tested in milliseconds.

Why wait at all: a member record created by a POST before the node first reaches the controller
has its name and description replaced at that first contact (the behaviour that makes a naive
"authorize and name" step lose the name). Setting them only once the node has been seen makes them
stick.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

FIELDS = ("authorized", "name", "description", "hidden", "ip_assignments", "tags")
NODE_ID = re.compile(r"^[0-9a-f]{10}$")
NETWORK_ID = re.compile(r"^[0-9a-f]{16}$")


class MemberError(Exception):
    """A task parameter is wrong, or the member never reached the controller; one line."""


@dataclass(frozen=True)
class Desired:
    """What the task asks for; ``None`` leaves a field as it is."""

    authorized: bool | None = None
    name: str | None = None
    description: str | None = None
    hidden: bool | None = None
    ip_assignments: tuple[str, ...] | None = None
    tags: tuple[tuple[int, int], ...] | None = None


@dataclass(frozen=True)
class Plan:
    """The fields to POST and the before/after views of every field the task manages."""

    changes: dict[str, Any]
    before: dict[str, Any]
    after: dict[str, Any]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_ids(network_id: str, node_id: str) -> None:
    if not NETWORK_ID.match(network_id):
        raise MemberError(f"network_id must be 16 lower-case hex digits, got {network_id!r}")
    if not NODE_ID.match(node_id):
        raise MemberError(f"node_id must be 10 lower-case hex digits (zerotier-cli info), got {node_id!r}")


def desired_from_params(params: dict[str, Any]) -> Desired:
    """The task's values with exact types: a string is never taken for a bool or a number."""
    for key in ("authorized", "hidden"):
        if params.get(key) is not None and not isinstance(params[key], bool):
            raise MemberError(f"{key} must be a boolean, got {params[key]!r}")
    for key in ("name", "description"):
        if params.get(key) is not None and not isinstance(params[key], str):
            raise MemberError(f"{key} must be a string, got {params[key]!r}")
    ips = params.get("ip_assignments")
    if ips is not None:
        for ip in ips:
            try:
                ipaddress.ip_address(ip if isinstance(ip, str) else "")
            except ValueError:
                raise MemberError(f"ip_assignments: {ip!r} is not an IP address") from None
        ips = tuple(str(ipaddress.ip_address(ip)) for ip in ips)
    tags = params.get("tags")
    if tags is not None:
        pairs = []
        for tag in tags:
            if not (isinstance(tag, list | tuple) and len(tag) == 2 and all(_is_int(v) for v in tag)):
                raise MemberError(f"tags: each tag must be [tag_id, value] with two integers, got {tag!r}")
            pairs.append((tag[0], tag[1]))
        tags = tuple(pairs)
    return Desired(
        authorized=params.get("authorized"),
        name=params.get("name"),
        description=params.get("description"),
        hidden=params.get("hidden"),
        ip_assignments=ips,
        tags=tags,
    )


def current_view(member: Any | None) -> dict[str, Any]:
    """The managed fields of a member (a zerotier_api.Member) as JSON-friendly values."""
    if member is None:
        return {
            "authorized": False,
            "name": "",
            "description": "",
            "hidden": False,
            "ip_assignments": [],
            "tags": [],
        }
    return {
        "authorized": member.authorized,
        "name": member.name,
        "description": member.description,
        "hidden": member.hidden,
        "ip_assignments": list(member.ip_assignments),
        "tags": [list(t) for t in member.tags],
    }


def _same(key: str, current: Any, wanted: Any) -> bool:
    if key == "ip_assignments":
        return sorted(current) == sorted(wanted)
    if key == "tags":
        return sorted(map(tuple, current)) == sorted(map(tuple, wanted))
    return bool(current == wanted)


def plan(member: Any | None, desired: Desired) -> Plan:
    """Compare; only the fields that differ are changes."""
    before = current_view(member)
    after = dict(before)
    changes: dict[str, Any] = {}
    for key in FIELDS:
        wanted = getattr(desired, key)
        if wanted is None:
            continue
        if key in ("ip_assignments", "tags"):
            wanted = [list(v) for v in wanted] if key == "tags" else list(wanted)
        if not _same(key, before[key], wanted):
            changes[key] = wanted
            after[key] = wanted
    managed = [k for k in FIELDS if getattr(desired, k) is not None]
    return Plan(
        changes=changes,
        before={k: before[k] for k in managed},
        after={k: after[k] for k in managed},
    )


def unapplied(plan_: Plan, member: Any) -> list[str]:
    """Fields the API's reply does not show as asked (a write that did not stick)."""
    view = current_view(member)
    return [k for k, v in plan_.changes.items() if not _same(k, view[k], v)]


def wait_until_seen(
    read: Callable[[], Any | None],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    timeout_s: float,
    poll_s: float,
) -> tuple[Any | None, float]:
    """Poll ``read`` until it returns a member that has reached the controller, or time out.

    Returns (member or the last not-yet-seen record or None, seconds waited).
    """
    start = clock()
    while True:
        member = read()
        if member is not None and member.seen:
            return member, clock() - start
        waited = clock() - start
        if waited >= timeout_s:
            return member, waited
        sleep(min(poll_s, max(timeout_s - waited, 0.0)))
