"""Ansible module rvm_health_gate: is the freshly restarted rvm-edge healthy (or idle) on this device?

The decision lives in module_utils/rvm_health_gate_core.py and does no I/O; this file wires it to
the real world (urllib for /readyz, systemctl and journalctl, the monotonic clock) and to Ansible.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: rvm_health_gate
short_description: Gate a deploy on the health of a systemd service and its readiness URL
description:
  - Runs on the managed host and only reads; it never changes anything (C(changed) is always false).
  - "I(mode=ready): after a (re)start of I(unit), wait until the unit is C(active) and I(url)
    answers HTTP 200 with a JSON object holding C(ready: true) and C(frames_processed) of at least
    I(min_frames). Then keep watching for I(window_s) seconds: the unit must not restart or leave
    C(active), I(url) must not stay not-ready for longer than I(unready_grace_s), and it must answer
    ready at the end of the window."
  - "The unit state (C(systemctl show UNIT -p LoadState -p ActiveState -p SubState -p NRestarts
    -p InvocationID -p MainPID -p Result -p ExecMainStatus -p ExecMainCode)) is read first as the
    baseline and then on every poll. The gate fails at once, without waiting for I(timeout_s), when
    the unit restarts (C(NRestarts) above the baseline, or a new C(InvocationID) or C(MainPID) after
    it was seen starting or running), is C(failed) (for example C(Result=start-limit-hit)), is
    C(inactive) after it was seen starting or running, or is not a loaded unit. The message names
    what happened and the last exit status seen, for example
    C(rvm-edge restarted 2 times in 7.3 s (last exit: status=1))."
  - While the unit is activating or active, a refused connection, a timeout, an HTTP error, an HTML
    page or malformed JSON from I(url) only means "not ready yet".
  - "I(mode=idle): before a stop or restart, wait until C(in_flight) in the I(url) body is 0 (the
    items between their accept/reject decision and their durable commit). A unit that is not
    C(active), or a I(url) that does not answer, is idle at once (C(reason: UNIT is not running));
    a body without C(in_flight) (an older release) counts as 0 and C(reason) says so."
  - On failure the last I(journal_lines) lines of C(journalctl --unit UNIT --output cat) are
    returned as C(journal), so the operator sees why.
  - Messages quote the status and a short part of the last I(url) body, never the URL itself.
    No headers or tokens are sent. Proxy settings of the environment are not used.
version_added: "1.0.0"
author:
  - rvm-fleet maintainers (@rvm-fleet)
options:
  url:
    description: The readiness URL of the service, for example C(http://127.0.0.1:8080/readyz).
    type: str
    required: true
  unit:
    description: The systemd unit of the service, for example C(rvm-edge).
    type: str
    required: true
  mode:
    description:
      - C(ready) waits until the service is healthy and then watches it for I(window_s).
      - C(idle) waits until no item is in flight.
    type: str
    choices: [ready, idle]
    default: ready
  timeout_s:
    description:
      - With I(mode=ready), how long to wait for the first ready answer.
      - With I(mode=idle), how long to wait until C(in_flight) is 0.
    type: int
    default: 120
  window_s:
    description:
      - With I(mode=ready), how long to keep watching after the first ready answer. C(0) turns the
        window off.
    type: int
    default: 60
  unready_grace_s:
    description: How long I(url) may stay not ready during the window before the gate fails.
    type: int
    default: 10
  min_frames:
    description: With I(mode=ready), the C(frames_processed) a ready answer needs at least.
    type: int
    default: 1
  poll_s:
    description: Seconds between two looks at the unit and I(url).
    type: float
    default: 0.5
  request_timeout_s:
    description: Timeout of one request to I(url), in seconds.
    type: float
    default: 3
  journal_lines:
    description: On failure, how many of the unit's last journal lines to return as C(journal); C(0) for none.
    type: int
    default: 30
notes:
  - Supports check mode; it only reads, so check mode runs the same gate.
  - Run it after the restart job has finished (M(ansible.builtin.systemd_service) with
    C(state=restarted) waits for that); a restart still in progress when the baseline is read would
    count as a restart.
requirements:
  - Python >= 3.10 and systemd (C(systemctl), C(journalctl)) on the managed host.
"""

EXAMPLES = r"""
- name: Gate the deploy on the restarted service
  block:
    - name: Health gate (ready with a frame processed, then 60 s without a restart)
      rvm_health_gate:
        url: http://127.0.0.1:8080/readyz
        unit: rvm-edge
        timeout_s: 120
        window_s: 60
        unready_grace_s: 10
      register: __rvm_edge_health
  rescue:
    - name: Fail with what the service said
      ansible.builtin.fail:
        msg: "{{ __rvm_edge_health.msg }}\n{{ __rvm_edge_health.journal | default([]) | join('\n') }}"

- name: Wait until no item is in flight before stopping the service
  rvm_health_gate:
    mode: idle
    url: http://127.0.0.1:8080/readyz
    unit: rvm-edge
    timeout_s: 30
"""

RETURN = r"""
msg:
  description: One line saying what the gate decided and why.
  returned: always
  type: str
  sample: "rvm-edge restarted 2 times in 7.3 s (last exit: status=1)"
ready:
  description:
    - With I(mode=ready), whether the service became ready and stayed healthy through the window.
    - With I(mode=idle), whether the last I(url) answer said ready.
  returned: always
  type: bool
idle:
  description: Whether nothing is in flight (or the service is not running).
  returned: when I(mode=idle)
  type: bool
reason:
  description: Why the service counts as idle, or why it does not.
  returned: when I(mode=idle)
  type: str
  sample: rvm-edge is not running
ready_after_s:
  description: Seconds from the start of the gate to the first ready answer; null when it never came.
  returned: always
  type: float
  sample: 4.5
window_s:
  description: Seconds actually watched after the first ready answer (less than I(window_s) when the gate failed in it).
  returned: always
  type: float
  sample: 60.0
elapsed_s:
  description: Seconds the gate ran.
  returned: always
  type: float
  sample: 64.5
restarts:
  description: Restarts of the unit seen since the baseline.
  returned: always
  type: int
  sample: 0
frames_processed:
  description: C(frames_processed) of the last I(url) answer; null when it had none.
  returned: always
  type: int
  sample: 12
in_flight:
  description: C(in_flight) of the last I(url) answer; null when it had none.
  returned: always
  type: int
  sample: 0
readyz:
  description: The last I(url) answer, when it was a JSON object; null otherwise.
  returned: always
  type: dict
  sample: {"ready": true, "checks": {}, "frames_processed": 12, "in_flight": 0, "version": "0.1.0"}
unit_state:
  description: The unit properties of the last C(systemctl show) read.
  returned: always
  type: dict
  sample: {"ActiveState": "active", "SubState": "running", "NRestarts": "0", "Result": "success"}
journal:
  description: The unit's last I(journal_lines) journal lines.
  returned: on failure
  type: list
  elements: str
"""

import http.client
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import ansible.module_utils
from ansible.module_utils.basic import AnsibleModule

# Loaded directly (ansible-lint's argument check, the unit tests) rather than through AnsiballZ,
# this file needs library/module_utils on the package path; under AnsiballZ the folder is absent.
_LOCAL_MODULE_UTILS = Path(__file__).resolve().parent / "module_utils"
if _LOCAL_MODULE_UTILS.is_dir() and str(_LOCAL_MODULE_UTILS) not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(str(_LOCAL_MODULE_UTILS))

from ansible.module_utils.rvm_health_gate_core import (
    MODES,
    UNIT_PROPERTIES,
    GateConfig,
    GateError,
    GateIO,
    Probe,
    parse_answer,
    parse_show,
    run_gate,
    snippet,
    unreachable,
)

ARGUMENT_SPEC: dict[str, dict[str, Any]] = {
    "url": {"type": "str", "required": True},
    "unit": {"type": "str", "required": True},
    "mode": {"type": "str", "default": "ready", "choices": list(MODES)},
    "timeout_s": {"type": "int", "default": 120},
    "window_s": {"type": "int", "default": 60},
    "unready_grace_s": {"type": "int", "default": 10},
    "min_frames": {"type": "int", "default": 1},
    "poll_s": {"type": "float", "default": 0.5},
    "request_timeout_s": {"type": "float", "default": 3},
    "journal_lines": {"type": "int", "default": 30},
}
# /readyz bodies are a few hundred bytes; more than this is not the app answering.
MAX_BODY = 64 * 1024
# A local health URL must not go through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def describe_error(exc: BaseException) -> str:
    """Why no answer came, in words; never the URL (it may carry a token)."""
    reason = getattr(exc, "reason", None)
    if isinstance(exc, urllib.error.URLError) and isinstance(reason, BaseException):
        return describe_error(reason)
    if isinstance(exc, urllib.error.URLError) and isinstance(reason, str):
        return snippet(reason)
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timed out"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "connection closed without an answer"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return type(exc).__name__


def _read_answer(status: int, response: Any) -> Probe:
    try:
        raw = response.read(MAX_BODY)
    except http.client.IncompleteRead as exc:
        raw = exc.partial  # a truncated body is parsed like any other (and is not JSON)
    except (OSError, http.client.HTTPException) as exc:
        return Probe(status, None, f"(body unreadable: {describe_error(exc)})")
    return parse_answer(status, raw)


def http_probe(url: str, timeout: float) -> Probe:
    """One GET of the readiness URL; every failure becomes a Probe, nothing raises."""
    request = urllib.request.Request(
        url, headers={"Accept": "application/json", "User-Agent": "rvm_health_gate"}
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return _read_answer(response.status, response)
    except urllib.error.HTTPError as exc:
        with exc:
            return _read_answer(exc.code, exc)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return unreachable(describe_error(exc))


def systemctl_show(module: AnsibleModule, unit: str) -> dict[str, str]:
    """The gate's unit properties; GateError when systemd cannot be asked."""
    systemctl = module.get_bin_path("systemctl")
    if systemctl is None:
        raise GateError("systemctl not found: rvm_health_gate needs systemd on the managed host")
    command = [systemctl, "show", unit]
    for name in UNIT_PROPERTIES:
        command += ["-p", name]
    rc, out, err = module.run_command(command)
    if rc != 0:
        raise GateError(f"systemctl show {unit} failed (rc={rc}): {snippet(err or out)}")
    return parse_show(out)


def journal_tail(module: AnsibleModule, unit: str, lines: int) -> list[str]:
    """The unit's last journal lines as the service wrote them (``--output cat``)."""
    journalctl = module.get_bin_path("journalctl")
    if journalctl is None:
        raise GateError("journalctl not found")
    command = [journalctl, "--unit", unit, "--lines", str(lines), "--no-pager", "--output", "cat"]
    rc, out, err = module.run_command(command)
    if rc != 0:
        raise GateError(f"journalctl failed (rc={rc}): {snippet(err or out)}")
    return out.splitlines()


def real_io(module: AnsibleModule) -> GateIO:
    params = module.params
    return GateIO(
        probe_http=lambda: http_probe(params["url"], params["request_timeout_s"]),
        read_unit=lambda: systemctl_show(module, params["unit"]),
        read_journal=lambda lines: journal_tail(module, params["unit"], lines),
        clock=time.monotonic,
        sleep=time.sleep,
    )


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        config = GateConfig.from_params(module.params)
        result = run_gate(config, real_io(module)).as_dict()
    except GateError as exc:
        module.fail_json(msg=str(exc), changed=False)
    if result.get("failed"):
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
