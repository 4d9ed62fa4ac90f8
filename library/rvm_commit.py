"""Ansible module rvm_commit: the play's side of commit-or-rollback (issue 16).

A deploy whose control node dies inside the health gate must not leave the device on a release
nobody gated. The role arms a pending commit right after it switches `current`; the device's
guard (rvm-edge-commit-guard.service) rolls back when the deadline passes or the service fails;
the health gate commits once it passes. This module reads and writes the pending record (the
decisions are rvm_commit_core's, the files rvm_commit_state's).
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rvm_commit
short_description: Arm, commit or disarm a device's pending commit of a release
description:
  - "I(state=armed): record that I(release) waits for its commit, with I(previous) as the way back and a
    deadline I(timeout_s) seconds from now (on the kernel's boot clock within this boot, which no NTP
    step or date -s moves, and on the wall clock, which decides after a reboot). Nothing is armed
    when I(previous) is empty or equals I(release) (a first install, a re-run that switched
    nothing), unless a pending commit of I(release) is already there (a run that died left it):
    then this run adopts it with a new deadline."
  - "I(state=committed): the health gate passed; the pending commit of I(release) armed with the
    same I(token) is removed and the outcome kept. Refused, with the reason, when the device has
    already rolled I(release) back, when another run armed it, or when nothing is pending for it."
  - "I(state=disarmed): drop a pending commit whoever armed it (the play is about to go back
    itself, or an operator rolls back), keeping I(reason) as its outcome."
  - "I(state=status): only read the pending commit and the last outcome."
  - The state directory is shared with the guard under a flock; a commit arriving while the guard
    rolls back waits for it and is then refused.
version_added: "1.0.0"
author:
  - rvm-fleet maintainers (@rvm-fleet)
options:
  state:
    description: What to do with the pending commit.
    type: str
    choices: [armed, committed, disarmed, status]
    default: status
  dir:
    description: The state directory (pending.json, last.json).
    type: path
    default: /var/lib/rvm-edge-release
  release:
    description: The release that was switched to. Required with I(state=armed) and I(state=committed).
    type: str
  previous:
    description: With I(state=armed), the release that ran before (the way back); empty arms nothing.
    type: str
    default: ""
  timeout_s:
    description: With I(state=armed), seconds from now until the guard rolls back.
    type: int
    default: 0
  token:
    description: The deploy run (the update lock's run token); only the run that armed it commits.
    type: str
  holder:
    description: Who armed it, in the words the update lock uses.
    type: str
    default: unknown
  reason:
    description: With I(state=disarmed), why (kept as the outcome).
    type: str
    default: disarmed
notes:
  - Supports check mode (reads only, reports what would change).
requirements:
  - Python >= 3.10 on the managed host.
"""

EXAMPLES = r"""
- name: Arm the commit of 2.0.0 (the guard rolls back to 1.0.0 unless committed in 210 s)
  rvm_commit:
    state: armed
    release: "2.0.0"
    previous: "1.0.0"
    timeout_s: 210
    token: "{{ __run_token }}"
    holder: "alice@control-1: deploy 2.0.0"

- name: The health gate passed
  rvm_commit:
    state: committed
    release: "2.0.0"
    token: "{{ __run_token }}"
"""

RETURN = r"""
msg:
  description: What was done, in one line.
  returned: always
  type: str
  sample: "2.0.0 committed"
armed:
  description: Whether a commit of I(release) is pending after the task.
  returned: always
  type: bool
pending:
  description: The pending commit after the task (release, previous, deadline, holder), or null.
  returned: always
  type: dict
last:
  description: How the last pending commit ended (release, result, at, reason), or null.
  returned: always
  type: dict
"""

from dataclasses import asdict
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.rvm_commit_core import Clock, Outcome, Pending, PendingError, arm, commit
from ansible.module_utils.rvm_commit_state import CommitState, StateBusy, clock_now, public

ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "state": {"type": "str", "default": "status", "choices": ["armed", "committed", "disarmed", "status"]},
    "dir": {"type": "path", "default": "/var/lib/rvm-edge-release"},
    "release": {"type": "str"},
    "previous": {"type": "str", "default": ""},
    "timeout_s": {"type": "int", "default": 0},
    "token": {"type": "str", "no_log": True},
    "holder": {"type": "str", "default": "unknown"},
    "reason": {"type": "str", "default": "disarmed"},
}

REQUIRED_IF = [
    ("state", "armed", ("release", "token")),
    ("state", "committed", ("release", "token")),
]


def plan(
    params: dict[str, Any], pending: Pending | None, last: Outcome | None, now: Clock
) -> tuple[Pending | None, Outcome | None, str]:
    """(the pending record after, the outcome to keep or None, message); raises PendingError to refuse."""
    state, release = params["state"], params["release"]
    if state == "armed":
        if pending is not None and pending.release == release:
            if params["timeout_s"] <= 0:
                raise PendingError(f"parameter timeout_s must be > 0 s, got {params['timeout_s']}")
            adopted = pending.renewed(now, params["timeout_s"], params["token"], params["holder"])
            return adopted, None, f"adopted the pending commit of {release} left by {pending.holder}"
        if not params["previous"] or params["previous"] == release:
            return pending, None, f"nothing to arm: {release} did not replace another release"
        armed = arm(release, params["previous"], now, params["timeout_s"], params["token"], params["holder"])
        return (
            armed,
            None,
            f"armed: {release} rolls back to {params['previous']} unless committed in {params['timeout_s']} s",
        )
    if state == "committed":
        changed, msg = commit(pending, last, release, params["token"])
        if not changed:
            return pending, None, msg
        return None, Outcome(release, "committed", now.wall), msg
    if state == "disarmed" and pending is not None:
        reason = params["reason"]
        return (
            None,
            Outcome(pending.release, "rolled back", now.wall, reason),
            f"disarmed {pending.release}: {reason}",
        )
    return (
        pending,
        None,
        "no pending commit" if pending is None else f"{pending.release} waits for its commit",
    )


def run(module: AnsibleModule) -> dict[str, Any]:
    params = module.params
    if params["release"] is not None and not params["release"].strip():
        raise PendingError("parameter release must not be empty")
    store = CommitState(params["dir"])
    now = clock_now()
    if module.check_mode or params["state"] == "status":
        before, last = store.pending(), store.last()
        after, outcome, msg = plan(params, before, last, now)
    else:
        with store.locked():
            before, last = store.pending(), store.last()
            after, outcome, msg = plan(params, before, last, now)
            if after is None and before is not None:
                store.clear_pending()
            elif after is not None and after != before:
                store.write_pending(after)
            if outcome is not None:
                store.write_last(outcome)
    if outcome is not None:
        last = outcome
    release = params["release"]
    return {
        "changed": after != before,
        "msg": msg,
        "armed": after is not None and (release is None or after.release == release),
        "pending": public(after),
        "last": asdict(last) if last is not None else None,
    }


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, required_if=REQUIRED_IF, supports_check_mode=True)
    try:
        result = run(module)
    except PendingError as exc:
        module.fail_json(msg=f"rvm_commit: {exc}")
    except StateBusy as exc:
        module.fail_json(msg=f"rvm_commit: {exc}")
    except OSError as exc:
        module.fail_json(msg=f"rvm_commit: {exc.strerror or exc} ({exc.filename or module.params['dir']})")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
