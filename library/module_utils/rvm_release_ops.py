"""What each state of the rvm_release module does, as a plan of named steps.

Why plans: check mode must report exactly what a real run would do, so every operation first
decides its steps against a snapshot of the directory (raising ReleaseError for anything it
refuses, before any step runs) and only then, outside check mode, executes them in order.

Step order is what makes an interrupted run safe; each step is one atomic rename, and the order
is chosen so that after any prefix of the steps ``current`` still names a complete release and a
re-run of the same operation finishes the job:

- activate N (current C, previous P): previous := C, then current := N (the commit), then mark N
  activated. Interrupted after the first step, current == previous == C, which every operation
  recognises as an unfinished switch.
- roll back from C to T: mark C rolled_back, mark T activated, current := T (the commit), then
  previous := the release activated before T that was not rolled back from (or none). So rolling
  back twice walks back through the deploy history instead of bouncing to the failed release.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ansible.module_utils.rvm_release_bundle import (
    Expectation,
    ReleaseError,
    check_expectation,
    file_sha256,
    parse_bundle_name,
    read_bundle_manifest,
    verify_bundle,
)
from ansible.module_utils.rvm_release_store import (
    Release,
    ReleaseStore,
    Snapshot,
    activated,
    rolled_back,
)


@dataclass
class Plan:
    """Named steps plus the state of the links and the release set once they have all run."""

    current: str | None
    previous: str | None
    versions: set[str]
    steps: list[tuple[str, Callable[[], object]]] = field(default_factory=list)
    release: str | None = None

    def add(self, description: str, action: Callable[[], object]) -> None:
        self.steps.append((description, action))

    @property
    def actions(self) -> list[str]:
        return [step[0] for step in self.steps]

    def run(self) -> None:
        for _description, action in self.steps:
            action()


def _installed(snap: Snapshot) -> str:
    return ", ".join(sorted(snap.releases)) or "none"


def _start(store: ReleaseStore, snap: Snapshot) -> Plan:
    plan = Plan(snap.current, snap.previous, set(snap.releases))
    if snap.temps:
        temps = list(snap.temps)
        names = ", ".join(str(p.relative_to(store.root)) for p in temps)
        plan.add(f"remove leftovers of an interrupted run: {names}", lambda: store.remove_temps(temps))
    return plan


def history_previous(releases: dict[str, Release], current: str) -> str | None:
    """The release to offer as ``previous`` after a rollback to ``current``.

    It is the one activated most recently before ``current`` was, skipping releases that were
    rolled back from (they failed or were abandoned) and releases never activated.
    """
    cur = releases[current]
    if cur.activated_seq is None:
        return None
    candidates = [
        r
        for r in releases.values()
        if r.version != current
        and r.state == "activated"
        and r.activated_seq is not None
        and r.activated_seq < cur.activated_seq
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda r: r.activated_seq or 0).version


def _set_link(store: ReleaseStore, plan: Plan, name: str, old: str | None, new: str | None) -> None:
    if old == new:
        return
    plan.add(f"{name}: {old or '(none)'} -> {new or '(none)'}", lambda: store.switch_link(name, new))
    setattr(plan, name, new)


def _write_marker(store: ReleaseStore, plan: Plan, release: Release, what: str) -> None:
    plan.add(f"mark {release.version} {what}", lambda: store.write_marker(release))


def plan_present(
    store: ReleaseStore,
    snap: Snapshot,
    expect: Expectation,
    bundle: Path | None,
    bundle_sha256: str | None,
    check_mode: bool,
) -> Plan:
    """Install a bundle as releases/<version>; identical re-installs change nothing."""
    plan = _start(store, snap)
    if bundle is None:
        version = expect.version
        if version is None:  # pragma: no cover - the module's argument spec requires one of them
            raise ReleaseError("state=present needs bundle or version")
        if version not in snap.releases:
            raise ReleaseError(
                f"release {version} is not installed under {store.releases_dir} and no bundle was given "
                f"(installed: {_installed(snap)})"
            )
        plan.release = version
        return plan
    name_version, _arch = parse_bundle_name(bundle)
    plan.release = name_version
    if not bundle.is_file():
        raise ReleaseError(f"bundle {bundle} does not exist or is not a regular file")
    if bundle_sha256 is not None:
        actual = file_sha256(bundle)
        if actual != bundle_sha256.lower():
            raise ReleaseError(
                f"bundle {bundle}: sha256 is {actual} but bundle_sha256 says {bundle_sha256}; "
                "the copy is corrupt or truncated"
            )
    if name_version in snap.unmanaged:
        raise ReleaseError(
            f"{store.release_path(name_version)} exists but was not installed by rvm_release; "
            "remove it by hand before installing this version"
        )
    existing = snap.releases.get(name_version)
    if existing is not None:
        manifest = read_bundle_manifest(bundle)
        check_expectation(manifest, expect, f"bundle {bundle}")
        if manifest.version != name_version:
            raise ReleaseError(
                f"bundle {bundle}: the file name says version {name_version} but MANIFEST.json says "
                f"{manifest.version}"
            )
        if manifest.sha256 != existing.manifest_sha256:
            raise ReleaseError(
                f"release {name_version} is already installed from a different bundle (MANIFEST.json sha256 "
                f"{existing.manifest_sha256} installed, {manifest.sha256} in {bundle}); versions are "
                "immutable: build a new version, or remove this one with state=absent first"
            )
        return plan
    if check_mode:
        # A real run verifies while unpacking; a dry run reads the whole bundle so it fails alike.
        verify_bundle(bundle, expect, dest=None)
    seq = snap.next_seq()
    plan.add(
        f"install {name_version} from {bundle} into {store.release_path(name_version)}",
        lambda: store.install(bundle, expect, seq),
    )
    plan.versions.add(name_version)
    return plan


def plan_current(store: ReleaseStore, snap: Snapshot, version: str, verify: bool) -> Plan:
    """Make an installed release current; the old current becomes previous."""
    plan = _start(store, snap)
    plan.release = version
    release = snap.releases.get(version)
    if release is None:
        raise ReleaseError(
            f"release {version} is not installed under {store.releases_dir} (installed: {_installed(snap)}); "
            "install it first with state=present"
        )
    cur, prev = snap.current, snap.previous
    if cur == version:
        if release.state != "activated":
            seq = snap.next_seq() if release.activated_seq is None else None
            _write_marker(store, plan, activated(release, seq), "activated")
        if prev == cur:
            _set_link(store, plan, "previous", prev, history_previous(snap.releases, version))
        return plan
    if verify:
        store.verify(release)
    if cur is not None:
        _set_link(store, plan, "previous", prev, cur)
    _set_link(store, plan, "current", cur, version)
    _write_marker(store, plan, activated(release, snap.next_seq()), "activated")
    return plan


def plan_rollback(store: ReleaseStore, snap: Snapshot, to: str | None, verify: bool) -> Plan:
    """Switch current back to previous (or to ``to``) and work out the new previous."""
    plan = _start(store, snap)
    cur, prev = snap.current, snap.previous
    if to is not None:
        if to not in snap.releases:
            raise ReleaseError(
                f"cannot roll back to {to}: it is not installed under {store.releases_dir} "
                f"(installed: {_installed(snap)})"
            )
        target = to
    elif prev is None:
        raise ReleaseError(
            f"nothing to roll back to: {store.link_path('previous')} does not exist (current: {cur or 'none'}); "
            f"pass to=<version> to roll back to a named release (installed: {_installed(snap)})"
        )
    else:
        # previous == current means an activation or rollback was interrupted after its first
        # switch; current is still the release that was running, so only previous needs finishing.
        target = prev if prev != cur else cur
    plan.release = target
    releases = dict(snap.releases)
    if target != cur:
        if verify:
            store.verify(releases[target])
        if cur is not None and releases[cur].state != "rolled_back":
            releases[cur] = rolled_back(releases[cur])
            _write_marker(store, plan, releases[cur], "rolled_back")
    chosen = releases[target]
    if chosen.state != "activated":
        releases[target] = activated(chosen, snap.next_seq() if chosen.activated_seq is None else None)
        _write_marker(store, plan, releases[target], "activated")
    _set_link(store, plan, "current", cur, target)
    _set_link(store, plan, "previous", prev, history_previous(releases, target))
    return plan


def plan_absent(store: ReleaseStore, snap: Snapshot, version: str) -> Plan:
    """Remove one release that is neither current nor previous."""
    plan = _start(store, snap)
    plan.release = version
    for name, linked in (("current", snap.current), ("previous", snap.previous)):
        if linked == version:
            raise ReleaseError(
                f"release {version} is {name}; it cannot be removed (activate or roll back to another "
                "release first)"
            )
    if version in snap.unmanaged:
        raise ReleaseError(
            f"{store.release_path(version)} was not installed by rvm_release; remove it by hand if it must go"
        )
    if version in snap.releases:
        plan.add(f"remove release {version}", lambda: store.remove(version))
        plan.versions.discard(version)
    return plan


def plan_pruned(store: ReleaseStore, snap: Snapshot, keep: int) -> Plan:
    """Keep ``keep`` releases: current and previous always, then the most recently used ones."""
    if keep < 1:
        raise ReleaseError(f"keep must be at least 1, got {keep}")
    plan = _start(store, snap)
    protected = {v for v in (snap.current, snap.previous) if v is not None}
    others = sorted(
        (r for r in snap.releases.values() if r.version not in protected),
        key=lambda r: r.last_used,
        reverse=True,
    )
    for release in others[max(0, keep - len(protected)) :]:
        version = release.version
        plan.add(f"remove release {version}", lambda v=version: store.remove(v))
        plan.versions.discard(version)
    return plan
