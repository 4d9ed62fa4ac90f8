"""The platform link: handshake at start (and after a key change), heartbeats, remote commands.

Pull-based, as the contract says: commands arrive in heartbeat replies and are handed out once,
so each is written to the audit log before it is acted on. ``RESTART`` asks the service to
stop cleanly (systemd starts it again); ``GIT_PULL`` does not apply to a fleet updated by
``playbooks/deploy.yml`` and is logged as such; anything else is logged and ignored.

A 403 "no technician" heartbeat is not a device fault: the device keeps running, keeps trying,
and readiness shows it.
"""

from __future__ import annotations

import logging
import platform as pyplatform
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

from rvm_edge import __version__
from rvm_edge.service.jsonlog import audit
from rvm_edge.service.platform import Backoff, PlatformClient, Reply

log = logging.getLogger(__name__)


def zerotier_address() -> str | None:
    """The first IPv4 address on a ZeroTier interface (``zt*``), if any."""
    for name, addrs in psutil.net_if_addrs().items():
        if name.startswith("zt"):
            for a in addrs:
                if a.family == socket.AF_INET:
                    return a.address
    return None


def local_address() -> str | None:
    for name, addrs in psutil.net_if_addrs().items():
        if name == "lo" or name.startswith("zt"):
            continue
        for a in addrs:
            if a.family == socket.AF_INET:
                return a.address
    return None


def health_metrics(data_dir: str) -> dict[str, float]:
    out = {
        "cpu_usage_percent": float(psutil.cpu_percent(interval=None)),
        "memory_usage_percent": float(psutil.virtual_memory().percent),
        "disk_usage_percent": float(psutil.disk_usage(data_dir).percent),
    }
    temps = getattr(psutil, "sensors_temperatures", lambda: {})() or {}
    for entries in temps.values():
        if entries:
            out["cpu_temperature"] = float(entries[0].current)
            break
    return out


@dataclass
class LinkState:
    """What the last exchanges said; shown in readiness, metrics and the dashboard."""

    handshake_ok: bool = False
    handshake_at: float | None = None
    # time.monotonic() of the last good heartbeat: its age must not jump when the wall clock does (a
    # Jetson without an RTC battery boots in 1970 and NTP then moves it by decades)
    heartbeat_ok_mono: float | None = None
    heartbeat_status: str = "never"  # ok | no_technician | auth | blocked | down | never
    heartbeat_error: str | None = None
    maintenance: bool = False
    identity: dict[str, Any] = field(default_factory=dict)
    target_model: dict[str, Any] = field(default_factory=dict)
    commands: list[dict[str, Any]] = field(default_factory=list)

    @property
    def heartbeat_age_s(self) -> float | None:
        return None if self.heartbeat_ok_mono is None else time.monotonic() - self.heartbeat_ok_mono

    def to_json(self) -> dict[str, Any]:
        return {
            "handshake_ok": self.handshake_ok,
            "heartbeat_status": self.heartbeat_status,
            "heartbeat_age_s": None if self.heartbeat_age_s is None else round(self.heartbeat_age_s, 1),
            "heartbeat_error": self.heartbeat_error,
            "maintenance": self.maintenance,
            "rvm_name": self.identity.get("rvm_name"),
            "target_model": self.target_model,
            "recent_commands": self.commands[-10:],
        }


class Link:
    """Runs the handshake/heartbeat loop on its own thread."""

    def __init__(
        self,
        client: PlatformClient,
        hardware_id: str,
        name: str,
        interval_s: float,
        handshake_interval_s: float,
        backoff: Backoff,
        data_dir: str,
        on_restart: Callable[[], None],
        on_policy: Callable[[bool], None],
        key_changed: Callable[[], bool],
        model: dict[str, str] | None = None,
        zt_address: str | None = None,
        timezone: str | None = None,
    ) -> None:
        self.client, self.hardware_id, self.name = client, hardware_id, name
        self.interval_s, self.handshake_interval_s = interval_s, handshake_interval_s
        self.backoff, self.data_dir = backoff, data_dir
        self._on_restart, self._on_policy, self._key_changed = on_restart, on_policy, key_changed
        self.model = model or {}
        self.zt_address, self.timezone = zt_address, timezone
        self.state = LinkState()
        self.extra_health: Callable[[], dict[str, Any]] = dict
        self.on_recovered: Callable[[], None] = lambda: None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="rvm-heartbeat", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> bool:
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def wake(self) -> None:
        self._wake.set()

    def _zt(self) -> str | None:
        return self.zt_address or zerotier_address()

    # -- exchanges -------------------------------------------------------------------------
    def handshake(self) -> Reply:
        body: dict[str, Any] = {
            "hardware_id": self.hardware_id,
            "name": self.name,
            "system": {
                "python_version": pyplatform.python_version(),
                "firmware_version": __version__,
                "ai_models": {
                    "model_name": self.model.get("name", "")[:100],
                    "model_version": self.model.get("version", "")[:100],
                    "hash": self.model.get("sha256", "")[:100],
                },
            },
            "health_metrics": health_metrics(self.data_dir),
        }
        for key, value in (
            ("ip_local", local_address()),
            ("ip_vpn", self._zt()),
            ("timezone", self.timezone),
        ):
            if value:
                body[key] = value
        reply = self.client.handshake(body)
        if reply.ok and isinstance(reply.body.get("data"), dict):
            data = reply.body["data"]
            self.state.handshake_ok, self.state.handshake_at = True, time.time()
            self.state.identity = data.get("identity") or {}
            self.state.target_model = data.get("ai_model") or {}
            policy = data.get("policy") or {}
            maintenance = policy.get("is_maintenance_mode") is True
            if maintenance != self.state.maintenance:
                audit("maintenance_mode", enabled=maintenance)
            self.state.maintenance = maintenance
            self._on_policy(maintenance)
            target = self.state.target_model.get("hash")
            if target and target != self.model.get("sha256"):
                log.warning(
                    "platform wants another AI model than the one running",
                    extra={"target_hash": target, "running_hash": self.model.get("sha256")},
                )
            log.info("handshake ok", extra={"rvm_name": self.state.identity.get("rvm_name")})
        else:
            if reply.ok:
                reply = Reply("malformed", reply.status, reply.body, "handshake: reply without a data object")
            self.state.handshake_ok = False
            log.warning("handshake failed", extra={"status": reply.status, "error": reply.error})
        return reply

    def heartbeat(self) -> Reply:
        body: dict[str, Any] = {
            "hardware_id": self.hardware_id,
            "status": "maintenance" if self.state.maintenance else "online",
            "version": __version__,
            "health_metrics": health_metrics(self.data_dir),
            "discovery": self.extra_health(),
        }
        for key, value in (("ip_local", local_address()), ("tailscale_ip", self._zt())):
            if value:
                body[key] = value
        reply = self.client.heartbeat(body)
        if reply.ok:
            if self.state.heartbeat_status != "ok":
                self.on_recovered()  # the outbox need not wait out its backoff
            self.state.heartbeat_ok_mono = time.monotonic()
            self.state.heartbeat_status, self.state.heartbeat_error = "ok", None
            commands = reply.body.get("commands")
            if isinstance(commands, list):
                for cmd in commands:
                    self.run_command(cmd)
            elif commands is not None:
                log.warning(
                    "heartbeat reply: 'commands' is not a list", extra={"got": type(commands).__name__}
                )
        else:
            status = {"no_technician": "no_technician", "auth": "auth", "blocked": "blocked"}.get(
                reply.kind, "down"
            )
            self.state.heartbeat_status, self.state.heartbeat_error = status, reply.error
            level = logging.INFO if status == "no_technician" else logging.WARNING
            log.log(level, "heartbeat not accepted", extra={"status": reply.status, "kind": reply.kind})
        return reply

    def run_command(self, cmd: Any) -> None:
        action = cmd.get("action") if isinstance(cmd, dict) else None
        stamp = cmd.get("timestamp") if isinstance(cmd, dict) else None
        self.state.commands.append({"action": action, "timestamp": stamp, "received_at": time.time()})
        audit("remote_command", command=str(action), command_timestamp=stamp)
        if action == "RESTART":
            log.warning("platform asked for a restart: stopping cleanly so systemd restarts the service")
            self._on_restart()
        elif action == "GIT_PULL":
            log.warning("GIT_PULL is not applicable: this fleet is updated by playbooks/deploy.yml")
        else:
            log.warning("unknown remote command ignored", extra={"command": str(action)})

    # -- loop ------------------------------------------------------------------------------
    def _run(self) -> None:
        next_handshake = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            try:
                if not self.state.handshake_ok or now >= next_handshake:
                    reply = self.handshake()
                    if reply.ok:
                        next_handshake = now + self.handshake_interval_s
                        self.backoff.reset()
                    elif reply.kind == "auth" and self._key_changed():
                        continue
                    if not reply.ok:
                        self.state.heartbeat_status = {"auth": "auth", "blocked": "blocked"}.get(
                            reply.kind, "down"
                        )
                        self.state.heartbeat_error = reply.error
                        self._sleep(self.backoff.next())
                        continue
                reply = self.heartbeat()
                if reply.kind == "auth" and self._key_changed():
                    self.state.handshake_ok = False
                    continue
            except Exception:
                log.exception("heartbeat loop step failed")
            self._sleep(self.interval_s)

    def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        # request_stop() sets _stop before _wake: if it ran before the clear above (during the
        # exchange, or just after the loop's check), the clear has eaten its wake-up and only this
        # check sees it; otherwise its _wake.set() comes after the clear and ends the wait below.
        # Without it a stop at the wrong moment waits out a whole interval (30 s by default).
        if self._stop.is_set():
            return
        self._wake.wait(min(seconds, self.interval_s))
