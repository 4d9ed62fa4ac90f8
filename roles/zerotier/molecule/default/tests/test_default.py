"""What an operator checks after the zerotier role: the package from the pinned repository, the
service, the network joined with an address, and the API token kept private."""

from __future__ import annotations

import json


def test_package_from_the_pinned_repository(host) -> None:
    assert host.package("zerotier-one").is_installed
    source = host.file("/etc/apt/sources.list.d/zerotier.list").content_string
    assert "signed-by=/etc/apt/keyrings/zerotier.asc" in source
    assert host.file("/etc/apt/keyrings/zerotier.asc").mode == 0o644


def test_service_running_and_enabled(host) -> None:
    service = host.service("zerotier-one")
    assert service.is_running and service.is_enabled
    assert host.socket("tcp://127.0.0.1:9993").is_listening


def test_joined_with_an_address(host) -> None:
    networks = json.loads(host.check_output("zerotier-cli -j listnetworks"))
    (network,) = networks
    assert network["id"] == "8056c2e21c000001"
    assert network["status"] == "OK"
    assert network["assignedAddresses"][0].startswith("10.147.17.")
    assert host.check_output("zerotier-cli info").endswith("ONLINE")


def test_token_private(host) -> None:
    token = host.file("/var/lib/zerotier-one/authtoken.secret")
    assert token.mode & 0o077 == 0
    assert token.content_string.strip() not in host.check_output("ps -eo args")
