"""Ansible module rvm_release: the release directory of rvm-edge on one device.

The logic lives in module_utils (bundle format, on-disk store, per-state plans); this file is the
thin Ansible shell: arguments, check mode, diff, facts and error reporting.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rvm_release
short_description: Install, activate, roll back and prune rvm-edge releases on a device
description:
  - Manages the release directory of the rvm-edge service, by default C(/opt/rvm-edge).
    Each release lives in C(releases/<version>); the symlinks C(current) and C(previous) in the
    root point at releases with relative targets (C(releases/<version>)).
  - Every visible change is one rename(2) of something fully prepared beside its destination
    (a release tree, a marker file, a symlink created under a temporary name), so a run killed at
    any point leaves C(current) pointing at a complete release. Leftover C(.rvm-tmp-*) files of an
    interrupted run are removed by the next changing run. Changing runs on one host are serialised
    with C(flock) on C(<root>/.rvm-release.lock).
  - A release is installed from a bundle C(rvm-edge-<version>-<arch>.tar.gz) already present on the
    managed host. The archive root must hold C(MANIFEST.json) and exactly the files it lists, as
    regular files and directories only (no symlinks, hard links, devices; no absolute paths or
    C(..)). Member names may carry a leading C(./). Builders should write C(MANIFEST.json) as the
    first member, so a bundle for the wrong architecture is refused before anything else is unpacked.
  - "C(MANIFEST.json) schema 1, a JSON object with exactly these keys:
    C(schema) (integer C(1));
    C(name) (the string C(rvm-edge));
    C(version) (1-64 characters of letters, digits, C(.), C(_), C(+), C(-), starting with a letter or
    digit; must equal the version in the file name);
    C(arch) (C(x86_64) or C(aarch64); must equal the arch in the file name and the host's);
    C(python) (the CPython minor version the wheelhouse targets, for example C(3.10));
    C(created) (ISO 8601 timestamp string, for example C(2026-11-29T16:00:00Z));
    C(files) (non-empty object mapping each file's normalised relative POSIX path to its sha256 as 64
    lowercase hex digits; every regular file in the archive except C(MANIFEST.json) must be listed,
    and C(MANIFEST.json) and C(.rvm-release.json) may not be);
    optional C(wheel) (the path of the app wheel, a C(.whl) listed under C(files)).
    Unknown keys are refused."
  - An installed release carries a marker C(releases/<version>/.rvm-release.json) with its install
    and activation record. The module never builds the virtualenv or restarts the service; the
    rvm_edge role does that between I(state=present) and I(state=current). Files the role adds to
    a release directory (venv, rendered config) are allowed; only the files of the manifest are
    verified.
  - "Rollback semantics: rolling back from C(C) to C(T) marks C(C) C(rolled_back) and sets
    C(previous) to the release activated most recently before C(T) that was not rolled back from
    (or removes C(previous) when there is none). Rolling back twice therefore walks back through
    the deploy history (v3 -> v2 -> v1) and never returns to a failed release."
  - Rolling back to C(previous) is an action, not a desired state; running it twice rolls back twice.
    For retries that must be idempotent, read C(ansible_facts.rvm_release.previous) first and pass it
    as I(to); a rollback to the release that is already current changes nothing.
  - When C(current) and C(previous) name the same release, an activation or rollback was interrupted
    after its first switch; I(state=rollback) then only repairs C(previous) (current is the release
    that was running), and re-running the interrupted I(state=current) completes it.
version_added: "1.0.0"
author:
  - rvm-fleet maintainers (@rvm-fleet)
options:
  state:
    description:
      - C(present) installs I(bundle) (verified against its manifest) as C(releases/<version>); with
        only I(version) it asserts that release is installed. Installing an already installed,
        identical bundle changes nothing; a different bundle with the same version is refused.
      - C(current) makes the installed I(version) current after re-verifying its files (see
        I(verify)); the old current becomes C(previous).
      - C(rollback) makes C(previous), or the installed release I(to), current. Refused when there
        is no C(previous) and no I(to).
      - C(absent) removes release I(version); refused for the current or previous release.
      - C(pruned) keeps I(keep) releases and removes the rest.
      - C(info) changes nothing and reports the releases as facts.
    type: str
    choices: [present, current, rollback, absent, pruned, info]
    default: present
  root:
    description: The app's directory holding C(releases/), C(current) and C(previous).
    type: path
    default: /opt/rvm-edge
  version:
    description:
      - The release version. Required for I(state=current) and I(state=absent).
      - With I(state=present) and I(bundle), the bundle's file name and manifest must name this version.
    type: str
  bundle:
    description:
      - Path on the managed host of the bundle C(rvm-edge-<version>-<arch>.tar.gz) to install.
      - Used with I(state=present).
    type: path
  bundle_sha256:
    description:
      - Expected sha256 of the bundle file itself; a mismatch (corrupt or truncated copy) is refused
        before anything is unpacked.
    type: str
  arch:
    description:
      - The architecture a bundle must be built for. Defaults to this host's (C(platform.machine()),
        with C(arm64) read as C(aarch64) and C(amd64) as C(x86_64)).
    type: str
    choices: [x86_64, aarch64]
  python_version:
    description: When set, a bundle's manifest must name this Python minor version (for example C(3.10)).
    type: str
  to:
    description: With I(state=rollback), the installed release to roll back to instead of C(previous).
    type: str
  keep:
    description:
      - With I(state=pruned), how many releases to keep, counting C(current) and C(previous), which
        are always kept. The other slots go to the most recently installed or activated releases.
    type: int
    default: 3
  verify:
    description:
      - Re-hash the files of the release that is about to become current (I(state=current),
        I(state=rollback)) against its manifest, and refuse the switch on any difference.
    type: bool
    default: true
notes:
  - The bundle format has a reference writer, C(write_bundle) in C(library/module_utils/rvm_release_bundle.py),
    which imports nothing from Ansible so the bundle builder can load it directly.
  - Supports check mode (bundles are still read and verified, nothing is written) and diff mode
    (C(current), C(previous) and the installed versions before and after).
  - Facts are returned for every state under C(ansible_facts.rvm_release); in check mode they show
    the directory as it is, while the C(current) and C(previous) return values show the prediction.
requirements:
  - Python >= 3.10 on the managed host, Linux (flock, rename, symlinks).
"""

EXAMPLES = r"""
- name: Install the release beside the running one
  rvm_release:
    state: present
    bundle: /var/cache/rvm-edge/rvm-edge-1.4.0-aarch64.tar.gz
    bundle_sha256: "{{ rvm_edge_bundle_sha256 }}"
    version: "1.4.0"
    python_version: "3.10"

- name: Switch current to it (after the venv is built and the config rendered)
  rvm_release:
    state: current
    version: "1.4.0"
  register: __rvm_edge_switch

- name: Roll back to previous after a failed health gate
  rvm_release:
    state: rollback

- name: Roll back to a named release
  rvm_release:
    state: rollback
    to: "1.2.0"

- name: Keep three releases
  rvm_release:
    state: pruned
    keep: 3

- name: Remove one release that is neither current nor previous
  rvm_release:
    state: absent
    version: "1.1.0"

- name: Read the releases into facts
  rvm_release:
    state: info
- name: Show what runs
  ansible.builtin.debug:
    msg: "current {{ ansible_facts.rvm_release.current }}, previous {{ ansible_facts.rvm_release.previous }}"
"""

RETURN = r"""
msg:
  description: One line saying what was done or would be done.
  returned: always
  type: str
  sample: "current: 1.3.0 -> 1.4.0"
actions:
  description: The steps taken (or, in check mode, that would be taken), in order.
  returned: always
  type: list
  elements: str
  sample: ["previous: 1.2.0 -> 1.3.0", "current: 1.3.0 -> 1.4.0", "mark 1.4.0 activated"]
release:
  description: The version this call acted on (installed, activated, rolled back to, removed); null for info and pruned.
  returned: always
  type: str
  sample: "1.4.0"
before:
  description:
    - C(current) and C(previous) as they were before the call, for deploy records (from -> to) and for
      choosing the schema migration to undo after a rollback.
  returned: always
  type: dict
  sample: {"current": "1.3.0", "previous": "1.2.0"}
current:
  description: The current release after the call (predicted in check mode); null when there is none.
  returned: always
  type: str
  sample: "1.4.0"
previous:
  description: The previous release after the call (predicted in check mode); null when there is none.
  returned: always
  type: str
  sample: "1.3.0"
releases:
  description: The installed releases, oldest install first, as in C(ansible_facts.rvm_release.releases).
  returned: always
  type: list
  elements: dict
ansible_facts:
  description: Facts about the release directory.
  returned: always
  type: dict
  contains:
    rvm_release:
      description: The release directory as found on disk after the call.
      type: dict
      contains:
        root:
          description: The root directory.
          type: str
        current:
          description: Version C(current) points to, or null.
          type: str
        previous:
          description: Version C(previous) points to, or null.
          type: str
        versions:
          description: Installed versions, oldest install first.
          type: list
          elements: str
        releases:
          description:
            - One dict per installed release with keys C(version), C(path), C(arch), C(python),
              C(wheel) (path relative to C(path), or null), C(bundle) (file name it came from),
              C(manifest_sha256), C(state) (C(installed), C(activated) or C(rolled_back)),
              C(installed_at), C(activated_at), C(rolled_back_at) (UTC ISO 8601 or null),
              C(current) and C(previous) (booleans).
          type: list
          elements: dict
"""

import platform
from pathlib import Path
from typing import Any

import ansible.module_utils
from ansible.module_utils.basic import AnsibleModule

# Tools that load this file directly instead of through AnsiballZ (ansible-lint's argument check,
# the unit tests) need library/module_utils on the package path; under AnsiballZ the directory does
# not exist beside the payload and this does nothing.
_LOCAL_MODULE_UTILS = Path(__file__).resolve().parent / "module_utils"
if _LOCAL_MODULE_UTILS.is_dir() and str(_LOCAL_MODULE_UTILS) not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(str(_LOCAL_MODULE_UTILS))

from ansible.module_utils.rvm_release_bundle import (
    SHA256_RE,
    Expectation,
    ReleaseError,
    check_version,
    normalize_arch,
)
from ansible.module_utils.rvm_release_ops import (
    Plan,
    plan_absent,
    plan_current,
    plan_present,
    plan_pruned,
    plan_rollback,
)
from ansible.module_utils.rvm_release_store import ReleaseStore, Snapshot

ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "state": {
        "type": "str",
        "default": "present",
        "choices": ["present", "current", "rollback", "absent", "pruned", "info"],
    },
    "root": {"type": "path", "default": "/opt/rvm-edge"},
    "version": {"type": "str"},
    "bundle": {"type": "path"},
    "bundle_sha256": {"type": "str"},
    "arch": {"type": "str", "choices": ["x86_64", "aarch64"]},
    "python_version": {"type": "str"},
    "to": {"type": "str"},
    "keep": {"type": "int", "default": 3},
    "verify": {"type": "bool", "default": True},
}

REQUIRED_IF = [
    ("state", "present", ("bundle", "version"), True),
    ("state", "current", ("version",)),
    ("state", "absent", ("version",)),
]


def facts(store: ReleaseStore, snap: Snapshot) -> dict[str, Any]:
    """The directory as facts; releases ordered by install so the list reads like a history."""
    ordered = sorted(snap.releases.values(), key=lambda r: r.installed_seq)
    releases = []
    for release in ordered:
        entry = release.to_marker()
        for internal in ("installed_seq", "activated_seq"):
            entry.pop(internal)
        entry["path"] = str(store.release_path(release.version))
        entry["current"] = release.version == snap.current
        entry["previous"] = release.version == snap.previous
        releases.append(entry)
    return {
        "root": str(store.root),
        "current": snap.current,
        "previous": snap.previous,
        "versions": [r.version for r in ordered],
        "releases": releases,
    }


def describe(current: str | None, previous: str | None, versions: set[str]) -> str:
    """Diff text: what an operator compares before and after a switch."""
    return (
        f"current: {current or '(none)'}\n"
        f"previous: {previous or '(none)'}\n"
        f"releases: {', '.join(sorted(versions)) or '(none)'}\n"
    )


def make_plan(module: AnsibleModule, store: ReleaseStore, snap: Snapshot) -> Plan:
    params = module.params
    state = params["state"]
    if state == "present":
        expect = Expectation(
            arch=params["arch"] or normalize_arch(platform.machine()),
            version=params["version"],
            python=params["python_version"],
        )
        bundle = Path(params["bundle"]) if params["bundle"] else None
        return plan_present(store, snap, expect, bundle, params["bundle_sha256"], module.check_mode)
    if state == "current":
        return plan_current(store, snap, params["version"], params["verify"])
    if state == "rollback":
        return plan_rollback(store, snap, params["to"], params["verify"])
    if state == "absent":
        return plan_absent(store, snap, params["version"])
    if state == "pruned":
        return plan_pruned(store, snap, params["keep"])
    return Plan(snap.current, snap.previous, set(snap.releases))


def check_params(params: dict[str, Any]) -> None:
    """Refuse bad values before anything is read, naming the parameter."""
    for name in ("version", "to"):
        if params[name] is not None:
            check_version(params[name], f"parameter {name}:")
    if params["to"] is not None and params["state"] != "rollback":
        raise ReleaseError(f"parameter to is only used with state=rollback, not state={params['state']}")
    digest = params["bundle_sha256"]
    if digest is not None and not SHA256_RE.match(digest.lower()):
        raise ReleaseError(f"parameter bundle_sha256: expected 64 hex digits, got {digest!r}")


def run(module: AnsibleModule) -> dict[str, Any]:
    """Plan against a snapshot, then (outside check mode, under the lock) run the plan."""
    store = ReleaseStore(Path(module.params["root"]))
    check_params(module.params)
    read_only = module.check_mode or module.params["state"] == "info"
    if read_only or (module.params["state"] != "present" and not store.root.is_dir()):
        before = store.snapshot()
        plan = make_plan(module, store, before)
        if not read_only:
            plan.run()
        after = before
    else:
        with store.locked():
            before = store.snapshot()
            plan = make_plan(module, store, before)
            plan.run()
            after = store.snapshot()
    for warning in after.warnings:
        module.warn(warning)
    result: dict[str, Any] = {
        "changed": bool(plan.steps),
        "msg": "; ".join(plan.actions) or f"no change (current: {plan.current or 'none'})",
        "actions": plan.actions,
        "release": plan.release,
        "before": {"current": before.current, "previous": before.previous},
        "current": plan.current,
        "previous": plan.previous,
        "releases": facts(store, after)["releases"],
        "ansible_facts": {"rvm_release": facts(store, after)},
    }
    if module._diff:
        result["diff"] = {
            "before_header": f"{store.root} (before)",
            "after_header": f"{store.root} (after)",
            "before": describe(before.current, before.previous, set(before.releases)),
            "after": describe(plan.current, plan.previous, plan.versions),
        }
    return result


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, required_if=REQUIRED_IF, supports_check_mode=True)
    try:
        result = run(module)
    except ReleaseError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg=f"rvm_release: {exc.strerror or exc} ({exc.filename or module.params['root']})")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
