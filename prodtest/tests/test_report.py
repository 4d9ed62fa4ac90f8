"""The report as a reader sees it: every figure beside its target, previous value and verdict;
plots written as PNGs with the target line; raw data linked."""

from __future__ import annotations

import json

from prodtest.figures import Figure, Plot, Results
from prodtest.report import render_markdown, write_report


def _results() -> Results:
    r = Results(profile="quick", started="2026-12-06T01:00:00+00:00", finished="2026-12-06T01:05:00+00:00")
    r.stages = {"load": "done in 60 s", "faults": "interrupted"}
    r.add(
        Figure("load.e2e_p99_s", "per image (e2e) p99", 0.4, "s", 2.0, stage="Load: devices"),
        Figure("load.cpu_avg_pct", "CPU average", 85.0, "%", 70.0, stage="Load: devices"),
        Figure("faults.lost", "lost", None, "count", 0, "==", stage="Platform faults"),
    )
    r.raw["Load: devices"] = {"samples": [1, 2, 3]}
    r.plots["device-cpu"] = Plot(
        "Device CPU", "time (s)", "CPU (%)", 70.0, lines={"rvm-lab-01": [(0, 10), (5, 20)]}
    )
    r.plots["empty"] = Plot("Nothing measured", "time (s)", "x", None)
    return r


def test_each_figure_row_has_target_previous_and_verdict():
    prev = {
        "started": "2026-12-05T01:00:00+00:00",
        "profile": "quick",
        "figures": [{"key": "load.e2e_p99_s", "value": 0.5}],
    }
    md = render_markdown(_results(), prev, {"device-cpu": "device-cpu.png"})
    row = next(line for line in md.splitlines() if line.startswith("| per image (e2e) p99"))
    assert "| 0.4 | s | <= 2 s | 0.5 (-20 %) | ✅ pass |" in row
    cpu = next(line for line in md.splitlines() if line.startswith("| CPU average"))
    assert "❌ miss" in cpu and "| — |" in cpu  # no previous value for it
    assert "— not measured" in md
    assert "1 pass, 1 miss, 1 not measured" in md
    assert "| faults | interrupted |" in md
    assert "![Device CPU](device-cpu.png)" in md


def test_write_report_writes_plots_raw_json_and_links(tmp_path):
    report = write_report(_results(), tmp_path, None)
    md = report.read_text()
    assert (tmp_path / "device-cpu.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "empty.png").exists()  # a plot without data is left out, not drawn empty
    assert json.loads((tmp_path / "raw" / "load-devices.json").read_text()) == {"samples": [1, 2, 3]}
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [f["verdict"] for f in saved["figures"]] == ["pass", "miss", "not measured"]
    assert saved["plots"]["device-cpu"]["target"] == 70.0
    assert "[raw/load-devices.json](raw/load-devices.json)" in md and "[results.json](results.json)" in md
    assert "previous run: none" in md
