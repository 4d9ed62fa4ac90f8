"""Build the lab's NVIDIA Jetson apt repositories (``common`` and ``t234``, suite ``r36.4``) of LAB STAND-INS.

Why: on a Jetson the jetson_runtime role installs TensorRT, cuDNN and the CUDA runtime from NVIDIA's
repositories (``https://repo.download.nvidia.com/jetson/common r36.4 main`` and ``.../t234 r36.4
main``), pinned to NVIDIA's key. The lab cannot reach them and has no GPU, so it gets two ``file://``
repositories laid out the same way, signed with the lab key, holding packages with the REAL NAMES
(``Architecture: all``) whose contents are stand-ins: ``libnvinfer-bin`` ships the trtexec stand-in
as /usr/src/tensorrt/bin/trtexec, ``python3-libnvinfer`` a ``tensorrt`` module that imports (with
``__version__`` 10.3.0) but refuses to build or run anything, the libraries only a marker file.

The repository layout, Release/InRelease signing and the lab key are the zerotier-one stand-in's
(lab/zerotier_one/build_repo.py), reused here rather than written twice.

Usage: ``python lab/jetson/build_repo.py --out .lab/jetson-repo``; prints JSON with the repository
root (``<out>/common``, ``<out>/t234``), the key file and its fingerprint.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location(
    "zt_build_repo", HERE.parent / "zerotier_one" / "build_repo.py"
)
assert _spec and _spec.loader
zt = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(zt)

SUITE = "r36.4"
VERSION = "10.3.0.30-1+cuda12.5"
TRT_MODULE = '''"""tensorrt LAB STAND-IN (rvm-fleet): imports like JetPack 6's python3-libnvinfer, runs nothing."""

__version__ = "10.3.0"


def __getattr__(name):
    raise ImportError(f"tensorrt LAB STAND-IN: tensorrt.{name} needs a Jetson GPU; this lab host has none")
'''
# package name -> (repository, files it installs: path -> (content or source file, mode), depends)
PACKAGES: dict[str, tuple[str, dict[str, tuple[str | Path, int]], str]] = {
    "cuda-cudart-12-6": (
        "common",
        {"usr/local/cuda-12.6/LAB-STANDIN": ("CUDA runtime stand-in\n", 0o644)},
        "",
    ),
    "libcudnn9-cuda-12": (
        "common",
        {"usr/lib/aarch64-linux-gnu/LAB-STANDIN-cudnn9": ("cuDNN 9.3\n", 0o644)},
        "",
    ),
    "libnvinfer10": (
        "common",
        {"usr/lib/aarch64-linux-gnu/LAB-STANDIN-nvinfer10": ("TensorRT 10.3\n", 0o644)},
        "",
    ),
    "libnvinfer-plugin10": (
        "common",
        {"usr/lib/aarch64-linux-gnu/LAB-STANDIN-nvinfer-plugin10": ("\n", 0o644)},
        "",
    ),
    "libnvonnxparsers10": (
        "common",
        {"usr/lib/aarch64-linux-gnu/LAB-STANDIN-nvonnxparsers10": ("\n", 0o644)},
        "",
    ),
    "libnvinfer-bin": (
        "common",
        {"usr/src/tensorrt/bin/trtexec": (HERE / "bin" / "trtexec", 0o755)},
        "python3",
    ),
    "python3-libnvinfer": (
        "common",
        {"usr/lib/python3/dist-packages/tensorrt/__init__.py": (TRT_MODULE, 0o644)},
        "python3, libnvinfer10",
    ),
    "nvidia-l4t-cuda": ("t234", {"usr/lib/aarch64-linux-gnu/nvidia/LAB-STANDIN-l4t-cuda": ("\n", 0o644)}, ""),
    "nvidia-jetpack": (
        "common",
        {"usr/share/doc/nvidia-jetpack/LAB-STANDIN": ("the whole JetPack, as a stand-in\n", 0o644)},
        "cuda-cudart-12-6, libcudnn9-cuda-12, libnvinfer10, libnvinfer-bin, python3-libnvinfer",
    ),
}


def build_deb(name: str, files: dict[str, tuple[str | Path, int]], depends: str, pool: Path) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "pkg"
        for rel, (content, mode) in files.items():
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Path):
                shutil.copyfile(content, target)
            else:
                target.write_text(content)
            target.chmod(mode)
        (root / "DEBIAN").mkdir()
        control = (
            f"Package: {name}\nVersion: {VERSION}\nArchitecture: all\n"
            "Maintainer: rvm-fleet lab <lab@rvm-fleet.invalid>\n"
            + (f"Depends: {depends}\n" if depends else "")
            + "Section: libs\nPriority: optional\n"
            f"Description: {name} - LAB STAND-IN for rvm-fleet (no GPU code)\n"
            " Carries the real package name so the jetson_runtime role's Jetson path runs in the lab.\n"
        )
        (root / "DEBIAN" / "control").write_text(control)
        pool.mkdir(parents=True, exist_ok=True)
        deb = pool / f"{name}_{VERSION.replace(':', '%3a')}_all.deb"
        zt.run("dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb))
        return deb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", required=True, type=Path, help="directory of the two repositories (replaced)"
    )
    parser.add_argument("--gnupg", type=Path, help="GNUPGHOME of the lab key (default: <out>-gnupg)")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    gnupg = (args.gnupg or out.with_name(out.name + "-gnupg")).resolve()
    shutil.rmtree(out, ignore_errors=True)
    for name, (repo, files, depends) in PACKAGES.items():
        build_deb(name, files, depends, out / repo / "pool" / "main" / name[0] / name)
    env, fingerprint = zt.ensure_key(gnupg)
    for repo in ("common", "t234"):
        zt.sign_release(zt.write_release(out / repo, suite=SUITE, label=f"Jetson {repo} lab stand-in"), env)
    key = zt.export_key(out / "jetson-lab-archive-keyring", fingerprint, env)
    print(json.dumps({"root": str(out), "suite": SUITE, "key": str(key), "fingerprint": fingerprint}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
