"""Request parsing and JSON replies shared by the edge and the admin API.

Input is read the way Laravel reads it (``$request->all()``): a JSON body when the request says
it is JSON, form fields (and uploaded files) otherwise; a body that is not a JSON object reads as
no fields at all, which then fails ``required`` rules instead of crashing anything.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from rvm_platform_sim.validation import UploadedFile

_JSON_DUMPS_KW: dict[str, Any] = {"ensure_ascii": False, "separators": (",", ":")}


class ApiError(Exception):
    """A reply decided early (auth, format): carries the status and the exact JSON body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("message") or body.get("error"))
        self.status = status
        self.body = body


def json_reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(
        body, status=status, headers=headers, dumps=lambda o: json.dumps(o, **_JSON_DUMPS_KW)
    )


def is_json_request(request: web.Request) -> bool:
    """Symfony's ``isJson()``: the Content-Type mentions ``/json`` or ``+json``."""
    ctype = request.headers.get("Content-Type", "")
    return "/json" in ctype or "+json" in ctype


async def read_json_value(request: web.Request) -> Any:
    """The decoded JSON body, or None when it is absent or not valid JSON."""
    raw = await request.read()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None


async def read_input(request: web.Request) -> dict[str, Any]:
    """All input fields of a request as Laravel would see them (files as :class:`UploadedFile`)."""
    if is_json_request(request):
        value = await read_json_value(request)
        return value if isinstance(value, dict) else {}
    if request.content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        fields: dict[str, Any] = {}
        form = await request.post()
        for name, value in form.items():  # a repeated name keeps its last value, as PHP does
            if isinstance(value, web.FileField):
                fields[name] = UploadedFile(
                    filename=value.filename or "",
                    content_type=value.content_type,
                    data=value.file.read(),
                )
            elif isinstance(value, (bytes, bytearray)):
                # aiohttp keeps a non-text part without a file name as bytes; PHP makes every such
                # part a plain string field, whatever its Content-Type (e.g. `data` sent as JSON).
                fields[name] = bytes(value).decode("utf-8", errors="replace")
            else:
                fields[name] = value
        return fields
    await request.read()
    return {}
