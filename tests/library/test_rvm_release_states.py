"""The states of rvm_release as the rvm_edge role and the deploy/rollback playbooks use them."""

from __future__ import annotations

import errno
import json
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rvm_release_helpers import ModuleRun, make_bundle

Deploy = Callable[[str], dict[str, Any]]


def links(root: Path) -> tuple[str | None, str | None]:
    """What current and previous point at, read straight from the filesystem."""
    found = []
    for name in ("current", "previous"):
        path = root / name
        found.append(os.readlink(path).removeprefix("releases/") if path.is_symlink() else None)
    return found[0], found[1]


def marker(root: Path, version: str) -> dict[str, Any]:
    return json.loads((root / "releases" / version / ".rvm-release.json").read_text())


def args(root: Path, **kwargs: Any) -> dict[str, Any]:
    return {"root": str(root), **kwargs}


# ---- install ------------------------------------------------------------------------------------


def test_install_unpacks_verified_release_with_marker(
    run_module: ModuleRun, root: Path, bundles: Path
) -> None:
    bundle = make_bundle(bundles, "1.0.0")

    result = run_module(args(root, state="present", bundle=str(bundle)))

    assert result["changed"] is True
    release = root / "releases" / "1.0.0"
    assert (release / "models" / "detector.onnx").read_bytes().startswith(b"onnx graph for 1.0.0")
    assert (release / "MANIFEST.json").is_file()
    record = marker(root, "1.0.0")
    assert record["state"] == "installed"
    assert record["installed_at"].endswith("Z")
    assert record["activated_at"] is None
    assert links(root) == (None, None), "installing must not touch current"
    assert result["ansible_facts"]["rvm_release"]["versions"] == ["1.0.0"]


def test_reinstalling_identical_bundle_changes_nothing(
    run_module: ModuleRun, root: Path, bundles: Path
) -> None:
    bundle = make_bundle(bundles, "1.0.0")
    run_module(args(root, state="present", bundle=str(bundle)))
    stamp = marker(root, "1.0.0")["installed_at"]

    result = run_module(args(root, state="present", bundle=str(bundle), version="1.0.0"))

    assert result["changed"] is False
    assert marker(root, "1.0.0")["installed_at"] == stamp


def test_same_version_from_different_bundle_is_refused(
    run_module: ModuleRun, root: Path, bundles: Path
) -> None:
    run_module(args(root, state="present", bundle=str(make_bundle(bundles / "a", "1.0.0"))))
    other = make_bundle(bundles / "b", "1.0.0", files={"rvm_edge-1.0.0-py3-none-any.whl": b"rebuilt"})

    result = run_module(args(root, state="present", bundle=str(other)))

    assert result["failed"] is True
    assert "already installed from a different bundle" in result["msg"]
    assert "versions are immutable" in result["msg"]


def test_present_by_version_only_asserts_installed(run_module: ModuleRun, root: Path) -> None:
    result = run_module(args(root, state="present", version="9.9.9"))
    assert result["failed"] is True
    assert "release 9.9.9 is not installed" in result["msg"]
    assert "no bundle was given" in result["msg"]


def test_check_mode_install_writes_nothing(run_module: ModuleRun, root: Path, bundles: Path) -> None:
    bundle = make_bundle(bundles, "1.0.0")

    result = run_module(args(root, state="present", bundle=str(bundle)), check=True, diff=True)

    assert result["changed"] is True
    assert not root.exists()
    assert result["diff"]["after"].endswith("releases: 1.0.0\n")
    assert result["diff"]["before"].endswith("releases: (none)\n")


def test_leftover_temp_dir_is_removed_by_next_run(run_module: ModuleRun, root: Path, bundles: Path) -> None:
    run_module(args(root, state="present", bundle=str(make_bundle(bundles, "1.0.0"))))
    half = root / "releases" / ".rvm-tmp-install-dead"
    (half / "wheelhouse").mkdir(parents=True)
    (half / "wheelhouse" / "partial.whl").write_bytes(b"half")

    check = run_module(args(root, state="present", version="1.0.0"), check=True)
    assert check["changed"] is True and half.exists(), "check mode reports the cleanup but keeps the dir"
    result = run_module(args(root, state="present", version="1.0.0"))

    assert result["changed"] is True
    assert "remove leftovers of an interrupted run: releases/.rvm-tmp-install-dead" in result["actions"]
    assert not half.exists()


# ---- current ------------------------------------------------------------------------------------


def test_activate_switches_current_and_previous(run_module: ModuleRun, root: Path, deploy: Deploy) -> None:
    deploy("1.0.0")
    first = marker(root, "1.0.0")
    assert first["state"] == "activated" and first["activated_at"] is not None
    result = deploy("2.0.0")

    assert links(root) == ("2.0.0", "1.0.0")
    assert result["current"] == "2.0.0" and result["previous"] == "1.0.0"
    assert result["before"] == {"current": "1.0.0", "previous": None}
    assert result["actions"] == [
        "previous: (none) -> 1.0.0",
        "current: 1.0.0 -> 2.0.0",
        "mark 2.0.0 activated",
    ]
    assert os.readlink(root / "current") == "releases/2.0.0", "targets are relative"


def test_activate_again_changes_nothing(run_module: ModuleRun, root: Path, deploy: Deploy) -> None:
    deploy("1.0.0")
    deploy("2.0.0")
    result = run_module(args(root, state="current", version="2.0.0"))
    assert result["changed"] is False
    assert links(root) == ("2.0.0", "1.0.0")


def test_activate_check_mode_and_diff(
    run_module: ModuleRun, root: Path, bundles: Path, deploy: Deploy
) -> None:
    deploy("1.0.0")
    run_module(args(root, state="present", bundle=str(make_bundle(bundles, "2.0.0"))))

    result = run_module(args(root, state="current", version="2.0.0"), check=True, diff=True)

    assert result["changed"] is True
    assert links(root) == ("1.0.0", None)
    assert marker(root, "2.0.0")["state"] == "installed"
    assert result["diff"]["before"].startswith("current: 1.0.0\nprevious: (none)\n")
    assert result["diff"]["after"].startswith("current: 2.0.0\nprevious: 1.0.0\n")


def test_activate_not_installed_is_refused(run_module: ModuleRun, root: Path, deploy: Deploy) -> None:
    deploy("1.0.0")
    result = run_module(args(root, state="current", version="2.0.0"))
    assert result["failed"] is True
    assert "release 2.0.0 is not installed" in result["msg"] and "installed: 1.0.0" in result["msg"]
    assert links(root) == ("1.0.0", None)


def test_activate_refuses_tampered_release_but_allows_added_venv(
    run_module: ModuleRun, root: Path, bundles: Path, deploy: Deploy
) -> None:
    deploy("1.0.0")
    run_module(args(root, state="present", bundle=str(make_bundle(bundles, "2.0.0"))))
    release = root / "releases" / "2.0.0"
    (release / "venv" / "bin").mkdir(parents=True)
    (release / "venv" / "bin" / "rvm-edge").write_text("#!/bin/sh\n")
    (release / "models" / "detector.onnx").write_bytes(b"bit rot")

    refused = run_module(args(root, state="current", version="2.0.0"))

    assert refused["failed"] is True
    assert "sha256 mismatch" in refused["msg"] and "models/detector.onnx" in refused["msg"]
    assert links(root) == ("1.0.0", None)
    forced = run_module(args(root, state="current", version="2.0.0", verify=False))
    assert forced["changed"] is True and links(root) == ("2.0.0", "1.0.0")


# ---- rollback -----------------------------------------------------------------------------------


def test_rollback_walks_back_through_history(run_module: ModuleRun, root: Path, deploy: Deploy) -> None:
    for version in ("1.0.0", "2.0.0", "3.0.0"):
        deploy(version)

    first = run_module(args(root, state="rollback"), diff=True)
    assert first["changed"] is True
    assert links(root) == ("2.0.0", "1.0.0"), "previous becomes the release deployed before 2.0.0"
    assert marker(root, "3.0.0")["state"] == "rolled_back"
    assert marker(root, "3.0.0")["rolled_back_at"] is not None
    assert first["diff"]["after"].startswith("current: 2.0.0\nprevious: 1.0.0\n")

    run_module(args(root, state="rollback"))
    assert links(root) == ("1.0.0", None), "never back to the failed 3.0.0"

    refused = run_module(args(root, state="rollback"))
    assert refused["failed"] is True
    assert "nothing to roll back to" in refused["msg"] and "to=<version>" in refused["msg"]
    assert links(root) == ("1.0.0", None)


def test_rollback_without_previous_is_refused(run_module: ModuleRun, root: Path, deploy: Deploy) -> None:
    deploy("1.0.0")
    result = run_module(args(root, state="rollback"))
    assert result["failed"] is True
    assert "previous does not exist (current: 1.0.0)" in result["msg"]


def test_rollback_to_named_release_is_idempotent(run_module: ModuleRun, root: Path, deploy: Deploy) -> None:
    for version in ("1.0.0", "2.0.0", "3.0.0"):
        deploy(version)

    result = run_module(args(root, state="rollback", to="1.0.0"))
    again = run_module(args(root, state="rollback", to="1.0.0"))

    assert result["changed"] is True and result["release"] == "1.0.0"
    assert links(root) == ("1.0.0", None)
    assert again["changed"] is False


def test_rollback_to_unknown_release_is_refused(run_module: ModuleRun, root: Path, deploy: Deploy) -> None:
    deploy("1.0.0")
    deploy("2.0.0")
    result = run_module(args(root, state="rollback", to="0.9.0"))
    assert result["failed"] is True
    assert "cannot roll back to 0.9.0: it is not installed" in result["msg"]
    assert links(root) == ("2.0.0", "1.0.0")


def test_rollback_check_mode_changes_nothing(run_module: ModuleRun, root: Path, deploy: Deploy) -> None:
    deploy("1.0.0")
    deploy("2.0.0")
    result = run_module(args(root, state="rollback"), check=True)
    assert result["changed"] is True and result["current"] == "1.0.0"
    assert links(root) == ("2.0.0", "1.0.0")
    assert marker(root, "2.0.0")["state"] == "activated"


def test_redeploy_after_rollback_reactivates(run_module: ModuleRun, root: Path, deploy: Deploy) -> None:
    deploy("1.0.0")
    deploy("2.0.0")
    run_module(args(root, state="rollback"))
    result = run_module(args(root, state="current", version="2.0.0"))
    assert result["changed"] is True
    assert links(root) == ("2.0.0", "1.0.0")
    assert marker(root, "2.0.0")["state"] == "activated"


# ---- absent / pruned ----------------------------------------------------------------------------


@pytest.mark.parametrize(("version", "role"), [("3.0.0", "current"), ("2.0.0", "previous")])
def test_absent_refuses_current_and_previous(
    run_module: ModuleRun, root: Path, deploy: Deploy, version: str, role: str
) -> None:
    for v in ("1.0.0", "2.0.0", "3.0.0"):
        deploy(v)
    result = run_module(args(root, state="absent", version=version))
    assert result["failed"] is True
    assert f"release {version} is {role}" in result["msg"]
    assert (root / "releases" / version).is_dir()


def test_absent_removes_other_release(run_module: ModuleRun, root: Path, deploy: Deploy) -> None:
    for v in ("1.0.0", "2.0.0", "3.0.0"):
        deploy(v)
    check = run_module(args(root, state="absent", version="1.0.0"), check=True)
    assert check["changed"] is True and (root / "releases" / "1.0.0").is_dir()

    result = run_module(args(root, state="absent", version="1.0.0"))
    again = run_module(args(root, state="absent", version="1.0.0"))

    assert result["changed"] is True and not (root / "releases" / "1.0.0").exists()
    assert again["changed"] is False
    assert sorted(p.name for p in (root / "releases").iterdir()) == ["2.0.0", "3.0.0"]


def test_prune_keeps_current_previous_and_newest(
    run_module: ModuleRun, root: Path, bundles: Path, deploy: Deploy
) -> None:
    for v in ("1.0.0", "2.0.0", "3.0.0", "4.0.0"):
        deploy(v)
    run_module(args(root, state="rollback", to="2.0.0"))  # current 2.0.0, previous 1.0.0
    run_module(args(root, state="present", bundle=str(make_bundle(bundles, "5.0.0"))))  # staged

    result = run_module(args(root, state="pruned", keep=3))

    assert result["changed"] is True
    assert result["ansible_facts"]["rvm_release"]["versions"] == ["1.0.0", "2.0.0", "5.0.0"]
    assert links(root) == ("2.0.0", "1.0.0")
    assert run_module(args(root, state="pruned", keep=3))["changed"] is False


def test_prune_never_removes_current_or_previous(run_module: ModuleRun, root: Path, deploy: Deploy) -> None:
    for v in ("1.0.0", "2.0.0", "3.0.0"):
        deploy(v)
    result = run_module(args(root, state="pruned", keep=1))
    assert result["actions"] == ["remove release 1.0.0"]
    assert links(root) == ("3.0.0", "2.0.0")


def test_prune_keep_zero_is_refused(run_module: ModuleRun, root: Path, deploy: Deploy) -> None:
    deploy("1.0.0")
    result = run_module(args(root, state="pruned", keep=0))
    assert result["failed"] is True and "keep must be at least 1, got 0" in result["msg"]


def test_unmanaged_directory_is_reported_and_never_pruned(
    run_module: ModuleRun, root: Path, deploy: Deploy
) -> None:
    for v in ("1.0.0", "2.0.0", "3.0.0"):
        deploy(v)
    (root / "releases" / "0.1.0-hand-made").mkdir()

    result = run_module(args(root, state="pruned", keep=1))

    assert (root / "releases" / "0.1.0-hand-made").is_dir()
    assert any("0.1.0-hand-made was not installed by rvm_release" in w for w in result["warning_msgs"])


# ---- info ---------------------------------------------------------------------------------------


def test_info_reports_releases_as_facts(
    run_module: ModuleRun, root: Path, bundles: Path, deploy: Deploy
) -> None:
    deploy("1.0.0")
    deploy("2.0.0")
    run_module(args(root, state="present", bundle=str(make_bundle(bundles, "3.0.0"))))

    result = run_module(args(root, state="info"))

    assert result["changed"] is False
    fact = result["ansible_facts"]["rvm_release"]
    assert (fact["current"], fact["previous"]) == ("2.0.0", "1.0.0")
    assert fact["versions"] == ["1.0.0", "2.0.0", "3.0.0"]
    by_version = {r["version"]: r for r in fact["releases"]}
    assert by_version["2.0.0"]["current"] is True and by_version["1.0.0"]["previous"] is True
    assert by_version["3.0.0"]["state"] == "installed" and by_version["3.0.0"]["activated_at"] is None
    assert by_version["1.0.0"]["activated_at"] is not None
    assert by_version["2.0.0"]["wheel"] == "rvm_edge-2.0.0-py3-none-any.whl"
    assert by_version["2.0.0"]["path"] == str(root / "releases" / "2.0.0")


def test_info_on_missing_root_is_empty(run_module: ModuleRun, root: Path) -> None:
    result = run_module(args(root, state="info"))
    assert result["changed"] is False
    assert result["ansible_facts"]["rvm_release"]["versions"] == []
    assert not root.exists()


def test_dangling_current_is_warned_and_replaced(run_module: ModuleRun, root: Path, deploy: Deploy) -> None:
    deploy("1.0.0")
    (root / "current").unlink()
    (root / "current").symlink_to("releases/0.0.1")

    info = run_module(args(root, state="info"))
    assert info["ansible_facts"]["rvm_release"]["current"] is None
    assert any("does not point to an installed release" in w for w in info["warning_msgs"])
    run_module(args(root, state="current", version="1.0.0"))
    assert links(root) == ("1.0.0", None)


# ---- the host around the module -----------------------------------------------------------------


def test_release_is_readable_by_the_service_user_under_a_strict_umask(
    run_module: ModuleRun, root: Path, bundles: Path
) -> None:
    files = {"rvm_edge-1.0.0-py3-none-any.whl": b"w", "bin/run.sh": b"#!/bin/sh\n", "models/a/b.onnx": b"m"}
    bundle = bundles / "rvm-edge-1.0.0-x86_64.tar.gz"
    make_bundle(bundles, "1.0.0", files=files)
    with tarfile.open(bundle) as archive:  # give run.sh its executable bit, as a builder would
        modes = {m.name: m.mode for m in archive.getmembers()}
    assert modes["./bin/run.sh"] == 0o644
    rebuilt = bundles / "exec" / bundle.name
    rebuilt.parent.mkdir()
    with tarfile.open(bundle) as src, tarfile.open(rebuilt, "w:gz") as dst:
        for member in src.getmembers():
            if member.name == "./bin/run.sh":
                member.mode = 0o750
            dst.addfile(member, src.extractfile(member))

    old = os.umask(0o077)
    try:
        result = run_module(args(root, state="present", bundle=str(rebuilt)))
    finally:
        os.umask(old)

    assert result["changed"] is True
    release = root / "releases" / "1.0.0"
    mode = {
        p.relative_to(release).as_posix(): p.stat().st_mode & 0o777 for p in [release, *release.rglob("*")]
    }
    assert mode["."] == 0o755 and mode["models"] == 0o755 and mode["models/a"] == 0o755
    assert mode["models/a/b.onnx"] == 0o644 and mode["MANIFEST.json"] == 0o644
    assert mode["bin/run.sh"] == 0o755
    assert mode[".rvm-release.json"] == 0o644


def test_disk_full_while_unpacking_is_reported_and_cleaned_up(
    run_module: ModuleRun, root: Path, bundles: Path, deploy: Deploy, monkeypatch: pytest.MonkeyPatch
) -> None:
    deploy("1.0.0")
    bundle = make_bundle(bundles, "2.0.0")
    real_fsync = os.fsync
    calls = []

    def full_disk(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk)
    result = run_module(args(root, state="present", bundle=str(bundle)))
    monkeypatch.setattr(os, "fsync", real_fsync)

    assert result["failed"] is True
    assert "cannot write" in result["msg"] and "No space left on device" in result["msg"]
    assert "corrupt" not in result["msg"]
    assert sorted(p.name for p in (root / "releases").iterdir()) == ["1.0.0"]
    assert links(root) == ("1.0.0", None)


def test_rollback_after_interrupted_activation_keeps_running_release(
    run_module: ModuleRun, root: Path, bundles: Path, deploy: Deploy
) -> None:
    """The role's rescue rolls back after a failed switch: the running release must stay current."""
    deploy("1.0.0")
    deploy("2.0.0")
    run_module(args(root, state="present", bundle=str(make_bundle(bundles, "3.0.0"))))
    # The activation of 3.0.0 died after its first step, previous := old current.
    (root / "previous").unlink()
    (root / "previous").symlink_to("releases/2.0.0")

    result = run_module(args(root, state="rollback"))

    assert result["changed"] is True
    assert result["actions"] == ["previous: 2.0.0 -> 1.0.0"]
    assert links(root) == ("2.0.0", "1.0.0")
    assert marker(root, "2.0.0")["state"] == "activated"
    assert marker(root, "3.0.0")["state"] == "installed"
