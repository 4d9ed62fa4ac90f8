"""What an operator checks after the rvm_edge role: the release, the venv, config, secrets, the
sandboxed service and its health endpoint.

The scenario deploys the interface stub (stub_app/), so /readyz here proves the role's unit,
credentials and health check work under the sandbox, not the real pipeline's readiness.
"""

from __future__ import annotations

import json
import subprocess

import pytest

NAME = "rvm-molecule-edge"
testinfra_hosts = [f"podman://{NAME}"]

API_KEY = "molecule-only-api-key-7f3a9c"
TOKEN = "molecule-only-http-token-51be04"


def test_release_is_current_and_verified(host) -> None:
    current = host.file("/opt/rvm-edge/current")
    assert current.is_symlink
    assert current.linked_to == "/opt/rvm-edge/releases/0.0.1"
    manifest = json.loads(host.file("/opt/rvm-edge/current/MANIFEST.json").content_string)
    assert manifest["version"] == "0.0.1"
    assert manifest["arch"] == "x86_64"
    # the uploaded bundle is not left behind
    assert host.check_output("find /var/cache/rvm-edge -type f | wc -l") == "0"


def test_venv_was_built_from_the_bundle_only(host) -> None:
    out = host.check_output("/opt/rvm-edge/current/venv/bin/rvm-edge version")
    assert out == "0.0.1"
    freeze = host.check_output("/opt/rvm-edge/current/venv/bin/python -m pip freeze --all")
    assert "PyYAML==6.0.4" in freeze


def test_config_is_readable_by_the_service_only(host) -> None:
    """The config path is a link through `current` to the config rendered for that release."""
    link = host.file("/etc/rvm-edge/config.yml")
    assert link.is_symlink
    current = host.file("/opt/rvm-edge/current").linked_to
    assert link.linked_to == f"{current}/config.yml"
    config = host.file(link.linked_to)
    assert config.user == "root"
    assert config.group == "rvm"
    assert config.mode == 0o640
    assert "device:" in config.content_string
    assert host.run("/opt/rvm-edge/current/venv/bin/rvm-edge check-config /etc/rvm-edge/config.yml").rc == 0


def test_credentials_are_root_only_files(host) -> None:
    directory = host.file("/etc/rvm-edge/credentials")
    assert directory.mode == 0o700
    assert directory.user == "root"
    for name, value in (("api-key", API_KEY), ("api-token", TOKEN)):
        f = host.file(f"/etc/rvm-edge/credentials/{name}")
        assert f.user == "root"
        assert f.mode == 0o600
        assert f.content_string.strip() == value


def test_secrets_do_not_leak(host) -> None:
    assert API_KEY not in host.file("/etc/rvm-edge/config.yml").content_string
    unit = host.file("/etc/systemd/system/rvm-edge.service").content_string
    assert API_KEY not in unit
    assert TOKEN not in unit
    processes = host.check_output("ps -eo args")
    assert API_KEY not in processes
    assert TOKEN not in processes
    environ = host.check_output("systemctl show rvm-edge -p Environment")
    assert API_KEY not in environ
    journal = host.check_output("journalctl --no-pager -o cat")
    assert API_KEY not in journal
    assert TOKEN not in journal


def test_service_runs_sandboxed_as_the_service_user(host) -> None:
    service = host.service("rvm-edge")
    assert service.is_running
    assert service.is_enabled
    show = host.check_output(
        "systemctl show rvm-edge -p Type -p User -p WatchdogUSec -p NRestarts -p MainPID"
    )
    props = dict(line.split("=", 1) for line in show.splitlines())
    assert props["Type"] == "notify"
    assert props["User"] == "rvm"
    assert props["WatchdogUSec"] == "30s"
    assert props["NRestarts"] == "0"
    owner = host.check_output(f"ps -o user= -p {props['MainPID']}")
    assert owner == "rvm"


def test_exposure_is_within_bound(host) -> None:
    out = host.check_output("systemd-analyze security rvm-edge.service --no-pager | tail -n 1")
    score = float(out.split("rvm-edge.service:")[1].split()[0])
    assert score <= 2.0, out


def test_camera_nodes_stay_reachable(host) -> None:
    """PrivateDevices would hide /dev/video*; the unit allows V4L2 devices and the video group."""
    show = host.check_output("systemctl show rvm-edge -p DeviceAllow -p SupplementaryGroups -p DevicePolicy")
    assert "char-video4linux rw" in show
    assert "SupplementaryGroups=video" in show
    assert "DevicePolicy=closed" in show


def privileged(*argv: str) -> str:
    """Reading another user's /proc entries needs ptrace rights the plain exec session lacks."""
    return subprocess.run(
        ["podman", "exec", "--privileged", NAME, *argv], capture_output=True, text=True, check=True
    ).stdout


def test_only_the_data_directory_is_writable(host) -> None:
    """ProtectSystem=strict as the service sees it: its own mount namespace, read-only but for data."""
    pid = host.check_output("systemctl show rvm-edge -p MainPID --value")
    assert host.file("/var/lib/rvm-edge/stub-state.json").user == "rvm"
    namespaces = privileged("readlink", f"/proc/{pid}/ns/mnt", "/proc/1/ns/mnt").split()
    assert namespaces[0] != namespaces[1], "systemd ran the unit without its own mount namespace"
    mountinfo = privileged("cat", f"/proc/{pid}/mountinfo")
    mounts = {fields[4]: fields[5].split(",") for fields in (line.split() for line in mountinfo.splitlines())}
    assert "ro" in mounts["/"], "the root filesystem must be read-only for the service"
    assert "rw" in mounts["/var/lib/rvm-edge"]
    private_tmp = [line for line in mountinfo.splitlines() if " /tmp " in line]
    assert private_tmp and "systemd-private" in private_tmp[-1], (
        "PrivateTmp must give the service its own /tmp"
    )


# Device nodes the unit lets the service open: the pseudo devices every process gets (null, zero,
# full, random, urandom, tty, ptmx and the pts) and V4L2 cameras (DeviceAllow=char-video4linux);
# 0:0 is the inaccessible node systemd mounts over a path it hides. What the mount namespace shows is
# checked here; the device cgroup (DevicePolicy=closed) cannot be, as this lab's cgroup v1
# devices controller is read-only inside the container (systemd logs "Failed to set devices.allow").
ALLOWED_NODES = {(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 2)}
PTS_MAJOR, V4L2_MAJOR = 136, 81


def allowed_node(node: dict) -> bool:
    pair = (node["major"], node["minor"])
    return pair in ALLOWED_NODES or node["major"] in (PTS_MAJOR, V4L2_MAJOR) or pair == (0, 0)


@pytest.fixture(scope="module")
def probe(host) -> dict:
    """The stub's /sandbox probe: it runs in the service's own process, under the unit's sandbox."""
    return json.loads(host.check_output("curl -fsS http://127.0.0.1:8080/sandbox"))


def test_probe_runs_in_the_service_process(host, probe) -> None:
    pid = int(host.check_output("systemctl show rvm-edge -p MainPID --value"))
    assert probe["pid"] == pid
    assert probe["uid"] == int(host.check_output("id -u rvm"))


def test_service_cannot_write_outside_its_data_directory(probe) -> None:
    writes = dict(probe["write"])
    assert writes.pop("/var/lib/rvm-edge") == "ok", "the data directory must stay writable"
    # EROFS, not EACCES: the read-only mount stops it, even in the world-writable directory
    assert writes == dict.fromkeys(writes, "EROFS"), writes
    assert "/srv/rvm-sandbox-open" in writes


def test_service_cannot_see_home_or_the_hosts_tmp(host, probe) -> None:
    assert host.file("/home/rvm-sandbox-probe/notes.txt").exists
    assert probe["home"] in ("EACCES", []), probe["home"]
    assert host.file("/tmp/rvm-sandbox-probe-host").exists
    assert isinstance(probe["tmp"], list) and "rvm-sandbox-probe-host" not in probe["tmp"]


def test_service_has_no_capabilities_and_a_syscall_filter(probe) -> None:
    status = probe["status"]
    for key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[key], 16) == 0, f"{key}={status[key]}"
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2", "no seccomp filter on the service"


def test_privileged_syscalls_get_eperm(probe) -> None:
    # setuid(own uid) is allowed to any process: EPERM comes from SystemCallFilter=~@privileged
    assert probe["syscalls"] == {"setuid(own uid)": "EPERM", "chroot(/)": "EPERM"}


def test_service_sees_no_device_nodes_but_the_allowed_ones(host, probe) -> None:
    """/dev/kmsg is a real node in the container (1:11); ProtectKernelLogs must hide it from the service."""
    assert host.check_output("stat -c %F:%t:%T /dev/kmsg") == "character special file:1:b"
    nodes = {node["path"]: node for node in probe["devices"]}
    assert not [node for node in nodes.values() if not allowed_node(node)], nodes
    hidden = nodes.get("/dev/kmsg")
    assert hidden is None or ((hidden["major"], hidden["minor"]) == (0, 0) and hidden["open"] != "ok"), hidden
    for path in ("/dev/null", "/dev/zero", "/dev/urandom"):
        assert nodes[path]["open"] == "ok", nodes[path]


def test_readyz_reports_frames(host) -> None:
    body = json.loads(host.check_output("curl -fsS http://127.0.0.1:8080/readyz"))
    assert body["ready"] is True
    assert body["frames_processed"] > 0
    assert body["version"] == "0.0.1"


def test_role_did_not_change_system_directories(host) -> None:
    for path in ("/etc", "/usr", "/var", "/opt"):
        f = host.file(path)
        assert (f.user, f.group, f.mode) == ("root", "root", 0o755), path
