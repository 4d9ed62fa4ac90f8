"""Ansible module rvm_update_lock: one deploy or rollback at a time on a device.

Two operators (or an operator and a scheduled run) changing the same device at once would
interleave drains, migrations and switches. The lock is a small JSON file created atomically
(O_CREAT|O_EXCL) on the device itself, so it holds whatever control node the runs come from.
A run that died (Ctrl-C, a lost link) leaves its lock behind; it is taken over once older than
I(stale_after_s), or at once with I(break_lock).
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rvm_update_lock
short_description: Take or release the update lock of a device
description:
  - "I(state=held): take the lock at I(path) for the run identified by I(token). Free: it is
    created atomically. Held by the same I(token): nothing to do (a run may take it twice). Held by
    another run: the task fails and names the holder and since when, unless the lock is older than
    I(stale_after_s) or I(break_lock) is true; then it is taken over with a warning naming the
    previous holder."
  - "A lock file that is not a lock this module wrote (not JSON, wrong fields) counts as held by an
    unknown run since the file's modification time."
  - "I(state=released): remove the lock if I(token) holds it. A lock held by another run is left
    alone (with a warning); a missing lock is fine."
  - In check mode nothing is written or removed, but a lock held by another run still fails the
    task, so a dry run shows what a real run would meet.
version_added: "1.0.0"
author:
  - rvm-fleet maintainers (@rvm-fleet)
options:
  path:
    description: The lock file. Its directory is created (0755) when missing.
    type: path
    required: true
  state:
    description: C(held) takes the lock, C(released) gives it back.
    type: str
    choices: [held, released]
    default: held
  token:
    description: Identifies the run; random per run (for example 16 letters and digits).
    type: str
    required: true
  holder:
    description: Who holds the lock, in words an operator recognises (user, control node, what runs).
    type: str
    default: unknown
  stale_after_s:
    description: A lock older than this many seconds is taken over. C(0) never takes one over by age.
    type: int
    default: 1800
  break_lock:
    description: Take the lock over whatever its age (the operator knows its run is gone).
    type: bool
    default: false
notes:
  - Supports check mode (reads only).
requirements:
  - Python >= 3.10 on the managed host.
"""

EXAMPLES = r"""
- name: Take the update lock of this device
  rvm_update_lock:
    path: /run/lock/rvm-edge-update.lock
    token: "{{ __run_token }}"
    holder: "alice@control-1: deploy 2.0.0"

- name: Give it back
  rvm_update_lock:
    path: /run/lock/rvm-edge-update.lock
    token: "{{ __run_token }}"
    state: released
"""

RETURN = r"""
msg:
  description: What was done, in one line.
  returned: always
  type: str
  sample: "lock taken over from bob@control-2: deploy 1.9.0 (stale: 2412 s old)"
lock:
  description: The lock as it is after the task (C(null) when there is none).
  returned: always
  type: dict
  sample: {"token": "k3j2...", "holder": "alice@control-1: deploy 2.0.0", "since": 1764583200.5}
previous:
  description: The lock that was there before, when another run held it.
  returned: when the lock was held by another run
  type: dict
"""

import json
import os
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule

ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "path": {"type": "path", "required": True},
    "state": {"type": "str", "default": "held", "choices": ["held", "released"]},
    "token": {"type": "str", "required": True},
    "holder": {"type": "str", "default": "unknown"},
    "stale_after_s": {"type": "int", "default": 1800},
    "break_lock": {"type": "bool", "default": False},
}


class LockHeld(Exception):
    """Another live run holds the lock."""


def read_lock(path: str) -> dict[str, Any] | None:
    """The lock at ``path``; None when there is none. A file this module did not write is a lock
    of an unknown run since its mtime, so garbage never unlocks a device by accident."""
    try:
        with open(path, encoding="utf-8") as handle:
            raw = handle.read(64 * 1024)
        mtime = os.stat(path).st_mtime
    except FileNotFoundError:
        return None
    try:
        lock = json.loads(raw)
        if (
            isinstance(lock, dict)
            and isinstance(lock.get("token"), str)
            and isinstance(lock.get("since"), (int, float))
        ):
            return {
                "token": lock["token"],
                "holder": str(lock.get("holder", "unknown")),
                "since": float(lock["since"]),
            }
    except ValueError:
        pass
    return {"token": "", "holder": f"an unreadable lock file ({len(raw)} bytes)", "since": mtime}


def describe(lock: dict[str, Any], now: float) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(lock["since"]))
    return f"{lock['holder']}, since {started} ({max(0, int(now - lock['since']))} s ago)"


def create_exclusive(path: str, lock: dict[str, Any]) -> bool:
    """Write ``lock`` only if no file is there; False when another run was first."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(lock, handle)
        handle.flush()
        os.fsync(handle.fileno())
    return True


def replace(path: str, lock: dict[str, Any]) -> None:
    """Take over an existing lock: write beside it, then rename over it (atomic)."""
    temp = f"{path}.{lock['token']}.tmp"
    with open(temp, "w", encoding="utf-8") as handle:
        json.dump(lock, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)


def take(params: dict[str, Any], check_mode: bool, now: float) -> dict[str, Any]:
    """Take the lock; raises LockHeld with the reason when another live run holds it."""
    path, token = params["path"], params["token"]
    mine = {"token": token, "holder": params["holder"], "since": now}
    current = read_lock(path)
    if current is not None and current["token"] == token:
        return {"changed": False, "msg": "lock already held by this run", "lock": current}
    if current is None:
        if check_mode:
            return {"changed": True, "msg": "lock is free (check mode: not taken)", "lock": None}
        os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
        if create_exclusive(path, mine):
            return {"changed": True, "msg": "lock taken", "lock": mine}
        current = read_lock(path)  # another run was quicker: judge its lock like any other
        if current is None:
            raise LockHeld(f"{path}: the lock changed hands while it was being taken; run again")
    age = now - current["since"]
    stale = params["stale_after_s"] > 0 and age > params["stale_after_s"]
    if not (stale or params["break_lock"]):
        raise LockHeld(
            f"{path}: another update holds this device: {describe(current, now)}. Wait for it to "
            f"finish; if that run is gone, run again with -e rvm_edge_lock_break=true (a lock older "
            f"than {params['stale_after_s']} s is taken over by itself)."
        )
    why = f"stale: {int(age)} s old" if stale else "break_lock"
    msg = f"lock taken over from {current['holder']} ({why})"
    if check_mode:
        return {
            "changed": True,
            "msg": f"{msg} (check mode: not taken)",
            "lock": current,
            "previous": current,
        }
    replace(path, mine)
    if (read_lock(path) or {}).get("token") != token:
        raise LockHeld(f"{path}: another run took the lock over at the same moment; run again")
    return {"changed": True, "msg": msg, "lock": mine, "previous": current, "warn": msg}


def release(params: dict[str, Any], check_mode: bool) -> dict[str, Any]:
    path, token = params["path"], params["token"]
    current = read_lock(path)
    if current is None:
        return {"changed": False, "msg": "no lock to release", "lock": None}
    if current["token"] != token:
        msg = f"lock left alone: it is held by {current['holder']}, not by this run"
        return {"changed": False, "msg": msg, "lock": current, "previous": current, "warn": msg}
    if not check_mode:
        os.unlink(path)
    return {"changed": True, "msg": "lock released", "lock": None}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    if not params["token"].strip():
        module.fail_json(msg="token must not be empty: it tells this run's lock from another's")
    if params["stale_after_s"] < 0:
        module.fail_json(msg=f"stale_after_s must be 0 (never) or more, got {params['stale_after_s']}")
    try:
        if params["state"] == "held":
            result = take(params, module.check_mode, time.time())
        else:
            result = release(params, module.check_mode)
    except LockHeld as exc:
        module.fail_json(msg=str(exc), changed=False, lock=read_lock(params["path"]))
    except OSError as exc:
        module.fail_json(msg=f"{params['path']}: {exc.strerror or exc}", changed=False)
    warning = result.pop("warn", None)
    if warning:
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
