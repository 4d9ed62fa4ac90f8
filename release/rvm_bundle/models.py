"""Model files for the bundle, each checked against the manifest that names it.

A bundle's MANIFEST.json proves the device received what the builder packed; this check proves the
builder packed what the model toolchain exported, so a half-written ONNX file never ships.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path, PurePosixPath

from rvm_bundle import BuildError

MODEL_MANIFEST = "manifest.json"
_CHUNK = 1024 * 1024


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _listed_files(manifest: Path) -> dict[str, str]:
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BuildError(f"model manifest {manifest}: unreadable: {exc}") from exc
    models = doc.get("models") if isinstance(doc, dict) else None
    if not isinstance(models, list) or not models:
        raise BuildError(f"model manifest {manifest}: expected a non-empty 'models' list")
    files: dict[str, str] = {}
    for index, entry in enumerate(models):
        name = entry.get("file") if isinstance(entry, dict) else None
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not isinstance(digest, str):
            raise BuildError(f"model manifest {manifest}: models[{index}] needs 'file' and 'sha256'")
        pure = PurePosixPath(name)
        if pure.is_absolute() or ".." in pure.parts:
            raise BuildError(f"model manifest {manifest}: models[{index}].file {name!r} leaves its directory")
        files[name] = digest.lower()
    return files


def copy_models(source: Path, dest: Path, skip: tuple[str, ...] = ()) -> list[str]:
    """Copy every manifest under ``source`` and the files it lists into ``dest``; return the manifests.

    Sub-directories keep their place (``sam2/manifest.json``), matching the app's default lookup of
    the SAM2 manifest beside the detector's. ``skip`` names sub-directories to leave out: the lab's
    SAM2 has random weights, so its masks are meaningless and it never belongs on a device.
    """
    if not source.is_dir():
        raise BuildError(f"models: {source} is not a directory")
    unknown = [d for d in skip if not (source / d).is_dir()]
    if unknown:
        raise BuildError(f"models: cannot skip {', '.join(unknown)}: no such directory under {source}")
    manifests = sorted(
        m
        for m in source.rglob(MODEL_MANIFEST)
        if m.parent.relative_to(source).parts[:1] not in {(d,) for d in skip}
    )
    if not manifests:
        raise BuildError(
            f"models: no {MODEL_MANIFEST} under {source}; export models first "
            "(make -C toolchain lab-models / sam2-lab) or pass --models"
        )
    written: list[str] = []
    for manifest in manifests:
        rel_dir = manifest.parent.relative_to(source)
        for name, digest in _listed_files(manifest).items():
            src = manifest.parent / name
            if not src.is_file():
                raise BuildError(f"models: {src} is listed in {manifest} but does not exist")
            actual = _sha256(src)
            if actual != digest:
                raise BuildError(
                    f"models: {src} does not match {manifest} (sha256 {actual}, manifest says {digest}); "
                    "re-export the model"
                )
            target = dest / rel_dir / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
        (dest / rel_dir).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(manifest, dest / rel_dir / MODEL_MANIFEST)
        written.append((rel_dir / MODEL_MANIFEST).as_posix())
    return written
