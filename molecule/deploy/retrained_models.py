"""Make the deploy scenario's stand-in for a retrained detector: a copy of the lab models in which the
first detector's ONNX file differs (so its sha256, and the key of every engine built from it, differ)
while its network, inputs and outputs stay the same.

Why: a release whose models changed is the case where a rollback must not meet the newer release's
engines. Training a second lab model takes hours; what a device tells apart is the file's digest,
so the copy carries a new ONNX ``doc_string`` (ModelProto field 6: a later occurrence of a singular
protobuf field replaces the earlier one, and every ONNX reader accepts it) and the manifest names
the new digest and version.

    python retrained_models.py SOURCE_DIR DEST_DIR NOTE
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

DOC_STRING_TAG = bytes([6 << 3 | 2])  # field 6 (doc_string), wire type 2 (length-delimited)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def retrain(source: Path, dest: Path, note: str) -> str:
    """Copy SOURCE's manifest and ONNX files to DEST with the first detector re-documented; its digest."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    manifest = json.loads((source / "manifest.json").read_text(encoding="utf-8"))
    detector = next(m for m in manifest["models"] if m["role"] == "detector")
    for model in manifest["models"]:
        shutil.copyfile(source / model["file"], dest / model["file"])
    text = note.encode()
    with open(dest / detector["file"], "ab") as onnx:
        onnx.write(DOC_STRING_TAG + _varint(len(text)) + text)
    detector["sha256"] = hashlib.sha256((dest / detector["file"]).read_bytes()).hexdigest()
    detector["version"] = f"{detector['version']}-{note}"
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return str(detector["sha256"])


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    print(retrain(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]))
