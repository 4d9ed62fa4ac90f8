"""What an operator checks on a host after the base role: account, journald, time sync, sysctl.

The podman:// backend talks to the container directly (one `podman exec` per command) instead of
one `ansible` run per command, which keeps the verifier fast.
"""

from __future__ import annotations

import pytest

testinfra_hosts = ["podman://rvm-molecule-base"]


def test_service_user_cannot_log_in(host) -> None:
    user = host.user("rvm")
    assert user.exists
    assert user.group == "rvm"
    assert user.shell == "/usr/sbin/nologin"
    assert {"video", "render"} <= set(user.groups)
    shadow = host.run("getent shadow rvm").stdout.split(":")
    assert shadow[1].startswith("!"), "the password must be locked"
    # A login through su must be refused by the nologin shell.
    login = host.run("su rvm -c true")
    assert login.rc != 0
    assert "not available" in login.stdout + login.stderr


def test_service_home_is_private(host) -> None:
    home = host.file("/var/lib/rvm")
    assert home.is_directory
    assert home.user == "rvm"
    assert home.group == "rvm"
    assert home.mode == 0o750


def test_journald_limits_are_live(host) -> None:
    dropin = host.file("/etc/systemd/journald.conf.d/60-rvm-base.conf")
    assert dropin.contains("^SystemMaxUse=512M$")
    assert dropin.contains("^Storage=persistent$")
    assert dropin.contains("^RateLimitBurst=10000$")
    # journald reads the drop-in: the merged configuration shows it and the journal is persistent.
    merged = host.check_output("systemd-analyze cat-config systemd/journald.conf")
    assert "SystemMaxUse=512M" in merged
    assert host.file("/var/log/journal").is_directory
    assert host.service("systemd-journald").is_running


def test_time_sync_unit_is_active(host) -> None:
    chrony = host.service("chrony")
    assert chrony.is_running
    assert chrony.is_enabled
    # chronyd answers its control socket (it tracks time even with no reachable server).
    assert host.run("chronyc -n tracking").rc == 0
    assert host.check_output("timedatectl show -p Timezone --value") == "Etc/UTC"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("net.core.somaxconn", "1024"),
        ("net.ipv4.tcp_keepalive_time", "120"),
        ("net.ipv4.conf.all.accept_redirects", "0"),
        ("net.ipv4.conf.all.rp_filter", "2"),
    ],
)
def test_sysctl_values_are_live(host, key: str, value: str) -> None:
    assert host.sysctl(key) == int(value)
    assert host.file("/etc/sysctl.d/60-rvm-base.conf").contains(f"^{key}={value}$")


def test_host_kernel_settings_are_not_touched_in_a_container(host) -> None:
    conf = host.file("/etc/sysctl.d/60-rvm-base.conf")
    assert conf.contains("^# not applied in a container .*: vm.swappiness = 10$")
    assert not conf.contains("^vm.swappiness=")


def test_no_swap_in_a_container(host) -> None:
    # base_swap_file_size_mb is set for this scenario: in a container the role must refuse it.
    assert not host.file("/var/swapfile").exists
    assert not host.file("/etc/fstab").contains("swapfile")


def test_baseline_packages_installed(host) -> None:
    for name in ("acl", "ca-certificates", "chrony", "curl", "jq", "procps", "rsync", "sqlite3", "tzdata"):
        assert host.package(name).is_installed, name


def test_system_ownership_unchanged(host) -> None:
    for path in ("/etc", "/usr", "/var"):
        f = host.file(path)
        assert (f.user, f.group) == ("root", "root"), path
