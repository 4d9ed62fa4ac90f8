"""The MyRVM edge API client (contract: shared/contracts/myrvm-edge-api.md).

One pooled ``requests.Session``; connect and read timeouts on every call. urllib3 retries only
*connect* failures (the request never left, so a retry cannot duplicate anything); everything
else is reported to the caller as a :class:`Reply` whose ``kind`` says what to do: the outbox
and the heartbeat loop own their retry schedule (:class:`Backoff`) and share one
:class:`CircuitBreaker`, so an unreachable platform costs one probe per reset period instead
of a request per queued deposit.

Replies are classified, never trusted: an HTML error page, truncated JSON or wrong types give
``kind="malformed"`` (with the status) instead of an exception.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from rvm_edge import __version__

log = logging.getLogger(__name__)

Kind = Literal["ok", "retry", "auth", "blocked", "no_technician", "invalid", "malformed", "open"]


@dataclass(frozen=True)
class Reply:
    """What one call came to. ``kind``: ok | retry (transient) | auth (401) | blocked (403 machine)
    | no_technician (403 heartbeat) | invalid (422, resending will not help) | malformed | open
    (circuit breaker open: not sent)."""

    kind: Kind
    status: int | None = None
    body: Any = None
    error: str = ""
    error_code: str | None = None

    @property
    def ok(self) -> bool:
        return self.kind == "ok"


def classify(status: int, text: str, endpoint: str) -> Reply:
    """Pure: an HTTP status and body -> :class:`Reply` (unit-tested with bad bodies)."""
    try:
        body: Any = json.loads(text) if text else None
    except ValueError:
        body = None
        snippet = " ".join(text[:80].split())
        if 200 <= status < 300:
            return Reply("malformed", status, None, f"{endpoint}: {status} with a body that is not JSON")
        kind: Kind = "retry" if status >= 500 or status in (408, 429) else "malformed"
        return Reply(kind, status, None, f"{endpoint}: HTTP {status}, not JSON: {snippet!r}")
    code = body.get("error_code") if isinstance(body, dict) else None
    message = str(body.get("message", ""))[:200] if isinstance(body, dict) else ""
    if 200 <= status < 300:
        if not isinstance(body, dict):
            return Reply("malformed", status, body, f"{endpoint}: {status} reply is not a JSON object")
        return Reply("ok", status, body)
    if status == 401:
        return Reply("auth", status, body, f"{endpoint}: 401 {code or message}", code)
    if status == 403:
        if code == "MACHINE_BLOCKED":
            return Reply("blocked", status, body, f"{endpoint}: machine blocked or suspended", code)
        if endpoint == "heartbeat":
            return Reply("no_technician", status, body, f"{endpoint}: {message}", code)
        return Reply("blocked", status, body, f"{endpoint}: 403 {message}", code)
    if status == 422:
        errors = body.get("errors") if isinstance(body, dict) else None
        return Reply("invalid", status, body, f"{endpoint}: 422 {message} {errors or ''}".strip(), code)
    if status >= 500 or status in (408, 425, 429):
        return Reply("retry", status, body, f"{endpoint}: HTTP {status} {message}".strip(), code)
    return Reply("invalid", status, body, f"{endpoint}: HTTP {status} {message}".strip(), code)


class CircuitBreaker:
    """closed -> (N consecutive failures) -> open for ``reset_s`` -> half-open (one probe) -> closed."""

    def __init__(self, failures: int, reset_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.threshold, self.reset_s, self._clock = failures, reset_s, clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half-open" if self._clock() - self._opened_at >= self.reset_s else "open"

    def allow(self) -> bool:
        with self._lock:
            s = self._state()
            if s == "closed":
                return True
            if s == "half-open" and not self._probing:
                self._probing = True
                return True
            return False

    def retry_in(self) -> float:
        with self._lock:
            if self._opened_at is None:
                return 0.0
            return max(0.0, self.reset_s - (self._clock() - self._opened_at))

    def success(self) -> None:
        with self._lock:
            self._failures, self._opened_at, self._probing = 0, None, False

    def failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._probing or self._failures >= self.threshold:
                self._opened_at = self._clock()
            self._probing = False


@dataclass
class Backoff:
    """Exponential backoff with full jitter: delay n is uniform in [initial, min(max, initial*2^n)]."""

    initial: float
    maximum: float
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next(self) -> float:
        ceiling = min(self.maximum, self.initial * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 32)
        return self.rng.uniform(self.initial, max(self.initial, ceiling))

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class PlatformSettings:
    """The parts of ``platform:`` the client needs (live-updatable ones are plain attributes)."""

    base_url: str
    timeout_s: float = 10.0
    connect_timeout_s: float = 5.0
    ca_bundle: str | None = None
    breaker_failures: int = 5
    breaker_reset_s: float = 15.0


class PlatformClient:
    """Calls the four edge endpoints; never raises for network or server trouble."""

    def __init__(
        self,
        settings: PlatformSettings,
        api_key: Callable[[], str],
        on_error: Callable[[str, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._api_key = api_key
        self._on_error = on_error or (lambda endpoint, kind: None)
        self.breaker = CircuitBreaker(settings.breaker_failures, settings.breaker_reset_s, clock)
        self.session = requests.Session()
        retry = Retry(total=2, connect=2, read=0, status=0, other=0, redirect=0, backoff_factor=0.2)
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=4, max_retries=retry)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.session.headers.update({"Accept": "application/json", "User-Agent": f"rvm-edge/{__version__}"})
        # passed on every call: requests lets REQUESTS_CA_BUNDLE override a Session-level verify
        self._verify: str | bool = settings.ca_bundle if settings.ca_bundle else True
        self.last_ok_at: float | None = None
        self.last_error: str | None = None

    def close(self) -> None:
        self.session.close()

    def _post(self, endpoint: str, *, use_breaker: bool = True, **kwargs: Any) -> Reply:
        if use_breaker and not self.breaker.allow():
            return Reply("open", None, None, f"{endpoint}: circuit open, platform unreachable")
        url = f"{self.settings.base_url}/edge/{endpoint}"
        headers = {"X-RVM-API-KEY": self._api_key()}
        t0 = time.perf_counter()
        try:
            r = self.session.post(
                url,
                headers=headers,
                timeout=(self.settings.connect_timeout_s, self.settings.timeout_s),
                verify=self._verify,
                **kwargs,
            )
            reply = classify(r.status_code, r.text, endpoint)
        except requests.exceptions.SSLError as exc:
            reply = Reply("retry", None, None, f"{endpoint}: TLS verification failed ({type(exc).__name__})")
        except requests.exceptions.Timeout:
            reply = Reply("retry", None, None, f"{endpoint}: no reply within {self.settings.timeout_s}s")
        except requests.exceptions.ConnectionError as exc:
            reason = type(exc.__context__ or exc).__name__
            reply = Reply("retry", None, None, f"{endpoint}: connection failed ({reason})")
        except requests.exceptions.RequestException as exc:
            reply = Reply("retry", None, None, f"{endpoint}: request failed ({type(exc).__name__})")
        elapsed_ms = (time.perf_counter() - t0) * 1e3
        if reply.kind in ("retry", "malformed"):
            self.breaker.failure()
        else:
            self.breaker.success()
        if reply.ok:
            self.last_ok_at, self.last_error = time.time(), None
        else:
            self.last_error = reply.error
            self._on_error(endpoint, reply.kind)
        log.debug(
            "platform call",
            extra={
                "endpoint": endpoint,
                "status": reply.status,
                "kind": reply.kind,
                "ms": round(elapsed_ms, 1),
            },
        )
        return reply

    def handshake(self, body: dict[str, Any]) -> Reply:
        return self._post("handshake", json=body, use_breaker=False)

    def heartbeat(self, body: dict[str, Any]) -> Reply:
        # the heartbeat is the probe that finds the platform back: it bypasses the breaker
        return self._post("heartbeat", json=body, use_breaker=False)

    def deposit(
        self, image: bytes, image_type: str, status: str, data: str, session_id: str | None = None
    ) -> Reply:
        ext = "png" if image_type == "image/png" else "jpg"
        form = {"status": status, "data": data}
        if session_id:
            form["session_id"] = session_id
        return self._post("deposit", data=form, files={"image": (f"deposit.{ext}", image, image_type)})

    def sync_offline(self, transactions: list[dict[str, Any]]) -> Reply:
        return self._post("sync-offline", json={"transactions": transactions})
