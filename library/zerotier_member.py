"""Ansible module zerotier_member: a ZeroTier network member as the fleet wants it.

The comparison and the wait live in module_utils/zerotier_member_core.py and do no I/O; the HTTP
side (token header, pacing, 429 back-off, one-line errors) is module_utils/zerotier_api.py, shared
with the inventory plugin. This file wires them to Ansible: read, compare, POST only what differs.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: zerotier_member
short_description: Authorize, name, tag and address a member of a ZeroTier network
description:
  - "Reads the member from ZeroTier Central (C(GET /api/v1/network/{id}/member/{node}), header
    C(Authorization: token <key>)) or from a self-hosted controller
    (C(GET /controller/network/{id}/member/{node}), header C(X-ZT1-Auth)), compares it with the
    task and POSTs only the fields that differ, with the exact JSON types the API accepts (a
    boolean for C(authorized) and C(hidden), integers in C(tags), address strings in
    C(ipAssignments))."
  - Options left out are left as they are on the controller.
  - "A member that has not reached the controller yet (unknown, or a record created by an earlier
    POST whose node never connected) is waited for, up to O(wait_for_member_s) seconds, before
    anything is written: a name and description set before the node's first contact are replaced
    at that contact, so writing them only afterwards makes them stick. When the wait runs out the
    task fails and names the node and what to do."
  - A 401, 403 or 404 reply fails with one line saying which token, network or member it was. The
    token is never part of a message or a result.
  - "Usually run on the control node (C(delegate_to: localhost)), where the API token is."
version_added: "1.0.0"
author:
  - rvm-fleet maintainers (@rvm-fleet)
options:
  network_id:
    description: The network's 16-hex-digit id.
    type: str
    required: true
  node_id:
    description: The member's 10-hex-digit ZeroTier address (C(zerotier-cli info) on the device).
    type: str
    required: true
  state:
    description: V(present) manages the member; V(absent) deletes its record from the controller.
    type: str
    choices: [present, absent]
    default: present
  authorized:
    description: Authorize (V(true)) or deauthorize (V(false)) the member.
    type: bool
  name:
    description: The member's name (the inventory plugin uses it as the host name).
    type: str
  description:
    description: The member's description, for example C(site=berlin) (the inventory plugin reads
      C(key=value) words of it as C(zt_labels)).
    type: str
  hidden:
    description: Hide the member in Central's member list.
    type: bool
  ip_assignments:
    description:
      - The member's managed IP addresses, compared as a set (order carries no meaning).
      - Left out, the controller's own assignment (from the network's pool) stays.
    type: list
    elements: str
  tags:
    description: Tags as C([tag_id, value]) pairs of integers, compared as a set.
    type: list
    elements: raw
  api_type:
    description: V(central) for ZeroTier Central, V(controller) for a self-hosted controller.
    type: str
    choices: [central, controller]
    default: central
  api_url:
    description:
      - Base URL; defaults to C(https://api.zerotier.com/api/v1) (V(central)) or
        C(http://127.0.0.1:9993) (V(controller)). Also read from C(ZEROTIER_API_URL).
    type: str
  token:
    description:
      - The Central API token or the controller's C(authtoken.secret). Also read from
        C(ZEROTIER_TOKEN). Takes precedence over O(token_file).
    type: str
  token_file:
    description: A file holding the token (its first line).
    type: path
  wait_for_member_s:
    description: How long to wait for a member that has not reached the controller yet; C(0) fails at once.
    type: int
    default: 300
  poll_s:
    description: Seconds between two reads while waiting.
    type: float
    default: 2
  rate_limit:
    description: Requests per second at most (Central allows 20 on the free plan, 100 on paid plans).
    type: float
    default: 20
  max_retries:
    description: How many times a C(429) reply is retried (after its C(Retry-After)).
    type: int
    default: 5
  timeout:
    description: Seconds to wait for one HTTP reply.
    type: float
    default: 30
notes:
  - Supports check mode (it reads and reports what would change, and does not wait for a member
    that has not been seen) and diff mode (the managed fields before and after).
requirements:
  - Python >= 3.10 where it runs (the standard library only).
"""

EXAMPLES = r"""
- name: Authorize a new device with its name, site and address
  zerotier_member:
    network_id: "{{ zerotier_networks[0] }}"
    node_id: "{{ zerotier_node_id }}"
    authorized: true
    name: "{{ inventory_hostname }}"
    description: "site={{ rvm_site }}"
    tags: [[1000, 3]]
    ip_assignments: [10.147.17.21]
    token: "{{ zerotier_central_token }}"
  delegate_to: localhost
  no_log: false

- name: Deauthorize a retired device, controller on the office server
  zerotier_member:
    api_type: controller
    api_url: http://10.0.0.2:9993
    token_file: /etc/rvm-fleet/zt-controller.secret
    network_id: a09acf0233000001
    node_id: 0f1e2d3c4b
    authorized: false
    wait_for_member_s: 0
"""

RETURN = r"""
changed:
  description: Whether a field was (or, in check mode, would be) written.
  returned: always
  type: bool
changes:
  description: The fields written (or that would be written).
  returned: always
  type: list
  elements: str
  sample: [authorized, name]
member:
  description: The member after the task (in check mode, as it would be).
  returned: success
  type: dict
  sample:
    node_id: a1b2c3d4e5
    network_id: 8056c2e21c000001
    authorized: true
    name: rvm-lab-04
    description: site=berlin
    hidden: false
    ip_assignments: [10.147.17.21]
    tags: [[1000, 3]]
    seen: true
    last_seen: 1796509092336
    client_version: 1.14.2
waited_s:
  description: Seconds spent waiting for the member to reach the controller.
  returned: success
  type: float
msg:
  description: What happened, in one line.
  returned: always
  type: str
"""

import time
from pathlib import Path
from typing import Any

import ansible.module_utils
from ansible.module_utils.basic import AnsibleModule, env_fallback

# Loaded directly (ansible-lint's argument check, the unit tests) rather than through AnsiballZ,
# this file needs library/module_utils on the package path; under AnsiballZ the folder is absent.
_LOCAL_MODULE_UTILS = Path(__file__).resolve().parent / "module_utils"
if _LOCAL_MODULE_UTILS.is_dir() and str(_LOCAL_MODULE_UTILS) not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(str(_LOCAL_MODULE_UTILS))

from ansible.module_utils.zerotier_api import (
    DEFAULT_URLS,
    KINDS,
    Client,
    Member,
    ZeroTierError,
    read_token_file,
)
from ansible.module_utils.zerotier_member_core import (
    MemberError,
    check_ids,
    current_view,
    desired_from_params,
    plan,
    unapplied,
    wait_until_seen,
)

ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "network_id": {"type": "str", "required": True},
    "node_id": {"type": "str", "required": True},
    "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
    "authorized": {"type": "bool"},
    "name": {"type": "str"},
    "description": {"type": "str"},
    "hidden": {"type": "bool"},
    "ip_assignments": {"type": "list", "elements": "str"},
    "tags": {"type": "list", "elements": "raw"},
    "api_type": {"type": "str", "default": "central", "choices": list(KINDS)},
    "api_url": {"type": "str", "fallback": (env_fallback, ["ZEROTIER_API_URL"])},
    "token": {"type": "str", "no_log": True, "fallback": (env_fallback, ["ZEROTIER_TOKEN"])},
    "token_file": {"type": "path"},
    "wait_for_member_s": {"type": "int", "default": 300},
    "poll_s": {"type": "float", "default": 2},
    "rate_limit": {"type": "float", "default": 20},
    "max_retries": {"type": "int", "default": 5},
    "timeout": {"type": "float", "default": 30},
}


def read_token(params: dict[str, Any]) -> str:
    if params["token"]:
        return str(params["token"]).strip()
    return read_token_file(params["token_file"]) if params["token_file"] else ""


def read_member(client: Client, network_id: str, node_id: str) -> Member | None:
    """The member, or None when the controller has no record of it (404)."""
    try:
        return client.member(network_id, node_id)
    except ZeroTierError as exc:
        if exc.status == 404:
            return None
        raise


def member_result(
    member: Member | None, view: dict[str, Any], network_id: str, node_id: str
) -> dict[str, Any]:
    return {
        "node_id": node_id,
        "network_id": network_id,
        **view,
        "seen": bool(member and member.seen),
        "last_seen": member.last_seen if member else None,
        "client_version": member.client_version if member else "",
    }


def run(params: dict[str, Any], check_mode: bool, client: Client) -> dict[str, Any]:
    """Read, compare, write what differs; returns the module result (raises on failure)."""
    network_id, node_id = params["network_id"], params["node_id"]
    member = read_member(client, network_id, node_id)
    if member is None:
        # A 404 for the member may mean a wrong network id: say so rather than wait for nothing.
        client.network(network_id)
    if params["state"] == "absent":
        if member is None:
            return {
                "changed": False,
                "changes": [],
                "msg": f"member {node_id} is not on network {network_id}",
            }
        if not check_mode:
            client.request("DELETE", f"/network/{network_id}/member/{node_id}", what=f"member {node_id}")
        return {
            "changed": True,
            "changes": ["state"],
            "msg": f"member {node_id} removed from network {network_id}",
            "diff": {"before": current_view(member), "after": {}},
        }
    desired = desired_from_params(params)
    waited = 0.0
    if (member is None or not member.seen) and not check_mode:
        member, waited = wait_until_seen(
            lambda: read_member(client, network_id, node_id),
            time.monotonic,
            time.sleep,
            params["wait_for_member_s"],
            params["poll_s"],
        )
        if member is None or not member.seen:
            raise MemberError(
                f"node {node_id} has not reached the controller of network {network_id} within "
                f"{params['wait_for_member_s']} s: start zerotier-one on the device and join it "
                f"(zerotier-cli join {network_id}), then run again (name and description are only "
                "set once the node has been seen, so that they stick)"
            )
    todo = plan(member, desired)
    result_member = member
    if todo.changes and not check_mode:
        result_member = client.update_member(network_id, node_id, todo.changes)
        lost = unapplied(todo, result_member)
        if lost:
            raise MemberError(
                f"member {node_id}: the controller did not keep {', '.join(lost)}; its reply shows "
                + ", ".join(f"{k}={current_view(result_member)[k]!r}" for k in lost)
            )
    view = current_view(result_member) if not check_mode else {**current_view(member), **todo.changes}
    if todo.changes:
        msg = f"member {node_id}: {'would set' if check_mode else 'set'} {', '.join(todo.changes)}"
    else:
        msg = f"member {node_id}: already as asked"
    if check_mode and (member is None or not member.seen):
        msg += " (the node has not reached the controller yet; a real run waits for it first)"
    return {
        "changed": bool(todo.changes),
        "changes": list(todo.changes),
        "member": member_result(result_member, view, network_id, node_id),
        "waited_s": round(waited, 1),
        "msg": msg,
        "diff": {"before": todo.before, "after": todo.after},
    }


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    params = module.params
    try:
        check_ids(params["network_id"], params["node_id"])
        desired_from_params(params)
        client = Client(
            params["api_url"] or DEFAULT_URLS[params["api_type"]],
            read_token(params),
            params["api_type"],
            rate_limit=params["rate_limit"],
            max_retries=params["max_retries"],
            timeout=params["timeout"],
        )
        result = run(params, module.check_mode, client)
    except (MemberError, ZeroTierError) as exc:
        module.fail_json(msg=str(exc), changed=False)
    if not module._diff:
        result.pop("diff", None)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
