"""Service benchmark: ``benchmarks/service_bench.py [--json FILE]`` prints one JSON report
(``make -C app bench-service``). It starts the lab's platform simulator, so it lives outside the
app (the device's wheel never carries it) and runs in app/.venv, where the simulator is installed.

Measures the issue's targets on this machine, never inside timed tests:

- ``deposit``: time from a finished item to its durable commit (``Store.record``: one fsynced
  WAL transaction with a 640x480 JPEG), and the JPEG encode before it, p50/p99 over N items
  arriving at ``--rate`` per second (and, for scale, one bare fsync on the same disk);
- ``drain``: deposits per second from a full outbox into a local platform simulator (real HTTP,
  its own process), in order, one at a time as the sender does;
- ``healthz``: ``/healthz`` latency while every core is busy (one busy process per core) and a
  Python thread in the server's process competes for the GIL, as the pipeline's threads do.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import requests

from rvm_edge.service.deposit import encode_image
from rvm_edge.service.outbox import Sender, backoff_from
from rvm_edge.service.platform import PlatformClient, PlatformSettings
from rvm_edge.service.server import HttpServer, favour_responsiveness, lower_worker_priority
from rvm_edge.service.store import Store


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q / 100 * len(s)))], 3)


def frame(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((480, 640, 3), 90, np.uint8)
    cv2.rectangle(img, (260, 120), (380, 380), (40, 160, 60), -1)
    return cv2.add(img, rng.integers(0, 20, img.shape, dtype=np.uint8))


def disk_fsync_ms(workdir: Path, n: int = 200) -> list[float]:
    """The floor under any power-cut-safe commit: one 64 KiB write + fsync on the same disk."""
    path = workdir / "fsync.probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    times = []
    try:
        for _ in range(n):
            os.write(fd, b"\0" * 65536)
            t0 = time.perf_counter()
            os.fsync(fd)
            times.append((time.perf_counter() - t0) * 1e3)
    finally:
        os.close(fd)
        path.unlink()
    return times


def bench_deposit(n: int, workdir: Path, rate: float) -> dict[str, Any]:
    """Items arrive at ``rate`` per second (an intake takes one item every second or two; 20/s
    is well above any intake), so the store's checkpoints happen between items as in service."""
    fsync = disk_fsync_ms(workdir)
    store = Store(workdir / "deposit")
    store.start_checkpointer()
    frames = [frame(i) for i in range(8)]
    encode, commit = [], []
    pause = threading.Event()
    next_at = time.monotonic()
    for i in range(n):
        next_at += 1.0 / rate
        pause.wait(max(0.0, next_at - time.monotonic()))
        t0 = time.perf_counter()
        jpeg = encode_image(frames[i % len(frames)], 5 * 1024 * 1024)
        t1 = time.perf_counter()
        store.record(f"bench-{i}", "ACCEPTED", "ok", {"deposit_id": f"bench-{i}", "i": i}, jpeg, "image/jpeg")
        t2 = time.perf_counter()
        encode.append((t1 - t0) * 1e3)
        commit.append((t2 - t1) * 1e3)
    store.close()
    return {
        "items": n,
        "items_per_s": rate,
        "image_bytes": len(jpeg),
        "commit_ms_p50": pct(commit, 50),
        "commit_ms_p99": pct(commit, 99),
        "commit_ms_max": round(max(commit), 3),
        "encode_ms_p50": pct(encode, 50),
        "encode_ms_p99": pct(encode, 99),
        "target_commit_ms_p99": 5.0,
        "disk_fsync_ms_p50": pct(fsync, 50),
        "disk_fsync_ms_p99": pct(fsync, 99),
    }


def bench_drain(n: int, workdir: Path) -> dict[str, Any]:
    try:
        from rvm_platform_sim.testing import start_simulator
    except ImportError:
        return {"skipped": "platform simulator not installed (make -C app test-service installs it)"}
    simdir = workdir / "sim"
    simdir.mkdir()
    with start_simulator(simdir) as sim:
        key = sim.admin("POST", "/machines", {"name": "bench"})["api_key"]
        store = Store(workdir / "drain")
        store.start_checkpointer()
        jpeg = encode_image(frame(0), 5 * 1024 * 1024)
        for i in range(n):
            store.record(f"drain-{i}", "ACCEPTED", "ok", {"deposit_id": f"drain-{i}"}, jpeg, "image/jpeg")
        client = PlatformClient(PlatformSettings(sim.edge_base_url), lambda: key)
        sender = Sender(store, client, backoff_from(0.01, 0.1))
        t0 = time.perf_counter()
        while sender.step():
            pass
        elapsed = time.perf_counter() - t0
        received = [d["deposit_id"] for d in sim.admin("GET", "/deposits")]
        store.close()
        client.close()
    return {
        "deposits": n,
        "image_bytes": len(jpeg),
        "seconds": round(elapsed, 3),
        "deposits_per_s": round(n / elapsed, 1),
        "in_order_exactly_once": received == [f"drain-{i}" for i in range(n)],
        "target_per_s": 50,
    }


def _burn(stop: Any) -> None:
    """One core's worth of inference-like work, at the priority the service gives its workers."""
    lower_worker_priority()
    a = np.random.default_rng(0).random((256, 256))
    while not stop.is_set():
        a = a @ a
        a /= np.abs(a).max() + 1e-9


class _View:
    def readiness(self) -> tuple[bool, dict[str, Any]]:
        return True, {"ready": True}

    def status(self) -> dict[str, Any]:
        return {}

    def metrics(self) -> bytes:
        return b""

    def last_frame_jpeg(self) -> bytes | None:
        return None


def _serve_busy(port_q: Any, stop: Any) -> None:
    """The server under test, in its own process with a thread that keeps the GIL busy."""
    server = HttpServer("127.0.0.1", 0, _View(), None)
    favour_responsiveness()  # as the service does
    server.start()
    lower_worker_priority()  # as the service does before it loads models and starts the pipeline
    halt = threading.Event()

    def gil_hog() -> None:  # pure-Python work in the server's process, like the pipeline's glue code
        x = 0
        while not halt.is_set():
            for i in range(10_000):
                x += i * i

    threading.Thread(target=gil_hog, daemon=True).start()
    port_q.put(server.port)
    stop.wait()
    halt.set()
    server.stop()


def bench_healthz(n: int) -> dict[str, Any]:
    """New connection per request, from another process (as curl, systemd or Prometheus would)."""
    stop = multiprocessing.Event()
    port_q: Any = multiprocessing.Queue()
    server = multiprocessing.Process(target=_serve_busy, args=(port_q, stop))
    server.start()
    url = f"http://127.0.0.1:{port_q.get(timeout=30)}/healthz"
    burners = [multiprocessing.Process(target=_burn, args=(stop,)) for _ in range(os.cpu_count() or 2)]
    for b in burners:
        b.start()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = requests.get(url, timeout=5)
        times.append((time.perf_counter() - t0) * 1e3)
        assert r.status_code == 200
    stop.set()
    for p in [*burners, server]:
        p.join()
    return {
        "requests": n,
        "busy_processes": len(burners),
        "gil_busy_thread_in_server": True,
        "ms_p50": pct(times, 50),
        "ms_p99": pct(times, 99),
        "ms_max": round(max(times), 3),
        "mean_ms": round(statistics.mean(times), 3),
        "target_ms": 50,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/service_bench.py", description=__doc__)
    p.add_argument("--deposits", type=int, default=400)
    p.add_argument("--rate", type=float, default=20.0, help="items per second offered to the store")
    p.add_argument("--drain", type=int, default=300)
    p.add_argument("--healthz", type=int, default=500)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--dir", type=Path, default=None, help="work on this disk (default: a temp dir)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rvm-edge-bench-", dir=args.dir) as tmp:
        work = Path(tmp)
        report = {
            "cpu_count": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "deposit": bench_deposit(args.deposits, work, args.rate),
            "drain": bench_drain(args.drain, work),
            "healthz_under_load": bench_healthz(args.healthz),
        }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
