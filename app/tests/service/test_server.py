"""The HTTP server's access rules and the dashboard's frame, with a stand-in service behind it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import pytest
import requests

from rvm_edge.decision import ReasonCode
from rvm_edge.messages import Decision, Detection, Detections, ItemResult, MaskGeometry, Verdict
from rvm_edge.service.dashboard import annotate
from rvm_edge.service.server import HttpServer

TOKEN = "t0ken-for-the-dashboard-123"


class View:
    def readiness(self) -> tuple[bool, dict[str, Any]]:
        return False, {"ready": False, "checks": {"models_loaded": {"ok": False}}}

    def status(self) -> dict[str, Any]:
        return {"secret": "only with the token"}

    def metrics(self) -> bytes:
        return b"rvm_edge_ready 0\n"

    def last_frame_jpeg(self) -> bytes | None:
        return None


@pytest.fixture
def base() -> Iterator[str]:
    server = HttpServer("127.0.0.1", 0, View(), TOKEN)
    server.start()
    yield f"http://127.0.0.1:{server.port}"
    server.stop()


def test_open_endpoints(base: str) -> None:
    assert requests.get(f"{base}/healthz", timeout=5).json() == {"alive": True}
    ready = requests.get(f"{base}/readyz", timeout=5)
    assert ready.status_code == 503 and ready.json()["ready"] is False
    assert requests.get(f"{base}/metrics", timeout=5).text == "rvm_edge_ready 0\n"


def test_metrics_need_no_token_whatever_the_scraper_sends(base: str) -> None:
    """Prometheus scrapes without credentials (the firewall decides who may connect)."""
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Cookie": "rvm_edge_token=wrong"}):
        r = requests.get(f"{base}/metrics", headers=headers, timeout=5)
        assert r.status_code == 200 and r.text == "rvm_edge_ready 0\n"
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert requests.head(f"{base}/metrics", timeout=5).status_code == 200


@pytest.mark.parametrize("path", ["/nope", "/api/", "/api/config", "/metricsx", "/healthz/x"])
def test_every_other_path_is_behind_the_token(base: str, path: str) -> None:
    """Not only the known API paths: anything but /healthz, /readyz and /metrics answers 401
    without the token, so a new endpoint cannot be left open by mistake."""
    assert requests.get(f"{base}{path}", timeout=5).status_code == 401
    assert requests.post(f"{base}{path}", timeout=5).status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert requests.get(f"{base}{path}", headers=auth, timeout=5).status_code == 404


@pytest.mark.parametrize("path", ["/api/status", "/", "/api/frame.jpg"])
def test_protected_paths_need_the_token(base: str, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        r = requests.get(f"{base}{path}", headers=headers, timeout=5)
        assert r.status_code == 401 and "only with the token" not in r.text
    ok = requests.get(f"{base}{path}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    assert ok.status_code in (200, 204)


def test_browser_login_sets_an_httponly_cookie(base: str) -> None:
    with requests.Session() as s:
        assert s.post(f"{base}/login", data={"token": "wrong"}, timeout=5).status_code == 401
        r = s.post(f"{base}/login", data={"token": TOKEN}, allow_redirects=False, timeout=5)
        assert r.status_code == 303 and "HttpOnly" in r.headers["Set-Cookie"]
        assert s.get(f"{base}/api/status", timeout=5).json() == {"secret": "only with the token"}
        assert "<canvas" in s.get(f"{base}/", timeout=5).text


def test_no_token_configured_locks_the_dashboard() -> None:
    server = HttpServer("127.0.0.1", 0, View(), None)
    server.start()
    try:
        url = f"http://127.0.0.1:{server.port}/api/status"
        assert requests.get(url, headers={"Authorization": "Bearer "}, timeout=5).status_code == 401
    finally:
        server.stop()


def test_frame_shows_the_accepted_box_in_green_and_the_mask_axis() -> None:
    image = np.full((120, 160, 3), 90, np.uint8)
    item = Detection(0, "bottle", 0.9, (50.0, 20.0, 110.0, 100.0))
    result = ItemResult(
        7,
        "test",
        0.0,
        Detections(7, (120, 160), (item,)),
        Decision(Verdict.ACCEPTED, "ok", "plastic", item, code=ReasonCode.ACCEPTED),
    )
    mask = (7, MaskGeometry(area_px=3000, fill_ratio=0.6, orientation_deg=90.0, centroid=(80.0, 60.0)))
    jpeg = annotate(image, result, mask)
    assert jpeg is not None
    out = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).astype(int)
    b, g, r = out[60, 50]  # on the box's left edge
    assert g > 150 and r < 100 and b < 100
    b, g, r = out[40, 80]  # on the vertical major axis, away from the centroid
    assert r > 180 and b < 80
    assert np.abs(out[5, 5] - 90).max() < 10  # the rest of the frame untouched


def test_serves_the_same_port_on_every_bind_address() -> None:
    """Loopback (the health gate) plus a second address (the management address in a fleet;
    127.0.0.2 here, which Linux routes to loopback): both answer, on one port, and an address
    that is not listed does not."""
    server = HttpServer(["127.0.0.1", "127.0.0.2"], 0, View(), TOKEN)
    server.start()
    try:
        port = server.port
        assert server.addresses == [("127.0.0.1", port), ("127.0.0.2", port)]
        for host in ("127.0.0.1", "127.0.0.2"):
            assert requests.get(f"http://{host}:{port}/metrics", timeout=5).status_code == 200
            assert requests.get(f"http://{host}:{port}/api/status", timeout=5).status_code == 401
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.3:{port}/healthz", timeout=5)
    finally:
        server.stop()


def test_an_address_that_cannot_be_bound_is_named_and_nothing_is_left_listening() -> None:
    with pytest.raises(OSError, match=r"cannot listen on 192\.0\.2\.1:\d+"):  # TEST-NET: not this host's
        HttpServer(["127.0.0.1", "192.0.2.1"], 0, View(), TOKEN)
    blocker = HttpServer("127.0.0.1", 0, View(), TOKEN)
    try:
        with pytest.raises(OSError, match=rf"cannot listen on 127\.0\.0\.1:{blocker.port}"):
            HttpServer(["127.0.0.2", "127.0.0.1"], blocker.port, View(), TOKEN)
        again = HttpServer("127.0.0.2", blocker.port, View(), TOKEN)  # the failed one let go of it
        again.stop()
    finally:
        blocker.stop()
