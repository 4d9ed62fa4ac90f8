"""Ansible inventory plugin: the fleet's hosts from the members of ZeroTier networks.

Why a plugin and not a static hosts.yml: the devices sit on ZeroTier, and their addresses, names and
authorization live in ZeroTier Central (or a self-hosted controller). Copying them into a file by
hand goes stale; reading the members each run does not. All members of all configured networks are
read and checked first and only then put into the inventory, so a failed or malformed reply leaves
no half-built inventory. The HTTP side (token header, pacing under the rate limit, 429 back-off,
one-line errors) is library/module_utils/zerotier_api.py, shared with the zerotier_member module.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import re
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable

DOCUMENTATION = r"""
name: zerotier
short_description: ZeroTier network members (Central or a self-hosted controller) as inventory hosts
description:
  - "Reads the members of one or more ZeroTier networks, from ZeroTier Central
    (C(GET /api/v1/network/{id}/member), header C(Authorization: token <key>)) or from a
    self-hosted controller (C(GET /controller/network/{id}/member), header C(X-ZT1-Auth)), and
    makes each member a host."
  - "Host variables: C(ansible_host) (the member's ZeroTier IP from C(config.ipAssignments); see
    O(ansible_host_prefixes)), C(zt_node_id), C(zt_network_id), C(zt_networks), C(zt_name),
    C(zt_description), C(zt_labels) (C(key=value) words of the description as a dict),
    C(zt_authorized), C(zt_hidden), C(zt_last_seen) (milliseconds since the epoch, or null when
    the API reports 0 or nothing), C(zt_client_version), C(zt_physical_address), C(zt_tags)
    (list of C([id, value])), C(zt_ip_assignments)."
  - "Groups: C(zt_network_<id>) per network, C(zt_unauthorized) (not authorized yet),
    C(zt_offline) (last seen more than O(offline_after_minutes) ago), C(zt_last_seen_unknown)
    (C(lastSeen) is 0 or absent: Central's value is ephemeral and a self-hosted controller does not
    report it), C(zt_no_ip) (no IP assigned: such a host gets no C(ansible_host) at all), plus the
    Constructable O(groups), O(keyed_groups) and O(compose)."
  - Every network is read and checked before any host is added. A wrong token, a wrong network id,
    an unreachable API or malformed JSON fails the whole source with one line naming what failed.
  - The token is sent only in the request header. It is not a host variable, not cached and not in
    any message.
  - Requests are paced to stay under O(rate_limit) requests per second; a C(429) reply is retried
    after its C(Retry-After) (or an exponential back-off when the header is absent).
  - The configuration file name must end in C(zerotier.yml) or C(zerotier.yaml).
version_added: "1.0.0"
author:
  - rvm-fleet maintainers (@rvm-fleet)
extends_documentation_fragment:
  - constructed
  - inventory_cache
options:
  plugin:
    description: Marks this file as a source for this plugin.
    type: str
    required: true
    choices: [zerotier]
  api_type:
    description:
      - V(central) for ZeroTier Central (or an API with the same paths), V(controller) for the local
        service API of a self-hosted controller node.
    type: str
    choices: [central, controller]
    default: central
  api_url:
    description:
      - Base URL. Defaults to C(https://api.zerotier.com/api/v1) for V(central) and
        C(http://127.0.0.1:9993) for V(controller).
    type: str
    env:
      - name: ZEROTIER_API_URL
  networks:
    description: The 16-hex-digit ids of the networks whose members become hosts.
    type: list
    elements: str
    required: true
  token:
    description:
      - The API token (Central) or the controller's C(authtoken.secret) contents. May be a
        vault-encrypted string (C(!vault)) in this file.
      - Takes precedence over O(token_file).
    type: str
    env:
      - name: ZEROTIER_TOKEN
  token_file:
    description:
      - A file holding the token (only its first line is read), for example
        C(/var/lib/zerotier-one/authtoken.secret) for a controller.
      - A relative path is relative to the directory of this configuration file, so an inventory
        directory works from any current directory.
    type: str  # resolved against this file's directory, not the current one
    env:
      - name: ZEROTIER_TOKEN_FILE
  ansible_host_prefixes:
    description:
      - Networks (CIDR) in order of preference for C(ansible_host); the first assigned address
        inside the first listed prefix wins. When none matches, the first IPv4 address, then the
        first address of any family.
    type: list
    elements: str
    default: []
  hostname_source:
    description:
      - V(name) uses the member's name (characters other than letters, digits, C(.), C(_) and C(-)
        become C(_)) and falls back to the node id when the name is empty or already taken;
        V(node_id) always uses the node id.
    type: str
    choices: [name, node_id]
    default: name
  offline_after_minutes:
    description: A member last seen longer ago than this is in C(zt_offline).
    type: int
    default: 10
  offline_if_last_seen_unknown:
    description: Put members whose last-seen time is unknown (0 or absent) in C(zt_offline) too.
    type: bool
    default: false
  include_hidden:
    description: Also list members marked hidden (Central hides deleted or ignored members so).
    type: bool
    default: false
  include_unauthorized:
    description: List members that are not authorized (in C(zt_unauthorized)).
    type: bool
    default: true
  rate_limit:
    description:
      - Requests per second at most. Central allows 20 on the free plan and 100 on paid plans.
    type: float
    default: 20
  max_retries:
    description: How many times a C(429) reply is retried before the source fails.
    type: int
    default: 5
  timeout:
    description: Seconds to wait for one HTTP reply.
    type: float
    default: 30
"""

EXAMPLES = r"""
# inventories/prod/fleet.zerotier.yml -- devices from ZeroTier Central, grouped by site
plugin: zerotier
networks: [8056c2e21c000001]
token: !vault |
  $ANSIBLE_VAULT;1.1;AES256
  ...
ansible_host_prefixes: [10.147.17.0/24]
keyed_groups:
  - key: zt_labels.site | default('unknown')
    prefix: site
groups:
  devices: zt_name is match('rvm-')
compose:
  rvm_mgmt_address: ansible_host

---
# A self-hosted controller, token read from its authtoken.secret
plugin: zerotier
api_type: controller
api_url: http://10.0.0.2:9993
token_file: /var/lib/zerotier-one/authtoken.secret
networks: [a09acf0233000001]
cache: true
cache_plugin: ansible.builtin.jsonfile
cache_connection: .cache/zerotier
cache_timeout: 300
"""

_HOSTNAME_BAD = re.compile(r"[^A-Za-z0-9._-]")
_NWID = re.compile(r"^[0-9a-fA-F]{16}$")


def _load_api() -> Any:
    """The shared client in library/module_utils (this repository's layout; not an installed package)."""
    name = "rvm_fleet_zerotier_api"
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).resolve().parents[2] / "library" / "module_utils" / "zerotier_api.py"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise AnsibleParserError(f"zerotier: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def pick_address(ips: list[str], prefixes: list[str]) -> str | None:
    """The member's address for ansible_host: preferred prefixes in order, then IPv4, then any."""
    parsed = []
    for ip in ips:
        try:
            parsed.append(ipaddress.ip_address(ip.split("/")[0]))
        except ValueError:
            continue
    for prefix in prefixes:
        net = ipaddress.ip_network(prefix, strict=False)
        for addr in parsed:
            if addr.version == net.version and addr in net:
                return str(addr)
    for addr in parsed:
        if addr.version == 4:
            return str(addr)
    return str(parsed[0]) if parsed else None


def description_labels(description: str) -> dict[str, str]:
    """``site=berlin role=device`` (spaces, commas or semicolons between) as a dict."""
    labels = {}
    for word in re.split(r"[\s,;]+", description.strip()):
        key, sep, value = word.partition("=")
        if sep and key:
            labels[key] = value
    return labels


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    """Members of ZeroTier networks as hosts; see DOCUMENTATION."""

    NAME = "zerotier"

    def verify_file(self, path: str) -> bool:
        return super().verify_file(path) and path.endswith(("zerotier.yml", "zerotier.yaml"))

    def parse(self, inventory: Any, loader: Any, path: str, cache: bool = True) -> None:
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        self._config_dir = str(Path(path).resolve().parent)
        cache_key = self.get_cache_key(path)
        use_cache = self.get_option("cache") and cache
        update_cache = self.get_option("cache") and not cache
        members: list[dict[str, Any]] | None = None
        if use_cache:
            try:
                members = self._cache[cache_key]
            except KeyError:
                update_cache = True
        if members is None:
            members = self._fetch(path)
        if update_cache:
            self._cache[cache_key] = members
        self._populate(members)

    def _token(self, api: Any) -> str:
        token = self.get_option("token")
        if token:
            return str(token).strip()
        token_file = self.get_option("token_file")
        if not token_file:
            return ""
        return api.read_token_file(str(Path(self._config_dir, Path(token_file).expanduser())))

    def _fetch(self, path: str) -> list[dict[str, Any]]:
        """Every member of every network, checked, as plain dicts (what the cache holds)."""
        api = _load_api()
        api_type = self.get_option("api_type")
        networks = self.get_option("networks") or []
        for nwid in networks:
            if not _NWID.match(str(nwid)):
                raise AnsibleParserError(f"zerotier: {path}: network id {nwid!r} is not 16 hex digits")
        try:
            client = api.Client(
                self.get_option("api_url") or api.DEFAULT_URLS[api_type],
                self._token(api),
                api_type,
                rate_limit=float(self.get_option("rate_limit")),
                max_retries=int(self.get_option("max_retries")),
                timeout=float(self.get_option("timeout")),
            )
            members = [m for nwid in networks for m in client.members(str(nwid).lower())]
        except api.ZeroTierError as exc:
            raise AnsibleParserError(f"zerotier: {path}: {exc}") from None
        result = []
        for member in members:
            record = asdict(member)
            record.pop("raw")
            record["ip_assignments"] = list(member.ip_assignments)
            record["tags"] = [list(t) for t in member.tags]
            result.append(record)
        return result

    def _hostname(self, member: dict[str, Any], taken: dict[str, str]) -> str:
        node = member["node_id"]
        if self.get_option("hostname_source") == "name" and member["name"]:
            name = _HOSTNAME_BAD.sub("_", member["name"])
            if taken.get(name, node) == node:
                return name
            self.display.warning(
                f"zerotier: name {name} is used by node {taken[name]} too; node {node} is listed as {node}"
            )
        return node

    def _populate(self, members: list[dict[str, Any]]) -> None:
        prefixes = self.get_option("ansible_host_prefixes") or []
        now_ms = time.time() * 1000
        offline_ms = self.get_option("offline_after_minutes") * 60_000
        strict = self.get_option("strict")
        taken: dict[str, str] = {}
        seen_nodes: dict[str, str] = {}
        for member in members:
            if member["hidden"] and not self.get_option("include_hidden"):
                continue
            if not member["authorized"] and not self.get_option("include_unauthorized"):
                continue
            node = member["node_id"]
            if node in seen_nodes:
                # The same node in a later network: one host, listed in that network's group too.
                host = seen_nodes[node]
                self.inventory.get_host(host).vars["zt_networks"].append(member["network_id"])
                self._add_group(host, f"zt_network_{member['network_id']}")
                continue
            host = self._hostname(member, taken)
            taken[host] = node
            seen_nodes[node] = host
            self.inventory.add_host(host)
            last_seen = member["last_seen"] or None
            hostvars: dict[str, Any] = {
                "zt_node_id": node,
                "zt_network_id": member["network_id"],
                "zt_networks": [member["network_id"]],
                "zt_name": member["name"],
                "zt_description": member["description"],
                "zt_labels": description_labels(member["description"]),
                "zt_authorized": member["authorized"],
                "zt_hidden": member["hidden"],
                "zt_last_seen": last_seen,
                "zt_client_version": member["client_version"],
                "zt_physical_address": member["physical_address"],
                "zt_tags": member["tags"],
                "zt_ip_assignments": member["ip_assignments"],
            }
            address = pick_address(member["ip_assignments"], prefixes)
            if address:
                hostvars["ansible_host"] = address
            for key, value in hostvars.items():
                self.inventory.set_variable(host, key, value)
            self._add_group(host, f"zt_network_{member['network_id']}")
            if not member["authorized"]:
                self._add_group(host, "zt_unauthorized")
            if address is None:
                self._add_group(host, "zt_no_ip")
            if last_seen is None:
                self._add_group(host, "zt_last_seen_unknown")
            if (last_seen is None and self.get_option("offline_if_last_seen_unknown")) or (
                last_seen is not None and now_ms - last_seen > offline_ms
            ):
                self._add_group(host, "zt_offline")
            all_vars = self.inventory.get_host(host).get_vars()
            self._set_composite_vars(self.get_option("compose"), all_vars, host, strict=strict)
            all_vars = self.inventory.get_host(host).get_vars()
            self._add_host_to_composed_groups(self.get_option("groups"), all_vars, host, strict=strict)
            self._add_host_to_keyed_groups(self.get_option("keyed_groups"), all_vars, host, strict=strict)

    def _add_group(self, host: str, group: str) -> None:
        self.inventory.add_group(group)
        self.inventory.add_child(group, host)
