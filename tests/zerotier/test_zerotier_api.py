"""The shared client's pacing, 429 back-off and member normalization, with a scripted transport and
a fake clock (no sockets): the rules the plugin and the module both rely on."""

from __future__ import annotations

import email.utils
import json
import sys
from typing import Any

import pytest
from zt_helpers import REPO

sys.path.insert(0, str(REPO / "library" / "module_utils"))
import zerotier_api as api


class Script:
    """Replies in order; records what was sent and how long the client slept."""

    def __init__(self, replies: list[api.Response]) -> None:
        self.replies = replies
        self.sent: list[tuple[str, str, dict[str, str], Any]] = []
        self.now = 1000.0
        self.slept: list[float] = []

    def transport(
        self, method: str, url: str, data: bytes | None, headers: dict[str, str], timeout: float
    ) -> api.Response:
        self.sent.append((method, url, headers, json.loads(data) if data else None))
        return self.replies.pop(0)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def client(self, kind: str = api.CENTRAL, rate_limit: float = 20, max_retries: int = 5) -> api.Client:
        return api.Client(
            "https://zt.example/api/v1",
            "secret-token",
            kind,
            rate_limit=rate_limit,
            max_retries=max_retries,
            transport=self.transport,
            clock=lambda: self.now,
            sleep=self.sleep,
            wall=lambda: self.now,
        )


def ok(body: Any) -> api.Response:
    return api.Response(200, json.dumps(body).encode(), {})


def test_429_waits_retry_after_then_exponential_backoff() -> None:
    script = Script(
        [
            api.Response(429, b"", {"retry-after": "3"}),
            api.Response(429, b"", {}),
            api.Response(429, b"", {}),
            ok({"id": "x"}),
        ]
    )
    client = script.client()
    assert client.request("GET", "/network/x") == {"id": "x"}
    waits = [s for s in script.slept if s > 0.06]
    assert waits == [3.0, 1.0, 2.0]
    assert script.sent[0][2]["Authorization"] == "token secret-token"


def test_retry_after_as_http_date() -> None:
    assert api.parse_retry_after(email.utils.formatdate(1010.0, usegmt=True), now=1000.0) == pytest.approx(
        10.0
    )
    assert api.parse_retry_after(None, now=0) is None


def test_gives_up_after_max_retries_and_on_huge_retry_after() -> None:
    script = Script([api.Response(429, b"", {"retry-after": "1"})] * 3)
    with pytest.raises(api.ZeroTierError, match="still 429 after 2 retries"):
        script.client(max_retries=2).request("GET", "/network/x")
    script = Script([api.Response(429, b"", {"retry-after": "3600"})])
    with pytest.raises(api.ZeroTierError, match="Retry-After 3600 s"):
        script.client().request("GET", "/network/x")


@pytest.mark.parametrize("rate", [20.0, 100.0])
def test_pacing_keeps_under_the_rate(rate: float) -> None:
    script = Script([ok({})] * 50)
    client = script.client(rate_limit=rate)
    start = script.now
    for _ in range(50):
        client.request("GET", "/network/x")
    # 50 requests at most `rate` per second: the 50th starts no earlier than 49/rate s after the 1st.
    assert script.now - start >= 49 / rate - 1e-9


def test_controller_header_and_member_normalization() -> None:
    script = Script(
        [
            ok({"a1b2c3d4e5": 3}),
            ok(
                {
                    "address": "a1b2c3d4e5",
                    "authorized": True,
                    "ipAssignments": ["10.0.0.1"],
                    "tags": [[1, 2]],
                    "vMajor": 1,
                    "vMinor": 14,
                    "vRev": 2,
                    "name": "dev",
                }
            ),
        ]
    )
    members = script.client(api.CONTROLLER).members("8056c2e21c000001")
    assert script.sent[0][1] == "https://zt.example/api/v1/controller/network/8056c2e21c000001/member"
    assert script.sent[0][2]["X-ZT1-Auth"] == "secret-token"
    assert "Authorization" not in script.sent[0][2]
    (member,) = members
    assert (member.node_id, member.authorized, member.client_version, member.name) == (
        "a1b2c3d4e5",
        True,
        "1.14.2",
        "dev",
    )
    assert member.tags == ((1, 2),) and member.last_seen is None


@pytest.mark.parametrize(
    "raw",
    [
        {"nodeId": "a1b2c3d4e5", "config": {"authorized": "true"}},
        {"nodeId": "a1b2c3d4e5", "config": {"ipAssignments": "10.0.0.1"}},
        {"nodeId": "a1b2c3d4e5"},
        {"nodeId": 5, "config": {}},
        [],
    ],
)
def test_malformed_members_are_errors(raw: Any) -> None:
    with pytest.raises(api.ZeroTierError, match="malformed member"):
        api.normalize_member(raw, api.CENTRAL, "n", "network n")


def test_member_body_has_exact_types_in_each_shape() -> None:
    changes = {
        "name": "d",
        "authorized": True,
        "ip_assignments": ["10.0.0.1"],
        "tags": [(1000, 2)],
        "hidden": False,
    }
    assert api.member_body(changes, api.CENTRAL) == {
        "name": "d",
        "hidden": False,
        "config": {"authorized": True, "ipAssignments": ["10.0.0.1"], "tags": [[1000, 2]]},
    }
    assert api.member_body(changes, api.CONTROLLER)["authorized"] is True


def test_token_not_in_errors() -> None:
    script = Script([api.Response(401, b"nope", {})])
    with pytest.raises(api.ZeroTierError) as info:
        script.client().request("GET", "/network/x", what="network x")
    assert "secret-token" not in str(info.value) and "401" in str(info.value)
