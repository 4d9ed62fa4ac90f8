"""LAB STAND-IN for ZeroTier Central (api.zerotier.com) and a self-hosted controller's API.

Why it exists: the lab cannot reach ZeroTier Central and no lab process may send a packet outside
the lab, yet the inventory plugin, the zerotier_member module and the enrollment playbook must run
against something that answers like the real service. This double serves the same paths, member
JSON fields and types, auth header handling and error status codes as the real APIs (DESIGN §11):

Central (``/api/v1``), header ``Authorization: token <key>`` or ``bearer <key>``:
  GET    /api/v1/network/{nwid}
  GET    /api/v1/network/{nwid}/member
  GET    /api/v1/network/{nwid}/member/{node}
  POST   /api/v1/network/{nwid}/member/{node}   (creates the member when it is not known yet)
  DELETE /api/v1/network/{nwid}/member/{node}
  401 without a valid token, 403 for a network the token's user does not own, 404 for an unknown
  network or member, 400 for a body whose fields have the wrong JSON type, 429 with
  ``Retry-After`` once a token goes over its requests per second (20 = the free plan by default).

Self-hosted controller (the node's local service API), header ``X-ZT1-Auth: <authtoken.secret>``:
  GET  /controller/network/{nwid}
  GET  /controller/network/{nwid}/member            -> {"<node>": <revision>, ...}
  GET|POST|DELETE /controller/network/{nwid}/member/{node}  (flat member object)

What only a ZeroTier node can do (reach the controller over the ZeroTier protocol) is a lab-only
path that no real service has, used by the device-daemon stand-in and by the tests:
  POST /lab/network/{nwid}/contact/{node}  body {"physicalAddress": str, "clientVersion": str}
It marks the member as seen now. A member first created by a POST (before its node ever reached the
controller) loses the name and description set then at this first contact: the behaviour that
makes a naive "authorize and name" step lose its name, which zerotier_member must survive.

Run: ``python lab/zerotier_central/zt_central_double.py --state state.json --port 0`` prints
``listening on http://127.0.0.1:<port>`` and serves until killed. Loopback only by default.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

NWID_RE = re.compile(r"^[0-9a-f]{16}$")
NODE_RE = re.compile(r"^[0-9a-f]{10}$")
FREE_PLAN_RPS = 20
CLIENT_VERSION_SEEN_DEFAULT = "1.14.2"

# Writable member fields and their exact JSON types; anything else a client sends is ignored, as
# the real API ignores read-only fields (nodeId, lastSeen, ...) echoed back in a POST body.
_TOP_TYPES: dict[str, type] = {"name": str, "description": str, "hidden": bool}
_CONFIG_TYPES: dict[str, type] = {
    "authorized": bool,
    "activeBridge": bool,
    "noAutoAssignIps": bool,
    "ipAssignments": list,
    "tags": list,
    "capabilities": list,
}


class BadRequest(Exception):
    """A request body the real API would answer with 400."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def _type_ok(value: Any, expected: type) -> bool:
    # bool is an int in Python; JSON true is never a valid int here, nor 1 a valid bool.
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _check_list(name: str, values: list[Any], check: Callable[[Any], bool], what: str) -> None:
    for item in values:
        if not check(item):
            raise BadRequest(f"{name}: every item must be {what}, got {json.dumps(item)}")


def _valid_ip(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _valid_tag(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    )


def validate_member_body(body: Any, *, flat: bool) -> dict[str, Any]:
    """Check a POSTed member body's types; returns {"top": {...}, "config": {...}} of writable fields.

    ``flat`` is the self-hosted controller's shape (config fields at the top level).
    """
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    top: dict[str, Any] = {}
    config: dict[str, Any] = {}
    if flat:
        sources: list[tuple[dict[str, Any], dict[str, type], dict[str, Any], str]] = [
            (body, _TOP_TYPES, top, ""),
            (body, _CONFIG_TYPES, config, ""),
        ]
    else:
        raw_config = body.get("config", {})
        if not isinstance(raw_config, dict):
            raise BadRequest("config must be a JSON object")
        sources = [(body, _TOP_TYPES, top, ""), (raw_config, _CONFIG_TYPES, config, "config.")]
    for source, types, target, prefix in sources:
        for key, expected in types.items():
            if key not in source:
                continue
            value = source[key]
            if not _type_ok(value, expected):
                raise BadRequest(f"{prefix}{key} must be a JSON {expected.__name__}, got {json.dumps(value)}")
            target[key] = value
    if "ipAssignments" in config:
        _check_list("ipAssignments", config["ipAssignments"], _valid_ip, "an IP address string")
    if "tags" in config:
        _check_list("tags", config["tags"], _valid_tag, "a [tagId, value] pair of integers")
    if "capabilities" in config:
        _check_list("capabilities", config["capabilities"], lambda v: _type_ok(v, int), "an integer")
    return {"top": top, "config": config}


@dataclass
class Member:
    """One member record as Central keeps it."""

    node_id: str
    network_id: str
    name: str = ""
    description: str = ""
    hidden: bool = False
    authorized: bool = False
    active_bridge: bool = False
    no_auto_assign_ips: bool = False
    ip_assignments: list[str] = field(default_factory=list)
    tags: list[list[int]] = field(default_factory=list)
    capabilities: list[int] = field(default_factory=list)
    creation_time: int = field(default_factory=_now_ms)
    last_authorized_time: int = 0
    last_deauthorized_time: int = 0
    revision: int = 1
    last_seen: int = 0
    physical_address: str | None = None
    client_version: str = ""
    seen: bool = False

    def central_json(self) -> dict[str, Any]:
        version = self.client_version.split(".") if self.client_version else []
        return {
            "id": f"{self.network_id}-{self.node_id}",
            "type": "Member",
            "clock": _now_ms(),
            "networkId": self.network_id,
            "nodeId": self.node_id,
            "controllerId": self.network_id[:10],
            "hidden": self.hidden,
            "name": self.name,
            "description": self.description,
            "config": {
                "activeBridge": self.active_bridge,
                "address": self.node_id,
                "authorized": self.authorized,
                "capabilities": list(self.capabilities),
                "creationTime": self.creation_time,
                "id": self.node_id,
                "identity": "",
                "ipAssignments": list(self.ip_assignments),
                "lastAuthorizedTime": self.last_authorized_time,
                "lastDeauthorizedTime": self.last_deauthorized_time,
                "noAutoAssignIps": self.no_auto_assign_ips,
                "nwid": self.network_id,
                "objtype": "member",
                "revision": self.revision,
                "tags": [list(t) for t in self.tags],
                "vMajor": int(version[0]) if len(version) > 2 else -1,
                "vMinor": int(version[1]) if len(version) > 2 else -1,
                "vRev": int(version[2]) if len(version) > 2 else -1,
                "vProto": 12 if version else -1,
            },
            "lastOnline": self.last_seen,
            "lastSeen": self.last_seen,
            "physicalAddress": self.physical_address,
            "clientVersion": self.client_version,
            "protocolVersion": 12 if version else 0,
            "supportsRulesEngine": bool(version),
        }

    def controller_json(self) -> dict[str, Any]:
        central = self.central_json()
        flat = dict(central["config"])
        flat["name"] = self.name
        return flat


@dataclass
class Network:
    """A network with its owner and its address pool (Central's auto-assign, v4AssignMode zt)."""

    network_id: str
    owner: str
    name: str
    pool_start: str | None = None
    pool_end: str | None = None
    routes: list[str] = field(default_factory=list)
    members: dict[str, Member] = field(default_factory=dict)

    def next_free_ip(self) -> str | None:
        if not self.pool_start or not self.pool_end:
            return None
        used = {ip for m in self.members.values() for ip in m.ip_assignments}
        current = ipaddress.ip_address(self.pool_start)
        end = ipaddress.ip_address(self.pool_end)
        while current <= end:
            if str(current) not in used:
                return str(current)
            current += 1
        return None

    def central_json(self) -> dict[str, Any]:
        members = list(self.members.values())
        pools = []
        if self.pool_start and self.pool_end:
            pools = [{"ipRangeStart": self.pool_start, "ipRangeEnd": self.pool_end}]
        return {
            "id": self.network_id,
            "type": "Network",
            "clock": _now_ms(),
            "config": {
                "id": self.network_id,
                "name": self.name,
                "private": True,
                "creationTime": 0,
                "ipAssignmentPools": pools,
                "routes": [{"target": r, "via": None} for r in self.routes],
                "v4AssignMode": {"zt": bool(pools)},
            },
            "description": "",
            "ownerId": self.owner,
            "onlineMemberCount": sum(1 for m in members if m.last_seen),
            "authorizedMemberCount": sum(1 for m in members if m.authorized),
            "totalMemberCount": len(members),
        }


class RateLimiter:
    """At most ``rps`` requests per token in any sliding second, as Central enforces per account."""

    def __init__(self, rps: float) -> None:
        self.rps = rps
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def admit(self, key: str) -> float:
        """0.0 when admitted, else the seconds until a request would be admitted."""
        now = time.monotonic()
        with self._lock:
            window = self._seen.setdefault(key, deque())
            while window and now - window[0] >= 1.0:
                window.popleft()
            if self.rps > 0 and len(window) >= self.rps:
                return max(1.0 - (now - window[0]), 0.001)
            window.append(now)
            return 0.0


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class CentralState:
    """Everything the double knows, behind one lock; HTTP handlers only call ``handle``."""

    def __init__(self, seed: dict[str, Any], rate_limit: float = FREE_PLAN_RPS) -> None:
        self.lock = threading.RLock()
        self.tokens: dict[str, str] = dict(seed.get("tokens", {}))
        self.controller_token: str | None = seed.get("controller_token")
        self.networks: dict[str, Network] = {}
        self.limiter = RateLimiter(rate_limit)
        self.requests: list[tuple[str, str]] = []
        self.throttled = 0
        # Test hook: the next N requests answer 429 with this Retry-After (None: header left out).
        self.forced_429: list[str | None] = []
        # Test hook: the next N requests answer this raw body with status 200 (malformed JSON).
        self.forced_raw: list[bytes] = []
        for net in seed.get("networks", []):
            network = Network(
                network_id=net["id"],
                owner=net["owner"],
                name=net.get("name", ""),
                pool_start=net.get("pool_start"),
                pool_end=net.get("pool_end"),
                routes=list(net.get("routes", [])),
            )
            self.networks[network.network_id] = network
            for raw in net.get("members", []):
                self.add_member(network.network_id, raw)

    def add_member(self, network_id: str, raw: dict[str, Any]) -> Member:
        """Seed a member the way it looks after its node reached the controller (tests, lab)."""
        member = Member(
            node_id=raw["nodeId"],
            network_id=network_id,
            name=raw.get("name", ""),
            description=raw.get("description", ""),
            hidden=raw.get("hidden", False),
            authorized=raw.get("authorized", False),
            ip_assignments=list(raw.get("ipAssignments", [])),
            tags=[list(t) for t in raw.get("tags", [])],
            last_seen=raw.get("lastSeen", _now_ms()),
            physical_address=raw.get("physicalAddress", "192.0.2.10/9993"),
            client_version=raw.get("clientVersion", CLIENT_VERSION_SEEN_DEFAULT),
            seen=True,
        )
        with self.lock:
            self.networks[network_id].members[member.node_id] = member
        return member

    # ---- request handling -------------------------------------------------------------------

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        path = path.split("?", 1)[0].rstrip("/")
        with self.lock:
            self.requests.append((method, path))
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            return self._central(method, parts[2:], headers, body)
        if parts[:1] == ["controller"]:
            return self._controller(method, parts[1:], headers, body)
        if parts[:1] == ["lab"]:
            return self._lab(method, parts[1:], body)
        return Reply(404, {"message": "not found"})

    def _central_user(self, headers: dict[str, str]) -> str | None:
        value = headers.get("authorization", "")
        scheme, _, key = value.strip().partition(" ")
        if scheme.lower() not in ("token", "bearer") or not key.strip():
            return None
        return self.tokens.get(key.strip())

    def _throttle(self, key: str) -> Reply | None:
        with self.lock:
            if self.forced_429:
                self.throttled += 1
                retry_after = self.forced_429.pop(0)
                headers = {} if retry_after is None else {"Retry-After": retry_after}
                return Reply(429, {"message": "rate limit exceeded"}, headers)
        wait = self.limiter.admit(key)
        if not wait:
            return None
        with self.lock:
            self.throttled += 1
        return Reply(429, {"message": "rate limit exceeded"}, {"Retry-After": str(max(1, round(wait)))})

    def _central(self, method: str, parts: list[str], headers: dict[str, str], body: bytes) -> Reply:
        user = self._central_user(headers)
        if user is None:
            return Reply(401, {"message": "unauthorized"})
        throttled = self._throttle(user)
        if throttled:
            return throttled
        if len(parts) < 2 or parts[0] != "network":
            return Reply(404, {"message": "not found"})
        network = self.networks.get(parts[1])
        if network is None:
            return Reply(404, {"message": "network not found"})
        if network.owner != user:
            return Reply(403, {"message": "forbidden"})
        raw = self._forced_raw()
        if raw is not None:
            return Reply(200, raw)
        return self._network_paths(method, network, parts[2:], body, flat=False)

    def _controller(self, method: str, parts: list[str], headers: dict[str, str], body: bytes) -> Reply:
        if not self.controller_token or headers.get("x-zt1-auth", "") != self.controller_token:
            return Reply(401, {"message": "unauthorized"})
        if len(parts) < 2 or parts[0] != "network":
            return Reply(404, {"message": "not found"})
        network = self.networks.get(parts[1])
        if network is None:
            return Reply(404, {"message": "not found"})
        raw = self._forced_raw()
        if raw is not None:
            return Reply(200, raw)
        return self._network_paths(method, network, parts[2:], body, flat=True)

    def _forced_raw(self) -> bytes | None:
        with self.lock:
            return self.forced_raw.pop(0) if self.forced_raw else None

    def _network_paths(
        self, method: str, network: Network, rest: list[str], body: bytes, *, flat: bool
    ) -> Reply:
        with self.lock:
            if not rest:
                if method != "GET":
                    return Reply(405, {"message": "method not allowed"})
                return Reply(200, network.central_json())
            if rest[0] != "member" or len(rest) > 2:
                return Reply(404, {"message": "not found"})
            if len(rest) == 1:
                if method != "GET":
                    return Reply(405, {"message": "method not allowed"})
                if flat:
                    return Reply(200, {m.node_id: m.revision for m in network.members.values()})
                return Reply(200, [m.central_json() for m in network.members.values()])
            node = rest[1]
            if not NODE_RE.match(node):
                return Reply(404, {"message": "member not found"})
            member = network.members.get(node)
            if method == "GET":
                if member is None:
                    return Reply(404, {"message": "member not found"})
                return Reply(200, member.controller_json() if flat else member.central_json())
            if method == "DELETE":
                if member is None:
                    return Reply(404, {"message": "member not found"})
                del network.members[node]
                return Reply(200, member.controller_json() if flat else member.central_json())
            if method == "POST":
                return self._post_member(network, node, body, flat=flat)
            return Reply(405, {"message": "method not allowed"})

    def _post_member(self, network: Network, node: str, body: bytes, *, flat: bool) -> Reply:
        try:
            parsed = json.loads(body or b"{}")
            fields = validate_member_body(parsed, flat=flat)
        except (ValueError, BadRequest) as exc:
            return Reply(400, {"message": f"invalid request body: {exc}"})
        member = network.members.get(node)
        if member is None:
            # Known to the controller only through this POST: the node has never reached it.
            member = Member(node_id=node, network_id=network.network_id)
            network.members[node] = member
        top, config = fields["top"], fields["config"]
        member.name = top.get("name", member.name)
        member.description = top.get("description", member.description)
        member.hidden = top.get("hidden", member.hidden)
        if "authorized" in config and config["authorized"] != member.authorized:
            member.authorized = config["authorized"]
            if member.authorized:
                member.last_authorized_time = _now_ms()
            else:
                member.last_deauthorized_time = _now_ms()
        member.active_bridge = config.get("activeBridge", member.active_bridge)
        member.no_auto_assign_ips = config.get("noAutoAssignIps", member.no_auto_assign_ips)
        if "ipAssignments" in config:
            member.ip_assignments = list(config["ipAssignments"])
        if "tags" in config:
            member.tags = [list(t) for t in config["tags"]]
        if "capabilities" in config:
            member.capabilities = list(config["capabilities"])
        self._auto_assign(network, member)
        member.revision += 1
        return Reply(200, member.controller_json() if flat else member.central_json())

    @staticmethod
    def _auto_assign(network: Network, member: Member) -> None:
        if member.authorized and member.seen and not member.no_auto_assign_ips and not member.ip_assignments:
            ip = network.next_free_ip()
            if ip:
                member.ip_assignments = [ip]

    def _lab(self, method: str, parts: list[str], body: bytes) -> Reply:
        if method != "POST" or len(parts) != 4 or parts[0] != "network" or parts[2] != "contact":
            return Reply(404, {"message": "not found"})
        network = self.networks.get(parts[1])
        node = parts[3]
        if network is None or not NODE_RE.match(node):
            return Reply(404, {"message": "not found"})
        try:
            info = json.loads(body or b"{}")
        except ValueError:
            return Reply(400, {"message": "invalid JSON"})
        with self.lock:
            member = network.members.get(node)
            if member is None:
                member = Member(node_id=node, network_id=network.network_id)
                network.members[node] = member
            if not member.seen:
                # First contact: Central replaces the pre-created record's name and description.
                member.name = ""
                member.description = ""
                member.seen = True
                member.revision += 1
            member.last_seen = _now_ms()
            member.physical_address = str(info.get("physicalAddress", "127.0.0.1/9993"))
            member.client_version = str(info.get("clientVersion", CLIENT_VERSION_SEEN_DEFAULT))
            self._auto_assign(network, member)
            # What a node learns from its network config, beyond the member record.
            reply = member.central_json()
            reply["networkName"] = network.name
            reply["routes"] = list(network.routes)
            return Reply(200, reply)


def make_handler(state: CentralState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "zt-central-double/1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            reply = state.handle(self.command, self.path, headers, body)
            payload = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)

        do_GET = _serve
        do_POST = _serve
        do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: request lines would only repeat what ``state.requests`` records."""

    return Handler


def serve(state: CentralState, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """Bind (port 0 = a free port) and serve in a daemon thread; the caller shuts it down."""
    server = ThreadingHTTPServer((host, port), make_handler(state))
    server.daemon_threads = True
    # A short poll interval: shutdown() returns within 50 ms (one double per test).
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="zt-central-double", daemon=True
    ).start()
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="LAB STAND-IN for ZeroTier Central / a controller API")
    parser.add_argument("--state", required=True, help="JSON seed: tokens, controller_token, networks")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rate-limit", type=float, default=FREE_PLAN_RPS, help="requests/s per token")
    args = parser.parse_args(argv)
    try:
        with open(args.state, encoding="utf-8") as handle:
            seed = json.load(handle)
    except (OSError, ValueError) as exc:
        print(f"zt-central-double: cannot read --state {args.state}: {exc}", file=sys.stderr)
        return 2
    state = CentralState(seed, rate_limit=args.rate_limit)
    server = ThreadingHTTPServer((args.host, args.port), make_handler(state))
    print(f"listening on http://{args.host}:{server.server_address[1]}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
