"""A small client for ZeroTier Central (``/api/v1``) and a self-hosted controller's API.

Why one file for both callers: the inventory plugin (on the control node) and the zerotier_member
module (delegated to the control node) must agree on the same things: how the token is sent, how
a 429 is waited out, what a 401/403/404 means in words, and how a Central member and a controller
member become one normalized record. It uses only the standard library (urllib), so it runs inside
an AnsiballZ module as well as in the plugin, which loads it by path.

The token is only ever put in a request header. Messages name the URL path, the network and the
node, never the token; proxies of the environment are not used (a controller is addressed
directly).
"""

from __future__ import annotations

import email.utils
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

CENTRAL = "central"
CONTROLLER = "controller"
KINDS = (CENTRAL, CONTROLLER)
CENTRAL_URL = "https://api.zerotier.com/api/v1"
DEFAULT_URLS = {CENTRAL: CENTRAL_URL, CONTROLLER: "http://127.0.0.1:9993"}
# Central's documented limits: 20 requests/s on the free plan, 100 on paid plans.
FREE_PLAN_RPS = 20.0
PAID_PLAN_RPS = 100.0
# A Retry-After beyond this is not waited out: the caller gets an error instead of a hung run.
MAX_RETRY_AFTER_S = 60.0


class ZeroTierError(Exception):
    """A request failed; ``str()`` is one line for the operator, ``status`` the HTTP status or 0."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Member:
    """A member as both APIs describe it, reduced to what the fleet reads and writes."""

    node_id: str
    network_id: str
    name: str
    description: str
    hidden: bool
    authorized: bool
    ip_assignments: tuple[str, ...]
    tags: tuple[tuple[int, int], ...]
    last_seen: int | None
    client_version: str
    physical_address: str | None
    raw: dict[str, Any] = field(compare=False, repr=False)

    @property
    def seen(self) -> bool:
        """Has the node ever reached the controller? (A record made by a POST alone has not.)"""
        return bool(self.client_version or self.physical_address or self.last_seen)


def _want(raw: dict[str, Any], key: str, kind: type, default: Any, where: str) -> Any:
    value = raw.get(key, default)
    if value is None and default is None:
        return None
    ok = isinstance(value, bool) if kind is bool else isinstance(value, kind) and not isinstance(value, bool)
    if not ok:
        raise ZeroTierError(
            f"malformed member from {where}: {key} is {json.dumps(value)}, expected {kind.__name__}"
        )
    return value


def normalize_member(raw: Any, kind: str, network_id: str, where: str) -> Member:
    """Turn one Central or controller member object into a Member; a wrong shape is an error."""
    if not isinstance(raw, dict):
        raise ZeroTierError(f"malformed member from {where}: expected a JSON object")
    if kind == CENTRAL:
        config = raw.get("config")
        if not isinstance(config, dict):
            raise ZeroTierError(f"malformed member from {where}: config is missing")
        node_id = _want(raw, "nodeId", str, "", where)
        client_version = _want(raw, "clientVersion", str, "", where)
        last_seen = _want(raw, "lastSeen", int, None, where)
        physical = _want(raw, "physicalAddress", str, None, where)
    else:
        config = raw
        node_id = _want(raw, "address", str, "", where) or _want(raw, "id", str, "", where)
        parts = [raw.get(k) for k in ("vMajor", "vMinor", "vRev")]
        client_version = (
            ".".join(map(str, parts)) if all(isinstance(p, int) and p >= 0 for p in parts) else ""
        )
        last_seen = None
        physical = None
    ips = _want(config, "ipAssignments", list, [], where)
    tags = _want(config, "tags", list, [], where)
    if not all(isinstance(ip, str) for ip in ips):
        raise ZeroTierError(f"malformed member from {where}: ipAssignments must hold strings")
    if not all(isinstance(t, list) and len(t) == 2 for t in tags):
        raise ZeroTierError(f"malformed member from {where}: tags must hold [id, value] pairs")
    if not node_id:
        raise ZeroTierError(f"malformed member from {where}: no node id")
    return Member(
        node_id=node_id,
        network_id=network_id,
        name=_want(raw, "name", str, "", where),
        description=_want(raw, "description", str, "", where),
        hidden=_want(raw, "hidden", bool, False, where),
        authorized=_want(config, "authorized", bool, False, where),
        ip_assignments=tuple(ips),
        tags=tuple((int(t[0]), int(t[1])) for t in tags),
        last_seen=last_seen,
        client_version=client_version,
        physical_address=physical,
        raw=raw,
    )


def member_body(changes: dict[str, Any], kind: str) -> dict[str, Any]:
    """The POST body for changed normalized fields, in the shape and exact JSON types each API wants."""
    top: dict[str, Any] = {}
    config: dict[str, Any] = {}
    for key, value in changes.items():
        if key in ("name", "description"):
            top[key] = str(value)
        elif key == "hidden":
            top[key] = bool(value)
        elif key == "authorized":
            config["authorized"] = bool(value)
        elif key == "ip_assignments":
            config["ipAssignments"] = [str(ip) for ip in value]
        elif key == "tags":
            config["tags"] = [[int(t[0]), int(t[1])] for t in value]
        else:
            raise ValueError(f"unknown member field {key}")
    if kind == CONTROLLER:
        return {**top, **config}
    return {**top, "config": config} if config else top


def read_token_file(path: str) -> str:
    """The token in the first line of a file (a Central token file or a node's authtoken.secret)."""
    try:
        with open(path, encoding="utf-8") as handle:
            token = handle.readline().strip()
    except OSError as exc:
        raise ZeroTierError(f"cannot read token file {path}: {exc.strerror}") from None
    if not token:
        raise ZeroTierError(f"token file {path} is empty")
    return token


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), None if absent."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str]


Transport = Callable[[str, str, bytes | None, dict[str, str], float], Response]


def urllib_transport(
    method: str, url: str, data: bytes | None, headers: dict[str, str], timeout: float
) -> Response:
    """One HTTP exchange without proxies; HTTP errors are responses, network errors raise OSError."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with opener.open(request, timeout=timeout) as reply:
            return Response(reply.status, reply.read(), {k.lower(): v for k, v in reply.headers.items()})
    except urllib.error.HTTPError as exc:
        return Response(exc.code, exc.read(), {k.lower(): v for k, v in exc.headers.items()})


class Client:
    """Requests to one API with a token, paced under ``rate_limit`` and retrying 429 replies."""

    def __init__(
        self,
        base_url: str,
        token: str,
        kind: str = CENTRAL,
        *,
        rate_limit: float = FREE_PLAN_RPS,
        max_retries: int = 5,
        timeout: float = 30.0,
        transport: Transport = urllib_transport,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if kind not in KINDS:
            raise ZeroTierError(f"api type must be one of {', '.join(KINDS)}, got {kind!r}")
        if not token:
            raise ZeroTierError("no ZeroTier API token: set the token, a token file or ZEROTIER_TOKEN")
        if rate_limit <= 0:
            raise ZeroTierError(f"rate_limit must be above 0 requests/s, got {rate_limit}")
        self.base_url = base_url.rstrip("/")
        self.kind = kind
        self._token = token
        self.min_interval = 1.0 / rate_limit
        self.max_retries = max_retries
        self.timeout = timeout
        self._transport = transport
        self._clock = clock
        self._sleep = sleep
        self._wall = wall
        self._last: float | None = None
        self.requests = 0
        self.waited_s = 0.0

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        if self.kind == CENTRAL:
            headers["Authorization"] = f"token {self._token}"
        else:
            headers["X-ZT1-Auth"] = self._token
        return headers

    def _pace(self) -> None:
        if self._last is not None:
            wait = self.min_interval - (self._clock() - self._last)
            if wait > 0:
                self._sleep(wait)
                self.waited_s += wait
        self._last = self._clock()

    def _path(self, path: str) -> str:
        prefix = "/controller" if self.kind == CONTROLLER else ""
        return f"{prefix}{path}"

    def request(self, method: str, path: str, body: dict[str, Any] | None = None, what: str = "") -> Any:
        """Send one request and return its parsed JSON; raises ZeroTierError with one clear line."""
        url = f"{self.base_url}{self._path(path)}"
        data = json.dumps(body).encode() if body is not None else None
        what = what or path
        backoff = 1.0
        for attempt in range(self.max_retries + 1):
            self._pace()
            self.requests += 1
            try:
                reply = self._transport(method, url, data, self._headers(), self.timeout)
            except OSError as exc:
                reason = getattr(exc, "reason", exc)
                raise ZeroTierError(f"cannot reach the ZeroTier API at {self.base_url}: {reason}") from None
            if reply.status == 429:
                if attempt == self.max_retries:
                    break
                wait = parse_retry_after(reply.headers.get("retry-after"), self._wall())
                if wait is None:
                    wait = backoff
                    backoff = min(backoff * 2, MAX_RETRY_AFTER_S)
                if wait > MAX_RETRY_AFTER_S:
                    raise ZeroTierError(
                        f"{what}: rate limited by {self.base_url}: Retry-After {wait:.0f} s", 429
                    )
                self._sleep(wait)
                self.waited_s += wait
                continue
            return self._decode(reply, url, what)
        raise ZeroTierError(
            f"rate limited by {self.base_url}: still 429 after {self.max_retries} retries", 429
        )

    def _decode(self, reply: Response, url: str, what: str) -> Any:
        if reply.status == 401:
            header = "Authorization: token" if self.kind == CENTRAL else "X-ZT1-Auth"
            raise ZeroTierError(f"{what}: 401 unauthorized: the API token ({header}) was refused", 401)
        if reply.status == 403:
            raise ZeroTierError(f"{what}: 403 forbidden: the token has no access to it", 403)
        if reply.status == 404:
            raise ZeroTierError(f"{what}: 404 not found", 404)
        if not 200 <= reply.status < 300:
            snippet = reply.body[:200].decode(errors="replace").strip()
            raise ZeroTierError(f"{what}: HTTP {reply.status}: {snippet}", reply.status)
        try:
            return json.loads(reply.body or b"null")
        except ValueError:
            raise ZeroTierError(f"{what}: malformed JSON from {url.split('?')[0]}", reply.status) from None

    # ---- members ---------------------------------------------------------------------------

    def network(self, network_id: str) -> dict[str, Any]:
        reply = self.request("GET", f"/network/{network_id}", what=f"network {network_id}")
        if not isinstance(reply, dict):
            raise ZeroTierError(f"network {network_id}: malformed reply, expected a JSON object")
        return reply

    def members(self, network_id: str) -> list[Member]:
        where = f"network {network_id}"
        listing = self.request("GET", f"/network/{network_id}/member", what=where)
        if self.kind == CENTRAL:
            if not isinstance(listing, list):
                raise ZeroTierError(f"{where}: malformed member list, expected a JSON array")
            return [normalize_member(raw, CENTRAL, network_id, where) for raw in listing]
        if not isinstance(listing, dict):
            raise ZeroTierError(f"{where}: malformed member list, expected a JSON object")
        return [self.member(network_id, node) for node in sorted(listing)]

    def member(self, network_id: str, node_id: str) -> Member:
        where = f"member {node_id} of network {network_id}"
        raw = self.request("GET", f"/network/{network_id}/member/{node_id}", what=where)
        return normalize_member(raw, self.kind, network_id, where)

    def update_member(self, network_id: str, node_id: str, changes: dict[str, Any]) -> Member:
        where = f"member {node_id} of network {network_id}"
        body = member_body(changes, self.kind)
        raw = self.request("POST", f"/network/{network_id}/member/{node_id}", body, what=where)
        return normalize_member(raw, self.kind, network_id, where)
