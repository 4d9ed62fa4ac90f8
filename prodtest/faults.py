"""Platform faults against the devices' real traffic: 10x the normal deposit rate, injected
latency, a 5xx storm, an outage and its backlog drain; then consistency by deposit_id.

Each fault is set through the simulator's admin API and cleared in a ``finally`` (the outage
also expires by itself), so Ctrl-C or a crash never leaves the platform broken.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import requests

from prodtest.figures import Figure, Plot, Results, duplicates_and_missing, percentile, resent_and_duplicated
from prodtest.lab import Lab, LabError, wait_until
from prodtest.load import API_TARGET_MS, _sim_machines, consistency, offer_deposits
from prodtest.profile import Profile
from prodtest.progress import STOP, say

STAGE = "Platform faults"
RECOVERY_TARGET_S = 30.0
POLL_S = 2.0


def clear_all(lab: Lab) -> None:
    lab.sim("DELETE", "/faults")
    lab.sim("DELETE", "/outage")


class Watch:
    """Outbox depth and platform link of every device over the whole stage (for the plot)."""

    def __init__(self, lab: Lab) -> None:
        self.lab, self.t0 = lab, time.time()
        self.depth: dict[str, list[tuple[float, float]]] = {d: [] for d in lab.devices}

    def sample(self) -> dict[str, tuple[float, bool]]:
        out = {}
        for d in self.lab.devices:
            try:
                m = self.lab.scrape(d)
            except requests.RequestException:
                continue
            depth = m.value("rvm_edge_outbox_depth")
            self.depth[d].append((m.at - self.t0, depth))
            out[d] = (depth, m.value("rvm_edge_platform_link_up") == 1)
        return out

    def hold(self, seconds: float) -> float:
        """Sample every POLL_S for ``seconds``; returns the highest depth seen on one device."""
        end, peak = time.monotonic() + seconds, 0.0
        for _ in range(int(seconds / POLL_S) + 2):
            peak = max([peak, *(v[0] for v in self.sample().values())])
            left = end - time.monotonic()
            if left <= 0:
                break
            if STOP.wait(min(POLL_S, left)):
                raise KeyboardInterrupt
        return peak

    def recover(self, threshold: float, timeout: float) -> tuple[float | None, float | None]:
        """Seconds until every device's link is up, and until every outbox is at most ``threshold``."""
        t0 = time.monotonic()
        link_s = drained_s = None
        for _ in range(int(timeout / POLL_S) + 2):
            now = self.sample()
            el = time.monotonic() - t0
            if link_s is None and len(now) == len(self.lab.devices) and all(up for _, up in now.values()):
                link_s = el
            if (
                drained_s is None
                and len(now) == len(self.lab.devices)
                and all(d <= threshold for d, _ in now.values())
            ):
                drained_s = el
            if (link_s is not None and drained_s is not None) or el > timeout:
                break
            if STOP.wait(POLL_S):
                raise KeyboardInterrupt
        return link_s, drained_s


def run_platform_faults(lab: Lab, prof: Profile, results: Results, normal_rate: float) -> None:
    clear_all(lab)
    watch = Watch(lab)
    since = time.time()
    base = watch.hold(min(10.0, prof.fault_s))
    threshold = max(2.0, base)
    say(f"faults: steady outbox depth at most {base:.0f}; 'drained' means every outbox <= {threshold:.0f}")
    raw: dict[str, Any] = {"steady_depth": base, "threshold": threshold, "phases": {}}
    results.raw[STAGE] = raw

    def phase(
        name: str, title: str, apply: Callable[[], None], seconds: float, clear: Callable[[], None]
    ) -> None:
        say(f"faults: {title} for {seconds:.0f} s")
        try:
            apply()
            peak = watch.hold(seconds)
        finally:
            clear()
        link_s, drained_s = watch.recover(threshold, prof.drain_timeout_s)
        say(
            f"faults: {title} cleared; link up after {link_s} s, drained after {drained_s} s (peak depth {peak:.0f})"
        )
        raw["phases"][name] = {
            "seconds": seconds,
            "peak_depth": peak,
            "link_s": link_s,
            "drained_s": drained_s,
        }
        results.add(
            Figure(f"faults.{name}.peak_depth", f"{title}: peak outbox depth", peak, "deposits", stage=STAGE),
            Figure(
                f"faults.{name}.link_s",
                f"{title}: link back up after clearing",
                link_s,
                "s",
                RECOVERY_TARGET_S,
                stage=STAGE,
            ),
            Figure(
                f"faults.{name}.drained_s",
                f"{title}: backlog drained after clearing",
                drained_s,
                "s",
                stage=STAGE,
                note=f"every outbox <= {threshold:.0f}",
            ),
        )

    # 10x the fleet's normal deposit rate, from simulated machines, while the devices keep depositing.
    rate = 10 * max(normal_rate, 0.1)
    machines = _sim_machines(lab, prof.api_machines)
    per_machine = max(1, math.ceil(rate * prof.fault_s / len(machines)))
    offered: dict[str, Any] = {}
    with ThreadPoolExecutor(max_workers=1) as pool:
        fut: list[Future[Any]] = []

        def start_rate() -> None:
            fut.append(pool.submit(offer_deposits, lab, machines, per_machine, rate, prof.fault_s + 30))

        def end_rate() -> None:
            if fut:
                lat, ids, failed = fut[0].result(timeout=prof.fault_s + 60)
                offered.update(lat=lat, ids=ids, failed=failed)

        phase("rate10x", f"10x rate ({rate:.1f} deposits/s)", start_rate, prof.fault_s, end_rate)
    if offered:
        dup, missing = consistency(lab, machines, offered["ids"])
        raw["phases"]["rate10x"].update(
            latencies_ms=offered["lat"], failed=offered["failed"], dup=dup, missing=missing
        )
        results.add(
            Figure(
                "faults.rate10x.p99_ms",
                "10x rate: deposit p99 (client side)",
                percentile(offered["lat"], 99),
                "ms",
                API_TARGET_MS,
                stage=STAGE,
            ),
            Figure(
                "faults.rate10x.failed",
                "10x rate: failed deposits",
                float(offered["failed"]),
                "count",
                0,
                stage=STAGE,
            ),
        )
    phase(
        "latency",
        "injected latency 2000±500 ms",
        lambda: lab.sim(
            "PUT",
            "/faults",
            {"latency_ms": 2000, "latency_jitter_ms": 500, "endpoints": ["deposit", "heartbeat"]},
        ),
        prof.fault_s,
        lambda: lab.sim("DELETE", "/faults"),
    )
    phase(
        "storm",
        "5xx storm (80 % of deposits and heartbeats answer 500)",
        lambda: lab.sim(
            "PUT", "/faults", {"error_rate": 0.8, "error_status": 500, "endpoints": ["deposit", "heartbeat"]}
        ),
        prof.fault_s,
        lambda: lab.sim("DELETE", "/faults"),
    )
    phase(
        "outage",
        f"platform outage ({prof.outage_s:.0f} s, 503)",
        lambda: lab.sim("POST", "/outage", {"seconds": prof.outage_s + 30, "mode": "503"}),
        prof.outage_s,
        lambda: lab.sim("DELETE", "/outage"),
    )
    per_device = device_consistency(lab, lab.devices, since, prof)
    raw["consistency"] = per_device
    results.add(*consistency_figures(per_device, STAGE, "faults"))
    results.plots["faults-outbox"] = Plot(
        "Device outbox depth through the platform faults",
        "time (s)",
        "deposits waiting",
        threshold,
        "drained (steady state)",
        lines=watch.depth,
    )


def device_consistency(
    lab: Lab, devices: list[str], since: float, prof: Profile
) -> dict[str, dict[str, int]]:
    """What each device recorded since ``since`` against what the platform stored, by deposit_id,
    once its outbox has drained (bounded wait; what is still pending is counted, not judged)."""
    wait_until(
        "the outboxes to drain before the consistency check",
        lambda: all(lab.scrape(d).value("rvm_edge_outbox_depth") <= 2 for d in devices) or None,
        prof.drain_timeout_s,
        POLL_S,
        STOP,
    )
    ids = lab.machine_ids()
    per_device = {}
    for d in devices:
        if d not in ids:
            raise LabError(f"{d} never handshook with the simulator: no machine record to compare against")
        recorded = lab.device_deposits(d, since)
        got = [
            x["deposit_id"]
            for x in lab.sim("GET", f"/deposits?machine_id={ids[d]}")
            if x["deposit_id"] in recorded
        ]
        sent = [k for k, (st, _) in recorded.items() if st == "sent"]
        _, missing = duplicates_and_missing(sent, got)
        resent, dup = resent_and_duplicated(got, {k: attempts for k, (_, attempts) in recorded.items()})
        per_device[d] = {
            "recorded": len(recorded),
            "sent": len(sent),
            "pending": sum(1 for st, _ in recorded.values() if st == "pending"),
            "parked": sum(1 for st, _ in recorded.values() if st == "parked"),
            "duplicates": dup,
            "resent": resent,
            "lost": missing,
        }
    return per_device


def consistency_figures(per_device: dict[str, dict[str, int]], stage: str, prefix: str) -> list[Figure]:
    tot = {
        k: sum(v[k] for v in per_device.values())
        for k in ("recorded", "pending", "parked", "duplicates", "resent", "lost")
    }
    bad = tot["lost"] + tot["duplicates"] + tot["parked"]
    say(
        f"{prefix}: {tot['recorded']} deposits recorded: {tot['lost']} lost, {tot['duplicates']} duplicated, "
        f"{tot['resent']} resent after an unanswered attempt (allowed), "
        f"{tot['parked']} parked, {tot['pending']} still pending"
    )
    return [
        Figure(
            f"{prefix}.recorded",
            "deposits the devices recorded in the stage",
            float(tot["recorded"]),
            "count",
            stage=stage,
            note=f"{tot['pending']} still pending at the check",
        ),
        Figure(
            f"{prefix}.lost",
            "sent but not stored by the platform",
            float(tot["lost"]),
            "count",
            0,
            "==",
            stage=stage,
        ),
        Figure(
            f"{prefix}.duplicated",
            "stored more often than the device tried (by deposit_id)",
            float(tot["duplicates"]),
            "count",
            0,
            "==",
            stage=stage,
        ),
        Figure(
            f"{prefix}.resent",
            "stored twice: sent again after an attempt whose reply never came (the contract allows it)",
            float(tot["resent"]),
            "count",
            stage=stage,
        ),
        Figure(
            f"{prefix}.parked",
            "refused by the platform (parked on the device)",
            float(tot["parked"]),
            "count",
            0,
            "==",
            stage=stage,
        ),
        Figure(
            f"{prefix}.consistency_pct",
            "data consistency",
            (1 - bad / tot["recorded"]) * 100 if tot["recorded"] else None,
            "%",
            100.0,
            ">=",
            stage=stage,
        ),
    ]
