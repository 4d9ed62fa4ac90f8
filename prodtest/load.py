"""Load on the devices (their cameras, as configured) and on the platform API (simulated machines).

Device figures come from each device's /metrics (stage histograms, process CPU and RSS, pipeline
counters) scraped at the start, every ``sample_s`` and at the end; readiness is sampled alongside;
deposits per second are what the platform simulator received in the window.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import requests

from prodtest.figures import Figure, Plot, Results, bucket_delta, growth_ratio, histogram_quantile, percentile
from prodtest.lab import ROOT, Lab, Metrics
from prodtest.profile import Profile
from prodtest.progress import STOP, say

STAGE = "Load: devices"
API_STAGE = "Load: platform API"
E2E_TARGET_S = 2.0
CPU_TARGET = 70.0
RSS_TARGET_MB = 1024.0
RSS_FLAT = 0.10  # our budget for "flat": the last third's median at most 10 % above the first third's
ERROR_TARGET = 0.1
AVAIL_TARGET = 99.9
API_TARGET_MS = 500.0


def received_since(
    lab: Lab, machine_id: int, since: float, until: float | None = None
) -> list[dict[str, Any]]:
    """The simulator's deposits of one machine received in [since, until] (its clock: second resolution)."""
    out = []
    for d in lab.sim("GET", f"/deposits?machine_id={machine_id}"):
        at = datetime.fromisoformat(d["received_at"]).timestamp()
        if at >= int(since) and (until is None or at <= until + 1):
            out.append(d)
    return out


def run_device_load(lab: Lab, prof: Profile, results: Results) -> float:
    """Returns the fleet's deposit rate (per second) at the platform: the "normal" rate faults scale."""
    nproc = {d: lab.nproc(d) for d in lab.devices}
    machines = lab.machine_ids()
    first = {d: lab.scrape(d) for d in lab.devices}
    t0 = time.time()
    samples: dict[str, list[Metrics]] = {d: [first[d]] for d in lab.devices}
    ready: dict[str, list[tuple[float, bool]]] = {d: [] for d in lab.devices}
    say(f"load: measuring {len(lab.devices)} devices for {prof.load_s:.0f} s (nproc {nproc})")
    for _ in range(int(prof.load_s / prof.sample_s) + 1):
        if STOP.wait(max(0.0, min(prof.sample_s, t0 + prof.load_s - time.time()))):
            raise KeyboardInterrupt
        for d in lab.devices:
            ready[d].append((time.time() - t0, lab.readyz(d)))
            try:
                samples[d].append(lab.scrape(d))
            except requests.RequestException as exc:
                say(f"load: {d} /metrics failed: {exc}")
        last = {d: samples[d][-1] for d in lab.devices}
        say(
            f"load: {time.time() - t0:5.0f}/{prof.load_s:.0f} s  "
            + "  ".join(
                f"{d} rss {last[d].value('process_resident_memory_bytes') / 2**20:.0f} MB "
                f"frames {last[d].value('rvm_edge_frames_processed_total') - first[d].value('rvm_edge_frames_processed_total'):.0f}"
                for d in lab.devices
            )
        )
        if time.time() >= t0 + prof.load_s:
            break
    t1 = time.time()
    per_device: dict[str, Any] = {}
    fleet_buckets: dict[str, dict[float, float]] = {}
    cpu_plot = Plot("Device CPU (rvm-edge process)", "time (s)", "CPU (% of the device's cores)", CPU_TARGET)
    rss_plot = Plot("Device memory (rvm-edge RSS)", "time (s)", "RSS (MiB)", RSS_TARGET_MB)
    received_total = 0
    for d in lab.devices:
        s = samples[d]
        a, b = s[0], s[-1]
        cpu_pts = [
            (
                (y.at - t0),
                (y.value("process_cpu_seconds_total") - x.value("process_cpu_seconds_total"))
                / (y.at - x.at)
                / nproc[d]
                * 100,
            )
            for x, y in itertools.pairwise(s)
            if y.at > x.at
        ]
        rss = [(m.at - t0, m.value("process_resident_memory_bytes") / 2**20) for m in s]
        cpu_plot.lines[d], rss_plot.lines[d] = cpu_pts, rss
        frames = b.value("rvm_edge_frames_processed_total") - a.value("rvm_edge_frames_processed_total")
        errors = (b.value("rvm_edge_pipeline_errors_total") - a.value("rvm_edge_pipeline_errors_total")) + (
            b.value("rvm_edge_frames_unreadable_total") - a.value("rvm_edge_frames_unreadable_total")
        )
        stages = {}
        for stage in b.label_values("rvm_edge_stage_latency_seconds_bucket", "stage"):
            delta = bucket_delta(
                b.buckets("rvm_edge_stage_latency_seconds", stage=stage),
                a.buckets("rvm_edge_stage_latency_seconds", stage=stage),
            )
            acc = fleet_buckets.setdefault(stage, {})
            for le, c in delta.items():
                acc[le] = acc.get(le, 0.0) + c
            stages[stage] = {f"p{q}": histogram_quantile(q / 100, delta) for q in (50, 95, 99)}
        got = received_since(lab, machines[d], t0, t1) if d in machines else []
        received_total += len(got)
        per_device[d] = {
            "nproc": nproc[d],
            "seconds": b.at - a.at,
            "frames": frames,
            "frames_per_s": frames / (b.at - a.at) if b.at > a.at else None,
            "processing_errors": errors,
            "error_rate_pct": errors / frames * 100 if frames else None,
            "dropped_frames": b.value("rvm_edge_frames_dropped_total")
            - a.value("rvm_edge_frames_dropped_total"),
            "deposits_recorded": b.value("rvm_edge_deposits_recorded_total")
            - a.value("rvm_edge_deposits_recorded_total"),
            "deposits_received_by_platform": len(got),
            "cpu_avg_pct": (b.value("process_cpu_seconds_total") - a.value("process_cpu_seconds_total"))
            / (b.at - a.at)
            / nproc[d]
            * 100
            if b.at > a.at
            else None,
            "cpu_peak_pct": max((p[1] for p in cpu_pts), default=None),
            "rss_peak_mb": max(p[1] for p in rss),
            "rss_growth": growth_ratio([p[1] for p in rss]),
            "ready_samples": len(ready[d]),
            "ready_ok": sum(1 for _, ok in ready[d] if ok),
            "stages_s": stages,
        }
    duration = t1 - t0
    fleet_stages = {
        st: {f"p{q}": histogram_quantile(q / 100, bk) for q in (50, 95, 99)}
        for st, bk in fleet_buckets.items()
    }
    prom_up = lab.prom(f'avg_over_time(up{{job="rvm_edge"}}[{max(60, int(duration))}s])')
    results.raw[STAGE] = {
        "t0": t0,
        "t1": t1,
        "devices": per_device,
        "fleet_stages_s": fleet_stages,
        "prometheus_up": prom_up,
    }
    results.plots["device-cpu"], results.plots["device-rss"] = cpu_plot, rss_plot
    lat_plot = Plot(
        "Per-stage latency, fleet (p50/p95/p99)",
        "stage",
        "latency (s)",
        E2E_TARGET_S,
        "2 s per image",
        kind="bar",
    )
    for st, qs in sorted(fleet_stages.items()):
        lat_plot.lines[st] = [(q, qs[f"p{q}"] or 0.0) for q in (50, 95, 99)]
    results.plots["stage-latency"] = lat_plot
    vals = list(per_device.values())
    frames = sum(v["frames"] for v in vals)
    errors = sum(v["processing_errors"] for v in vals)
    e2e = fleet_stages.get("e2e", {})
    ready_n = sum(v["ready_samples"] for v in vals)
    prom_avail = [
        float(r["value"][1]) * 100 for r in prom_up or [] if r["metric"].get("device") in lab.devices
    ]
    rate = received_total / duration if duration > 0 else 0.0
    results.add(
        Figure("load.e2e_p95_s", "per image (e2e) p95", e2e.get("p95"), "s", E2E_TARGET_S, stage=STAGE),
        Figure("load.e2e_p99_s", "per image (e2e) p99", e2e.get("p99"), "s", E2E_TARGET_S, stage=STAGE),
        Figure(
            "load.model_p99_s", "model stage p99", fleet_stages.get("model", {}).get("p99"), "s", stage=STAGE
        ),
        Figure(
            "load.cpu_avg_pct",
            "CPU average, worst device",
            max(v["cpu_avg_pct"] or 0 for v in vals),
            "%",
            CPU_TARGET,
            stage=STAGE,
            note="rvm-edge process, % of the device's cores",
        ),
        Figure(
            "load.cpu_peak_pct",
            "CPU peak (one sample), worst device",
            max(v["cpu_peak_pct"] or 0 for v in vals),
            "%",
            stage=STAGE,
            note=f"{prof.sample_s:g} s samples",
        ),
        Figure(
            "load.rss_peak_mb",
            "RSS peak, worst device",
            max(v["rss_peak_mb"] for v in vals),
            "MiB",
            RSS_TARGET_MB,
            stage=STAGE,
        ),
        Figure(
            "load.rss_growth_pct",
            "RSS growth (last third vs first third), worst device",
            max((v["rss_growth"] or 0) for v in vals) * 100,
            "%",
            RSS_FLAT * 100,
            stage=STAGE,
            note="our budget for flat",
        ),
        Figure(
            "load.error_rate_pct",
            "processing error rate",
            errors / frames * 100 if frames else None,
            "%",
            ERROR_TARGET,
            stage=STAGE,
            note=f"{errors:.0f} errors in {frames:.0f} frames",
        ),
        Figure(
            "load.frames_per_s",
            "frames processed per second, fleet",
            frames / duration,
            "frames/s",
            stage=STAGE,
        ),
        Figure(
            "load.deposits_per_s",
            "deposits per second received by the platform",
            rate,
            "deposits/s",
            stage=STAGE,
        ),
        Figure(
            "load.ready_pct",
            "readiness (/readyz 200), sampled",
            sum(v["ready_ok"] for v in vals) / ready_n * 100 if ready_n else None,
            "%",
            AVAIL_TARGET,
            ">=",
            stage=STAGE,
        ),
        Figure(
            "load.prom_up_pct",
            "availability by the monitoring server (up), worst device",
            min(prom_avail) if prom_avail else None,
            "%",
            AVAIL_TARGET,
            ">=",
            stage=STAGE,
            note="Prometheus avg_over_time(up)",
        ),
    )
    return rate


def _sim_machines(lab: Lab, n: int) -> list[dict[str, Any]]:
    """prodtest-sim-NN machines, reused across runs (created once)."""
    have = {
        m["name"]: m
        for m in lab.sim("GET", "/machines")
        if str(m.get("name", "")).startswith("prodtest-sim-")
    }
    out = []
    for i in range(1, n + 1):
        name = f"prodtest-sim-{i:03d}"
        out.append(have.get(name) or lab.sim("POST", "/machines", {"name": name}))
    return out


def sample_image() -> bytes:
    return sorted((ROOT / "lab" / "frames").glob("*.jpg"))[0].read_bytes()


def offer_deposits(
    lab: Lab,
    machines: list[dict[str, Any]],
    per_machine: int,
    rate_per_s: float | None = None,
    deadline_s: float = 600,
) -> tuple[list[float], list[str], int]:
    """Every machine deposits ``per_machine`` items concurrently (one thread each), optionally paced
    to ``rate_per_s`` in all. Returns (latencies in ms of the 201s, their deposit_ids, failures)."""
    image = sample_image()
    url = f"{lab.sim_url}/api/v1/edge/deposit"
    end = time.monotonic() + deadline_s
    interval = len(machines) / rate_per_s if rate_per_s else 0.0

    def one(machine: dict[str, Any]) -> tuple[list[float], list[str], int]:
        lat, ids, failed = [], [], 0
        with requests.Session() as s:
            s.headers["X-RVM-API-KEY"] = machine["api_key"]
            next_at = time.monotonic()
            for i in range(per_machine):
                if STOP.is_set() or time.monotonic() > end:
                    break
                if interval and STOP.wait(max(0.0, next_at - time.monotonic())):
                    break
                next_at += interval
                did = str(uuid.uuid4())
                data = {"deposit_id": did, "hardware_id": machine["name"], "source": "prodtest", "i": i}
                t = time.perf_counter()
                try:
                    r = s.post(
                        url,
                        data={"status": "ACCEPTED", "data": json.dumps(data)},
                        files={"image": ("deposit.jpg", image, "image/jpeg")},
                        timeout=10,
                    )
                    ok = r.status_code == 201
                except requests.RequestException:
                    ok = False
                if ok:
                    lat.append((time.perf_counter() - t) * 1e3)
                    ids.append(did)
                else:
                    failed += 1
        return lat, ids, failed

    with ThreadPoolExecutor(max_workers=len(machines)) as pool:
        parts = list(pool.map(one, machines))
    return [x for p in parts for x in p[0]], [x for p in parts for x in p[1]], sum(p[2] for p in parts)


def consistency(lab: Lab, machines: list[dict[str, Any]], sent: list[str]) -> tuple[int, int]:
    from prodtest.figures import duplicates_and_missing

    mine = set(sent)
    received = [
        d["deposit_id"]
        for m in machines
        for d in lab.sim("GET", f"/deposits?machine_id={m['id']}")
        if d["deposit_id"] in mine
    ]
    return duplicates_and_missing(sent, received)


def run_api_load(lab: Lab, prof: Profile, results: Results) -> None:
    machines = _sim_machines(lab, prof.api_machines)
    say(f"api: {len(machines)} simulated machines x {prof.api_deposits} deposits, concurrently")
    t0 = time.monotonic()
    lat, ids, failed = offer_deposits(lab, machines, prof.api_deposits)
    elapsed = time.monotonic() - t0
    dup, missing = consistency(lab, machines, ids)
    say(f"api: {len(lat)} ok, {failed} failed in {elapsed:.1f} s; duplicates {dup}, missing {missing}")
    results.raw[API_STAGE] = {
        "machines": len(machines),
        "latencies_ms": lat,
        "failed": failed,
        "seconds": elapsed,
    }
    results.plots["api-latency"] = Plot(
        "Platform API deposit latency (client side)",
        "percentile",
        "latency (ms)",
        API_TARGET_MS,
        "500 ms",
        lines={"deposit": [(q, percentile(lat, q) or 0.0) for q in (50, 90, 95, 99, 99.9)]},
    )
    results.add(
        Figure("api.p50_ms", "deposit p50", percentile(lat, 50), "ms", API_TARGET_MS, stage=API_STAGE),
        Figure("api.p95_ms", "deposit p95", percentile(lat, 95), "ms", API_TARGET_MS, stage=API_STAGE),
        Figure("api.p99_ms", "deposit p99", percentile(lat, 99), "ms", API_TARGET_MS, stage=API_STAGE),
        Figure(
            "api.rate",
            "deposits per second (all machines)",
            len(lat) / elapsed if elapsed else None,
            "deposits/s",
            stage=API_STAGE,
            note=f"{len(machines)} concurrent machines",
        ),
        Figure("api.failed", "failed deposits", float(failed), "count", 0, stage=API_STAGE),
        Figure("api.duplicates", "deposit_ids stored twice", float(dup), "count", 0, stage=API_STAGE),
        Figure(
            "api.missing",
            "deposit_ids answered 201 but not stored",
            float(missing),
            "count",
            0,
            stage=API_STAGE,
        ),
    )
