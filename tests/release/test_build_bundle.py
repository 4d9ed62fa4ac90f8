"""The bundle builder as an operator meets it: `make release` output, and what it refuses."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from release_helpers import LAB, Project, make_wheel

from rvm_bundle.build import load_format

Cli = Callable[[list[str]], tuple[int, str, str]]


def bundle_of(project: Project, version: str = "0.3.0") -> Path:
    return project.out / f"rvm-edge-{version}-x86_64.tar.gz"


def test_bundle_passes_the_installers_verification(project: Project, build_cli: Cli) -> None:
    rc, out, err = build_cli(project.args())
    assert rc == 0, err
    report = json.loads(out)
    bundle = bundle_of(project)
    assert report["bundle"] == str(bundle)
    fmt = load_format()
    manifest = fmt.verify_bundle(bundle, fmt.Expectation(arch="x86_64", version="0.3.0", python=LAB.python))
    assert manifest.wheel == "wheel/rvm_edge-0.3.0-py3-none-any.whl"
    assert set(manifest.files) == {
        "wheel/rvm_edge-0.3.0-py3-none-any.whl",
        f"wheelhouse/fakenum-2.0-{LAB.cp}-{LAB.cp}-manylinux_2_28_x86_64.whl",
        "wheelhouse/fakeyaml-6.0-py3-none-any.whl",
        "wheelhouse/fakedep-1.5-py3-none-any.whl",
        "requirements.txt",
        "models/manifest.json",
        "models/detector.onnx",
        "models/sam2/manifest.json",
        "models/sam2/encoder.onnx",
    }
    with tarfile.open(bundle) as archive:
        assert archive.getnames()[0] == "MANIFEST.json", "the manifest must come first (early arch check)"
        requirements = archive.extractfile("requirements.txt").read().decode()  # type: ignore[union-attr]
    # the aarch64-only pin is decided away for an x86_64 device; the others stay exact
    assert requirements.splitlines() == ["fakedep==1.5", "fakenum==2.0", "fakeyaml==6.0"]
    sidecar = Path(f"{bundle}.sha256").read_text().split()
    assert sidecar == [report["sha256"], bundle.name]


def test_device_can_install_it_without_an_index(project: Project, build_cli: Cli, tmp_path: Path) -> None:
    """What the rvm_edge role runs on a device: pip with --no-index against the bundle's wheelhouse."""
    rc, _, err = build_cli(project.args())
    assert rc == 0, err
    tree = tmp_path / "release"
    with tarfile.open(bundle_of(project)) as archive:
        archive.extractall(tree, filter="data")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--isolated", "--no-index", "--find-links", str(tree / "wheelhouse"),
         "--target", str(tmp_path / "site"), "-r", str(tree / "requirements.txt"),
         str(next((tree / "wheel").glob("*.whl")))],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "site" / "rvm_edge" / "__init__.py").is_file()
    assert (tmp_path / "site" / "fakedep" / "__init__.py").is_file()


def test_same_inputs_give_the_same_bytes(project: Project, build_cli: Cli) -> None:
    assert build_cli(project.args())[0] == 0
    first = bundle_of(project).read_bytes()
    assert build_cli([*project.args(), "--out", str(project.root / "again")])[0] == 0
    assert (project.root / "again" / bundle_of(project).name).read_bytes() == first


def test_version_override_names_the_bundle(project: Project, build_cli: Cli) -> None:
    rc, out, err = build_cli(project.args("--version", "0.3.0-lab2"))
    assert rc == 0, err
    assert json.loads(out)["version"] == "0.3.0-lab2"
    assert bundle_of(project, "0.3.0-lab2").is_file()


def test_missing_wheel_is_refused_and_nothing_is_written(project: Project, build_cli: Cli) -> None:
    project.lock.write_text(project.lock.read_text() + "fakemissing==1.0\n")
    rc, _, err = build_cli(project.args())
    assert rc == 2
    assert "fakemissing" in err
    assert not project.out.exists() or not list(project.out.iterdir())


def test_dependency_outside_the_lock_is_refused(project: Project, build_cli: Cli) -> None:
    make_wheel(project.index, "fakeyaml", "6.0", "py3-none-any", ("fakedep>=1", "fakeghost>=3"))
    # the index now has a fakeyaml that needs fakeghost, which exists nowhere
    rc, _, err = build_cli(project.args())
    assert rc == 2
    assert "fakeghost" in err


def test_wheel_for_another_architecture_is_refused(project: Project, build_cli: Cli) -> None:
    """An aarch64 bundle cannot ship the x86_64 wheel of fakenum (only one the index has)."""
    rc, _, err = build_cli(project.args("--arch", "aarch64"))
    assert rc == 2
    assert "fakenum" in err
    assert "aarch64" in err
    assert not project.out.exists() or not list(project.out.iterdir())


def test_stale_wrong_platform_wheel_in_the_cache_is_not_shipped(project: Project) -> None:
    """Even when pip is bypassed, selection judges every wheel against the device."""
    from rvm_bundle import BuildError
    from rvm_bundle.lockfile import read_pins
    from rvm_bundle.target import Target
    from rvm_bundle.wheelhouse import select

    arm = Target.make("aarch64", LAB.python)
    pins = [p for p in read_pins(project.lock, arm) if p.name == "fakenum"]
    with pytest.raises(BuildError, match=r"missing wheel: fakenum==2\.0 .*aarch64.*other platform"):
        select(pins, [], project.index, arm)


def test_corrupt_model_file_is_refused(project: Project, build_cli: Cli) -> None:
    (project.models / "sam2" / "encoder.onnx").write_bytes(b"truncated")
    rc, _, err = build_cli(project.args())
    assert rc == 2
    assert "encoder.onnx" in err
    assert "re-export" in err


def test_skipped_model_directory_is_left_out(project: Project, build_cli: Cli) -> None:
    rc, _, err = build_cli(project.args("--skip-models", "sam2"))
    assert rc == 0, err
    fmt = load_format()
    manifest = fmt.verify_bundle(
        bundle_of(project), fmt.Expectation(arch="x86_64", version="0.3.0", python=LAB.python)
    )
    assert {f for f in manifest.files if f.startswith("models/")} == {
        "models/manifest.json",
        "models/detector.onnx",
    }
    rc, _, err = build_cli(project.args("--skip-models", "nosuchdir"))
    assert rc == 2 and "cannot skip nosuchdir" in err


def test_models_without_a_manifest_are_refused(project: Project, build_cli: Cli, tmp_path: Path) -> None:
    empty = tmp_path / "nomodels"
    empty.mkdir()
    rc, _, err = build_cli(project.args("--models", str(empty)))
    assert rc == 2
    assert "no manifest.json" in err


def test_unpinned_requirement_is_refused(project: Project, build_cli: Cli) -> None:
    project.lock.write_text("fakenum>=2\n")
    rc, _, err = build_cli(project.args())
    assert rc == 2
    assert "fakenum must be pinned exactly" in err


def test_bad_version_is_refused(project: Project, build_cli: Cli) -> None:
    rc, _, err = build_cli(project.args("--version", "../evil"))
    assert rc == 2
    assert "not a valid release version" in err
