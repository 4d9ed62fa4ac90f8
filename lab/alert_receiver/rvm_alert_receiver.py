#!/usr/bin/env python3
"""LAB ONLY stand-in for the places Alertmanager notifies: a chat webhook, an SMTP server and the
Telegram Bot API. It records every notification it gets so the fleet tests can read them back.

Standard library only (the lab host needs no package index). Faithful where Alertmanager looks:
- webhook: ``POST /hooks/<name>`` with Alertmanager's JSON body, ``Authorization: Bearer <token>``
  (401 without it);
- Telegram: ``POST /bot<token>/sendMessage`` (JSON or form fields ``chat_id``, ``text``,
  ``parse_mode``) and ``/bot<token>/getMe``, answering ``{"ok": true, "result": Message}``, or
  ``{"ok": false, "error_code": 401, "description": "Unauthorized"}`` for another token and 400
  ``Bad Request: ...`` for a missing chat or text, as the Bot API does;
- SMTP: EHLO/HELO, AUTH PLAIN and LOGIN (535 for wrong credentials), MAIL, RCPT, DATA, RSET,
  NOOP, QUIT.
Records: ``GET /records?since=<unix time>&channel=<webhook|telegram|email>`` (JSON list), also
appended to a JSON-lines file. Secrets are compared, never recorded or logged.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hmac
import json
import socketserver
import sys
import threading
import time
from email import message_from_bytes
from email.header import decode_header, make_header
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

BOT_ID = 7000000001


class Recorder:
    """Keeps every notification in memory and in a JSON-lines file (appended, one per line)."""

    def __init__(self, path: Path | None) -> None:
        self._lock = threading.Lock()
        self._records: list[dict[str, Any]] = []
        self._path = path
        if path is not None and path.exists():
            for line in path.read_text().splitlines():
                if line.strip():
                    self._records.append(json.loads(line))

    def add(self, channel: str, **fields: Any) -> dict[str, Any]:
        with self._lock:
            record = {"id": len(self._records) + 1, "channel": channel, "received_at": time.time(), **fields}
            self._records.append(record)
            if self._path is not None:
                with self._path.open("a") as f:
                    f.write(json.dumps(record) + "\n")
            return record

    def list(self, since: float = 0.0, channel: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                r
                for r in self._records
                if r["received_at"] >= since and (channel is None or r["channel"] == channel)
            ]


def same(given: str, wanted: str) -> bool:
    return bool(wanted) and hmac.compare_digest(given.encode(), wanted.encode())


class HttpHandler(BaseHTTPRequestHandler):
    server: ReceiverHttpServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        # The request line holds the bot token (/bot<token>/...): log the method and status only.
        return

    def _json(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        url = urlsplit(self.path)
        if url.path == "/healthz":
            self._json(200, {"ok": True})
        elif url.path == "/records":
            q = parse_qs(url.query)
            since = float(q.get("since", ["0"])[0])
            self._json(200, self.server.recorder.list(since, q.get("channel", [None])[0]))
        elif url.path.startswith("/bot"):
            self._telegram(url.path, {})
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        url = urlsplit(self.path)
        body = self._body()
        if url.path.startswith("/hooks/"):
            self._webhook(url.path.removeprefix("/hooks/"), body)
        elif url.path.startswith("/bot"):
            ctype = self.headers.get("Content-Type", "")
            try:
                if "json" in ctype:
                    fields = json.loads(body or b"{}")
                else:
                    fields = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            except ValueError:
                self._json(
                    400, {"ok": False, "error_code": 400, "description": "Bad Request: can't parse JSON"}
                )
                return
            self._telegram(url.path, fields)
        else:
            self._json(404, {"error": "not found"})

    def _webhook(self, name: str, body: bytes) -> None:
        auth = self.headers.get("Authorization", "")
        if not same(auth.removeprefix("Bearer "), self.server.settings.get("webhook_token", "")):
            self._json(401, {"error": "bearer token required"})
            return
        try:
            payload = json.loads(body)
        except ValueError:
            self._json(400, {"error": "body is not JSON"})
            return
        self.server.recorder.add("webhook", hook=name, payload=payload)
        self._json(200, {"ok": True})

    def _telegram(self, path: str, fields: dict[str, Any]) -> None:
        token, _, method = path.removeprefix("/bot").partition("/")
        if not same(token, self.server.settings.get("telegram_bot_token", "")):
            self._json(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
            return
        bot = {"id": BOT_ID, "is_bot": True, "first_name": "rvm lab bot", "username": "rvm_lab_bot"}
        if method == "getMe":
            self._json(200, {"ok": True, "result": bot})
            return
        if method != "sendMessage":
            self._json(404, {"ok": False, "error_code": 404, "description": "Not Found"})
            return
        text = str(fields.get("text") or "")
        try:
            chat_id = int(fields.get("chat_id"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            self._json(400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"})
            return
        if not text.strip():
            self._json(
                400, {"ok": False, "error_code": 400, "description": "Bad Request: message text is empty"}
            )
            return
        record = self.server.recorder.add(
            "telegram",
            chat_id=chat_id,
            text=text,
            parse_mode=fields.get("parse_mode"),
            disable_notification=bool(fields.get("disable_notification", False)),
        )
        chat = {"id": chat_id, "type": "group" if chat_id < 0 else "private"}
        message = {
            "message_id": record["id"],
            "from": bot,
            "chat": chat,
            "date": int(record["received_at"]),
            "text": text,
        }
        self._json(200, {"ok": True, "result": message})


class ReceiverHttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], recorder: Recorder, settings: dict[str, str]) -> None:
        super().__init__(address, HttpHandler)
        self.recorder = recorder
        self.settings = settings


class SmtpHandler(socketserver.StreamRequestHandler):
    """One SMTP session (RFC 5321 subset Alertmanager uses), recording each accepted message."""

    server: ReceiverSmtpServer

    def reply(self, line: str) -> None:
        self.wfile.write((line + "\r\n").encode())

    def readline(self) -> str | None:
        raw = self.rfile.readline(65536)
        return None if not raw else raw.decode("utf-8", "replace").rstrip("\r\n")

    def handle(self) -> None:
        settings = self.server.settings
        self.reply("220 rvm-lab-smtp ESMTP ready")
        user: str | None = None
        mail_from: str | None = None
        rcpt: list[str] = []
        while (line := self.readline()) is not None:
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                self.reply("250-rvm-lab-smtp")
                self.reply("250-AUTH PLAIN LOGIN")
                self.reply("250 8BITMIME")
            elif verb == "HELO":
                self.reply("250 rvm-lab-smtp")
            elif verb == "AUTH":
                user = self._auth(arg)
                if user is None:
                    self.reply("535 5.7.8 Authentication credentials invalid")
                else:
                    self.reply("235 2.7.0 Authentication successful")
            elif verb == "MAIL":
                if settings.get("smtp_username") and user is None:
                    self.reply("530 5.7.0 Authentication required")
                    continue
                mail_from, rcpt = arg.partition(":")[2].strip().strip("<>").split(">")[0], []
                self.reply("250 OK")
            elif verb == "RCPT":
                if mail_from is None:
                    self.reply("503 5.5.1 MAIL first")
                    continue
                rcpt.append(arg.partition(":")[2].strip().strip("<>").split(">")[0])
                self.reply("250 OK")
            elif verb == "DATA":
                if not rcpt:
                    self.reply("503 5.5.1 RCPT first")
                    continue
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                data = self._data()
                msg = message_from_bytes(data)
                subject = str(make_header(decode_header(msg.get("Subject", ""))))
                self.server.recorder.add(
                    "email",
                    mail_from=mail_from,
                    rcpt_to=rcpt,
                    subject=subject,
                    auth_user=user,
                    to_header=msg.get("To"),
                    size=len(data),
                )
                self.reply("250 OK: queued")
                mail_from, rcpt = None, []
            elif verb == "RSET":
                mail_from, rcpt = None, []
                self.reply("250 OK")
            elif verb == "NOOP":
                self.reply("250 OK")
            elif verb == "QUIT":
                self.reply("221 Bye")
                return
            else:
                self.reply("502 5.5.2 Command not recognized")

    def _data(self) -> bytes:
        lines: list[bytes] = []
        while True:
            raw = self.rfile.readline(1 << 20)
            if not raw or raw in (b".\r\n", b".\n"):
                return b"".join(lines)
            lines.append(raw[1:] if raw.startswith(b"..") else raw)

    def _auth(self, arg: str) -> str | None:
        mech, _, initial = arg.partition(" ")
        mech = mech.upper()
        if mech == "PLAIN":
            if not initial:
                self.reply("334 ")
                initial = self.readline() or ""
            try:
                _, user, password = base64.b64decode(initial).decode().split("\0")
            except ValueError:
                return None
        elif mech == "LOGIN":
            self.reply("334 " + base64.b64encode(b"Username:").decode())
            user = base64.b64decode(self.readline() or "").decode()
            self.reply("334 " + base64.b64encode(b"Password:").decode())
            password = base64.b64decode(self.readline() or "").decode()
        else:
            return None
        s = self.server.settings
        ok = same(user, s.get("smtp_username", "")) and same(password, s.get("smtp_password", ""))
        return user if ok else None


class ReceiverSmtpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], recorder: Recorder, settings: dict[str, str]) -> None:
        super().__init__(address, SmtpHandler)
        self.recorder = recorder
        self.settings = settings


def load_settings(path: Path) -> dict[str, str]:
    """The secrets to expect: webhook_token, telegram_bot_token, smtp_username, smtp_password."""
    data = json.loads(path.read_text())
    unknown = set(data) - {"webhook_token", "telegram_bot_token", "smtp_username", "smtp_password"}
    if unknown:
        raise SystemExit(f"{path}: unknown keys {sorted(unknown)}")
    return {k: str(v) for k, v in data.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bind", default="127.0.0.1")
    p.add_argument("--http-port", type=int, default=9095)
    p.add_argument("--smtp-port", type=int, default=2525)
    p.add_argument("--config", type=Path, required=True, help="JSON file with the secrets to expect")
    p.add_argument("--records", type=Path, help="JSON-lines file every notification is appended to")
    args = p.parse_args(argv)
    settings = load_settings(args.config)
    recorder = Recorder(args.records)
    smtp = ReceiverSmtpServer((args.bind, args.smtp_port), recorder, settings)
    threading.Thread(target=smtp.serve_forever, daemon=True).start()
    http = ReceiverHttpServer((args.bind, args.http_port), recorder, settings)
    print(
        f"rvm-alert-receiver: http {args.bind}:{args.http_port}, smtp {args.bind}:{args.smtp_port}",
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        http.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
