"""Figures of the fleet scenario from the deploy reports the rvm_deploy_summary callback wrote.

Why a separate script: the scenario's targets (a device rolled back to healthy in <= 10 s, a failing
canary detected and rolled back in <= 90 s) are measured, printed and compared here, not asserted in
a timed test. Prints a table and writes figures.json beside the reports.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROLLBACK_TARGET_S = 10.0
CANARY_TARGET_S = 90.0


def load(directory: Path) -> dict[str, dict[str, Any]]:
    return {
        p.stem: json.loads(p.read_text()) for p in sorted(directory.glob("*.json")) if p.stem[0].isdigit()
    }


def figures(reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"deploy_batches": {}, "rollback_per_device_s": {}, "canary": {}}
    for step, report in reports.items():
        if "deploy" in step:
            out["deploy_batches"][step] = [
                {"batch": b["batch"], "hosts": b["hosts"], "seconds": b["seconds"], "failed": b["failed"]}
                for b in report["batches"]
            ]
        if "rollback" in step:
            for host in report["hosts"]:
                if host.get("result") == "ok":  # a re-run that changed nothing is not a rollback
                    out["rollback_per_device_s"][host["host"]] = {
                        "to_healthy_s": float(host.get("to_healthy_s") or host["seconds"]),
                        "with_checks_s": float(host["seconds"]),
                        "alone": len(report["hosts"]) == 1,
                    }
        for host in report["hosts"]:
            if host.get("rollback_s") not in (None, ""):
                detected = float(host["failed_after_s"])
                rolled_back = float(host["rollback_s"])
                out["canary"] = {
                    "host": host["host"],
                    "release": host["to"],
                    "failure_detected_after_s": detected,
                    "rollback_s": rolled_back,
                    "detected_and_rolled_back_s": round(detected + rolled_back, 1),
                    "reason": host.get("reason", ""),
                }
    alone = [r["to_healthy_s"] for r in out["rollback_per_device_s"].values() if r["alone"]]
    slowest = max(alone or [r["to_healthy_s"] for r in out["rollback_per_device_s"].values()], default=0.0)
    out["targets"] = {
        "rollback_one_device_le_10_s": slowest <= ROLLBACK_TARGET_S,
        "canary_detected_and_rolled_back_le_90_s": out["canary"].get("detected_and_rolled_back_s", 1e9)
        <= CANARY_TARGET_S,
    }
    return out


def table(fig: dict[str, Any]) -> list[str]:
    lines = ["| step | batch | hosts | seconds | failed |", "|---|---|---|---|---|"]
    for step, batches in fig["deploy_batches"].items():
        for b in batches:
            lines.append(
                f"| {step} | {b['batch']} | {', '.join(b['hosts'])} | {b['seconds']:.1f} | {', '.join(b['failed']) or '-'} |"
            )
    lines += ["", "| device | rolled back | to healthy (s) | with the checks (s) |", "|---|---|---|---|"]
    lines += [
        f"| {h} | {'alone' if r['alone'] else 'with the others'} | {r['to_healthy_s']:.1f} | {r['with_checks_s']:.1f} |"
        for h, r in sorted(fig["rollback_per_device_s"].items())
    ]
    c = fig["canary"]
    if c:
        lines += [
            "",
            f"canary {c['host']} on {c['release']}: failure detected {c['failure_detected_after_s']:.1f} s after the "
            f"switch, rolled back in {c['rollback_s']:.1f} s (total {c['detected_and_rolled_back_s']:.1f} s, target <= {CANARY_TARGET_S:.0f} s)",
        ]
    lines.append(f"targets met: {json.dumps(fig['targets'])}")
    return lines


def main(argv: list[str]) -> int:
    directory = Path(argv[1])
    fig = figures(load(directory))
    (directory / "figures.json").write_text(json.dumps(fig, indent=2))
    print("\n".join(table(fig)))
    print("FLEET DEPLOY FIGURES " + json.dumps(fig))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
