"""The report: out/prodtest/report.md, one PNG per plot, and the raw JSON it links to.

Every figure stands beside its target and the previous run's value, with the verdict; the plots
carry titles, units and the target line. Rendering is separate from measuring so it is tested
without the lab and a partial run (Ctrl-C) still gets a report of what it measured.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prodtest.figures import Figure, Plot, Results, compare, previous_by_key

MARK = {"pass": "✅ pass", "miss": "❌ miss", "not measured": "— not measured", "info": "info"}


def _num(v: float | None) -> str:
    return "—" if v is None else f"{v:.4g}"


def _target(f: Figure) -> str:
    return "—" if f.target is None else f"{f.op} {f.target:.4g} {f.unit}".rstrip()


def render_markdown(
    results: Results, previous: Mapping[str, Any] | None, plot_files: Mapping[str, str]
) -> str:
    prev = previous_by_key(previous)
    counts = {v: sum(1 for f in results.figures if f.verdict == v) for v in ("pass", "miss", "not measured")}
    out = [
        "# rvm-fleet production test report",
        "",
        f"- profile: `{results.profile}`; started {results.started}; finished {results.finished or 'not (interrupted)'}",
        f"- previous run: {previous.get('started', '?') + ' (' + previous.get('profile', '?') + ')' if previous else 'none'}",
        f"- verdicts: {counts['pass']} pass, {counts['miss']} miss, {counts['not measured']} not measured",
        "- raw data: [results.json](results.json) (figures and plot series), [raw/](raw/) (one file per stage), "
        "[previous.json](previous.json) (the run compared against)",
        "",
        "## Stages",
        "",
        "| stage | state |",
        "|---|---|",
        *[f"| {s} | {state} |" for s, state in results.stages.items()],
        "",
    ]
    stages = list(dict.fromkeys(f.stage for f in results.figures))
    for stage in stages:
        out += [
            f"## {stage}",
            "",
            "| figure | value | unit | target | previous (change) | verdict | note |",
            "|---|---:|---|---|---|---|---|",
        ]
        for f in (f for f in results.figures if f.stage == stage):
            out.append(
                f"| {f.title} | {_num(f.value)} | {f.unit} | {_target(f)} | {compare(f, prev.get(f.key))} "
                f"| {MARK[f.verdict]} | {f.note} |"
            )
        out.append("")
        raw = results.raw.get(stage)
        if raw is not None:
            out += [f"Raw data: [raw/{_slug(stage)}.json](raw/{_slug(stage)}.json)", ""]
    if plot_files:
        out += ["## Plots", ""]
        for key, name in plot_files.items():
            out += [f"![{results.plots[key].title}]({name})", ""]
    return "\n".join(out)


def _slug(stage: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", stage.lower()).strip("-")


def render_plot(plot: Plot, path: Path) -> None:
    """One PNG; matplotlib's Agg backend (no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    try:
        if plot.kind == "bar":
            labels = list(plot.lines)
            groups = max((len(v) for v in plot.lines.values()), default=0)
            width = 0.8 / max(1, groups)
            for i in range(groups):
                xs = [j + i * width for j in range(len(labels))]
                ys = [plot.lines[lbl][i][1] if i < len(plot.lines[lbl]) else 0.0 for lbl in labels]
                name = next((f"p{plot.lines[lbl][i][0]:g}" for lbl in labels if i < len(plot.lines[lbl])), "")
                ax.bar(xs, ys, width=width, label=name)
            ax.set_xticks([j + width * (groups - 1) / 2 for j in range(len(labels))], labels, rotation=30)
        else:
            for label, points in plot.lines.items():
                if points:
                    ax.plot([p[0] for p in points], [p[1] for p in points], label=label, marker=".")
        if plot.target is not None:
            ax.axhline(plot.target, color="red", linestyle="--", label=plot.target_label)
        ax.set_title(plot.title)
        ax.set_xlabel(plot.xlabel)
        ax.set_ylabel(plot.ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)


def write_report(results: Results, outdir: Path, previous: Mapping[str, Any] | None) -> Path:
    """Write results.json, raw/<stage>.json, the plots and report.md; returns the report's path."""
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "raw").mkdir(exist_ok=True)
    for stage, raw in results.raw.items():
        (outdir / "raw" / f"{_slug(stage)}.json").write_text(json.dumps(raw, indent=1, default=str) + "\n")
    plot_files: dict[str, str] = {}
    for key, plot in results.plots.items():
        if any(plot.lines.values()):
            name = f"{_slug(key)}.png"
            render_plot(plot, outdir / name)
            plot_files[key] = name
    (outdir / "results.json").write_text(json.dumps(results.to_json(), indent=1) + "\n")
    report = outdir / "report.md"
    report.write_text(render_markdown(results, previous, plot_files) + "\n")
    return report
