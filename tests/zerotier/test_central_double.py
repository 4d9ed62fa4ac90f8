"""The Central double answers like the real API: auth schemes, status codes, strict types, the rate
limit, the controller shape and the first-contact behaviour the member module has to survive."""

from __future__ import annotations

import pytest
from zt_helpers import CONTROLLER_TOKEN, FOREIGN_NWID, NWID, OTHER_TOKEN, TOKEN, Double, request


def central(
    double: Double, path: str, method: str = "GET", body: object = None, auth: str = f"token {TOKEN}"
):
    return request(f"{double.url}/api/v1{path}", method, body, {"Authorization": auth} if auth else {})


@pytest.mark.parametrize("auth", [f"token {TOKEN}", f"bearer {TOKEN}", f"Bearer {TOKEN}"])
def test_member_list_with_token_or_bearer(double: Double, auth: str) -> None:
    status, members, _ = central(double, f"/network/{NWID}/member", auth=auth)
    assert status == 200
    assert {m["nodeId"] for m in members} == {"a1b2c3d4e5", "b1b2c3d4e5", "c1b2c3d4e5", "d1b2c3d4e5"}
    first = next(m for m in members if m["nodeId"] == "a1b2c3d4e5")
    assert first["config"]["authorized"] is True
    assert first["config"]["tags"] == [[1000, 1]]
    assert isinstance(first["lastSeen"], int)
    assert first["id"] == f"{NWID}-a1b2c3d4e5"


def test_unauthorized_member_listed_as_such(double: Double) -> None:
    _, members, _ = central(double, f"/network/{NWID}/member")
    pending = next(m for m in members if m["nodeId"] == "c1b2c3d4e5")
    assert pending["config"]["authorized"] is False
    assert pending["config"]["ipAssignments"] == []


@pytest.mark.parametrize(
    ("auth", "path", "status"),
    [
        ("", f"/network/{NWID}/member", 401),
        ("token wrong", f"/network/{NWID}/member", 401),
        (f"basic {TOKEN}", f"/network/{NWID}/member", 401),
        (f"token {OTHER_TOKEN}", f"/network/{NWID}/member", 403),
        (f"token {TOKEN}", f"/network/{FOREIGN_NWID}", 403),
        (f"token {TOKEN}", "/network/ffffffffffffffff/member", 404),
        (f"token {TOKEN}", f"/network/{NWID}/member/ffffffffff", 404),
    ],
)
def test_error_statuses(double: Double, auth: str, path: str, status: int) -> None:
    assert central(double, path, auth=auth)[0] == status


@pytest.mark.parametrize(
    "body",
    [
        {"config": {"authorized": "true"}},
        {"config": {"authorized": 1}},
        {"name": 5},
        {"hidden": "false"},
        {"config": {"ipAssignments": "10.1.1.1"}},
        {"config": {"ipAssignments": ["not-an-ip"]}},
        {"config": {"tags": [[1000, "1"]]}},
        {"config": "x"},
    ],
)
def test_wrong_types_are_rejected_and_change_nothing(double: Double, body: dict) -> None:
    status, reply, _ = central(double, f"/network/{NWID}/member/c1b2c3d4e5", "POST", body)
    assert status == 400, reply
    _, member, _ = central(double, f"/network/{NWID}/member/c1b2c3d4e5")
    assert member["config"]["authorized"] is False
    assert member["name"] == ""


def test_authorize_assigns_from_pool(double: Double) -> None:
    status, member, _ = central(
        double, f"/network/{NWID}/member/c1b2c3d4e5", "POST", {"config": {"authorized": True}, "name": "x"}
    )
    assert status == 200
    assert member["config"]["authorized"] is True
    assert member["config"]["ipAssignments"] == ["10.147.17.10"]
    assert member["config"]["lastAuthorizedTime"] > 0


def test_post_before_first_contact_loses_name_at_contact(double: Double) -> None:
    node = "0f0f0f0f0f"
    assert central(double, f"/network/{NWID}/member/{node}")[0] == 404
    status, member, _ = central(
        double, f"/network/{NWID}/member/{node}", "POST", {"name": "early", "config": {"authorized": True}}
    )
    assert status == 200 and member["name"] == "early"
    assert member["lastSeen"] == 0 and member["physicalAddress"] is None
    status, _, _ = request(
        f"{double.url}/lab/network/{NWID}/contact/{node}", "POST", {"clientVersion": "1.14.2"}
    )
    assert status == 200
    _, member, _ = central(double, f"/network/{NWID}/member/{node}")
    assert member["name"] == ""
    assert member["config"]["authorized"] is True
    assert member["lastSeen"] > 0 and member["clientVersion"] == "1.14.2"


def test_delete_member(double: Double) -> None:
    assert central(double, f"/network/{NWID}/member/c1b2c3d4e5", "DELETE")[0] == 200
    assert central(double, f"/network/{NWID}/member/c1b2c3d4e5")[0] == 404


def test_rate_limit_429_with_retry_after() -> None:
    limited = Double(rate_limit=3)
    try:
        statuses = [central(limited, f"/network/{NWID}")[0:3:2] for _ in range(5)]
    finally:
        limited.close()
    codes = [s for s, _ in statuses]
    assert codes[:3] == [200, 200, 200]
    assert 429 in codes[3:]
    headers = next(h for s, h in statuses if s == 429)
    assert int(headers["Retry-After"]) >= 1


def test_controller_shape(double: Double) -> None:
    hdr = {"X-ZT1-Auth": CONTROLLER_TOKEN}
    assert request(f"{double.url}/controller/network/{NWID}/member")[0] == 401
    status, listing, _ = request(f"{double.url}/controller/network/{NWID}/member", headers=hdr)
    assert status == 200 and isinstance(listing, dict) and isinstance(listing["a1b2c3d4e5"], int)
    status, member, _ = request(f"{double.url}/controller/network/{NWID}/member/a1b2c3d4e5", headers=hdr)
    assert status == 200 and member["authorized"] is True and member["address"] == "a1b2c3d4e5"
    status, _, _ = request(
        f"{double.url}/controller/network/{NWID}/member/c1b2c3d4e5", "POST", {"authorized": "yes"}, hdr
    )
    assert status == 400
    status, member, _ = request(
        f"{double.url}/controller/network/{NWID}/member/c1b2c3d4e5", "POST", {"authorized": True}, hdr
    )
    assert status == 200 and member["authorized"] is True
