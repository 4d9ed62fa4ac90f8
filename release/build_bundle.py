#!/usr/bin/env python3
"""Build dist/rvm-edge-<version>-<arch>.tar.gz: `make release` runs this (see --help).

Devices install from the bundle with no network: the app wheel, a wheelhouse for the device's
platform, the models and a MANIFEST.json with the sha256 of every file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rvm_bundle import BuildError
from rvm_bundle.build import REPO, Inputs, build
from rvm_bundle.target import ARCHES, Target


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", choices=ARCHES, default="x86_64", help="device CPU (aarch64: Jetson)")
    p.add_argument("--python", default="3.11", help="device CPython minor version (Jetson/JetPack 6: 3.10)")
    p.add_argument("--glibc", default=None, help="newest manylinux glibc the device has (default per arch)")
    p.add_argument("--version", default=None, help="release version (default: the app wheel's version)")
    p.add_argument("--created", default=None, help="ISO 8601 build stamp (default: last commit of the app)")
    p.add_argument("--app", type=Path, default=REPO / "app", help="the app source (pyproject.toml)")
    p.add_argument(
        "--requirements",
        type=Path,
        default=None,
        help="runtime lock (default: <app>/requirements/runtime.txt)",
    )
    p.add_argument("--models", type=Path, default=None, help="model directory (default: <app>/models/lab)")
    p.add_argument(
        "--skip-models",
        action="append",
        default=[],
        metavar="DIR",
        help="a model sub-directory to leave out (repeatable), e.g. sam2 for the lab's random-weight SAM2",
    )
    p.add_argument("--out", type=Path, default=REPO / "dist", help="output directory")
    p.add_argument(
        "--cache", type=Path, default=None, help="wheel download cache (default: .cache/release/<arch>-cp3XX)"
    )
    p.add_argument("--find-links", type=Path, action="append", default=[], help="extra local wheel directory")
    p.add_argument(
        "--app-wheel", type=Path, default=None, help="a prebuilt app wheel instead of building <app>"
    )
    p.add_argument("--no-index", action="store_true", help="do not use any package index (offline build)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        target = Target.make(args.arch, args.python, args.glibc)
        inputs = Inputs(
            app_dir=args.app.resolve(),
            requirements=(args.requirements or args.app / "requirements" / "runtime.txt").resolve(),
            models=(args.models or args.app / "models" / "lab").resolve(),
            out_dir=args.out.resolve(),
            cache=(args.cache or REPO / ".cache" / "release" / f"{target.arch}-{target.cp}").resolve(),
            target=target,
            version=args.version,
            created=args.created,
            find_links=tuple(p.resolve() for p in args.find_links),
            no_index=args.no_index,
            app_wheel=args.app_wheel.resolve() if args.app_wheel else None,
            skip_models=tuple(args.skip_models),
        )
        result = build(inputs)
    except BuildError as exc:
        print(f"build_bundle: refused: {exc}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            {
                "bundle": str(result.bundle),
                "sha256": result.sha256,
                "version": result.version,
                "arch": target.arch,
                "python": target.python,
                "files": result.files,
                "size_mb": round(result.size / 1e6, 1),
                "seconds": result.seconds,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
