"""A run interrupted between any two filesystem steps leaves a consistent directory; a re-run finishes.

Each operation runs in a forked child whose filesystem-changing calls (rename, replace, symlink,
unlink, rmdir, mkdir, fsync) are counted. At the k-th call the child either dies with os._exit,
like a SIGKILL or a power cut (no exception handler or ``finally`` runs), or gets an EIO error,
which the module must report as a failure naming it. For every k until the operation completes
untouched, the test checks what an operator would rely on afterwards, then re-runs the operation
and compares the result with an uninterrupted run.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.rvm_release_store import ReleaseStore
from rvm_release_helpers import ModuleRun, make_bundle

CRASHED = 77
COMPLETED = 0
MODULE_FAILED = 2
WRONG_MESSAGE = 3
INJECTED_FAILED = 78
INJECTED_SWALLOWED = 79
CRASH_POINTS = ("replace", "rename", "symlink", "unlink", "rmdir", "mkdir", "fsync")
INJECTED = "injected I/O error"
TMP = ".rvm-tmp-"


def run_interrupted_at(args: dict[str, Any], k: int, mode: str) -> int:
    """Run the module in a child whose k-th filesystem call dies (``kill``) or fails (``eio``)."""
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        code = 1
        try:
            calls = itertools.count(1)
            injected: list[int] = []
            for name in CRASH_POINTS:
                original = getattr(os, name)

                def interrupted(*a: Any, _original: Callable[..., Any] = original, **kw: Any) -> Any:
                    if next(calls) == k:
                        if mode == "kill":
                            os._exit(CRASHED)
                        injected.append(k)
                        raise OSError(errno.EIO, INJECTED)
                    return _original(*a, **kw)

                setattr(os, name, interrupted)
            result = ModuleRun()(args)
            if not injected:
                code = MODULE_FAILED if result.get("failed") else COMPLETED
            elif result.get("failed"):
                code = INJECTED_FAILED if INJECTED in result["msg"] else WRONG_MESSAGE
            else:
                code = INJECTED_SWALLOWED
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@dataclass(frozen=True)
class State:
    current: str | None
    previous: str | None
    markers: dict[str, str]
    temps: list[str]


def read_state(root: Path) -> State:
    def link(name: str) -> str | None:
        path = root / name
        return os.readlink(path).removeprefix("releases/") if path.is_symlink() else None

    markers = {}
    releases = root / "releases"
    for entry in sorted(releases.iterdir()):
        marker = entry / ".rvm-release.json"
        if not entry.name.startswith(TMP) and marker.is_file():
            markers[entry.name] = json.loads(marker.read_text())["state"]
    temps = sorted(str(p.relative_to(root)) for p in root.rglob(TMP + "*"))
    return State(link("current"), link("previous"), markers, temps)


def assert_consistent(root: Path, allowed_current: set[str | None]) -> None:
    """What must hold after a crash at any point: only complete releases are ever visible."""
    store = ReleaseStore(root)
    snap = store.snapshot()
    state = read_state(root)
    assert state.current in allowed_current, f"current -> {state.current}, expected one of {allowed_current}"
    for name in ("current", "previous"):
        if (root / name).is_symlink():
            assert (root / name).resolve().is_dir(), f"{name} dangles"
    for entry in (root / "releases").iterdir():
        if entry.name.startswith(TMP):
            continue
        assert entry.name in snap.releases, f"{entry} is visible but has no marker: a half-made release"
        store.verify(snap.releases[entry.name])


@dataclass(frozen=True)
class Scenario:
    setup: Callable[[ModuleRun, Path, Path], None]
    op: dict[str, Any]
    # rollback to previous is an action, not a desired state: re-running it after it finished
    # rolls back once more, so the re-run only happens when the crash left it unfinished.
    rerun_only_if_unfinished: bool = False


def _deploy(run: ModuleRun, root: Path, bundles: Path, *versions: str) -> None:
    for version in versions:
        bundle = make_bundle(bundles, version)
        assert not run({"root": str(root), "state": "present", "bundle": str(bundle)}).get("failed")
        assert not run({"root": str(root), "state": "current", "version": version}).get("failed")


def _running_one_with_bundle_for_next(run: ModuleRun, root: Path, bundles: Path) -> None:
    _deploy(run, root, bundles, "1.0.0")
    make_bundle(bundles, "2.0.0")


def _running_two_with_third_installed(run: ModuleRun, root: Path, bundles: Path) -> None:
    _deploy(run, root, bundles, "1.0.0", "2.0.0")
    bundle = make_bundle(bundles, "3.0.0")
    assert not run({"root": str(root), "state": "present", "bundle": str(bundle)}).get("failed")


SCENARIOS: dict[str, Scenario] = {
    "install": Scenario(
        _running_one_with_bundle_for_next,
        {"state": "present", "bundle": "{bundles}/rvm-edge-2.0.0-x86_64.tar.gz"},
    ),
    "activate": Scenario(
        _running_two_with_third_installed,
        {"state": "current", "version": "3.0.0"},
    ),
    "rollback to previous": Scenario(
        lambda run, root, b: _deploy(run, root, b, "1.0.0", "2.0.0", "3.0.0"),
        {"state": "rollback"},
        rerun_only_if_unfinished=True,
    ),
    "rollback to named": Scenario(
        lambda run, root, b: _deploy(run, root, b, "1.0.0", "2.0.0", "3.0.0"),
        {"state": "rollback", "to": "1.0.0"},
    ),
    "prune": Scenario(
        lambda run, root, b: _deploy(run, root, b, "1.0.0", "2.0.0", "3.0.0", "4.0.0"),
        {"state": "pruned", "keep": 2},
    ),
    "absent": Scenario(
        lambda run, root, b: _deploy(run, root, b, "1.0.0", "2.0.0", "3.0.0"),
        {"state": "absent", "version": "1.0.0"},
    ),
}


@pytest.mark.parametrize("mode", ["kill", "eio"])
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_interruption_at_every_step_leaves_consistent_state_and_rerun_completes(
    name: str, mode: str, tmp_path: Path
) -> None:
    scenario = SCENARIOS[name]
    run = ModuleRun()
    template, bundles = tmp_path / "template", tmp_path / "bundles"
    scenario.setup(run, template, bundles)
    op = {k: v.format(bundles=bundles) if isinstance(v, str) else v for k, v in scenario.op.items()}

    def fresh(label: str) -> Path:
        target = tmp_path / label
        shutil.copytree(template, target, symlinks=True)
        return target

    start = read_state(template)
    reference_root = fresh("reference")
    reference = run({**op, "root": str(reference_root)})
    assert reference["changed"] is True and not reference.get("failed")
    expected = read_state(reference_root)
    assert expected.temps == []
    allowed_current = {start.current, expected.current}

    leftovers_seen = 0
    for k in itertools.count(1):
        root = fresh(f"{mode}-{k}")
        code = run_interrupted_at({**op, "root": str(root)}, k, mode)
        if code == COMPLETED:
            break
        assert_consistent(root, allowed_current)
        if code == INJECTED_SWALLOWED:  # the error hit a call whose failure is harmless (mkdir exist_ok)
            assert read_state(root) == expected
            continue
        assert code == {"kill": CRASHED, "eio": INJECTED_FAILED}[mode], f"step {k}: child exited with {code}"
        leftovers_seen += bool(read_state(root).temps)
        if scenario.rerun_only_if_unfinished and read_state(root) == expected:
            continue
        rerun = run({**op, "root": str(root)})
        assert not rerun.get("failed"), f"step {k}: re-run failed: {rerun['msg']}"
        assert read_state(root) == expected, f"step {k} interrupted, then a re-run gave a different result"
        assert_consistent(root, {expected.current})
        shutil.rmtree(root)
    assert k > 3, "the operation must have been interrupted at several steps"
    if mode == "kill" and name in ("install", "prune", "absent"):
        assert leftovers_seen, "some crash must have left a temp dir, so its cleanup was exercised"
