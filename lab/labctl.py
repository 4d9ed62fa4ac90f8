#!/usr/bin/env python3
"""The lab fleet: podman containers with systemd as PID 1 that stand in for RVM devices and servers.

Why a tool of its own: the lab must be reproducible on a bare Debian machine with no registry
(images are built, never pulled), idempotent (a second ``up`` changes nothing and is quick) and
tidy (``down`` removes exactly what ``up`` made). The inventory ``inventories/lab`` is the single
source of truth for which containers exist, so Ansible and the lab can never disagree.

Commands: ``image``, ``up``, ``down``, ``status``, ``shell HOST``, and ``add NAME`` / ``remove NAME``
for an extra device outside the inventory (a new RVM being enrolled through ZeroTier; ``down``
removes it too).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import datavol

ROOT = Path(__file__).resolve().parent.parent
IMAGE_DIR = ROOT / "lab" / "image"
INVENTORY = ROOT / "inventories" / "lab"
SSH_KEY = ROOT / ".lab" / "ssh" / "id_ed25519"
# The lab's secrets live in an Ansible Vault file like a real fleet's; its password file is under
# .lab/ (git-ignored) and ansible.cfg's vault_identity_list reads it through lab/vault-pass-client.
# ansible.cfg's jsonfile fact cache: a recreated container gets a new address, so its cached facts
# (which other hosts' settings read, e.g. the platform simulator's address) must go with it.
FACT_CACHE = ROOT / ".cache" / "facts"
VAULT_PASS = ROOT / ".lab" / "vault-pass"
VAULT_FILE = INVENTORY / "group_vars" / "all" / "vault.yml"
VAULT_KEYS = ("vault_lab_secret", "vault_lab_sim_admin_token")
IMAGE_REPO = "localhost/rvm-lab"
NETWORK = "rvm-lab"
LABEL = "io.rvm-fleet.lab"
RECIPE_LABEL = "io.rvm-fleet.lab.recipe"
# How containers are made (devices, ports): `up` recreates a container made by an older shape.
# 2: /dev/net/tun (zerotier-one needs it) and the ZeroTier Central double's port on rvm-platform.
# 3: a device's data partition of its own (lab/datavol.py); the other hosts stay at 2.
SHAPE_LABEL = "io.rvm-fleet.lab.shape"
SHAPE = "2"
DEVICE_SHAPE = "3"
DEVICE_GROUP = "rvm_devices"
EXTRA_LABEL = "io.rvm-fleet.lab.extra"
# The lab's ZeroTier Central double (lab/zerotier_central) listens on the platform simulator host;
# the control node reaches it on loopback only (inventories/lab-zerotier, zerotier_member).
ZT_CENTRAL_PUBLISH = "127.0.0.1:9994:9994"
BOOT_TIMEOUT_S = 120.0
REQUIRED_TOOLS = {
    "podman": "podman",
    "mmdebstrap": "mmdebstrap",
    "runc": "runc",
    "ssh-keygen": "openssh-client",
}


class LabError(Exception):
    """A problem the operator can fix; printed as one line without a traceback."""


@dataclass(frozen=True)
class LabHost:
    """One container of the lab, as the inventory describes it."""

    name: str
    groups: tuple[str, ...]

    @property
    def device(self) -> bool:
        return DEVICE_GROUP in self.groups

    @property
    def shape(self) -> str:
        return DEVICE_SHAPE if self.device else SHAPE


def data_volume(host: LabHost) -> list[str]:
    """A device's data partition, mounted (again after a reboot), as podman's --volume option."""
    if not host.device:
        return []
    try:
        source = datavol.ensure(host.name)
    except datavol.VolumeError as exc:
        raise LabError(str(exc)) from None
    return ["--volume", f"{source}:{datavol.DEST}"]


def step(index: int, total: int, message: str) -> None:
    """Print one progress line; flushed so ``make`` shows it while the step runs."""
    print(f"[{index}/{total}] {message}", flush=True)


def run(args: Sequence[str], *, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure raise LabError with its stderr so the operator sees the cause."""
    proc = subprocess.run(list(args), text=True, capture_output=capture, check=False)
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout or "").strip().splitlines()
        raise LabError(
            f"{' '.join(args[:3])} failed (exit {proc.returncode}): {detail[-1] if detail else ''}"
        )
    return proc


def require_tools() -> None:
    """Fail with one line naming the packages to install when a tool is missing."""
    missing = [pkg for tool, pkg in REQUIRED_TOOLS.items() if shutil.which(tool) is None]
    if missing:
        raise LabError(
            f"missing {', '.join(missing)}: run `apt-get install -y {' '.join(missing)}` "
            "(or `make deps`, which installs everything the lab needs)"
        )


def recipe_hash() -> str:
    """Hash of everything that defines the image: it changes only when the recipe does."""
    digest = hashlib.sha256()
    for path in sorted(IMAGE_DIR.iterdir()):
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def image_ref() -> str:
    return f"{IMAGE_REPO}:{recipe_hash()}"


def read_packages() -> list[str]:
    lines = (IMAGE_DIR / "packages.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def read_build_conf() -> dict[str, str]:
    conf: dict[str, str] = {}
    for line in (IMAGE_DIR / "build.conf").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            conf[key.strip()] = value.strip()
    return conf


def image_exists(ref: str) -> bool:
    return run(["podman", "image", "exists", ref], check=False).returncode == 0


def build_image(total: int = 2) -> str:
    """Build the systemd Debian image with mmdebstrap unless this recipe's image already exists."""
    ref = image_ref()
    if image_exists(ref):
        print(f"image {ref} is up to date", flush=True)
        return ref
    conf = read_build_conf()
    with tempfile.TemporaryDirectory(prefix="rvm-lab-image-") as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        step(
            1,
            total,
            f"bootstrapping Debian {conf['suite']} ({len(read_packages())} packages, about a minute)",
        )
        hooks = (IMAGE_DIR / "customize.sh").resolve()
        cmd = [
            "mmdebstrap",
            f"--variant={conf['variant']}",
            f"--include={','.join(read_packages())}",
            f'--customize-hook={hooks} "$1"',
            conf["suite"],
            str(tarball),
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            # mmdebstrap's "I:" lines are its own progress: pass them through, indented.
            if line.startswith(("I:", "E:", "W:")):
                print(f"      {line.rstrip()}", flush=True)
        if proc.wait() != 0:
            raise LabError(f"mmdebstrap failed (exit {proc.returncode}); see the lines above")
        step(2, total, f"importing the root filesystem as {ref}")
        run(
            [
                "podman", "import",
                "--change", 'CMD ["/sbin/init"]',
                "--change", "STOPSIGNAL=SIGRTMIN+3",
                "--change", f"LABEL {LABEL}=image",
                "--change", f"LABEL {RECIPE_LABEL}={recipe_hash()}",
                str(tarball), ref,
            ]
        )  # fmt: skip
    return ref


def inventory_hosts() -> list[LabHost]:
    """Hosts of inventories/lab with their groups, through ansible-inventory (ranges expanded)."""
    exe = ansible_tool("ansible-inventory")
    if exe is None:
        raise LabError(
            "ansible-inventory not found: run `make deps` (it creates .venv) and use the make targets"
        )
    data = json.loads(run([exe, "-i", str(INVENTORY), "--list"]).stdout)
    groups_of: dict[str, list[str]] = {}

    def walk(group: str) -> None:
        entry = data.get(group, {})
        for host in entry.get("hosts", []):
            groups_of.setdefault(host, []).append(group)
        for child in entry.get("children", []):
            walk(child)

    walk("all")
    return [
        LabHost(name, tuple(g for g in groups if g != "all")) for name, groups in sorted(groups_of.items())
    ]


def container_state(name: str) -> dict[str, str] | None:
    proc = run(["podman", "container", "inspect", name], check=False)
    if proc.returncode != 0:
        return None
    info = json.loads(proc.stdout)[0]
    labels = info.get("Config", {}).get("Labels") or {}
    keys = [
        m.get("Source", "")
        for m in info.get("Mounts") or []
        if m.get("Destination") == "/root/.ssh/authorized_keys"
    ]
    return {
        "key": keys[0] if keys else "",
        "status": info["State"]["Status"],
        "recipe": labels.get(RECIPE_LABEL, ""),
        "managed": labels.get(LABEL, ""),
        "net_admin": "yes" if "CAP_NET_ADMIN" in (info.get("EffectiveCaps") or []) else "no",
        "shape": labels.get(SHAPE_LABEL, ""),
        "extra": labels.get(EXTRA_LABEL, ""),
    }


def ensure_ssh_key() -> None:
    """The lab's own throw-away key (git-ignored under .lab/): Ansible logs in to the lab with it."""
    if SSH_KEY.exists():
        return
    SSH_KEY.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "rvm-fleet lab", "-f", str(SSH_KEY)])


def ansible_tool(name: str) -> str | None:
    """An Ansible command from PATH, else beside this Python (labctl run as .venv/bin/python)."""
    beside = Path(sys.executable).with_name(name)
    return shutil.which(name) or (str(beside) if beside.is_file() else None)


def forget_facts(names: Sequence[str]) -> None:
    """Drop the cached Ansible facts of containers that were (re)created or removed."""
    if not FACT_CACHE.is_dir():
        return
    wanted = set(names)
    for path in FACT_CACHE.iterdir():
        # jsonfile names a host's file "<prefix><host>" (ansible-core 2.19 writes "s1_<host>")
        host = path.name.split("_", 1)[1] if path.name.startswith("s1_") else path.name
        if host in wanted:
            path.unlink(missing_ok=True)


def ensure_vault() -> bool:
    """Random lab secrets, encrypted with ansible-vault (made once; both files are git-ignored).

    Per-device API keys and HTTP tokens are derived from vault_lab_secret in the inventory, so
    changing the number of devices needs no new secret. The plaintext only passes through a pipe.
    """
    if VAULT_PASS.exists() and VAULT_FILE.exists():
        return False
    import secrets

    if not VAULT_PASS.exists():
        VAULT_PASS.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(VAULT_PASS, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(32) + "\n")
    plain = "".join(f"{key}: {secrets.token_hex(24)}\n" for key in VAULT_KEYS)
    VAULT_FILE.parent.mkdir(parents=True, exist_ok=True)
    vault = ansible_tool("ansible-vault")
    if vault is None:
        raise LabError("ansible-vault not found: run `make deps` (it creates .venv) and use the make targets")
    proc = subprocess.run(
        [
            vault,
            "encrypt",
            "--vault-id",
            f"lab@{VAULT_PASS}",
            "--encrypt-vault-id",
            "lab",
            "--output",
            str(VAULT_FILE),
        ],
        input=plain,
        text=True,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise LabError(f"ansible-vault encrypt {VAULT_FILE} failed: {proc.stderr.strip()}")
    return True


def ensure_network() -> bool:
    if run(["podman", "network", "exists", NETWORK], check=False).returncode == 0:
        return False
    run(["podman", "network", "create", "--label", f"{LABEL}=network", NETWORK])
    return True


def create_container(host: LabHost, ref: str, *, extra: bool = False) -> None:
    """Create and start one systemd container.

    The lab key is mounted read-only as root's authorized_keys: inventories/lab reaches each host
    with ssh through ``podman exec -i HOST sshd -i`` (no ports, no addresses to manage).

    ``unmask=/proc/sys`` lets the base role apply network-namespaced sysctls (net.*) inside the
    container; the lab image masks systemd-sysctl.service and the base role never writes host-wide
    keys in a container, so nothing reaches the host's kernel settings.

    ``NET_ADMIN`` lets the hardening role load its nftables ruleset: it acts on the container's own
    network namespace only (``unmask=/proc/sys`` does not give it, and no other capability is added).

    ``/dev/net/tun``: zerotier-one (roles/zerotier) needs it. The platform simulator host also
    publishes the ZeroTier Central double's port on the control node's loopback only.

    A device's ``/var/lib/rvm-edge`` is a partition of its own (lab/datavol.py), so that a full
    data partition can be tested without filling the control node's disk.
    """
    publish = ["--publish", ZT_CENTRAL_PUBLISH] if "platform_simulators" in host.groups else []
    run(
        [
            "podman", "run", "--detach",
            "--name", host.name, "--hostname", host.name,
            "--network", NETWORK,
            "--systemd=always",
            "--security-opt", "unmask=/proc/sys",
            "--cap-add", "NET_ADMIN",
            "--device", "/dev/net/tun",
            *publish,
            *data_volume(host),
            "--volume", f"{SSH_KEY}.pub:/root/.ssh/authorized_keys:ro",
            "--label", f"{LABEL}=container",
            "--label", f"{RECIPE_LABEL}={recipe_hash()}",
            "--label", f"io.rvm-fleet.lab.groups={','.join(host.groups)}",
            "--label", f"{SHAPE_LABEL}={host.shape}",
            "--label", f"{EXTRA_LABEL}={'yes' if extra else ''}",
            ref,
        ]
    )  # fmt: skip


def systemd_state(name: str) -> str:
    """What systemd inside the container says of itself (running, degraded, starting, ...)."""
    proc = run(["podman", "exec", name, "systemctl", "is-system-running"], check=False)
    return proc.stdout.strip() or "unknown"


def failed_units(name: str) -> list[str]:
    """The units systemd inside the container lists as failed."""
    proc = run(
        ["podman", "exec", name, "systemctl", "list-units", "--failed", "--plain", "--no-legend"], check=False
    )
    return [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]


def warn_degraded(name: str) -> None:
    """A degraded boot still lets the lab go on (a converge may start what failed), but never silently:
    the 20-device scale run booted two devices degraded (inotify instances) and nothing said so."""
    units = failed_units(name) or ["(none listed any more)"]
    print(
        f"lab: warning: {name} booted degraded, failed: {', '.join(units)} "
        f"(see `lab/labctl.py shell {name}`, then `journalctl -b -u {units[0]}`)",
        file=sys.stderr,
        flush=True,
    )


def wait_booted(name: str, deadline: float) -> str:
    """Poll systemd inside the container until boot has finished (or the deadline passes)."""
    state = "unknown"
    while time.monotonic() < deadline:
        state = systemd_state(name)
        if state == "degraded":
            warn_degraded(name)
        if state in ("running", "degraded"):
            return state
        time.sleep(0.5)
    raise LabError(f"{name}: systemd did not finish booting in {BOOT_TIMEOUT_S:.0f}s (state {state})")


def cmd_up(_: argparse.Namespace) -> None:
    require_tools()
    hosts = inventory_hosts()
    ref = build_image()
    ensure_ssh_key()
    ensure_vault()
    ensure_network()
    changed: list[str] = []
    for index, host in enumerate(hosts, start=1):
        state = container_state(host.name)
        if state is not None and state["managed"] == "container" and state["shape"] != host.shape:
            # Made before /dev/net/tun, the Central double's port or the data partition: only a new
            # container has them (the old container's data goes with it, as `down` would).
            run(["podman", "rm", "--force", "--time", "10", host.name])
            datavol.remove(host.name)
            state = None
        if state is None:
            forget_facts([host.name])
            create_container(host, ref)
            action = "created"
        elif state["managed"] != "container":
            raise LabError(
                f"a container named {host.name} exists but was not made by the lab; remove or rename it"
            )
        elif state["key"] != f"{SSH_KEY}.pub":
            raise LabError(
                f"{host.name} belongs to the lab of another checkout (its key is {state['key'] or 'missing'}): "
                "run `make lab-down` there first"
            )
        elif state["status"] != "running":
            data_volume(host)  # mounted again after a reboot of the control node
            run(["podman", "start", host.name])
            action = "started"
        else:
            action = "running"
        if state is not None and state["recipe"] != recipe_hash():
            action += " (built from an older image recipe: `make lab-down lab` recreates it)"
        if state is not None and state["net_admin"] != "yes":
            action += " (made without NET_ADMIN, which the firewall needs: `make lab-down lab` recreates it)"
        if not action.startswith("running"):
            changed.append(host.name)
        step(index, len(hosts), f"{host.name:<14} {action}")
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    for name in changed:
        wait_booted(name, deadline)
    print(f"lab up: {len(hosts)} hosts, {len(changed)} changed", flush=True)


def lab_objects(kind: str) -> list[str]:
    """Names of the lab's containers, networks or volumes.

    Matched on the label's value, not just its presence: containers inherit the labels of their
    image, so a container someone else starts from the lab image carries the key too.
    """
    fmt = "{{.Names}}" if kind == "container" else "{{.Name}}"
    extra = ["--all"] if kind == "container" else []
    proc = run(["podman", kind, "ls", *extra, "--filter", f"label={LABEL}={kind}", "--format", fmt])
    return [line for line in proc.stdout.splitlines() if line.strip()]


def cmd_down(_: argparse.Namespace) -> None:
    if shutil.which("podman") is None:
        print("podman is not installed: nothing to remove", flush=True)
        return
    containers = lab_objects("container")
    forget_facts(containers)
    for index, name in enumerate(containers, start=1):
        run(["podman", "rm", "--force", "--time", "10", name])
        step(index, len(containers), f"{name} removed")
    for kind in ("volume", "network"):
        for name in lab_objects(kind):
            run(["podman", kind, "rm", "--force", name])
            print(f"{kind} {name} removed", flush=True)
    for name in datavol.names():
        datavol.remove(name)
        print(f"data partition of {name} removed", flush=True)
    print("lab down: nothing of the lab is left (the image cache stays; `lab/labctl.py clean` drops it)")


def foreign(states: dict[str, dict[str, str] | None], own_key: str) -> list[str]:
    """The lab containers that belong to another checkout's lab (another ssh key mounted)."""
    return sorted(name for name, state in states.items() if state is not None and state["key"] != own_key)


def cmd_check_free(_: argparse.Namespace) -> None:
    """Fail at once, before a long run, when another checkout's lab holds the lab's names: `up` would
    refuse them (taking them down is that checkout's call, never this one's)."""
    if shutil.which("podman") is None:
        print("podman is not installed: no lab here", flush=True)
        return
    theirs = foreign({name: container_state(name) for name in lab_objects("container")}, f"{SSH_KEY}.pub")
    if theirs:
        raise LabError(
            f"{', '.join(theirs)} belong to the lab of another checkout: run `make lab-down` there first"
        )
    print("no other checkout's lab here", flush=True)


def cmd_add(args: argparse.Namespace) -> None:
    """One extra device that no inventory lists yet: a bare RVM to enroll (docs/zerotier.md)."""
    require_tools()
    names = [host.name for host in inventory_hosts()]
    if args.name in names:
        raise LabError(f"{args.name} is in inventories/lab already; `add` makes a device outside it")
    state = container_state(args.name)
    if state is not None:
        if state["extra"] != "yes":
            raise LabError(f"a container named {args.name} exists and is not an extra lab device")
        print(f"{args.name} exists", flush=True)
        return
    ensure_ssh_key()
    ensure_network()
    forget_facts([args.name])
    create_container(LabHost(args.name, (DEVICE_GROUP,)), build_image(), extra=True)
    wait_booted(args.name, time.monotonic() + BOOT_TIMEOUT_S)
    print(f"{args.name} created", flush=True)


def cmd_remove(args: argparse.Namespace) -> None:
    """Remove an extra device made by `add` (never a host of the inventory)."""
    state = container_state(args.name)
    if state is None:
        print(f"{args.name} is absent", flush=True)
        return
    if state["extra"] != "yes":
        raise LabError(f"{args.name} is not an extra lab device (made by `add`); `down` removes the lab")
    run(["podman", "rm", "--force", "--time", "10", args.name])
    datavol.remove(args.name)
    forget_facts([args.name])
    print(f"{args.name} removed", flush=True)


def cmd_clean(args: argparse.Namespace) -> None:
    cmd_down(args)
    proc = run(["podman", "images", "--filter", f"label={LABEL}=image", "--format", "{{.ID}}"], check=False)
    for image_id in sorted(set(proc.stdout.split())):
        run(["podman", "rmi", "--force", image_id])
        print(f"image {image_id} removed")


def cmd_status(_: argparse.Namespace) -> None:
    hosts = inventory_hosts()
    current = recipe_hash()
    print(f"{'HOST':<14} {'GROUPS':<22} {'STATE':<10} {'SYSTEMD':<10} {'IMAGE':<8} ADDRESS")
    for host in hosts:
        state = container_state(host.name)
        systemd, address, image = "-", "-", "-"
        if state and state["status"] == "running":
            systemd = systemd_state(host.name)
            address = run(
                [
                    "podman",
                    "inspect",
                    "--format",
                    "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                    host.name,
                ]
            ).stdout.strip()
        if state:
            image = "current" if state["recipe"] == current else "stale"
        status = state["status"] if state else "absent"
        print(f"{host.name:<14} {','.join(host.groups):<22} {status:<10} {systemd:<10} {image:<8} {address}")


def cmd_shell(args: argparse.Namespace) -> None:
    names = [host.name for host in inventory_hosts()]
    if args.host not in names:
        raise LabError(f"{args.host!r} is not a lab host; inventories/lab has: {', '.join(names)}")
    state = container_state(args.host)
    if state is None or state["status"] != "running":
        raise LabError(f"{args.host} is not running: `make lab-up` starts it")
    os.execvp("podman", ["podman", "exec", "-it", args.host, "/bin/bash", "-l"])


def cmd_image(_: argparse.Namespace) -> None:
    require_tools()
    print(build_image())


def cmd_ssh_key(_: argparse.Namespace) -> None:
    """The role scenarios log in with the lab key too (lab/molecule/ssh.yml), lab up or not."""
    ensure_ssh_key()
    print(SSH_KEY)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="labctl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("image", help="build the lab image if its recipe changed").set_defaults(func=cmd_image)
    sub.add_parser("up", help="create/start every host of inventories/lab").set_defaults(func=cmd_up)
    sub.add_parser("down", help="remove the lab's containers, network and volumes").set_defaults(
        func=cmd_down
    )
    sub.add_parser("clean", help="down, then remove the cached lab images").set_defaults(func=cmd_clean)
    sub.add_parser("status", help="one line per lab host").set_defaults(func=cmd_status)
    sub.add_parser(
        "check-free", help="fail if another checkout's lab containers exist here (CI runs it first)"
    ).set_defaults(func=cmd_check_free)
    sub.add_parser("ssh-key", help="make the lab's ssh key if missing; print its path").set_defaults(
        func=cmd_ssh_key
    )
    shell = sub.add_parser("shell", help="open a shell in a lab host")
    shell.add_argument("host")
    shell.set_defaults(func=cmd_shell)
    add = sub.add_parser("add", help="create an extra device outside the inventory (to enroll)")
    add.add_argument("name")
    add.set_defaults(func=cmd_add)
    remove = sub.add_parser("remove", help="remove an extra device made by add")
    remove.add_argument("name")
    remove.set_defaults(func=cmd_remove)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except LabError as err:
        print(f"lab: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
