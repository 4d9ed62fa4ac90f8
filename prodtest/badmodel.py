"""Device fault: a corrupt model file in a new release. The release is built, shipped and installed
like any other (its manifest's sha256 matches the damaged bytes: the model was broken before it was
packaged, so no checksum can catch it); the device must refuse it before the switch and keep serving
the release it runs.

The refusal is the engine build's: the deploy builds each model's engine on the device, beside the
new release and before `current` moves (roles/model_engines), and a truncated ONNX cannot be read.
Figures: refused there naming the file, the longest stretch not ready while it was pushed (our budget:
none), the same process, config and release afterwards, the update lock given back, and the new
release never current.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from prodtest.figures import Figure, Results
from prodtest.lab import ROOT, Lab, LabError
from prodtest.progress import say
from prodtest.push import POLL_S, device_state, push
from prodtest.releases import bundle

STAGE = "Device faults"
MODELS = ROOT / "app" / "models" / "lab"
OUT = ROOT / ".cache" / "prodtest" / "badmodel"


def corrupt_models(source: Path, dest: Path) -> list[str]:
    """A copy of the lab models with every detector ONNX cut to half its bytes and the manifest's
    sha256 made to match; the files damaged. SAM2 (random lab weights, never shipped) stays out."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("sam2", "*.pt"))
    manifest = json.loads((dest / "manifest.json").read_text())
    damaged = []
    for entry in manifest["models"]:
        if entry.get("role") != "detector":
            continue
        path = dest / entry["file"]
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        entry["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        damaged.append(entry["file"])
    if not damaged:
        raise LabError(f"{source / 'manifest.json'} names no detector to damage")
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return damaged


def build_release(version: str) -> list[str]:
    """rvm-edge-VERSION-x86_64.tar.gz in OUT/dist with the damaged models; the files damaged."""
    damaged = corrupt_models(MODELS, OUT / "models")
    bundle(version, OUT / "dist", OUT / "models")
    return damaged


def run_bad_model(lab: Lab, device: str, results: Results) -> dict[str, object]:
    running = device_state(device)["release"].rsplit("/", 1)[-1]
    version = f"{running}-badmodel"
    say(f"device faults: building {version}, its detector ONNX cut in half (manifest made to match)")
    damaged = build_release(version)
    say(f"device faults: {version} pushed to {device} with deploy.yml")
    pushed = push(lab, device, {"rvm_edge_version": version, "rvm_edge_bundle_dir": str(OUT / "dist")})
    said = " ".join(pushed.refusal.split())
    refused = (
        pushed.returncode != 0
        and pushed.failed_task.startswith("TASK [model_engines")
        and any(name in said for name in damaged)
    )
    never_current = not pushed.after["release"].endswith(f"/{version}")
    down = pushed.longest_not_ready_s
    say(
        f"device faults: bad model {'refused' if refused else 'NOT refused'} after {pushed.play_s:.0f} s; "
        f"longest not ready {down:.2f} s over {len(pushed.samples)} polls; lock {pushed.lock}"
    )
    results.add(
        Figure(
            "dev.badmodel.refused", "corrupt model: refused at the engine build, naming the file", float(refused),
            "yes=1", 1, ">=", stage=STAGE,
        ),
        Figure(
            "dev.badmodel.not_ready_s", "corrupt model: longest stretch not ready while it was pushed", down, "s",
            30.0, stage=STAGE, note=f"our budget 0 s; {len(pushed.samples)} polls every {POLL_S} s",
        ),
        Figure(
            "dev.badmodel.unchanged", "corrupt model: same service process, config and release afterwards",
            float(pushed.unchanged and never_current), "yes=1", 1, ">=", stage=STAGE,
            note=f"release {pushed.after['release'].rsplit('/', 1)[-1]}",
        ),
        Figure(
            "dev.badmodel.lock_free", "corrupt model: the update lock given back", float(pushed.lock == "free"),
            "yes=1", 1, ">=", stage=STAGE,
        ),
    )  # fmt: skip
    return {**pushed.raw(), "version": version, "damaged": damaged, "refused_naming_the_file": refused}
