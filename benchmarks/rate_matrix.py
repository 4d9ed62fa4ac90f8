"""Issue 17's figures: ``rvm-edge bench --rate`` over a matrix of rates and backends, repeated.

One ``rvm-edge bench --rate`` run measures the service's pipeline at one rate. The development
machine is shared (several engineers, 2 vCPUs), so a single run is noise: this runs every
configuration ``--repeats`` times, round-robin (a load spike then hits every configuration, not
one), and reports the median and the range of each figure. CPU is process CPU time (user +
system of every thread) per wall second, which a busy neighbour inflates far less than wall-clock
latency; the load average before each run is kept beside it.

Writes ``runs/<config>-<n>.json`` (each run's own report), ``summary.json``, ``summary.md`` (the
table docs/benchmarks.md quotes) and ``summary.png`` (CPU % of a core per configuration, with the
5 % budget line) into ``--out``, and prints ``summary.json``.

    app/.venv/bin/python benchmarks/rate_matrix.py --frames out/bench/frames --out out/bench/rate
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BUDGET_PCT = 5.0  # issue 17: <= 5 % of one core at 2 fps, SAM2 off


@dataclass(frozen=True)
class Config:
    """One line of the matrix: what ``rvm-edge bench --rate`` is given."""

    name: str
    rate: float
    backend: str = "onnxruntime"
    threads: int = 1
    model: str | None = None
    sam2: bool = False
    precision: str | None = None  # OpenVINO's inference precision; None: the service's default
    extra: tuple[str, ...] = field(default_factory=tuple)

    def argv(self, frames: Path, duration: float, out: Path) -> list[str]:
        args = [
            str(frames),
            "--rate",
            f"{self.rate:g}",
            "--duration",
            f"{duration:g}",
            "--backend",
            self.backend,
            "--threads",
            str(self.threads),
            "--json",
            str(out),
        ]
        if self.model:
            args += ["--model", self.model]
        if self.precision:
            args += ["--precision", self.precision]
        if not self.sam2:
            args.append("--no-segment")
        return args + list(self.extra)


INT8 = "rvm-lab-yolo11n-320-int8"
MATRICES: dict[str, list[Config]] = {
    # SAM2 off: the default (one inference thread) at 1/2/5 fps on both CPU backends, the old
    # default (one thread per core) and spinning at 2 fps, and the INT8 variant at 2 fps
    "detector": [
        Config("ort-1fps", 1),
        Config("ort-2fps", 2),
        Config("ort-5fps", 5),
        Config("ort-2fps-threads0", 2, threads=0),
        Config("ort-2fps-threads0-spin", 2, threads=0, extra=("--allow-spinning",)),
        Config("ov-1fps", 1, "openvino"),
        Config("ov-2fps", 2, "openvino"),
        Config("ov-5fps", 5, "openvino"),
        Config("ov-2fps-threads0", 2, "openvino", threads=0),
        Config("ort-int8-2fps", 2, model=INT8),
        Config("ov-int8-2fps", 2, "openvino", model=INT8),
    ],
    # SAM2 on (ONNX Runtime encoder, the config's default backend): detector one thread
    "sam2": [
        Config("ort-2fps-sam2", 2, sam2=True, extra=("--sam2-backend", "onnxruntime")),
        Config("ort-int8-2fps-sam2", 2, model=INT8, sam2=True, extra=("--sam2-backend", "onnxruntime")),
    ],
    # the FP32 file on OpenVINO at f32 and at bf16 (the same mAP50, see docs/benchmarks.md), beside
    # ONNX Runtime: each precision named, so the rows do not depend on this CPU's default
    "bf16": [
        Config("ov-f32-2fps", 2, "openvino", precision="f32"),
        Config("ov-bf16-2fps", 2, "openvino", precision="bf16"),
        Config("ort-2fps", 2),
    ],
    # SAM2 on with the bf16 detector: is "the rest" (everything but SAM2) under 5 % now
    "bf16-sam2": [
        Config(
            "ov-bf16-2fps-sam2",
            2,
            "openvino",
            sam2=True,
            precision="bf16",
            extra=("--sam2-backend", "onnxruntime"),
        ),
        Config(
            "ov-f32-2fps-sam2",
            2,
            "openvino",
            sam2=True,
            precision="f32",
            extra=("--sam2-backend", "onnxruntime"),
        ),
    ],
}

FIGURES = ("cpu_total", "cpu_user", "cpu_system", "cpu_ms_per_item", "wakeups_per_s", "idle_cpu", "rss_mb")


def figures(report: dict[str, Any]) -> dict[str, float]:
    """The figures one run contributes to the summary."""
    cpu = report["cpu_pct_of_one_core"]
    out = {
        "cpu_total": cpu["total"],
        "cpu_user": cpu["user"],
        "cpu_system": cpu["system"],
        "cpu_ms_per_item": report["cpu_ms_per_item"],
        "wakeups_per_s": report["wakeups_per_s"],
        "idle_cpu": report["idle"]["cpu_pct_of_one_core"],
        "rss_mb": report["rss_mb"],
        "model_p50_ms": report["latency_ms"].get("model", {}).get("p50") or 0.0,
    }
    sam2 = report.get("sam2_cpu")
    if sam2:  # SAM2's own: its thread and its pool (the only unattributed CPU with a one-thread detector)
        own = report["cpu_pct_per_stage_thread"].get("segment", 0.0) + report["cpu_pct_unattributed"]
        out["cpu_sam2_own"] = round(own, 2)
        out["cpu_beyond_sam2"] = round(cpu["total"] - own, 2)
        out["sam2_cpu_s_per_item_alone"] = sam2["cpu_s_per_item_alone"]
        out["sam2_items"] = sam2["items_segmented"]
    return out


def summarize(name: str, config: Config, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and range of every figure over the runs of one configuration."""
    per_run = [figures(r) for r in runs]
    keys = sorted({k for f in per_run for k in f})
    return {
        "config": name,
        "rate_fps": config.rate,
        "backend": config.backend,
        # what the detector really ran at (OpenVINO keeps f32 where the CPU cannot do the hint)
        "precision": sorted({str(r["backend"].get("precision", "")) for r in runs} - {""}),
        "threads": config.threads,
        "model": config.model or "rvm-lab-yolo11n-320 (fp32)",
        "sam2": config.sam2,
        "spinning": "--allow-spinning" in config.extra,
        "runs": len(runs),
        "slower_than_asked_runs": sum(bool(r["slower_than_asked"]) for r in runs),
        "median": {k: round(statistics.median(f[k] for f in per_run if k in f), 2) for k in keys},
        "range": {
            k: [min(f[k] for f in per_run if k in f), max(f[k] for f in per_run if k in f)] for k in keys
        },
        "load_avg_1m": [r["_load_avg_1m"] for r in runs],
    }


def table(rows: list[dict[str, Any]]) -> str:
    """The markdown table of medians (range of the CPU % in brackets)."""
    head = (
        "| config | rate | backend | detector threads | model | CPU % of one core, median (range) | user / system | "
        "CPU ms per item | wake-ups/s | idle CPU % | RSS MB | model p50 ms | runs |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        m, rg = r["median"], r["range"]
        cpu = f"{m['cpu_total']:.2f} ({rg['cpu_total'][0]:.2f}-{rg['cpu_total'][1]:.2f})"
        if "cpu_beyond_sam2" in m:
            cpu += f"; SAM2's own {m['cpu_sam2_own']:.2f}, the rest {m['cpu_beyond_sam2']:.2f}"
        spin = ", spinning" if r["spinning"] else ""
        spin += "".join(f" {p}" for p in r.get("precision", []))
        lines.append(
            f"| {r['config']} | {r['rate_fps']:g} fps | {r['backend']}{spin} | {r['threads'] or 'per core'} | "
            f"{'INT8' if 'int8' in r['model'] else 'FP32'}{' + SAM2' if r['sam2'] else ''} | {cpu} | "
            f"{m['cpu_user']:.2f} / {m['cpu_system']:.2f} | {m['cpu_ms_per_item']:.1f} | "
            f"{m['wakeups_per_s']:.0f} | {m['idle_cpu']:.2f} | {m['rss_mb']:.0f} | {m['model_p50_ms']:.1f} | "
            f"{r['runs']} |"
        )
    return head + "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], out: Path) -> None:
    """CPU % of one core per configuration (median, range as error bar), the budget as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["config"] for r in rows]
    med = [r["median"]["cpu_total"] for r in rows]
    lo = [m - r["range"]["cpu_total"][0] for m, r in zip(med, rows, strict=True)]
    hi = [r["range"]["cpu_total"][1] - m for m, r in zip(med, rows, strict=True)]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(rows)), 4.5))
    ax.bar(names, med, yerr=[lo, hi], capsize=3)
    ax.axhline(BUDGET_PCT, color="red", linestyle="--", label="budget at 2 fps (5 %)")
    ax.set_ylabel("% of one core (median of runs)")
    ax.set_title("rvm-edge at the camera's rate (process CPU)")
    ax.tick_params(axis="x", rotation=60)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=Path, required=True, help="intake frames (make -C app bench-frames)")
    p.add_argument(
        "--sam2-frames", type=Path, default=None, help="frames for SAM2-on runs (default --frames)"
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--matrix", choices=sorted(MATRICES), nargs="+", default=["detector"])
    p.add_argument("--only", nargs="*", default=None, help="config names to run (default: all)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument(
        "--summarize-only", action="store_true", help="no runs: rebuild the summary from --out/runs/*.json"
    )
    beside = Path(sys.executable).parent / "rvm-edge"  # this venv's, before any other on PATH
    p.add_argument("--rvm-edge", default=str(beside) if beside.exists() else shutil.which("rvm-edge"))
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats {args.repeats}: at least 1 run per configuration")
    configs = [c for m in args.matrix for c in MATRICES[m] if args.only is None or c.name in args.only]
    if not configs:
        p.error(f"--only {args.only}: no such configuration in {args.matrix}")
    (args.out / "runs").mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict[str, Any]]] = {c.name: [] for c in configs}
    if args.summarize_only:
        for c in configs:
            for n in range(args.repeats):
                if (found := args.out / "runs" / f"{c.name}-{n}.json").is_file():
                    runs[c.name].append(json.loads(found.read_text(encoding="utf-8")))
        configs = [c for c in configs if runs[c.name]]
    for n in range(0 if args.summarize_only else args.repeats):
        for c in configs:
            frames = (args.sam2_frames or args.frames) if c.sam2 else args.frames
            dest = args.out / "runs" / f"{c.name}-{n}.json"
            load = os.getloadavg()[0]
            cmd = [args.rvm_edge, "bench", *c.argv(frames, args.duration, dest)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(
                    f"{c.name}: rvm-edge bench exited {done.returncode}:\n{done.stderr[-2000:]}",
                    file=sys.stderr,
                )
                return 1
            report = json.loads(dest.read_text(encoding="utf-8"))
            report["_load_avg_1m"] = round(load, 2)
            dest.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
            runs[c.name].append(report)
            print(
                f"{c.name} #{n}: {report['cpu_pct_of_one_core']['total']} % (load {load:.1f})",
                file=sys.stderr,
            )
    rows = [summarize(c.name, c, runs[c.name]) for c in configs]
    summary = {"budget_pct_at_2fps": BUDGET_PCT, "duration_s": args.duration, "configs": rows}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (args.out / "summary.md").write_text(table(rows), encoding="utf-8")
    plot(rows, args.out / "summary.png")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
