"""The lab's alert receiver answers as the real services do and records what it accepts: real HTTP
and real SMTP (smtplib) on loopback."""

from __future__ import annotations

import importlib.util
import json
import smtplib
import sys
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
import requests

SRC = Path(__file__).resolve().parents[2] / "lab" / "alert_receiver" / "rvm_alert_receiver.py"
spec = importlib.util.spec_from_file_location("rvm_alert_receiver", SRC)
assert spec and spec.loader
recv = importlib.util.module_from_spec(spec)
sys.modules["rvm_alert_receiver"] = recv
spec.loader.exec_module(recv)

SETTINGS = {
    "webhook_token": "hook-secret",
    "telegram_bot_token": "123:tg-secret",
    "smtp_username": "am",
    "smtp_password": "pw",
}


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[str, int, Path]]:
    records = tmp_path / "records.jsonl"
    recorder = recv.Recorder(records)
    http = recv.ReceiverHttpServer(("127.0.0.1", 0), recorder, SETTINGS)
    smtp = recv.ReceiverSmtpServer(("127.0.0.1", 0), recorder, SETTINGS)
    for server in (http, smtp):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{http.server_address[1]}", smtp.server_address[1], records
    http.shutdown()
    smtp.shutdown()


def records(base: str, channel: str) -> list[dict]:
    return requests.get(f"{base}/records", params={"channel": channel}, timeout=5).json()


def test_webhook_needs_the_bearer_token_and_records_the_payload(receiver: tuple[str, int, Path]) -> None:
    base, _, path = receiver
    payload = {"status": "firing", "alerts": [{"labels": {"alertname": "DeviceDown"}}]}
    assert requests.post(f"{base}/hooks/chat", json=payload, timeout=5).status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert requests.post(f"{base}/hooks/chat", json=payload, headers=wrong, timeout=5).status_code == 401
    ok = requests.post(
        f"{base}/hooks/chat", json=payload, headers={"Authorization": "Bearer hook-secret"}, timeout=5
    )
    assert ok.status_code == 200
    [rec] = records(base, "webhook")
    assert (rec["hook"], rec["payload"]) == ("chat", payload)
    assert "hook-secret" not in path.read_text()


def test_telegram_send_message_answers_like_the_bot_api(receiver: tuple[str, int, Path]) -> None:
    base, _, path = receiver
    bad = requests.post(f"{base}/bot999:wrong/sendMessage", json={"chat_id": 1, "text": "x"}, timeout=5)
    assert (bad.status_code, bad.json()) == (
        401,
        {"ok": False, "error_code": 401, "description": "Unauthorized"},
    )
    empty = requests.post(f"{base}/bot123:tg-secret/sendMessage", json={"chat_id": 5, "text": " "}, timeout=5)
    assert (empty.status_code, empty.json()["description"]) == (400, "Bad Request: message text is empty")
    sent = requests.post(
        f"{base}/bot123:tg-secret/sendMessage",
        json={"chat_id": -1002, "text": "<b>FIRING</b> DeviceDown", "parse_mode": "HTML"},
        timeout=5,
    ).json()
    assert sent["ok"] and sent["result"]["chat"] == {"id": -1002, "type": "group"}
    assert sent["result"]["from"]["is_bot"] and sent["result"]["text"] == "<b>FIRING</b> DeviceDown"
    form = requests.post(
        f"{base}/bot123:tg-secret/sendMessage", data={"chat_id": "7", "text": "hi"}, timeout=5
    )
    assert form.json()["result"]["chat"]["type"] == "private"
    assert (
        requests.get(f"{base}/bot123:tg-secret/getMe", timeout=5).json()["result"]["username"]
        == "rvm_lab_bot"
    )
    assert [(r["chat_id"], r["parse_mode"]) for r in records(base, "telegram")] == [
        (-1002, "HTML"),
        (7, None),
    ]
    assert "tg-secret" not in path.read_text()


def test_smtp_needs_auth_and_records_the_message(receiver: tuple[str, int, Path]) -> None:
    base, port, _ = receiver
    msg = EmailMessage()
    msg["Subject"] = "[FIRING:1] DeviceDown (rvm-lab-01)"
    msg["From"], msg["To"] = "am@lab", "oncall@lab"
    msg.set_content("body\n.\nwith a lone dot")
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as s:
        with pytest.raises(smtplib.SMTPSenderRefused):
            s.send_message(msg)
        with pytest.raises(smtplib.SMTPAuthenticationError):
            s.login("am", "wrong")
        s.login("am", "pw")
        s.send_message(msg)
    [rec] = records(base, "email")
    assert (rec["subject"], rec["rcpt_to"], rec["auth_user"]) == (
        "[FIRING:1] DeviceDown (rvm-lab-01)",
        ["oncall@lab"],
        "am",
    )
    assert "pw" not in json.dumps(rec)


def test_records_survive_a_restart_and_filter_by_time(receiver: tuple[str, int, Path]) -> None:
    base, _, path = receiver
    requests.post(f"{base}/hooks/x", json={}, headers={"Authorization": "Bearer hook-secret"}, timeout=5)
    [rec] = records(base, "webhook")
    again = recv.Recorder(path)
    assert again.list() == [rec]
    assert again.list(since=rec["received_at"] + 1) == []
