"""The zerotier inventory plugin through `ansible-inventory --list`, against the Central double on
loopback: what an operator sees (hosts, variables, groups), caching, and the failure cases."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import yaml
from zt_helpers import (
    CONTROLLER_TOKEN,
    FOREIGN_NWID,
    NWID,
    NWID2,
    REPO,
    TOKEN,
    Double,
    unwrap,
)

BIN = REPO / ".venv" / "bin"


def write_config(tmp_path: Path, double: Double, **options: Any) -> Path:
    config = {
        "plugin": "zerotier",
        "api_url": f"{double.url}/api/v1",
        "networks": [NWID, NWID2],
        "keyed_groups": [{"key": "zt_labels.site | default('none')", "prefix": "site"}],
        "compose": {"zt_site": "zt_labels.site | default('none')"},
        **options,
    }
    path = tmp_path / "fleet.zerotier.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def inventory(
    tmp_path: Path,
    source: Path,
    token: str | None = TOKEN,
    extra_sources: list[Path] | None = None,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    environ = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        # The repo's fact cache holds the lab's facts; keep them out of these listings.
        "ANSIBLE_CACHE_PLUGIN": "ansible.builtin.memory",
        "ANSIBLE_VAULT_PASSWORD_FILE": str(tmp_path / "vault-pass"),
        "NO_PROXY": "127.0.0.1",
        **env,
    }
    (tmp_path / "vault-pass").write_text("lab-vault-pass\n")
    environ.pop("ZEROTIER_TOKEN", None)
    if token is not None:
        environ["ZEROTIER_TOKEN"] = token
    return subprocess.run(
        [
            str(BIN / "ansible-inventory"),
            "-i",
            str(source),
            *[f"-i{p}" for p in extra_sources or []],
            "--list",
        ],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )


def listing(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    return unwrap(json.loads(result.stdout))


def members_of(data: dict[str, Any], group: str) -> set[str]:
    return set(data.get(group, {}).get("hosts", []))


def test_hosts_vars_and_groups(tmp_path: Path, double: Double) -> None:
    result = inventory(tmp_path, write_config(tmp_path, double))
    data = listing(result)
    hostvars = data["_meta"]["hostvars"]
    assert set(hostvars) == {"rvm-lab-01", "rvm-lab-02", "c1b2c3d4e5", "rvm-lab-04", "rvm-monitor"}
    one = hostvars["rvm-lab-01"]
    # IPv4 preferred over the earlier IPv6 assignment when no prefix is configured.
    assert one["ansible_host"] == "10.147.17.11"
    assert one["zt_site"] == "berlin"
    assert one["zt_node_id"] == "a1b2c3d4e5"
    assert one["zt_authorized"] is True
    assert one["zt_tags"] == [[1000, 1]]
    assert one["zt_client_version"] == "1.14.2"
    assert one["zt_physical_address"] == "192.0.2.10/9993"
    assert isinstance(one["zt_last_seen"], int) and one["zt_last_seen"] > 0
    assert one["zt_labels"] == {"site": "berlin"}
    assert hostvars["rvm-monitor"]["zt_network_id"] == NWID2
    # The unauthorized, nameless member: listed by node id, in zt_unauthorized and zt_no_ip,
    # and never given an empty ansible_host.
    pending = hostvars["c1b2c3d4e5"]
    assert pending["zt_authorized"] is False
    assert "ansible_host" not in pending
    assert members_of(data, "zt_unauthorized") == {"c1b2c3d4e5"}
    assert members_of(data, "zt_no_ip") == {"c1b2c3d4e5"}
    # Last seen 3 h ago: offline. lastSeen 0: unknown, not offline by default.
    assert members_of(data, "zt_offline") == {"rvm-lab-02"}
    assert "rvm-lab-04" in members_of(data, "zt_last_seen_unknown")
    assert hostvars["rvm-lab-04"]["zt_last_seen"] is None
    assert members_of(data, "site_berlin") == {"rvm-lab-01", "rvm-lab-04"}
    assert members_of(data, "site_hamburg") == {"rvm-lab-02"}
    assert members_of(data, f"zt_network_{NWID2}") == {"rvm-monitor"}
    assert TOKEN not in result.stdout + result.stderr


def test_preferred_prefix_and_unknown_last_seen_as_offline(tmp_path: Path, double: Double) -> None:
    source = write_config(
        tmp_path, double, ansible_host_prefixes=["fd80:56c2:e21c::/48"], offline_if_last_seen_unknown=True
    )
    data = listing(inventory(tmp_path, source))
    assert data["_meta"]["hostvars"]["rvm-lab-01"]["ansible_host"] == "fd80:56c2:e21c::1"
    assert data["_meta"]["hostvars"]["rvm-lab-02"]["ansible_host"] == "10.147.17.12"
    assert {"rvm-lab-02", "rvm-lab-04"} <= members_of(data, "zt_offline")


def test_cache_serves_second_run_without_the_token_in_it(tmp_path: Path, double: Double) -> None:
    cache_dir = tmp_path / "cache"
    source = write_config(
        tmp_path,
        double,
        cache=True,
        cache_plugin="ansible.builtin.jsonfile",
        cache_connection=str(cache_dir),
        cache_timeout=600,
    )
    first = listing(inventory(tmp_path, source))
    requests_after_first = len(double.state.requests)
    # The member changes at the API, but the cached inventory is served without asking again.
    double.state.networks[NWID].members["c1b2c3d4e5"].authorized = True
    second_run = inventory(tmp_path, source)
    assert listing(second_run) == first
    assert len(double.state.requests) == requests_after_first
    cached = "".join(p.read_text() for p in cache_dir.iterdir())
    assert "a1b2c3d4e5" in cached
    assert TOKEN not in cached
    # --flush-cache reads the API again.
    environ_run = subprocess.run(
        [str(BIN / "ansible-inventory"), "-i", str(source), "--list", "--flush-cache"],
        env={
            **os.environ,
            "PATH": f"{BIN}:{os.environ['PATH']}",
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_CACHE_PLUGIN": "ansible.builtin.memory",
            "ZEROTIER_TOKEN": TOKEN,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "zt_unauthorized" not in listing(environ_run)


def test_token_from_vault_string_and_from_file(tmp_path: Path, double: Double) -> None:
    (tmp_path / "vault-pass").write_text("lab-vault-pass\n")
    encrypted = subprocess.run(
        [str(BIN / "ansible-vault"), "encrypt_string", TOKEN],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        env={
            **os.environ,
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_VAULT_PASSWORD_FILE": str(tmp_path / "vault-pass"),
        },
    ).stdout
    source = write_config(tmp_path, double)
    source.write_text(source.read_text() + "token: " + encrypted.strip() + "\n")
    assert TOKEN not in source.read_text()
    result = inventory(tmp_path, source, token=None)
    assert "rvm-lab-01" in listing(result)["_meta"]["hostvars"]
    assert TOKEN not in result.stdout + result.stderr

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    by_file = write_config(tmp_path, double, token_file=str(token_file))
    assert "rvm-lab-01" in listing(inventory(tmp_path, by_file, token=None))["_meta"]["hostvars"]


def test_a_relative_token_file_is_read_beside_the_config_not_in_the_current_directory(
    tmp_path: Path, double: Double
) -> None:
    """inventories/lab-zerotier names ../../.lab/zerotier-central-token: it must work from any cwd."""
    inv = tmp_path / "inventories" / "fleet"
    inv.mkdir(parents=True)
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "token").write_text(TOKEN + "\n")
    source = write_config(tmp_path, double, token_file="../../secrets/token")
    source = source.rename(inv / source.name)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = inventory(elsewhere, source, token=None)
    assert "rvm-lab-01" in listing(result)["_meta"]["hostvars"]
    assert TOKEN not in result.stdout + result.stderr


def test_self_hosted_controller(tmp_path: Path, double: Double) -> None:
    token_file = tmp_path / "authtoken.secret"
    token_file.write_text(CONTROLLER_TOKEN)
    source = write_config(
        tmp_path, double, api_type="controller", api_url=double.url, token_file=str(token_file)
    )
    data = listing(inventory(tmp_path, source, token=None))
    hostvars = data["_meta"]["hostvars"]
    assert hostvars["rvm-lab-01"]["ansible_host"] == "10.147.17.11"
    assert hostvars["rvm-lab-01"]["zt_client_version"] == "1.14.2"
    assert members_of(data, "zt_unauthorized") == {"c1b2c3d4e5"}
    # A controller does not report lastSeen: unknown for every member, nobody called offline.
    assert members_of(data, "zt_offline") == set()
    assert all(
        ("GET", f"/controller/network/{NWID}/member/{n}") in double.state.requests for n in ("a1b2c3d4e5",)
    )


def test_429_is_waited_out(tmp_path: Path) -> None:
    limited = Double(rate_limit=1)
    try:
        limited.state.forced_429.append("1")
        data = listing(inventory(tmp_path, write_config(tmp_path, limited)))
        assert "rvm-monitor" in data["_meta"]["hostvars"]
        # The forced 429, and the 1 req/s limit met right after it: both waited out.
        assert limited.state.throttled >= 1
    finally:
        limited.close()


def test_pacing_stays_under_the_limit(tmp_path: Path) -> None:
    limited = Double(rate_limit=1)
    try:
        listing(inventory(tmp_path, write_config(tmp_path, limited, rate_limit=0.8)))
        assert limited.state.throttled == 0
        assert len(limited.state.requests) == 2
    finally:
        limited.close()


def error_case(tmp_path: Path, result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert TOKEN not in result.stdout + result.stderr
    assert "rvm-lab-01" not in result.stdout


ERROR_CASES = [
    ({"token": "wrong-token"}, "401 unauthorized: the API token (Authorization: token) was refused"),
    ({"networks": [NWID, "ffffffffffffffff"]}, "network ffffffffffffffff: 404 not found"),
    ({"networks": [NWID, FOREIGN_NWID]}, f"network {FOREIGN_NWID}: 403 forbidden"),
    ({"networks": ["not-a-network"]}, "network id 'not-a-network' is not 16 hex digits"),
    ({"api_url": "http://127.0.0.1:9/api/v1"}, "cannot reach the ZeroTier API at http://127.0.0.1:9/api/v1"),
]


def test_errors_are_one_clear_line(tmp_path: Path, double: Double) -> None:
    """Each broken source (one ansible-inventory run with all of them, to keep the suite short)."""
    sources = []
    for index, (change, _) in enumerate(ERROR_CASES):
        folder = tmp_path / f"case{index}"
        folder.mkdir()
        sources.append(write_config(folder, double, **change))
    result = inventory(tmp_path, sources[0], extra_sources=sources[1:])
    for source, (_, expected) in zip(sources, ERROR_CASES, strict=True):
        assert f"zerotier: {source}: " in result.stderr
        error_case(tmp_path, result, expected)


def test_malformed_json_builds_no_inventory(tmp_path: Path, double: Double) -> None:
    # The first network answers fine, the second with a broken body: nothing may be listed.
    original = double.state.handle

    def second_broken(method: str, path: str, headers: dict[str, str], body: bytes):  # type: ignore[no-untyped-def]
        if NWID2 in path:
            double.state.forced_raw.append(b'[{"nodeId": "e1b2c3d4e5", "config": {')
        return original(method, path, headers, body)

    double.state.handle = second_broken  # type: ignore[method-assign]
    result = inventory(tmp_path, write_config(tmp_path, double))
    error_case(
        tmp_path, result, f"network {NWID2}: malformed JSON from {double.url}/api/v1/network/{NWID2}/member"
    )


def test_missing_token(tmp_path: Path, double: Double) -> None:
    result = inventory(tmp_path, write_config(tmp_path, double), token=None)
    error_case(tmp_path, result, "no ZeroTier API token")


def test_duplicate_name_falls_back_to_node_id_with_a_warning(tmp_path: Path, double: Double) -> None:
    double.state.add_member(NWID, {"nodeId": "f1f2f3f4f5", "name": "rvm-lab-01", "authorized": True})
    result = inventory(tmp_path, write_config(tmp_path, double))
    hostvars = listing(result)["_meta"]["hostvars"]
    assert hostvars["rvm-lab-01"]["zt_node_id"] == "a1b2c3d4e5"
    assert hostvars["f1f2f3f4f5"]["zt_name"] == "rvm-lab-01"
    assert "name rvm-lab-01 is used by node a1b2c3d4e5 too" in result.stderr
