"""Add freshly exported models to a folder's ``manifest.json`` without losing the other entries.

An operator may export the detector and SAM2 into one folder in separate runs; each run replaces
the entries it produced (same name) and keeps the rest, and refuses to keep an entry whose file
is gone, since ``rvm-edge models verify`` would then fail on the device instead of here.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from rvm_edge.manifest import Manifest, ManifestError, ModelEntry, load_manifest, write_manifest


def merge_into(manifest_path: Path, entries: Iterable[ModelEntry]) -> Manifest:
    """Write ``manifest_path`` holding ``entries`` plus the existing entries with other names."""
    new = tuple(entries)
    names = {e.name for e in new}
    kept: tuple[ModelEntry, ...] = ()
    if manifest_path.is_file():
        try:
            old = load_manifest(manifest_path)
        except ManifestError as exc:
            raise ManifestError(f"{exc}; move the broken manifest away and export again") from None
        kept = tuple(
            m for m in old.models if m.name not in names and (manifest_path.parent / m.file).is_file()
        )
    manifest = Manifest(models=kept + new, path=manifest_path)
    write_manifest(manifest_path, manifest)
    return manifest
