"""Ansible module rvm_converge_state: may this host skip a no-change converge? (issue 14, item 5)

The check and the record of the converge fast path (playbooks/converge_check.yml and
playbooks/converge_record.yml; docs/converge.md). The decisions are rvm_converge_core's; this
module reads the units' state from systemd in one call and keeps the record.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rvm_converge_state
short_description: Check or keep a host's record of its last full converge
description:
  - "I(state=check): is the host I(current), so that this run may skip it? Yes only when the record's
    intent equals I(intent), it is younger than I(max_age_s), and nothing drifted: every recorded file
    has the content, mode and owner it had, every recorded unit that was active still is and is enabled
    as it was, and the package database is unchanged. I(reason) says which. A host that is not current
    loses its record (unless in check mode), so that a run which then fails on it is never taken for a
    success by the next one."
  - "I(state=recorded): after a full converge, keep I(intent) and the state of I(files) and I(units)
    as the host has them now, and the variables in I(published)."
  - "A current host's I(published) variables come back as facts, so that the hosts that do converge
    read them as if its roles had run (a ZeroTier address other hosts' firewall rules and scrape
    targets name)."
  - "I(state=absent): forget the record (the next run converges in full)."
  - The record is the converge's own bookkeeping, not configuration of the host, so this module never
    reports a change.
version_added: "1.0.0"
author:
  - rvm-fleet maintainers (@rvm-fleet)
options:
  state:
    description: What to do.
    type: str
    choices: [check, recorded, absent]
    default: check
  path:
    description: The record.
    type: path
    default: /var/lib/rvm-fleet/converge.json
  intent:
    description: The digest of everything on the control node that decides what the run does to this host.
    type: str
  force:
    description: With I(state=check), the host is not current whatever its record says (a full converge).
    type: bool
    default: false
  max_age_s:
    description: With I(state=check), a record older than this is not current (a full converge is due).
    type: int
    default: 86400
  files:
    description: With I(state=recorded), the paths the converge's file modules wrote on this host.
    type: list
    elements: path
    default: []
  units:
    description: With I(state=recorded), the systemd units the converge started, stopped or enabled.
    type: list
    elements: str
    default: []
  published:
    description: With I(state=recorded), the variables this host's roles set that other hosts read.
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: May this host skip the run?
  rvm_converge_state:
    state: check
    intent: "{{ rvm_converge_intent }}"
  register: converge
"""

RETURN = r"""
current:
  description: With I(state=check), whether the host may skip this run.
  type: bool
  returned: always
reason:
  description: Why (the first difference found, or how old the record is).
  type: str
  returned: always
files:
  description: How many files the record holds.
  type: int
  returned: success
ansible_facts:
  description: With I(state=check) on a current host, the variables its last converge published.
  type: dict
  returned: success
"""

import shutil
import subprocess
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.rvm_converge_core import build, check, load, remove, save

PROPERTIES = ("ActiveState", "UnitFileState")


def units_state(units: list[str]) -> dict[str, dict[str, str]]:
    """``systemctl show`` for every unit at once: {unit: {ActiveState, UnitFileState}} (its blocks come
    in the order the units are named)."""
    if not units or shutil.which("systemctl") is None:
        return {}
    out = subprocess.run(
        ["systemctl", "show", "--property=" + ",".join(PROPERTIES), "--", *units],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    found: dict[str, dict[str, str]] = {}
    for block, unit in zip(out.strip().split("\n\n"), units, strict=False):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        found[unit] = {k: props.get(k, "") for k in PROPERTIES}
    return found


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["check", "recorded", "absent"], "default": "check"},
            "path": {"type": "path", "default": "/var/lib/rvm-fleet/converge.json"},
            "intent": {"type": "str"},
            "max_age_s": {"type": "int", "default": 86400},
            "force": {"type": "bool", "default": False},
            "files": {"type": "list", "elements": "path", "default": []},
            "units": {"type": "list", "elements": "str", "default": []},
            "published": {"type": "dict", "default": {}},
        },
        required_if=[("state", "check", ["intent"]), ("state", "recorded", ["intent"])],
        supports_check_mode=True,
    )
    p: dict[str, Any] = module.params
    path = p["path"]
    if p["state"] == "absent":
        if not module.check_mode:
            remove(path)
        module.exit_json(changed=False, current=False, reason="record removed")
    if p["state"] == "recorded":
        record = build(p["intent"], p["files"], units_state(p["units"]), published=p["published"])
        if not module.check_mode:
            save(path, record)
        module.exit_json(changed=False, current=True, reason="recorded", files=len(record["files"]))
    record = load(path)
    if p["force"]:
        current, reason = False, "full converge asked for (rvm_converge_force, or the fast path is off)"
    elif not p["intent"]:
        current, reason = False, "no intent: the rvm_converge callback is not enabled (ansible.cfg)"
    else:
        units = list((record or {}).get("units", {}))
        current, reason = check(record, p["intent"], p["max_age_s"], units_state(units))
    if not current and record is not None and not module.check_mode:
        remove(path)
    facts = (record or {}).get("published", {}) if current else {}
    module.exit_json(
        changed=False,
        current=current,
        reason=reason,
        files=len((record or {}).get("files", {})),
        ansible_facts=facts,
    )


if __name__ == "__main__":
    main()
