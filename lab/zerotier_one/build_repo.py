"""Build the lab's apt repository holding the zerotier-one LAB STAND-IN, signed with a lab key.

Why: the zerotier role installs zerotier-one from an apt repository whose signing key it pins by
fingerprint. ZeroTier's repository cannot be reached from the lab, so the lab gets a ``file://``
repository laid out the same way (``dists/<suite>/main/binary-<arch>/Packages``, a signed
``InRelease`` and ``Release.gpg``) with its own key, and the role runs the same tasks against it.

The package is ``zerotier-one`` (``Architecture: all``, needs python3) with the stand-in daemon
and CLI from ``src/``, a systemd unit, and ``/etc/default/zerotier-one`` naming the Central
double the daemon reports to (``--central-url``).

Usage: ``python lab/zerotier_one/build_repo.py --out .lab/zerotier-repo --central-url URL``; prints
JSON with the repository path, the key file and its fingerprint. The key is made once (in
``<out>/../zerotier-repo-gnupg``) and reused, so the pinned fingerprint stays the same.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = "zerotier-one"
VERSION = "1.14.2-lab1"
SUITE = "lab"
ARCHES = ("amd64", "arm64")
KEY_UID = "rvm-fleet lab zerotier-one stand-in repository <lab-zerotier@rvm-fleet.invalid>"

UNIT = """[Unit]
Description=ZeroTier One (rvm-fleet LAB STAND-IN: local service API only, no tunnel)
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
EnvironmentFile=/etc/default/zerotier-one
ExecStart=/usr/sbin/zerotier-one
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
"""


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd, check=False)
    if done.returncode != 0:
        raise SystemExit(f"build_repo: {' '.join(args[:3])} failed: {done.stderr.strip()}")
    return done.stdout


def build_deb(central_url: str, pool: Path) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "pkg"
        for name in ("zerotier-one", "zerotier-cli"):
            target = root / "usr" / "sbin" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(HERE / "src" / name, target)
            target.chmod(0o755)
        unit = root / "lib" / "systemd" / "system" / "zerotier-one.service"
        unit.parent.mkdir(parents=True)
        unit.write_text(UNIT)
        default = root / "etc" / "default" / "zerotier-one"
        default.parent.mkdir(parents=True)
        default.write_text(
            f"# LAB STAND-IN: the Central double this node reports to.\nZT_STANDIN_CENTRAL_URL={central_url}\n"
        )
        debian = root / "DEBIAN"
        debian.mkdir()
        (debian / "conffiles").write_text("/etc/default/zerotier-one\n")
        (debian / "control").write_text(
            f"Package: {PACKAGE}\nVersion: {VERSION}\nArchitecture: all\nMaintainer: rvm-fleet lab <lab@rvm-fleet.invalid>\n"
            "Depends: python3\nSection: net\nPriority: optional\n"
            "Description: ZeroTier One - LAB STAND-IN for rvm-fleet\n"
            " Answers the zerotier-one local service API (127.0.0.1:9993, X-ZT1-Auth) and\n"
            " zerotier-cli info/listnetworks/join/leave; joins through the lab's Central\n"
            " double. Carries no traffic and creates no interface.\n"
        )
        pool.mkdir(parents=True, exist_ok=True)
        deb = pool / f"{PACKAGE}_{VERSION}_all.deb"
        run("dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb))
        return deb


def ensure_key(gnupg: Path) -> tuple[dict[str, str], str]:
    gnupg.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = {**os.environ, "GNUPGHOME": str(gnupg)}
    listing = run("gpg", "--batch", "--with-colons", "--list-secret-keys", env=env)
    if "sec:" not in listing:
        run(
            "gpg",
            "--batch",
            "--passphrase",
            "",
            "--quick-gen-key",
            KEY_UID,
            "ed25519",
            "sign",
            "never",
            env=env,
        )
        listing = run("gpg", "--batch", "--with-colons", "--list-secret-keys", env=env)
    fingerprint = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    return env, fingerprint


def write_release(repo: Path, suite: str = SUITE, label: str = "zerotier-one lab stand-in") -> Path:
    """Packages and an unsigned Release for ``repo``'s pool (lab/jetson/build_repo.py reuses it)."""
    dist = repo / "dists" / suite
    packages = run("dpkg-scanpackages", "--multiversion", "pool", "/dev/null", cwd=repo)
    files = []
    for arch in ARCHES:
        folder = dist / "main" / f"binary-{arch}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "Packages").write_text(packages)
        (folder / "Packages.gz").write_bytes(gzip.compress(packages.encode(), mtime=0))
        files += [folder / "Packages", folder / "Packages.gz"]
    lines = [
        "Origin: rvm-fleet lab",
        f"Label: {label}",
        f"Suite: {suite}",
        f"Codename: {suite}",
        f"Date: {datetime.now(timezone.utc).strftime('%a, %d %b %Y %H:%M:%S UTC')}",
        f"Architectures: {' '.join(ARCHES)}",
        "Components: main",
        "SHA256:",
    ]
    for path in files:
        data = path.read_bytes()
        lines.append(f" {hashlib.sha256(data).hexdigest()} {len(data)} {path.relative_to(dist)}")
    release = dist / "Release"
    release.write_text("\n".join(lines) + "\n")
    return release


def sign_release(release: Path, env: dict[str, str]) -> None:
    """InRelease (clearsigned) and Release.gpg (detached) beside ``release``, as apt expects."""
    inrelease, detached = str(release.with_name("InRelease")), str(release.with_name("Release.gpg"))
    run("gpg", "--batch", "--yes", "--clearsign", "-o", inrelease, str(release), env=env)
    run("gpg", "--batch", "--yes", "-abs", "-o", detached, str(release), env=env)


def export_key(stem: Path, fingerprint: str, env: dict[str, str]) -> Path:
    """The public key as ``<stem>.gpg`` (binary keyring) and ``<stem>.asc`` (armored); returns the .gpg."""
    key = stem.with_suffix(".gpg")
    run("gpg", "--batch", "--yes", "--export", "-o", str(key), fingerprint, env=env)
    stem.with_suffix(".asc").write_text(run("gpg", "--batch", "--armor", "--export", fingerprint, env=env))
    return key


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="repository directory (replaced)")
    parser.add_argument(
        "--central-url", required=True, help="the Central double's base URL, as devices reach it"
    )
    parser.add_argument("--gnupg", type=Path, help="GNUPGHOME of the lab key (default: <out>-gnupg)")
    args = parser.parse_args(argv)
    repo = args.out.resolve()
    gnupg = (args.gnupg or repo.with_name(repo.name + "-gnupg")).resolve()
    shutil.rmtree(repo, ignore_errors=True)
    deb = build_deb(args.central_url, repo / "pool" / "main" / "z" / PACKAGE)
    release = write_release(repo)
    env, fingerprint = ensure_key(gnupg)
    sign_release(release, env)
    key = export_key(repo / "zerotier-lab-archive-keyring", fingerprint, env)
    print(
        json.dumps(
            {"repo": str(repo), "suite": SUITE, "deb": str(deb), "key": str(key), "fingerprint": fingerprint}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
