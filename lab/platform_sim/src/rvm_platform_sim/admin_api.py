"""The test-only admin API: set up machines, steer the platform's behaviour, read back what arrived.

Never part of the platform contract: it exists so tests and lab playbooks can create the
situations the device must survive (blocked machine, no technician, queued commands, a new target
model, faults) and then prove what the platform received. Guarded by its own bearer token.
Bad input gets the same 422 shape as the edge API, plus an error for every unknown key.
"""

from __future__ import annotations

import hmac
from typing import Any

from aiohttp import web

from rvm_platform_sim.faults import ENDPOINTS, FaultSettings, FaultState, OutageMode
from rvm_platform_sim.http_common import ApiError, json_reply, read_json_value
from rvm_platform_sim.store import DuplicateKey, Store, new_api_key
from rvm_platform_sim.validation import ValidationFailed, validate

DEFAULT_TECHNICIAN = "lab-technician"

MACHINE_RULES = {
    "name": "nullable|string|max:255",
    "api_key": "nullable|string|min:8|max:100",
    "technician": "nullable|string|max:255",
    "timezone": "nullable|string|max:50",
    "status": "nullable|in:active,blocked,suspended",
}
KEY_RULES = {"api_key": "nullable|string|min:8|max:100"}
TECHNICIAN_RULES = {"name": "required|string|max:255"}
POLICY_RULES = {
    "is_maintenance_mode": "nullable|boolean",
    "bin_full_threshold_percent": "nullable|integer|min:0|max:100",
    "camera_idle_timeout_sec": "nullable|integer|min:0",
    "motor_speed_delay": "nullable|numeric|min:0",
}
AI_MODEL_RULES = {
    "target_version": "required|string|max:100",
    "hash": "nullable|regex:[0-9a-f]{64}",
    "update_source_url": "nullable|string|max:2048",
}
COMMAND_RULES = {"action": "required|string|max:50"}
FAULT_RULES = {
    "latency_ms": "nullable|numeric|min:0|max:600000",
    "latency_jitter_ms": "nullable|numeric|min:0|max:600000",
    "error_rate": "nullable|numeric|min:0|max:1",
    "error_status": "nullable|integer|min:500|max:599",
    "error_next": "nullable|integer|min:0",
    "drop_rate": "nullable|numeric|min:0|max:1",
    "drop_next": "nullable|integer|min:0",
    "sync_fail_after": "nullable|integer|min:0",
    "endpoints": "nullable|array",
    "endpoints.*": "in:" + ",".join(ENDPOINTS),
    "seed": "nullable|integer",
}
OUTAGE_RULES = {"seconds": "nullable|numeric|min:0", "mode": "nullable|in:503,reset"}
RESET_RULES = {"keep_machines": "nullable|boolean"}


async def _payload(request: web.Request, rules: dict[str, str]) -> dict[str, Any]:
    """The JSON object body checked against ``rules``; unknown keys are errors too."""
    body = await read_json_value(request)
    if body is None:
        body = {}
    if not isinstance(body, dict):
        raise ApiError(422, {"message": "The request body must be a JSON object.", "errors": {}})
    errors = validate(body, rules)
    allowed = sorted({rule.split(".")[0] for rule in rules})
    for key in body:
        if key not in allowed:
            errors[key] = [f"Unknown field {key!r}; allowed: {', '.join(allowed)}."]
    if errors:
        raise ValidationFailed(errors)
    return body


def _machine_json(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "is_maintenance_mode": bool(row["is_maintenance_mode"])}


def _machine_filter(request: web.Request) -> int | None:
    raw = request.query.get("machine_id")
    if raw is None:
        return None
    if not raw.isdigit():
        raise ApiError(422, {"message": "machine_id must be a positive integer.", "errors": {}})
    return int(raw)


class AdminApi:
    """Handlers over the store and the live fault state, mounted under the admin prefix."""

    def __init__(self, store: Store, faults: FaultState, token: str) -> None:
        self.store = store
        self.faults = faults
        self._token = token.encode()

    def authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), self._token)

    def routes(self, prefix: str) -> list[web.RouteDef]:
        m = f"{prefix}/machines/{{machine_id:\\d+}}"
        return [
            web.get(f"{prefix}/health", self.health, name="admin-health"),
            web.post(f"{prefix}/machines", self.create_machine),
            web.get(f"{prefix}/machines", self.list_machines),
            web.get(m, self.get_machine),
            web.post(f"{m}/keys", self.rotate_key),
            web.post(f"{m}/block", self.set_status("blocked")),
            web.post(f"{m}/suspend", self.set_status("suspended")),
            web.post(f"{m}/unblock", self.set_status("active")),
            web.put(f"{m}/technician", self.assign_technician),
            web.delete(f"{m}/technician", self.remove_technician),
            web.patch(f"{m}/policy", self.set_policy),
            web.put(f"{m}/ai-model", self.set_ai_model),
            web.post(f"{m}/commands", self.queue_command),
            web.get(f"{m}/commands", self.list_commands),
            web.get(f"{prefix}/faults", self.get_faults),
            web.put(f"{prefix}/faults", self.put_faults),
            web.delete(f"{prefix}/faults", self.clear_faults),
            web.post(f"{prefix}/outage", self.start_outage),
            web.delete(f"{prefix}/outage", self.end_outage),
            web.get(f"{prefix}/handshakes", self.read_back(self.store.handshakes)),
            web.get(f"{prefix}/heartbeats", self.read_back(self.store.heartbeats)),
            web.get(f"{prefix}/deposits", self.read_back(self.store.deposits)),
            web.get(f"{prefix}/deposits/{{deposit_id:\\d+}}/image", self.deposit_image),
            web.get(f"{prefix}/offline-transactions", self.read_back(self.store.offline_transactions)),
            web.get(f"{prefix}/offline-batches", self.read_back(self.store.offline_batches)),
            web.get(f"{prefix}/requests", self.read_back(self.store.requests)),
            web.post(f"{prefix}/reset", self.reset),
        ]

    def _machine(self, request: web.Request) -> dict[str, Any]:
        machine_id = int(request.match_info["machine_id"])
        machine = self.store.machine(machine_id)
        if machine is None:
            raise ApiError(404, {"error": f"no machine with id {machine_id}"})
        return machine

    async def health(self, request: web.Request) -> web.Response:
        """Unauthenticated liveness for systemd/Ansible checks; reveals nothing but "ok"."""
        return json_reply({"status": "ok", "journal_mode": self.store.journal_mode()})

    async def create_machine(self, request: web.Request) -> web.Response:
        body = await _payload(request, MACHINE_RULES)
        count = len(self.store.machines())
        try:
            machine = self.store.create_machine(
                name=body.get("name") or f"RVM Lab {count + 1}",
                api_key=body.get("api_key"),
                technician=body.get("technician", DEFAULT_TECHNICIAN),
                timezone=body.get("timezone") or "Asia/Jakarta",
            )
        except DuplicateKey as exc:
            raise ApiError(409, {"error": "api_key is already used by another machine"}) from exc
        if body.get("status"):
            machine = self.store.update_machine(machine["id"], status=body["status"]) or machine
        return json_reply(_machine_json(machine), status=201)

    async def list_machines(self, request: web.Request) -> web.Response:
        return json_reply([_machine_json(m) for m in self.store.machines()])

    async def get_machine(self, request: web.Request) -> web.Response:
        return json_reply(_machine_json(self._machine(request)))

    async def rotate_key(self, request: web.Request) -> web.Response:
        """A new key for the machine; the old one stops working at once (INVALID_API_KEY)."""
        machine = self._machine(request)
        body = await _payload(request, KEY_RULES)
        try:
            updated = self.store.update_machine(machine["id"], api_key=body.get("api_key") or new_api_key())
        except DuplicateKey as exc:
            raise ApiError(409, {"error": "api_key is already used by another machine"}) from exc
        assert updated is not None
        return json_reply(_machine_json(updated))

    def set_status(self, status: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            machine = self._machine(request)
            await _payload(request, {})
            updated = self.store.update_machine(machine["id"], status=status)
            assert updated is not None
            return json_reply(_machine_json(updated))

        return handler

    async def assign_technician(self, request: web.Request) -> web.Response:
        machine = self._machine(request)
        body = await _payload(request, TECHNICIAN_RULES)
        updated = self.store.update_machine(machine["id"], technician=body["name"])
        assert updated is not None
        return json_reply(_machine_json(updated))

    async def remove_technician(self, request: web.Request) -> web.Response:
        machine = self._machine(request)
        updated = self.store.update_machine(machine["id"], technician=None)
        assert updated is not None
        return json_reply(_machine_json(updated))

    async def set_policy(self, request: web.Request) -> web.Response:
        machine = self._machine(request)
        body = await _payload(request, POLICY_RULES)
        fields = {k: v for k, v in body.items() if v is not None}
        if "is_maintenance_mode" in fields:
            fields["is_maintenance_mode"] = int(fields["is_maintenance_mode"] in (True, 1, "1"))
        updated = self.store.update_machine(machine["id"], **fields)
        assert updated is not None
        return json_reply(_machine_json(updated))

    async def set_ai_model(self, request: web.Request) -> web.Response:
        machine = self._machine(request)
        body = await _payload(request, AI_MODEL_RULES)
        updated = self.store.update_machine(
            machine["id"],
            ai_target_version=body["target_version"],
            ai_hash=body.get("hash"),
            ai_update_source_url=body.get("update_source_url"),
        )
        assert updated is not None
        return json_reply(_machine_json(updated))

    async def queue_command(self, request: web.Request) -> web.Response:
        """Any action string is accepted, so tests can send the unknown ones a device must ignore."""
        machine = self._machine(request)
        body = await _payload(request, COMMAND_RULES)
        return json_reply(self.store.queue_command(machine["id"], body["action"]), status=201)

    async def list_commands(self, request: web.Request) -> web.Response:
        machine = self._machine(request)
        return json_reply(self.store.commands(machine["id"]))

    async def get_faults(self, request: web.Request) -> web.Response:
        return json_reply(self.faults.to_json())

    async def put_faults(self, request: web.Request) -> web.Response:
        """Replace the fault settings (absent keys take their defaults) and restart the seed."""
        body = await _payload(request, FAULT_RULES)
        values = {k: v for k, v in body.items() if v is not None}
        if "endpoints" in values:
            values["endpoints"] = tuple(values["endpoints"])
        self.faults.configure(FaultSettings(**values))
        return json_reply(self.faults.to_json())

    async def clear_faults(self, request: web.Request) -> web.Response:
        self.faults.clear()
        return json_reply(self.faults.to_json())

    async def start_outage(self, request: web.Request) -> web.Response:
        body = await _payload(request, OUTAGE_RULES)
        seconds = body.get("seconds")
        mode: OutageMode = "reset" if body.get("mode") == "reset" else "503"
        self.faults.start_outage(None if seconds is None else float(seconds), mode)
        return json_reply(self.faults.to_json())

    async def end_outage(self, request: web.Request) -> web.Response:
        self.faults.end_outage()
        return json_reply(self.faults.to_json())

    def read_back(self, reader: Any) -> Any:
        async def handler(request: web.Request) -> web.Response:
            return json_reply(reader(_machine_filter(request)))

        return handler

    async def deposit_image(self, request: web.Request) -> web.Response:
        found = self.store.deposit_image(int(request.match_info["deposit_id"]))
        if found is None:
            raise ApiError(404, {"error": f"no deposit with id {request.match_info['deposit_id']}"})
        data, kind = found
        return web.Response(body=data, content_type=f"image/{kind}")

    async def reset(self, request: web.Request) -> web.Response:
        body = await _payload(request, RESET_RULES)
        keep = body.get("keep_machines") in (True, 1, "1")
        self.store.reset(keep_machines=keep)
        self.faults.clear()
        return json_reply({"status": "ok", "kept_machines": keep})
