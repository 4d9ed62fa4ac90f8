"""The aiohttp application: routes, the fault middleware and JSON error replies.

Two middlewares, outermost first:
- ``faults``: for the four edge endpoints only, carries out the fault decision (outage, 5xx,
  dropped connection, latency) around the real handler and logs every request to SQLite.
- ``errors``: turns every failure into the JSON body the platform would send (Laravel's 404/405/
  413/422/500 shapes on the edge side, ``{"error": ...}`` on the admin side).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from rvm_platform_sim.admin_api import AdminApi
from rvm_platform_sim.config import SimConfig
from rvm_platform_sim.edge_api import FAULT_DECISION_KEY, MACHINE_ID_KEY, EdgeApi
from rvm_platform_sim.faults import ENDPOINTS, FaultDecision, FaultState
from rvm_platform_sim.http_common import ApiError, json_reply
from rvm_platform_sim.store import Store
from rvm_platform_sim.validation import ValidationFailed, summary_message

log = logging.getLogger("rvm_platform_sim")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _endpoint(request: web.Request) -> str | None:
    route = request.match_info.route
    name = route.name if route is not None else None
    return name if name in ENDPOINTS else None


def _abort(request: web.Request) -> None:
    """Close the socket with no reply at all: the client sees the connection end, not a status."""
    if request.transport is not None:
        request.transport.abort()


def build_app(config: SimConfig, store: Store, faults: FaultState) -> web.Application:
    admin = AdminApi(store, faults, config.admin_token)
    edge = EdgeApi(store, kiosk_secret=secrets.token_bytes(32))

    @web.middleware
    async def faults_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        endpoint = _endpoint(request)
        if endpoint is None:
            return await handler(request)
        started = time.monotonic()

        def record(status: int | None, fault: str) -> None:
            duration_ms = (time.monotonic() - started) * 1000
            store.record_request(
                endpoint,
                request.method,
                request.path,
                request.get(MACHINE_ID_KEY),
                status,
                fault,
                duration_ms,
            )
            log.info(
                "request",
                extra={
                    "endpoint": endpoint,
                    "status": status,
                    "fault": fault,
                    "machine_id": request.get(MACHINE_ID_KEY),
                },
            )

        outage = faults.outage_mode()
        if outage == "reset":
            record(None, "outage_reset")
            _abort(request)
            return web.Response(status=503)  # never written: the socket is gone
        if outage == "503":
            await request.read()
            remaining = faults.outage_remaining_s()
            record(503, "outage")
            headers = {"Retry-After": str(max(1, round(remaining)))} if remaining is not None else None
            return json_reply({"message": "Service Unavailable"}, status=503, headers=headers)

        decision: FaultDecision = faults.decide(endpoint)
        request[FAULT_DECISION_KEY] = decision
        if decision.error_status is not None:
            await request.read()
            # Recorded before the delay: a client that gave up must not leave a late record behind.
            record(decision.error_status, decision.label)
            await asyncio.sleep(decision.latency_s)
            return json_reply({"status": "error", "message": "Server Error"}, status=decision.error_status)

        response = await handler(request)
        if decision.drop:
            # The request was read and its effects committed; the reply is never sent.
            record(None, "drop")
            _abort(request)
            return response
        record(response.status, "latency" if decision.latency_s > 0 else "")
        if decision.latency_s > 0:
            await asyncio.sleep(decision.latency_s)
        return response

    @web.middleware
    async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        is_admin = request.path == config.admin_prefix or request.path.startswith(config.admin_prefix + "/")
        try:
            if is_admin and request.match_info.route.name != "admin-health" and not admin.authorized(request):
                raise ApiError(401, {"error": "admin token missing or wrong (Authorization: Bearer <token>)"})
            return await handler(request)
        except ApiError as exc:
            return json_reply(exc.body, status=exc.status)
        except ValidationFailed as exc:
            return json_reply({"message": summary_message(exc.errors), "errors": exc.errors}, status=422)
        except web.HTTPMethodNotAllowed as exc:
            allowed = ", ".join(sorted(exc.allowed_methods))
            route = request.path.lstrip("/")
            message = (
                f"The {request.method} method is not supported for route {route}. "
                f"Supported methods: {allowed}."
            )
            return json_reply({"message": message}, status=405, headers={"Allow": allowed})
        except web.HTTPNotFound:
            if is_admin:
                return json_reply({"error": f"no admin route {request.method} {request.path}"}, status=404)
            return json_reply(
                {"message": f"The route {request.path.lstrip('/')} could not be found."}, status=404
            )
        except web.HTTPRequestEntityTooLarge:
            return json_reply({"message": "The POST data is too large."}, status=413)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("unhandled error", extra={"path": request.path})
            return json_reply({"status": "error", "message": "Server Error"}, status=500)

    app = web.Application(
        middlewares=[faults_middleware, errors_middleware], client_max_size=config.max_body_bytes
    )
    app.add_routes(edge.routes(config.prefix))
    app.add_routes(admin.routes(config.admin_prefix))
    return app
