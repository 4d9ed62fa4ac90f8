"""Ask the fleet's Prometheus what state each device is in.

The fleet CLI shows one row per device (up, ready, version, p95 inference, outbox, backup age,
firing alerts) and an operator's alert history. Both come from the monitoring server's Prometheus
HTTP API (``/api/v1/query``, ``/api/v1/query_range``), using the recording rules and the ALERTS
series of roles/monitoring_server, so the CLI and the dashboards agree on every figure.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import requests


class PrometheusError(RuntimeError):
    """The API refused a query (bad PromQL, timeout) or could not be reached; the message says which."""


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    points: list[tuple[float, float]]


@dataclass
class DeviceStatus:
    """One row of the fleet status table; None where Prometheus has no figure."""

    device: str
    site: str = ""
    version: str = ""
    up: bool = False
    ready: bool = False
    inference_p95_s: float | None = None
    outbox_depth: float | None = None
    outbox_lag_s: float | None = None
    backup_age_s: float | None = None
    alerts: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AlertInterval:
    """An alert that was firing from ``start`` to ``end`` (Unix seconds; end = last sample seen)."""

    alertname: str
    labels: dict[str, str]
    start: float
    end: float


# Queries behind each column; all keyed by the target label `device`.
STATUS_QUERIES: dict[str, str] = {
    "up": 'up{job="rvm_edge"}',
    "ready": "rvm:device_available",
    "inference_p95_s": "rvm:inference_latency_seconds:p95_5m",
    "outbox_depth": "rvm:outbox_depth",
    "outbox_lag_s": "rvm:outbox_lag_seconds",
    "backup_age_s": "time() - max by (device) (rvm_backup_last_success_timestamp_seconds)",
}


class PrometheusClient:
    """A thin, typed wrapper over the Prometheus HTTP API."""

    def __init__(
        self, base_url: str, timeout_s: float = 10.0, session: requests.Session | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.session = session or requests.Session()

    def _get(self, path: str, params: dict[str, Any]) -> Any:
        try:
            r = self.session.get(f"{self.base_url}{path}", params=params, timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise PrometheusError(f"{self.base_url}: {exc.__class__.__name__}: {exc}") from exc
        try:
            body = r.json()
        except ValueError as exc:
            raise PrometheusError(f"{self.base_url}{path}: HTTP {r.status_code}, not JSON") from exc
        if body.get("status") != "success":
            raise PrometheusError(
                f"{self.base_url}{path}: {body.get('errorType', 'error')}: {body.get('error', '?')} "
                f"(query: {params.get('query')})"
            )
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[Sample]:
        params: dict[str, Any] = {"query": expr}
        if at is not None:
            params["time"] = at
        data = self._get("/api/v1/query", params)
        if data["resultType"] == "scalar":
            return [Sample({}, float(data["result"][1]))]
        if data["resultType"] != "vector":
            raise PrometheusError(f"query {expr!r} returned a {data['resultType']}, not an instant vector")
        return [Sample(r["metric"], float(r["value"][1])) for r in data["result"]]

    def query_range(self, expr: str, start: float, end: float, step_s: float) -> list[Series]:
        data = self._get("/api/v1/query_range", {"query": expr, "start": start, "end": end, "step": step_s})
        return [Series(r["metric"], [(float(t), float(v)) for t, v in r["values"]]) for r in data["result"]]

    def device_status(self) -> list[DeviceStatus]:
        """One row per device Prometheus scrapes rvm-edge on, sorted by site and device."""
        rows: dict[str, DeviceStatus] = {}
        for s in self.query(STATUS_QUERIES["up"]):
            device = s.labels.get("device", s.labels.get("instance", "?"))
            rows[device] = DeviceStatus(
                device, s.labels.get("site", ""), s.labels.get("version", ""), up=s.value == 1
            )
        for column, expr in STATUS_QUERIES.items():
            if column == "up":
                continue
            for s in self.query(expr):
                row = rows.get(s.labels.get("device", ""))
                if row is None or math.isnan(s.value):
                    continue
                setattr(row, column, s.value == 1 if column == "ready" else s.value)
        for s in self.query('ALERTS{alertstate="firing"}'):
            row = rows.get(s.labels.get("device", ""))
            if row is not None:
                row.alerts.append(s.labels["alertname"])
        for row in rows.values():
            row.alerts.sort()
        return sorted(rows.values(), key=lambda r: (r.site, r.device))

    def alert_history(self, start: float, end: float, step_s: float = 15.0) -> list[AlertInterval]:
        """What fired, when and for how long: the intervals of ALERTS{alertstate="firing"}.

        Prometheus writes ALERTS at every rule evaluation while an alert fires, so a gap of more
        than two steps between samples ends one interval and starts the next.
        """
        out: list[AlertInterval] = []
        for series in self.query_range('ALERTS{alertstate="firing"}', start, end, step_s):
            labels = {k: v for k, v in series.labels.items() if k not in ("__name__", "alertstate")}
            out.extend(
                AlertInterval(labels.get("alertname", "?"), labels, a, b)
                for a, b in intervals((t for t, _ in series.points), step_s)
            )
        return sorted(out, key=lambda a: (a.start, a.alertname))


def intervals(times: Iterable[float], step_s: float) -> list[tuple[float, float]]:
    """Join sample times into [start, end] runs; a gap over two steps starts a new run."""
    runs: list[tuple[float, float]] = []
    for t in times:
        if runs and t - runs[-1][1] <= 2 * step_s:
            runs[-1] = (runs[-1][0], t)
        else:
            runs.append((t, t))
    return runs


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value * 1e3:.1f} ms"
    if unit == "age":
        return f"{value / 60:.0f} min" if value >= 60 else f"{value:.0f} s"
    return f"{value:.0f}"


def status_table(rows: list[DeviceStatus]) -> str:
    """A plain-text table for a terminal, one device per line."""
    head = ("SITE", "DEVICE", "VERSION", "UP", "READY", "P95 INFER", "OUTBOX", "LAG", "BACKUP AGE", "ALERTS")
    lines = [head] + [
        (
            r.site,
            r.device,
            r.version or "-",
            "yes" if r.up else "NO",
            "yes" if r.ready else "NO",
            _fmt(r.inference_p95_s, "ms"),
            _fmt(r.outbox_depth),
            _fmt(r.outbox_lag_s, "age"),
            _fmt(r.backup_age_s, "age"),
            ",".join(r.alerts) or "-",
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )
