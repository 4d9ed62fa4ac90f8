"""The four edge endpoints of the MyRVM contract (``shared/contracts/myrvm-edge-api.md``).

Each handler does what the platform's ``EdgeDeviceController`` does, in the same order: the
``ValidateRvmApiKey`` check (401/403), then validation (422), then storage, then the reply.
Replies keep the platform's field names, nesting and status codes exactly.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any

from aiohttp import web

from rvm_platform_sim.http_common import ApiError, json_reply, read_input, read_json_value
from rvm_platform_sim.imagetype import EXTENSIONS, sniff_image_type
from rvm_platform_sim.store import Store, SyncAborted
from rvm_platform_sim.timeutil import iso8601, now_utc
from rvm_platform_sim.validation import UploadedFile, validate_or_raise

API_KEY_HEADER = "X-RVM-API-KEY"
FAULT_DECISION_KEY = "rvm_fault_decision"
MACHINE_ID_KEY = "rvm_machine_id"

MISSING_KEY_MESSAGE = "API key is required. Send it in the X-RVM-API-KEY header."
INVALID_KEY_MESSAGE = "Invalid API key."
BLOCKED_MESSAGE = "This RVM machine is blocked or suspended. Contact the administrator."
NO_TECHNICIAN_MESSAGE = (
    "Heartbeat rejected: No active technician assignment for this RVM. Assign a technician first."
)

_PERCENT = "nullable|numeric|min:0|max:100"
HANDSHAKE_RULES: dict[str, str] = {
    "hardware_id": "required|string|max:100",
    "name": "required|string|max:255",
    "ip_local": "nullable|ip",
    "ip_vpn": "nullable|ip",
    "timezone": "nullable|string|max:50",
    "system": "nullable|array",
    "system.jetpack_version": "nullable|string|max:50",
    "system.firmware_version": "nullable|string|max:50",
    "system.python_version": "nullable|string|max:50",
    "system.ai_models": "nullable|array",
    "system.ai_models.model_name": "nullable|string|max:100",
    "system.ai_models.model_version": "nullable|string|max:100",
    "system.ai_models.hash": "nullable|string|max:100",
    "firmware_version": "nullable|string",
    "controller_type": "nullable|string",
    "ai_model_version": "nullable|string",
    "health_metrics": "nullable|array",
    "health_metrics.cpu_usage_percent": _PERCENT,
    "health_metrics.memory_usage_percent": _PERCENT,
    "health_metrics.disk_usage_percent": _PERCENT,
    "health_metrics.cpu_temperature": "nullable|numeric",
    "hardware_info": "nullable|array",
    "hardware_info.cameras": "nullable|array",
    "hardware_info.sensors": "nullable|array",
    "hardware_info.actuators": "nullable|array",
    "hardware_info.microcontroller": "nullable|array",
    "diagnostics": "nullable|array",
}

DEPOSIT_RULES: dict[str, str] = {
    "image": "required|image|mimes:jpeg,png,jpg|max:5120",
    "status": "required|string",
    "data": "required|json",
    "session_id": "nullable|string",
}

# The contract only says "required"; `items` must also be an array, or the platform's loop over
# it would fail with a 500 (the simulator says so with a 422 instead; see README).
SYNC_RULES: dict[str, str] = {
    "transactions.*.timestamp": "required",
    "transactions.*.items": "required|array",
    "transactions.*.items.*.type": "required",
    "transactions.*.items.*.weight": "required",
    "transactions.*.items.*.points": "required",
}


def authenticate(request: web.Request, store: Store) -> dict[str, Any]:
    """``ValidateRvmApiKey``: the machine for the key, or the 401/403 reply the platform gives."""
    key = request.headers.get(API_KEY_HEADER, "").strip()
    if not key:
        raise ApiError(
            401, {"status": "error", "message": MISSING_KEY_MESSAGE, "error_code": "MISSING_API_KEY"}
        )
    machine = store.machine_by_key(key)
    if machine is None:
        raise ApiError(
            401, {"status": "error", "message": INVALID_KEY_MESSAGE, "error_code": "INVALID_API_KEY"}
        )
    request[MACHINE_ID_KEY] = machine["id"]
    if machine["status"] in ("blocked", "suspended"):
        raise ApiError(403, {"status": "error", "message": BLOCKED_MESSAGE, "error_code": "MACHINE_BLOCKED"})
    return machine


def _ip_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


class EdgeApi:
    """Handlers bound to one store; ``routes`` mounts them under the configured prefix."""

    def __init__(self, store: Store, kiosk_secret: bytes) -> None:
        self.store = store
        self._kiosk_secret = kiosk_secret

    def routes(self, prefix: str) -> list[web.RouteDef]:
        return [
            web.post(f"{prefix}/edge/handshake", self.handshake, name="handshake"),
            web.post(f"{prefix}/edge/heartbeat", self.heartbeat, name="heartbeat"),
            web.post(f"{prefix}/edge/deposit", self.deposit, name="deposit"),
            web.post(f"{prefix}/edge/sync-offline", self.sync_offline, name="sync-offline"),
            web.get("/storage/deposits/{name}", self.stored_image, name="storage"),
        ]

    async def handshake(self, request: web.Request) -> web.Response:
        machine = authenticate(request, self.store)
        data = await read_input(request)
        validate_or_raise(data, HANDSHAKE_RULES)
        fields: dict[str, Any] = {"hardware_id": data["hardware_id"]}
        for column in ("ip_local", "ip_vpn"):
            if _ip_or_none(data.get(column)):
                fields[column] = data[column]
        self.store.record_handshake(machine["id"], data, fields)
        return json_reply(
            {
                "status": "success",
                "message": "Handshake successful. Configuration synced.",
                "data": {
                    "identity": {
                        "rvm_id": machine["id"],
                        "rvm_uuid": machine["uuid"],
                        "rvm_name": machine["name"],
                    },
                    "kiosk": {
                        "url": self._kiosk_url(request, machine["uuid"]),
                        "timezone": machine["timezone"],
                    },
                    "websocket": {
                        "channel": f"rvm.{machine['uuid']}",
                        "auth_token": secrets.token_urlsafe(24),
                        "host": request.url.host,
                        "port": request.url.port,
                        "scheme": "wss" if request.secure else "ws",
                    },
                    "policy": {
                        "is_maintenance_mode": bool(machine["is_maintenance_mode"]),
                        "bin_full_threshold_percent": machine["bin_full_threshold_percent"],
                        "camera_idle_timeout_sec": machine["camera_idle_timeout_sec"],
                        "motor_speed_delay": machine["motor_speed_delay"],
                    },
                    "ai_model": {
                        "target_version": machine["ai_target_version"],
                        "hash": machine["ai_hash"],
                        "update_source_url": machine["ai_update_source_url"],
                    },
                },
            }
        )

    def _kiosk_url(self, request: web.Request, machine_uuid: str) -> str:
        """A Laravel-style signed URL (``?expires=…&signature=…``); nothing serves it in the lab."""
        expires = int(time.time()) + 3600
        url = f"{request.scheme}://{request.host}/kiosk/{machine_uuid}?expires={expires}"
        signature = hmac.new(self._kiosk_secret, url.encode(), hashlib.sha256).hexdigest()
        return f"{url}&signature={signature}"

    async def heartbeat(self, request: web.Request) -> web.Response:
        machine = authenticate(request, self.store)
        body = await read_json_value(request)
        record = body if body is not None else {}
        accepted = machine["technician"] is not None
        fields: dict[str, Any] = {}
        if isinstance(body, dict):
            if _ip_or_none(body.get("ip_local")):
                fields["ip_local"] = body["ip_local"]
            if _ip_or_none(body.get("tailscale_ip")):
                fields["ip_vpn"] = body["tailscale_ip"]
        commands = self.store.record_heartbeat(machine["id"], record, accepted, fields)
        if not accepted:
            raise ApiError(403, {"status": "error", "message": NO_TECHNICIAN_MESSAGE})
        return json_reply(
            {
                "status": "success",
                "server_time": iso8601(now_utc()),
                "commands": [{"action": c["action"], "timestamp": c["timestamp"]} for c in commands],
            }
        )

    async def deposit(self, request: web.Request) -> web.Response:
        machine = authenticate(request, self.store)
        data = await read_input(request)
        validate_or_raise(data, DEPOSIT_RULES)
        image: UploadedFile = data["image"]
        kind = sniff_image_type(image.data) or "jpeg"
        session_id = data.get("session_id")
        stored = self.store.record_deposit(
            machine_id=machine["id"],
            status=data["status"],
            session_id=session_id if isinstance(session_id, str) and session_id.strip() else None,
            data_json=data["data"],
            image=image.data,
            image_type=kind,
            image_filename=image.filename,
            image_ext=EXTENSIONS[kind],
        )
        return json_reply(
            {
                "status": "success",
                "message": "Deposit processed",
                "data": {
                    "image_url": f"{request.scheme}://{request.host}/storage/deposits/{stored.image_name}",
                    "ai_result": json.loads(data["data"]),
                    "processed_at": iso8601(now_utc()),
                },
            },
            status=201,
        )

    async def sync_offline(self, request: web.Request) -> web.Response:
        machine = authenticate(request, self.store)
        data = await read_input(request)
        transactions = data.get("transactions")
        if not isinstance(transactions, (list, dict)):  # PHP's is_array: a JSON object passes too
            raise ApiError(422, {"status": "error", "message": "Invalid format"})
        validate_or_raise(data, SYNC_RULES)
        entries = (
            [(str(i), tx) for i, tx in enumerate(transactions)]
            if isinstance(transactions, list)
            else [(str(k), tx) for k, tx in transactions.items()]
        )
        decision = request.get(FAULT_DECISION_KEY)
        fail_after = decision.sync_fail_after if decision is not None else None
        try:
            count = self.store.record_offline_batch(machine["id"], entries, fail_after)
        except SyncAborted as exc:
            raise ApiError(500, {"status": "error", "message": f"Sync failed: {exc}"}) from exc
        return json_reply(
            {"status": "success", "message": f"Synced {count} offline transactions", "synced_count": count}
        )

    async def stored_image(self, request: web.Request) -> web.Response:
        """The public ``image_url`` of a deposit, as Laravel's public storage disk would serve it."""
        found = self.store.image_by_name(request.match_info["name"])
        if found is None:
            raise web.HTTPNotFound()
        data, kind = found
        return web.Response(body=data, content_type=f"image/{kind}")
