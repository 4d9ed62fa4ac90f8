"""``rvm-edge version | check-config FILE | run --config FILE | db version`` with the real app's exit codes.

Why a stub: the role's scenario must prove the unit, the credentials and the health check work
under the sandbox, which needs a process that speaks sd_notify and serves /readyz. It reads the
same config sections and secrets the real service does, so a role mistake (an unreadable file, a
missing credential, a read-only data directory) fails here as it would there.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import socket
import stat
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from rvm_edge import __version__

EXIT_INVALID = 2
SECTIONS = {"profile", "device", "source", "models", "decision", "platform", "storage", "server", "logging"}


def problems(doc: Any) -> list[str]:
    """The checks of the real check-config that the role can get wrong."""
    if not isinstance(doc, dict):
        return ["the top level must be a mapping"]
    out = [f"{key}: unknown section" for key in sorted(set(doc) - SECTIONS)]
    if doc.get("profile", "prod") not in ("dev", "staging", "prod"):
        out.append(f"profile: expected dev, staging or prod, got {doc.get('profile')!r}")
    if not (doc.get("device") or {}).get("id"):
        out.append("device.id: required")
    if not (doc.get("models") or {}).get("manifest"):
        out.append("models.manifest: required")
    port = (doc.get("server") or {}).get("port", 8080)
    if not isinstance(port, int) or not 0 <= port <= 65535:
        out.append(f"server.port: expected 0-65535, got {port!r}")
    return out


def load(path: Path) -> dict[str, Any]:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        print(f"rvm-edge: {path}: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_INVALID) from None
    found = problems(doc)
    for problem in found:
        print(f"rvm-edge: {path}: {problem}", file=sys.stderr)
    if found:
        raise SystemExit(EXIT_INVALID)
    return doc


def secret(template: str, key: str) -> str:
    path = Path(os.path.expandvars(template))
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SystemExit(f"rvm-edge: {key}: cannot read {path}: {exc.strerror}") from None
    if not value:
        raise SystemExit(f"rvm-edge: {key}: {path} is empty")
    return value


def notify(message: str) -> None:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message.encode(), address)


class State:
    def __init__(self) -> None:
        self.frames = 0
        self.stop = threading.Event()


def frames(state: State, source: dict[str, Any]) -> None:
    """Read the folder source frame by frame (the real pipeline would detect on each)."""
    folder = Path(source.get("path") or "")
    delay = 1.0 / float(source.get("fps") or 5)
    while not state.stop.is_set():
        files = sorted(p for p in folder.glob("*") if p.is_file()) if folder.is_dir() else []
        if not files:
            state.stop.wait(delay)
            continue
        for path in files:
            path.read_bytes()
            state.frames += 1
            if state.stop.wait(delay):
                return
        if not source.get("loop", False):
            return


# Where the sandbox probe tries to create a file: the data directory (the one place the unit makes
# writable), a directory the scenario makes world-writable (so only the read-only mount can stop the
# write, not file modes), and the system directories ProtectSystem=strict covers.
PROBE_WRITE_OUTSIDE = ("/srv/rvm-sandbox-open", "/etc", "/opt/rvm-edge", "/usr/local", "/var/lib")
PROBE_HOME = "/home"
PROBE_TMP = "/tmp"


def _errno_name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, str(exc.errno))


def _try_write(directory: str) -> str:
    target = Path(directory) / f".rvm-sandbox-probe-{os.getpid()}"
    try:
        target.write_text("probe\n", encoding="utf-8")
    except OSError as exc:
        return _errno_name(exc)
    target.unlink()
    return "ok"


def _try_list(directory: str) -> list[str] | str:
    try:
        return sorted(os.listdir(directory))
    except OSError as exc:
        return _errno_name(exc)


def _try_syscall(call: Any) -> str:
    try:
        call()
    except OSError as exc:
        return _errno_name(exc)
    return "ok"


def _device_nodes() -> list[dict[str, Any]]:
    """Every character and block node under /dev as this process sees it, and whether it opens."""
    nodes = []
    for root, _dirs, files in os.walk("/dev"):
        for name in files:
            path = os.path.join(root, name)
            try:
                info = os.lstat(path)
            except OSError:
                continue
            if not (stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)):
                continue
            try:
                os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY))
                opened = "ok"
            except OSError as exc:
                opened = _errno_name(exc)
            kind = "char" if stat.S_ISCHR(info.st_mode) else "block"
            nodes.append(
                {
                    "path": path,
                    "kind": kind,
                    "major": os.major(info.st_rdev),
                    "minor": os.minor(info.st_rdev),
                    "open": opened,
                }
            )
    return nodes


def sandbox_probe(data_dir: Path) -> dict[str, Any]:
    """What the unit's sandbox leaves this very process: run inside the service, so its mount
    namespace, credentials, capability sets and seccomp filter are the ones under test (a probe
    started beside the service with nsenter would have to rebuild them and could get one wrong).
    Stub only: the real app has no such endpoint."""
    status = dict(
        line.split(":\t", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":\t" in line
    )
    return {
        "pid": os.getpid(),
        "uid": os.getuid(),
        "write": {str(data_dir): _try_write(str(data_dir))}
        | {path: _try_write(path) for path in PROBE_WRITE_OUTSIDE},
        "home": _try_list(PROBE_HOME),
        "tmp": _try_list(PROBE_TMP),
        "status": {
            key: status.get(key, "").strip()
            for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")
        },
        # setuid to the uid it already has is allowed to any process: only the seccomp filter
        # (~@privileged) refuses it. chroot also needs CAP_SYS_CHROOT, which it must not have.
        "syscalls": {
            "setuid(own uid)": _try_syscall(lambda: os.setuid(os.getuid())),
            "chroot(/)": _try_syscall(lambda: os.chroot("/")),
        },
        "devices": _device_nodes(),
    }


def serve(state: State, bind: str | list[str], port: int, data_dir: Path) -> list[ThreadingHTTPServer]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/sandbox":
                self._json(200, sandbox_probe(data_dir))
            elif self.path == "/healthz":
                self._json(200, {"alive": True, "version": __version__})
            elif self.path == "/readyz":
                ready = state.frames > 0
                body = {
                    "ready": ready,
                    "checks": {"frames": "ok" if ready else "no frame yet"},
                    "frames_processed": state.frames,
                    "in_flight": 0,
                    "version": __version__,
                }
                self._json(200 if ready else 503, body)
            else:
                self._json(404, {"error": "not found"})

        def _json(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: Any) -> None:
            return

    servers = [
        ThreadingHTTPServer((address, port), Handler)
        for address in ([bind] if isinstance(bind, str) else bind)
    ]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    return servers


def run(config: Path) -> int:
    doc = load(config)
    platform = doc.get("platform") or {}
    server_cfg = doc.get("server") or {}
    if platform.get("base_url"):
        secret(platform.get("api_key_file", "${CREDENTIALS_DIRECTORY}/api-key"), "platform.api_key_file")
    secret(server_cfg.get("token_file", "${CREDENTIALS_DIRECTORY}/api-token"), "server.token_file")
    data_dir = Path((doc.get("storage") or {}).get("data_dir", "/var/lib/rvm-edge"))
    (data_dir / "stub-state.json").write_text(json.dumps({"version": __version__, "pid": os.getpid()}))
    state = State()
    models = Path(str((doc.get("models") or {}).get("manifest", "")))
    try:
        broken = bool(json.loads(models.read_text(encoding="utf-8")).get("stub_never_ready"))
    except (OSError, ValueError):
        broken = False
    signal.signal(signal.SIGTERM, lambda *_: state.stop.set())
    servers = serve(state, server_cfg.get("bind", "127.0.0.1"), int(server_cfg.get("port", 8080)), data_dir)
    if broken:
        # A release the scenario marks broken: it starts but never processes a frame (never ready).
        print(
            json.dumps({"event": "models", "error": "stub_never_ready set in the model manifest"}), flush=True
        )
    else:
        threading.Thread(target=frames, args=(state, doc.get("source") or {}), daemon=True).start()
    notify(f"READY=1\nSTATUS=stub {__version__} serving")
    interval = int(os.environ.get("WATCHDOG_USEC", "0")) / 2e6
    print(json.dumps({"event": "started", "version": __version__}), flush=True)
    while not state.stop.wait(interval or 1.0):
        if interval:
            notify("WATCHDOG=1")
    notify("STOPPING=1")
    for server in servers:
        server.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rvm-edge")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version")
    check = sub.add_parser("check-config")
    check.add_argument("file", type=Path)
    runner = sub.add_parser("run")
    runner.add_argument("--config", type=Path, default=Path("/etc/rvm-edge/config.yml"))
    db = sub.add_parser("db").add_subparsers(dest="db_command", required=True).add_parser("version")
    db.add_argument("--config", type=Path, default=Path("/etc/rvm-edge/config.yml"))
    args = parser.parse_args(argv)
    if args.command == "db":
        # The stub keeps no database: the role's data step then has nothing to migrate or snapshot.
        load(args.config)
        print(json.dumps({"supported": 2, "database": None, "path": None}))
        return 0
    if args.command == "version":
        print(__version__)
        return 0
    if args.command == "check-config":
        load(args.file)
        print(f"{args.file}: ok")
        return 0
    return run(args.config)


if __name__ == "__main__":
    sys.exit(main())
