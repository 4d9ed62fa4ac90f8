"""Prometheus metrics: counters and histograms fed as a pipeline sink and a listener of the
recorder, gauges read at scrape time.

Gauges that mirror state (outbox depth, heartbeat age, pipeline counters) are computed by a
collector when Prometheus scrapes, so they can never drift from the source of truth.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from rvm_edge.messages import Deposit, ItemResult

if TYPE_CHECKING:
    from rvm_edge.service.recorder import Recorded

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _StateCollector(Collector):
    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self._read = read

    def collect(self) -> Iterator[Any]:
        s = self._read()
        for name, help_text, value in (
            ("frames_processed", "frames through detection and decision", s.get("frames_processed", 0)),
            (
                "frames_dropped",
                "live frames dropped because the detector was busy",
                s.get("frames_dropped", 0),
            ),
            ("frames_unreadable", "unreadable frames skipped", s.get("frames_unreadable", 0)),
            ("pipeline_errors", "pipeline stage errors", s.get("pipeline_errors", 0)),
            (
                "items_not_recorded_disk_full",
                "items not recorded because the data partition was full (intake closed)",
                s.get("not_recorded_disk_full", 0),
            ),
        ):
            c = CounterMetricFamily(f"rvm_edge_{name}", help_text)
            c.add_metric([], value)
            yield c
        for name, help_text, value in (
            ("outbox_depth", "deposits waiting to be sent", s.get("outbox_depth", 0)),
            (
                "outbox_parked",
                "deposits the platform refused (kept; see outbox status)",
                s.get("outbox_parked", 0),
            ),
            (
                "outbox_oldest_age_seconds",
                "age of the oldest unsent deposit",
                s.get("outbox_oldest_age_s") or 0,
            ),
            ("offline_pending", "offline transactions waiting for sync-offline", s.get("offline_pending", 0)),
            ("outbox_image_bytes", "bytes of images kept in the store", s.get("image_bytes", 0)),
            ("in_flight", "items between decision and durable commit", s.get("in_flight", 0)),
            ("ready", "1 when /readyz would answer 200", 1 if s.get("ready") else 0),
            (
                "heartbeat_age_seconds",
                "seconds since the last accepted heartbeat (-1: never)",
                s.get("heartbeat_age_s") if s.get("heartbeat_age_s") is not None else -1,
            ),
            (
                "platform_link_up",
                "1 when the last deposit or heartbeat exchange succeeded",
                1 if s.get("link_up") else 0,
            ),
        ):
            g = GaugeMetricFamily(f"rvm_edge_{name}", help_text)
            g.add_metric([], float(value))
            yield g
        cpu = CounterMetricFamily(
            "rvm_edge_stage_cpu_seconds",
            "CPU seconds used by each pipeline stage's own thread (inference pools count in "
            "process_cpu_seconds_total only)",
            labels=["stage"],
        )
        for stage, seconds in sorted((s.get("stage_cpu_s") or {}).items()):
            cpu.add_metric([stage], seconds)
        yield cpu
        model = s.get("model") or {}
        if model:
            i = InfoMetricFamily("rvm_edge_model", "the detector model running")
            i.add_metric([], {k: str(v) for k, v in model.items()})
            yield i


class Metrics:
    """One registry per service instance (tests build several)."""

    def __init__(self, read_state: Callable[[], dict[str, Any]], version: str) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.detections = Counter("rvm_edge_detections", "detections by class", ["class_name"], registry=r)
        self.decisions = Counter("rvm_edge_decisions", "decisions by verdict", ["verdict"], registry=r)
        self.deposits = Counter("rvm_edge_deposits_recorded", "items committed to the outbox", registry=r)
        self.platform_errors = Counter(
            "rvm_edge_platform_errors",
            "failed platform calls by endpoint and kind",
            ["endpoint", "kind"],
            registry=r,
        )
        self.stage = Histogram(
            "rvm_edge_stage_latency_seconds",
            "per-stage latency",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.started = time.time()
        ProcessCollector(registry=r)  # process_cpu_seconds_total, resident memory, open fds
        r.register(_StateCollector(read_state))
        info = InfoMetricFamily("rvm_edge_build", "version of the running service")
        info.add_metric([], {"version": version})

        class _Build(Collector):
            def collect(self) -> Iterator[Any]:
                yield info

        r.register(_Build())

    # -- pipeline sink: decisions and stage timings, for every frame -----------------------
    def on_result(self, result: ItemResult) -> None:
        self.decisions.labels(result.decision.verdict.value).inc()
        for d in result.detections.items:
            self.detections.labels(d.class_name).inc()
        self._stages(result.timings_ms)

    def on_deposit(self, deposit: Deposit) -> None:
        if deposit.segmentation is not None:
            self._stages(deposit.segmentation.timings_ms)

    # -- recorder listener: what a durable deposit cost ------------------------------------
    def recorded(self, event: Recorded) -> None:
        self.deposits.inc()
        self._stages(event.timings_ms)  # encode, commit, record

    def _stages(self, timings_ms: dict[str, float]) -> None:
        for k, v in timings_ms.items():
            self.stage.labels(k.removesuffix("_ms")).observe(v / 1e3)

    def platform_error(self, endpoint: str, kind: str) -> None:
        self.platform_errors.labels(endpoint, kind).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
