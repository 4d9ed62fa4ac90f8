"""Fleet scale across runs (prodtest.growth): kept runs are joined newest-first per size, failed runs
and other camera rates are left out, every figure names the run behind each size, and the command
line rebuilds the table and plots from what is kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from prodtest.figures import Results
from prodtest.growth import RUNS_DIR, KeptRunError, add_across_runs, add_run_dirs, keep, load, newest
from prodtest.scale import STAGE

ROOT = Path(__file__).resolve().parents[2]


def raw(runs: list[tuple[str, int, int, float, int]], fps: float = 0.2) -> dict[str, object]:
    return {
        "version": "0.1.0.post1",
        "device_fps": fps,
        "readyz": {"rvm-scale-01": [[0.0, 1.0]]},  # a series: not kept
        "runs": [
            {"op": op, "size": n, "rtt_ms": rtt, "seconds": s, "rc": rc, "hosts": {"rvm-scale-01": {}}}
            for op, n, rtt, s, rc in runs
        ],
    }


def test_a_kept_run_holds_its_timings_and_not_its_sample_series(tmp_path: Path) -> None:
    path = keep(raw([("converge", 3, 0, 100.0, 0)]), "2026-12-07T20:09:00+00:00", tmp_path)
    record = json.loads(path.read_text())
    assert path.name == "2026-12-07T20-09-00-00-00.json"
    assert record["runs"] == [{"op": "converge", "size": 3, "rtt_ms": 0, "seconds": 100.0, "rc": 0}]
    assert "readyz" not in record


def test_the_newest_successful_run_at_each_size_counts_and_the_slope_spans_runs(tmp_path: Path) -> None:
    kept = tmp_path / RUNS_DIR
    keep(
        raw([("converge", 3, 0, 100.0, 0), ("nochange", 3, 0, 5.0, 0)]), "2026-12-07T10:00:00+00:00", tmp_path
    )
    keep(raw([("converge", 3, 0, 120.0, 0)]), "2026-12-07T12:00:00+00:00", kept)  # newer at n=3
    # n=20: the converge failed (rc 2) and is not a cost; the no-change converge counts
    keep(
        raw([("converge", 20, 0, 999.0, 2), ("nochange", 20, 0, 22.0, 0)]),
        "2026-12-07T16:00:00+00:00",
        tmp_path,
    )
    keep(raw([("converge", 20, 0, 1.0, 0)], fps=2.0), "2026-12-07T18:00:00+00:00", kept)  # other rate
    best = newest(load(kept), 0.2)
    assert best[("converge", 0, 3)].seconds == 120.0
    assert ("converge", 0, 20) not in best
    results = Results(profile="quick", started="2026-12-07T23:00:00+00:00")
    results.raw[STAGE] = raw([("converge", 20, 0, 1480.0, 0)])
    add_across_runs(results, tmp_path)  # keeps this run beside the others
    best = newest(load(kept), 0.2)
    assert best[("converge", 0, 20)].seconds == 1480.0
    by_key = {f.key: f for f in results.figures}
    assert by_key["scale.growth.converge.rtt0"].value == pytest.approx((1480.0 - 120.0) / 17)
    assert "n=3: 120.0 s (2026-12-07T12:00:00+00:00)" in by_key["scale.growth.converge.rtt0"].note
    assert results.plots["scale-growth-nochange"].target == 30.0


def test_one_size_is_named_as_needing_two(tmp_path: Path) -> None:
    results = Results(profile="quick", started="2026-12-07T20:09:00+00:00")
    results.raw[STAGE] = raw([("rollback", 3, 100, 40.0, 0)])
    add_across_runs(results, tmp_path)
    (fig,) = [f for f in results.figures if f.key == "scale.growth.rollback.rtt100"]
    assert fig.value is None and fig.verdict == "not measured" and "needs two sizes" in fig.note


def test_a_run_dir_without_scale_data_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(json.dumps({"started": "2026-12-07T20:09:00+00:00"}))
    with pytest.raises(SystemExit, match=r"no fleet-scale\.json there"):
        add_run_dirs([tmp_path], tmp_path / RUNS_DIR)


def test_a_stray_file_among_the_kept_runs_is_named_and_costs_only_the_across_runs_part(
    tmp_path: Path,
) -> None:
    (tmp_path / RUNS_DIR).mkdir()
    (tmp_path / RUNS_DIR / "notes.json").write_text("[]")
    with pytest.raises(KeptRunError, match=r"notes\.json: not a kept scale run"):
        load(tmp_path / RUNS_DIR)
    results = Results(profile="quick", started="2026-12-07T20:09:00+00:00")
    results.raw[STAGE] = raw([("rollback", 3, 0, 40.0, 0)])
    add_across_runs(results, tmp_path)  # the run's own report goes on without the joined figures
    assert not results.figures and not results.plots
    assert (tmp_path / RUNS_DIR / "2026-12-07T20-09-00-00-00.json").exists()  # this run still kept
    proc = subprocess.run([sys.executable, "-m", "prodtest.growth"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PRODTEST_OUT": str(tmp_path)}, timeout=120)  # fmt: skip
    assert proc.returncode == 1 and "notes.json: not a kept scale run" in proc.stderr


def test_the_command_keeps_earlier_run_dirs_and_writes_the_table_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "out"
    for started, runs in (
        ("2026-12-07T10:00:00+00:00", [("deploy", 3, 100, 80.0, 0)]),
        ("2026-12-07T16:00:00+00:00", [("deploy", 20, 100, 980.0, 0)]),
    ):
        d = tmp_path / started[:13]
        (d / "raw").mkdir(parents=True)
        (d / "results.json").write_text(json.dumps({"started": started}))
        (d / "raw" / "fleet-scale.json").write_text(json.dumps(raw(runs)))
    proc = subprocess.run(
        [sys.executable, "-m", "prodtest.growth", "--add", *(str(p) for p in sorted(tmp_path.glob("2026*")))],
        cwd=ROOT, env={**os.environ, "PRODTEST_OUT": str(out)}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    table = (out / "scale-growth.md").read_text()
    assert "| deploy | 100 ms | 80.0 s [1] | 980.0 s [2] | 52.9 s |" in table
    assert "[1] 2026-12-07T10:00:00+00:00; [2] 2026-12-07T16:00:00+00:00" in table
    assert (out / "scale-growth-deploy.png").stat().st_size > 1000
    assert not (out / "scale-growth-converge.png").exists()  # nothing measured, no empty plot
