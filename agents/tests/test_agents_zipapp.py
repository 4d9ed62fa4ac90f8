"""agents/zipapp.py, run as the backup role runs it on the control node: the same sources always give the
same bytes (so a second converge copies nothing), the result is one executable file that runs on the
device's Pythons with the standard library only, and bad input stops the build with a specific message."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILDER = REPO_ROOT / "agents" / "zipapp.py"
RVM_BACKUP = REPO_ROOT / "agents" / "rvm_backup" / "src" / "rvm_backup"
ENTRY = "rvm_backup.cli:main"
# JetPack 6 ships Python 3.10 (the Jetson devices); Debian 12 ships 3.11 (the lab devices).
DEVICE_PYTHONS = ("3.10", "3.11")
# A config the role could template (check-config reads it only; nothing in it must exist).
GOOD_CONFIG = {
    "repository": "sftp:rvm-backup-rvm-01@10.0.0.5:/repo",
    "password_file": "/etc/rvm-backup/password",
    "host": "rvm-01",
    "tags": ["rvm-edge"],
    "sqlite": [
        {
            "source": "/var/lib/rvm-edge/rvm-edge.sqlite3",
            "copy": "/var/lib/rvm-backup/staging/rvm-edge.sqlite3",
        }
    ],
    "paths": ["/etc/rvm-edge", "/var/lib/rvm-edge"],
    "excludes": [],
    "retention": {"keep_last": 3, "keep_hourly": 24, "keep_daily": 7, "keep_weekly": 4, "keep_monthly": 6},
    "check_subsets": 7,
    "textfile_dir": "/var/lib/prometheus/node-exporter",
    "state_dir": "/var/lib/rvm-backup",
    "restic": "/usr/bin/restic",
}


def build(package: Path, out: Path, main: str = ENTRY) -> subprocess.CompletedProcess[str]:
    """The builder's CLI, as the role's task calls it."""
    return subprocess.run(
        [sys.executable, str(BUILDER), str(package), "--main", main, "-o", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )


def copy_of_sources(where: Path) -> Path:
    """A second checkout of the package: other mtimes, and the bytecode caches a test run leaves behind."""
    package = where / "rvm_backup"
    shutil.copytree(RVM_BACKUP, package, ignore=shutil.ignore_patterns("__pycache__"))
    for path in package.rglob("*.py"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
        path.chmod(0o600)
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "cli.cpython-311.pyc").write_bytes(b"not a source")
    (package / ".cli.py.swp").write_bytes(b"editor state")
    return package


def python(version: str) -> str | None:
    """An interpreter of that version: on PATH, or from pyenv where it is installed (found through
    `pyenv root`, never a home-directory path). None when this machine has none."""
    candidates = [shutil.which(f"python{version}")]
    pyenv = shutil.which("pyenv")
    if pyenv:
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False).stdout.strip()
        candidates += sorted(str(p) for p in Path(root).glob(f"versions/{version}.*/bin/python{version}"))
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    return None


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("build") / "rvm-backup.pyz"
    result = build(RVM_BACKUP, out)
    assert result.returncode == 0, result.stderr
    return out


def test_the_same_sources_give_the_same_bytes(pyz: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.pyz"
    other_checkout = tmp_path / "other.pyz"

    assert build(RVM_BACKUP, again).returncode == 0
    assert build(copy_of_sources(tmp_path / "checkout"), other_checkout).returncode == 0

    assert again.read_bytes() == pyz.read_bytes()
    assert other_checkout.read_bytes() == pyz.read_bytes()


def test_a_changed_source_changes_the_bytes(pyz: Path, tmp_path: Path) -> None:
    package = copy_of_sources(tmp_path / "checkout")
    with open(package / "errors.py", "a", encoding="utf-8") as handle:
        handle.write("# changed\n")
    changed = tmp_path / "changed.pyz"

    assert build(package, changed).returncode == 0

    assert changed.read_bytes() != pyz.read_bytes()


def test_a_second_build_into_the_same_file_leaves_it_untouched(pyz: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache" / "rvm-backup.pyz"
    first = build(RVM_BACKUP, out)
    os.utime(out, (1_000_000_000, 1_000_000_000))

    second = build(RVM_BACKUP, out)

    digest = hashlib.sha256(pyz.read_bytes()).hexdigest()
    assert first.stdout.startswith(f"zipapp: wrote {out} ") and digest in first.stdout
    assert second.stdout.startswith(f"zipapp: unchanged {out} ") and digest in second.stdout
    assert out.stat().st_mtime == 1_000_000_000
    assert [path.name for path in out.parent.iterdir()] == ["rvm-backup.pyz"], "no temporary file is left"


def test_the_archive_holds_sorted_sources_with_fixed_metadata(pyz: Path) -> None:
    content = pyz.read_bytes()
    assert content.startswith(b"#!/usr/bin/python3\n")
    assert pyz.stat().st_mode & 0o777 == 0o755

    with zipfile.ZipFile(pyz) as archive:
        entries = archive.infolist()
        main = archive.read("__main__.py").decode()

    names = [entry.filename for entry in entries]
    assert names == sorted(names)
    expected = {"__main__.py"} | {
        f"rvm_backup/{path.relative_to(RVM_BACKUP).as_posix()}" for path in RVM_BACKUP.rglob("*.py")
    }
    assert set(names) == expected, "sources only: no bytecode caches"
    assert {(entry.date_time, entry.external_attr >> 16, entry.compress_type) for entry in entries} == {
        ((1980, 1, 1, 0, 0, 0), 0o100644, zipfile.ZIP_STORED)
    }
    assert "from rvm_backup.cli import main" in main and "sys.exit(main())" in main


@pytest.mark.parametrize("version", DEVICE_PYTHONS)
def test_the_zipapp_runs_on_the_device_python_with_the_standard_library_only(
    pyz: Path, tmp_path: Path, version: str
) -> None:
    interpreter = python(version)
    if interpreter is None:
        pytest.skip(
            f"no Python {version} on PATH or in pyenv: the zipapp is not tried on the device's {version}"
        )
    config = tmp_path / "config.json"
    config.write_text(json.dumps(GOOD_CONFIG))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**GOOD_CONFIG, "check_subsets": 0}))
    # -I -S: no user or site packages, no PYTHON* variables: only the standard library can be imported.
    isolated = [interpreter, "-I", "-S", str(pyz)]

    helped = subprocess.run([*isolated, "--help"], capture_output=True, text=True, check=False)
    checked = subprocess.run(
        [*isolated, "check-config", "--config", str(config)], capture_output=True, text=True
    )
    refused = subprocess.run(
        [*isolated, "check-config", "--config", str(bad)], capture_output=True, text=True
    )

    assert helped.returncode == 0, helped.stderr
    assert "{run,restore,snapshots,status,check-config}" in helped.stdout
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout) == {"config": str(config), "ok": True}
    assert refused.returncode == 2
    assert f"{bad}: check_subsets: expected an integer >= 1, got 0" in refused.stderr


def test_the_zipapp_is_executable_by_its_shebang(pyz: Path) -> None:
    if not Path("/usr/bin/python3").exists():
        pytest.skip("no /usr/bin/python3 on this machine (the devices' interpreter)")

    result = subprocess.run([str(pyz), "status", "--help"], capture_output=True, text=True, check=False)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: rvm-backup status")


def test_the_exit_status_of_the_entry_point_is_the_programs(pyz: Path, tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"

    result = subprocess.run(
        [sys.executable, str(pyz), "status", "--config", str(missing)], capture_output=True, text=True
    )

    assert result.returncode == 2
    assert f"{missing}: cannot read the config" in result.stderr


def test_a_syntax_error_stops_the_build_with_file_and_line(tmp_path: Path) -> None:
    package = copy_of_sources(tmp_path / "checkout")
    (package / "restore.py").write_text("def broken(:\n    pass\n")
    out = tmp_path / "out.pyz"

    result = build(package, out)

    assert result.returncode == 2
    assert "rvm_backup/restore.py: line 1:" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("main", "message"),
    [
        ("rvm_backup.cli", "--main: expected package.module:function, got 'rvm_backup.cli'"),
        ("rvm_backup.client:main", "no module rvm_backup.client among the packaged files"),
        ("rvm_backup.cli:run", "rvm_backup/cli.py defines no top-level function run()"),
    ],
)
def test_a_wrong_entry_point_stops_the_build(tmp_path: Path, main: str, message: str) -> None:
    result = build(RVM_BACKUP, tmp_path / "out.pyz", main=main)

    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "out.pyz").exists()


def test_a_directory_that_is_not_a_package_or_holds_a_link_is_refused(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    linked = copy_of_sources(tmp_path / "checkout")
    (linked / "outside.py").symlink_to("/etc/hostname")

    not_a_package = build(plain, tmp_path / "a.pyz")
    with_link = build(linked, tmp_path / "b.pyz")

    assert not_a_package.returncode == 2 and f"{plain}: not a Python package" in not_a_package.stderr
    assert with_link.returncode == 2 and "outside.py: not a regular file" in with_link.stderr
