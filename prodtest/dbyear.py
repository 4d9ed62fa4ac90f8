"""The device database at a year's worth of deposits: insert and outbox-drain rates, and the cost
of the outbox status query that /readyz and /metrics run on every call.

Runs in app/.venv (it imports rvm-edge's store and sender, and the platform simulator for the
drain, on loopback), as a subprocess of the suite: ``app/.venv/bin/python -m prodtest.dbyear
--days N --per-day N --inserts N`` prints one JSON object. Seeded rows are sent deposits whose
images were already pruned (as the retention leaves them); the measured inserts carry real JPEGs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rvm_edge.service.outbox import Sender, backoff_from
from rvm_edge.service.platform import PlatformClient, PlatformSettings
from rvm_edge.service.store import Store

ROOT = Path(__file__).resolve().parent.parent


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q / 100 * len(s)))]


def seed(store: Store, days: int, per_day: int) -> float:
    """Bulk-insert ``days * per_day`` sent deposits spread over the past ``days``; returns seconds."""
    now, n = time.time(), days * per_day
    t0 = time.perf_counter()
    conn = store._conn  # one bulk transaction: seeding is set-up, not the figure
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO deposits (deposit_id, created_at, frame_index, status, material, reason, data, state,"
        " attempts, sent_at) VALUES (?, ?, ?, 'ACCEPTED', 'PET', 'ok', ?, 'sent', 1, ?)",
        (
            (f"seed-{i}", now - (n - i) * 86400 / per_day, i, json.dumps({"deposit_id": f"seed-{i}"}), now)
            for i in range(n)
        ),
    )
    conn.execute("COMMIT")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="prodtest.dbyear")
    p.add_argument("--days", type=int, required=True)
    p.add_argument("--per-day", type=int, required=True)
    p.add_argument("--inserts", type=int, required=True)
    args = p.parse_args(argv)
    from rvm_platform_sim.testing import start_simulator

    image = sorted((ROOT / "lab" / "frames").glob("*.jpg"))[0].read_bytes()
    out: dict[str, Any] = {"days": args.days, "per_day": args.per_day, "seeded": args.days * args.per_day}
    with tempfile.TemporaryDirectory(prefix="prodtest-db-") as tmp:
        store = Store(Path(tmp) / "data")
        store.start_checkpointer()
        out["seed_s"] = seed(store, args.days, args.per_day)
        status_ms = []
        for _ in range(50):
            t = time.perf_counter()
            store.status()
            status_ms.append((time.perf_counter() - t) * 1e3)
        commit_ms = []
        t0 = time.perf_counter()
        for i in range(args.inserts):
            t = time.perf_counter()
            store.record(f"m-{i}", "ACCEPTED", "ok", {"deposit_id": f"m-{i}"}, image, "image/jpeg")
            commit_ms.append((time.perf_counter() - t) * 1e3)
        insert_s = time.perf_counter() - t0
        with start_simulator(Path(tmp)) as sim:
            key = sim.admin("POST", "/machines", {"name": "prodtest-db"})["api_key"]
            client = PlatformClient(PlatformSettings(sim.edge_base_url), lambda: key)
            sender = Sender(store, client, backoff_from(0.01, 0.1))
            t0 = time.perf_counter()
            for _ in range(args.inserts + 10):  # bounded: one step per deposit, a few spare
                if not sender.step():
                    break
            drain_s = time.perf_counter() - t0
            got = [d["deposit_id"] for d in sim.admin("GET", "/deposits")]
            client.close()
        db_bytes = sum(f.stat().st_size for f in (Path(tmp) / "data").iterdir())
        store.close()
    out.update(
        db_mb=db_bytes / 1e6,
        status_ms_p50=pct(status_ms, 50),
        status_ms_p99=pct(status_ms, 99),
        inserts=args.inserts,
        insert_per_s=args.inserts / insert_s,
        commit_ms_p50=pct(commit_ms, 50),
        commit_ms_p99=pct(commit_ms, 99),
        drain_per_s=len(got) / drain_s if drain_s else None,
        drained_in_order_once=got == [f"m-{i}" for i in range(args.inserts)],
    )
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
