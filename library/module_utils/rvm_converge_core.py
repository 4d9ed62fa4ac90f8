"""The converge record of one host: what its last full, successful converge left behind.

A no-change `site.yml` spends nearly all its time proving that nothing needs doing: some 700 tasks
per run, each a module run on every host. The record lets a host skip a run when nothing that run
could change has changed: the same intent (the project, the inventory, the extra vars, the host's
own facts and the fleet's membership, hashed on the control node) and no drift on the host (every
file the converge wrote still has the content, mode and owner it left; every unit it touched is
still enabled and active as it was; no package installed or removed since). Anything else, or a
record older than its maximum age, and the host converges in full.

Pure functions on paths and plain data; the module (library/rvm_converge_state.py) does the I/O
that needs systemd.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from typing import Any

VERSION = 1
# Files above this size are compared by size and mtime: hashing a 180 MB bundle on every no-change
# run would cost more than the skip saves on a Jetson.
HASH_LIMIT = 16 * 1024 * 1024
DPKG_STATUS = "/var/lib/dpkg/status"


def sha1(path: str) -> str:
    digest = hashlib.sha1()  # the checksum ansible's own file modules report
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_state(path: str) -> dict[str, Any]:
    """What a file module left at ``path``: kind, mode, owner and content (or link target)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return {"kind": "absent"}
    out: dict[str, Any] = {"mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid}
    if stat.S_ISLNK(st.st_mode):
        return {**out, "kind": "link", "target": os.readlink(path)}
    if stat.S_ISDIR(st.st_mode):
        return {**out, "kind": "directory"}
    if st.st_size > HASH_LIMIT:
        return {**out, "kind": "file", "size": st.st_size, "mtime": int(st.st_mtime)}
    return {**out, "kind": "file", "sha1": sha1(path)}


def dpkg_state(path: str | None = None) -> str | None:
    """The package database's checksum: any package installed, removed or upgraded changes it."""
    path = path or DPKG_STATUS
    return sha1(path) if os.path.isfile(path) else None


def build(
    intent: str,
    files: list[str],
    units: dict[str, dict[str, str]],
    now: float | None = None,
    published: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The record to keep after a full converge (``units``: observed ActiveState/UnitFileState;
    ``published``: the variables other hosts read, handed back while the host stays current)."""
    return {
        "version": VERSION,
        "intent": intent,
        "recorded_at": time.time() if now is None else now,
        "files": {p: file_state(p) for p in sorted(set(files))},
        "units": units,
        "dpkg": dpkg_state(),
        "published": published or {},
    }


def unit_drift(recorded: dict[str, str], now: dict[str, str]) -> str | None:
    """Active then and not now, or enabled state changed (a oneshot that ran and exited is fine)."""
    if recorded.get("ActiveState") == "active" and now.get("ActiveState") != "active":
        return f"is {now.get('ActiveState', 'unknown')}, was active"
    if recorded.get("UnitFileState") != now.get("UnitFileState"):
        return f"is {now.get('UnitFileState') or 'unknown'}, was {recorded.get('UnitFileState')}"
    return None


def check(
    record: dict[str, Any] | None,
    intent: str,
    max_age_s: float,
    units_now: dict[str, dict[str, str]],
    now: float | None = None,
) -> tuple[bool, str]:
    """(current, reason): may this host skip the run? The reason names the first thing that differs."""
    if record is None:
        return False, "no converge record"
    if record.get("version") != VERSION:
        return False, "converge record of another version"
    if record.get("intent") != intent:
        return False, "intent changed (project, inventory, extra vars, facts or fleet membership)"
    age = (time.time() if now is None else now) - float(record.get("recorded_at", 0))
    if age > max_age_s or age < -300:
        return False, f"record is {age / 3600:.1f} h old (full converge every {max_age_s / 3600:g} h)"
    for path, was in record.get("files", {}).items():
        if file_state(path) != was:
            return False, f"drift: {path}"
    for unit, was in record.get("units", {}).items():
        why = unit_drift(was, units_now.get(unit, {}))
        if why:
            return False, f"drift: {unit} {why}"
    if record.get("dpkg") != dpkg_state():
        return False, "drift: packages installed, removed or upgraded"
    return True, f"unchanged since its converge {age / 60:.0f} min ago"


def load(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def save(path: str, record: dict[str, Any]) -> None:
    """Atomically, readable by root only (it names every managed path)."""
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = f"{path}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(record, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def remove(path: str) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True
