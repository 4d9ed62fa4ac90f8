"""The platform client against the simulator (a real HTTP server in its own process): every
endpoint, every error reply the contract lists, and replies no contract would allow."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import pytest

from rvm_edge.service.deposit import encode_image
from rvm_edge.service.outbox import Sender, backoff_from
from rvm_edge.service.platform import PlatformClient, PlatformSettings
from rvm_edge.service.store import Store
from service.helpers import API_KEY


def client_for(base_url: str, key: str = API_KEY, **kw: Any) -> PlatformClient:
    return PlatformClient(PlatformSettings(base_url, timeout_s=2, connect_timeout_s=1, **kw), lambda: key)


def jpeg(seed: int = 0, size: int = 64) -> bytes:
    img = np.random.default_rng(seed).integers(0, 255, (size, size, 3), np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


def test_handshake_sends_identity_and_reads_policy(sim: Any, machine: dict) -> None:
    sim.admin("PATCH", f"/machines/{machine['id']}/policy", {"is_maintenance_mode": True})
    reply = client_for(sim.edge_base_url).handshake(
        {"hardware_id": "hw-1", "name": "n", "ip_vpn": "10.1.2.3"}
    )
    assert reply.ok and reply.body["data"]["policy"]["is_maintenance_mode"] is True
    assert sim.admin("GET", f"/machines/{machine['id']}")["ip_vpn"] == "10.1.2.3"


def test_heartbeat_hands_out_queued_commands_once(sim: Any, machine: dict) -> None:
    sim.admin("POST", f"/machines/{machine['id']}/commands", {"action": "RESTART"})
    c = client_for(sim.edge_base_url)
    first = c.heartbeat({"hardware_id": "hw-1", "status": "online"})
    assert [x["action"] for x in first.body["commands"]] == ["RESTART"]
    assert c.heartbeat({"hardware_id": "hw-1"}).body["commands"] == []


@pytest.mark.parametrize(("key", "code"), [("", "MISSING_API_KEY"), ("rvm_" + "x" * 32, "INVALID_API_KEY")])
def test_bad_key_is_auth_with_the_error_code(sim: Any, machine: dict, key: str, code: str) -> None:
    reply = client_for(sim.edge_base_url, key).heartbeat({"hardware_id": "hw"})
    assert (reply.kind, reply.status, reply.error_code) == ("auth", 401, code)
    assert API_KEY not in reply.error


def test_blocked_machine_and_missing_technician(sim: Any, machine: dict) -> None:
    c = client_for(sim.edge_base_url)
    sim.admin("DELETE", f"/machines/{machine['id']}/technician")
    assert c.heartbeat({"hardware_id": "hw"}).kind == "no_technician"
    sim.admin("POST", f"/machines/{machine['id']}/block")
    for reply in (c.heartbeat({}), c.deposit(jpeg(), "image/jpeg", "ACCEPTED", "{}")):
        assert (reply.kind, reply.status, reply.error_code) == ("blocked", 403, "MACHINE_BLOCKED")


def test_deposit_arrives_with_its_image_and_data(sim: Any, machine: dict) -> None:
    image = jpeg(1)
    data = json.dumps({"deposit_id": "d-1", "decision": "ACCEPTED"})
    reply = client_for(sim.edge_base_url).deposit(image, "image/jpeg", "ACCEPTED", data, "session-7")
    assert reply.ok and reply.status == 201
    got = sim.admin("GET", "/deposits")[0]
    assert got["image_sha256"] == hashlib.sha256(image).hexdigest()
    assert (got["deposit_id"], got["status"], got["session_id"]) == ("d-1", "ACCEPTED", "session-7")


def test_deposit_validation_error_parks_it_and_the_queue_moves_on(
    sim: Any, machine: dict, tmp_path: Path
) -> None:
    store = Store(tmp_path / "data")
    store.record("bad", "ACCEPTED", "r", {"deposit_id": "bad"}, b"not an image", "image/jpeg")
    store.record("good", "ACCEPTED", "r", {"deposit_id": "good"}, jpeg(), "image/jpeg")
    sender = Sender(store, client_for(sim.edge_base_url), backoff_from(0.01, 0.01))
    assert sender.step() is True and sender.step() is True and sender.step() is None
    assert [d["deposit_id"] for d in sim.admin("GET", "/deposits")] == ["good"]
    st = store.status()
    assert (st.parked, st.pending, st.sent) == (1, 0, 1)
    assert store.requeue_parked() == 1  # `outbox flush` gives it another chance, nothing was dropped


def test_oversized_image_is_reencoded_under_the_limit(sim: Any, machine: dict, tmp_path: Path) -> None:
    big = np.random.default_rng(0).integers(0, 255, (2000, 2000, 3), np.uint8)
    raw = cv2.imencode(".png", big)[1].tobytes()
    assert len(raw) > 5 * 1024 * 1024
    store = Store(tmp_path / "data")
    store.record("big", "ACCEPTED", "r", {"deposit_id": "big"}, raw, "image/png")
    sender = Sender(store, client_for(sim.edge_base_url), backoff_from(0.01, 0.01))
    assert sender.step() is True
    got = sim.admin("GET", "/deposits")[0]
    assert got["image_type"] == "jpeg" and got["image_size"] <= 5120 * 1024
    assert len(encode_image(big, 1_000_000)) <= 1_000_000


def test_sync_offline_batch_and_its_all_or_nothing_failure(sim: Any, machine: dict) -> None:
    c = client_for(sim.edge_base_url)
    txs = [
        {
            "timestamp": "2026-11-29T10:00:00+00:00",
            "items": [{"type": "plastic", "weight": 0.02, "points": 10}],
        }
    ]
    ok = c.sync_offline(txs * 3)
    assert ok.ok and ok.body["synced_count"] == 3
    sim.admin("PUT", "/faults", {"sync_fail_after": 1, "endpoints": ["sync-offline"]})
    failed = c.sync_offline(txs * 2)
    assert failed.kind == "retry" and failed.status == 500
    assert len(sim.admin("GET", "/offline-transactions")) == 3  # the failed batch left nothing behind


def test_server_errors_and_outage_open_the_breaker(sim: Any, machine: dict) -> None:
    c = client_for(sim.edge_base_url, breaker_failures=2, breaker_reset_s=60)
    sim.admin("POST", "/outage", {})
    assert c.deposit(jpeg(), "image/jpeg", "ACCEPTED", "{}").kind == "retry"
    assert c.deposit(jpeg(), "image/jpeg", "ACCEPTED", "{}").kind == "retry"
    not_sent = c.deposit(jpeg(), "image/jpeg", "ACCEPTED", "{}")
    assert not_sent.kind == "open" and c.breaker.state == "open"
    requests_seen = len(sim.admin("GET", "/requests"))
    assert c.deposit(jpeg(), "image/jpeg", "ACCEPTED", "{}").kind == "open"
    assert len(sim.admin("GET", "/requests")) == requests_seen  # an open breaker sends nothing


class _Garbage(BaseHTTPRequestHandler):
    """A 'platform' that answers what no contract allows."""

    replies: ClassVar[list[tuple[int, str, str]]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, ctype, body = self.replies.pop(0)
        raw = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def garbage() -> Iterator[tuple[str, list[tuple[int, str, str]]]]:
    replies: ClassVar[list[tuple[int, str, str]]] = []
    handler = type("H", (_Garbage,), {"replies": replies})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/v1", replies
    server.shutdown()
    server.server_close()


def test_malformed_replies_are_classified_not_raised(garbage: tuple[str, list], tmp_path: Path) -> None:
    url, replies = garbage
    c = client_for(url)
    replies += [
        (502, "text/html", "<html><body>Bad Gateway</body></html>"),
        (200, "application/json", '{"status":"success","comm'),
        (200, "application/json", '["not", "an", "object"]'),
        (200, "application/json", '{"status":"success","commands":"RESTART"}'),
    ]
    html = c.heartbeat({})
    assert (html.kind, html.status) == ("retry", 502) and "Bad Gateway" in html.error
    assert c.heartbeat({}).kind == "malformed"
    assert c.heartbeat({}).kind == "malformed"
    assert c.heartbeat({}).ok  # wrong type inside: the heartbeat loop checks 'commands' itself
    # a deposit whose 201 came back garbled was stored: it is not sent again
    store = Store(tmp_path / "data")
    store.record("d", "ACCEPTED", "r", {"deposit_id": "d"}, jpeg(), "image/jpeg")
    replies.append((201, "text/html", "<html>created</html>"))
    assert Sender(store, c, backoff_from(0.01, 0.01)).step() is True
    assert store.status().sent == 1
