"""Fleet scale across runs: how each cost grows per device, from every scale run this lab kept.

Why across runs: on this machine twenty new devices take ~40 minutes to provision before anything is
measured, so the sizes 3, 10 and 20, each with and without the added round trip, rarely fit one run
(and a run that finds a fleet bug ends early). Every scale run's timings are kept in
``out/prodtest/scale-runs/`` (one file per run, named by its start, never rotated like
previous.json), and the report joins them: for each operation and added round trip, the newest
successful run at each size, the least-squares cost per added device over those sizes, and one plot
per operation. (The first converge of new devices is left to each run's own figures: how many devices
were new depends on the sizes before it in that run.) Each figure's note names the run behind every size, so no number loses its origin.
Runs at another camera rate than the current one are left out: the devices' own CPU use changes the
costs (see docs/prodtest.md).

``python -m prodtest.growth --add DIR ...`` keeps earlier runs' output directories (their
``results.json`` and ``raw/fleet-scale.json``) the same way; ``python -m prodtest.growth`` rewrites
``scale-growth.md`` and its plots from what is kept, without a lab.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prodtest.figures import Figure, Plot, Results
from prodtest.progress import say
from prodtest.scale import NOCHANGE_TARGET_S, OP_TITLE, OPS, STAGE, rtt_label, slope

GROWTH_STAGE = "Fleet scale across runs"
RUNS_DIR = "scale-runs"


class KeptRunError(ValueError):
    """A file among the kept runs that is not one (named with the path)."""


@dataclass(frozen=True)
class Point:
    """One successful timed run: ``op`` on ``size`` devices with ``rtt_ms`` added, from run ``run``."""

    op: str
    size: int
    rtt_ms: int
    seconds: float
    run: str
    fps: float


def kept(raw: Mapping[str, Any], started: str) -> dict[str, Any]:
    """What a scale run's raw data keeps for later runs: its timings, not its sample series."""
    runs = [
        {k: r.get(k) for k in ("op", "size", "rtt_ms", "seconds", "rc")}
        for r in raw.get("runs", [])
        if isinstance(r, Mapping)
    ]
    return {
        "started": started,
        "version": raw.get("version"),
        "device_fps": raw.get("device_fps"),
        "runs": runs,
    }


def keep(raw: Mapping[str, Any], started: str, runs_dir: Path) -> Path:
    """Write one run's timings to ``runs_dir`` (the same start overwrites its own file only)."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    path = runs_dir / f"{re.sub(r'[^0-9A-Za-z]+', '-', started).strip('-')}.json"
    path.write_text(json.dumps(kept(raw, started), indent=1) + "\n")
    return path


def points(record: Mapping[str, Any]) -> list[Point]:
    """The successful timings of one kept run (a failed or stopped run measured nothing)."""
    out = []
    for r in record.get("runs", []):
        if r.get("rc") != 0 or r.get("op") not in OPS or r.get("seconds") is None:
            continue
        out.append(
            Point(str(r["op"]), int(r["size"]), int(r["rtt_ms"]), float(r["seconds"]), str(record["started"]),
                  float(record.get("device_fps") or 0.0))
        )  # fmt: skip
    return out


def load(runs_dir: Path) -> list[Point]:
    """Every kept run's points; a file that is not a kept run is named, not silently skipped."""
    out: list[Point] = []
    for path in sorted(runs_dir.glob("*.json")):
        try:
            record = json.loads(path.read_text())
            out += points(record)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise KeptRunError(
                f"{path}: not a kept scale run ({exc}); remove it or run a scale stage again"
            ) from exc
    return out


def newest(pts: Iterable[Point], fps: float) -> dict[tuple[str, int, int], Point]:
    """(op, rtt_ms, size) -> the newest point at that camera rate (ISO start times sort in time)."""
    out: dict[tuple[str, int, int], Point] = {}
    for p in pts:
        if abs(p.fps - fps) > 1e-9:
            continue
        key = (p.op, p.rtt_ms, p.size)
        if key not in out or p.run > out[key].run:
            out[key] = p
    return out


def series(best: Mapping[tuple[str, int, int], Point], op: str, rtt_ms: int) -> list[Point]:
    return sorted((p for (o, t, _), p in best.items() if o == op and t == rtt_ms), key=lambda p: p.size)


def figures(best: Mapping[tuple[str, int, int], Point]) -> list[Figure]:
    """Cost per added device for each operation and round trip, over the sizes the kept runs measured."""
    out: list[Figure] = []
    for op in OPS:
        for rtt_ms in sorted({t for (o, t, _) in best if o == op}):
            pts = series(best, op, rtt_ms)
            origin = "; ".join(f"n={p.size}: {p.seconds:.1f} s ({p.run})" for p in pts)
            out.append(
                Figure(f"scale.growth.{op}.rtt{rtt_ms}", f"{rtt_label(rtt_ms)}: {op} cost per added device, across runs",
                       slope([(float(p.size), p.seconds) for p in pts]), "s/device", stage=GROWTH_STAGE,
                       note=origin + ("" if len(pts) > 1 else "; needs two sizes"))
            )  # fmt: skip
    return out


def plots(best: Mapping[tuple[str, int, int], Point]) -> dict[str, Plot]:
    """One plot per operation: wall time against devices, a line per added round trip."""
    out: dict[str, Plot] = {}
    for op in OPS:
        target = NOCHANGE_TARGET_S if op == "nochange" else None
        plot = Plot(f"Fleet scale across runs: {OP_TITLE[op]}", "devices (rvm-scale-NN)", "wall time (s)", target,
                    "30 s budget (DESIGN §9)" if target else "target")  # fmt: skip
        for rtt_ms in sorted({t for (o, t, _) in best if o == op}):
            plot.lines[rtt_label(rtt_ms)] = [(float(p.size), p.seconds) for p in series(best, op, rtt_ms)]
        out[f"scale-growth-{op}"] = plot
    return out


def add_across_runs(results: Results, out_dir: Path) -> None:
    """Keep this run's scale timings and add the across-runs figures and plots to its report. A bad
    kept file costs the across-runs part only, named in the progress: the run's own report is written."""
    raw = results.raw.get(STAGE)
    if not isinstance(raw, Mapping):
        return
    keep(raw, results.started, out_dir / RUNS_DIR)
    try:
        kept_points = load(out_dir / RUNS_DIR)
    except KeptRunError as exc:
        say(f"scale: across runs left out: {exc}")
        return
    best = newest(kept_points, float(raw.get("device_fps") or 0.0))
    results.add(*figures(best))
    results.plots.update(plots(best))


def table(best: Mapping[tuple[str, int, int], Point]) -> str:
    """The markdown table of scale-growth.md: one row per operation and round trip, a column per size,
    each cell marked with the run it comes from."""
    sizes = sorted({s for (_, _, s) in best})
    runs = {run: i + 1 for i, run in enumerate(sorted({p.run for p in best.values()}))}
    head = ["| operation | round trip added | " + " | ".join(f"n={s}" for s in sizes) + " | per added device |",
            "|---|---|" + "---:|" * (len(sizes) + 1)]  # fmt: skip
    rows = []
    for op in OPS:
        for rtt_ms in sorted({t for (o, t, _) in best if o == op}):
            pts = {p.size: p for p in series(best, op, rtt_ms)}
            cells = [f"{pts[s].seconds:.1f} s [{runs[pts[s].run]}]" if s in pts else "" for s in sizes]
            k = slope([(float(p.size), p.seconds) for p in pts.values()])
            per = "—" if k is None else f"{k:.1f} s"
            rows.append(f"| {op} | {rtt_ms} ms | " + " | ".join(cells) + f" | {per} |")
    legend = ["", "Runs: " + "; ".join(f"[{i}] {run}" for run, i in runs.items())]
    return "\n".join([*head, *rows, *legend])


def add_run_dirs(dirs: Sequence[Path], runs_dir: Path) -> list[Path]:
    """Keep earlier runs' output directories (results.json for the start, raw/fleet-scale.json)."""
    written = []
    for d in dirs:
        results, raw = d / "results.json", d / "raw" / "fleet-scale.json"
        for f in (results, raw):
            if not f.is_file():
                raise SystemExit(
                    f"{d}: no {f.name} there; expected a prodtest output directory with a scale stage"
                )
        started = json.loads(results.read_text()).get("started")
        if not started:
            raise SystemExit(f"{results}: no 'started'")
        written.append(keep(json.loads(raw.read_text()), str(started), runs_dir))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    from prodtest.__main__ import OUT
    from prodtest.report import render_plot

    ap = argparse.ArgumentParser(prog="python -m prodtest.growth", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--add", nargs="+", type=Path, default=[], metavar="DIR", help="earlier runs' output dirs"
    )
    ap.add_argument("--fps", type=float, default=None, help="camera rate to join (default: the newest run's)")
    args = ap.parse_args(argv)
    runs_dir = OUT / RUNS_DIR
    for path in add_run_dirs(args.add, runs_dir):
        print(f"kept {path}")
    try:
        pts = load(runs_dir)
    except KeptRunError as exc:
        raise SystemExit(str(exc)) from exc
    if not pts:
        raise SystemExit(
            f"{runs_dir}: no kept scale runs; run `make prodtest` with the scale stage, or --add"
        )
    fps = args.fps if args.fps is not None else max(pts, key=lambda p: p.run).fps
    best = newest(pts, fps)
    lines = [f"# Fleet scale across runs (camera {fps:g} fps)", "", table(best), ""]
    for key, plot in plots(best).items():
        if any(plot.lines.values()):
            render_plot(plot, OUT / f"{key}.png")
            lines += [f"![{plot.title}]({key}.png)", ""]
    (OUT / "scale-growth.md").write_text("\n".join(lines))
    print(f"wrote {OUT / 'scale-growth.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
