"""Reading rvm-edge's /metrics page: the values the load stage turns into figures."""

from __future__ import annotations

import math

from prodtest.lab import Metrics

PAGE = """# HELP rvm_edge_stage_latency_seconds per-stage latency
# TYPE rvm_edge_stage_latency_seconds histogram
rvm_edge_stage_latency_seconds_bucket{le="0.1",stage="e2e"} 3.0
rvm_edge_stage_latency_seconds_bucket{le="+Inf",stage="e2e"} 4.0
rvm_edge_stage_latency_seconds_bucket{le="0.1",stage="model"} 4.0
rvm_edge_stage_latency_seconds_bucket{le="+Inf",stage="model"} 4.0
rvm_edge_stage_latency_seconds_count{stage="e2e"} 4.0
process_resident_memory_bytes 1.2345e+08
rvm_edge_platform_errors_total{endpoint="deposit",kind="down"} 2.0
rvm_edge_platform_errors_total{endpoint="heartbeat",kind="down"} 1.0
rvm_edge_model_info{name="yolo11n",path="a\\"b"} 1.0
"""


def test_values_buckets_and_labels():
    m = Metrics.parse(PAGE, at=10.0)
    assert m.value("process_resident_memory_bytes") == 1.2345e8
    assert m.value("rvm_edge_platform_errors_total") == 3.0  # summed over label sets
    assert m.value("rvm_edge_platform_errors_total", endpoint="deposit") == 2.0
    assert m.buckets("rvm_edge_stage_latency_seconds", stage="e2e") == {0.1: 3.0, math.inf: 4.0}
    assert m.label_values("rvm_edge_stage_latency_seconds_bucket", "stage") == ["e2e", "model"]
    assert m.value("rvm_edge_model_info", name="yolo11n") == 1.0
    assert m.value("absent_metric") == 0.0
