"""rvm_health_gate: the deploy gate on a systemd service and its /readyz.

Most tests drive the gate's core against a real HTTP server (scripted /readyz answers, read by the
module's own urllib probe), a scripted unit and a fake clock: with poll_s 0.5 the n-th probe
happens at exactly t = 0.5 n, so timings and messages are asserted exactly. The last tests run the
module end to end in-process, with fake systemctl/journalctl executables on PATH.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rvm_health_gate
import yaml
from ansible.module_utils.rvm_health_gate_core import UnitState, parse_show
from device_python import device_python
from rvm_health_gate_helpers import (
    Rig,
    ScriptedServer,
    crashed,
    free_port,
    raw,
    readyz,
    run_gate_module,
    unit_props,
)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as srv:
        yield srv


@pytest.fixture
def rig(server: ScriptedServer) -> Rig:
    return Rig(server)


# -- mode: ready, before the first ready answer ------------------------------------------------------


def test_ready_after_a_few_503s(rig: Rig) -> None:
    rig.server.script(readyz(False, 0), readyz(False, 0), readyz(False, 0), readyz(frames=4))

    result = rig.run()

    assert not result.failed, result.msg
    assert result.ready is True
    assert result.ready_after_s == 1.5
    assert len(rig.server.requests) == 4
    assert result.frames_processed == 4
    assert result.readyz is not None and result.readyz["version"] == "0.1.0"
    assert result.msg == "rvm-edge ready after 1.5 s"
    assert result.journal is None


def test_zero_frames_processed_keeps_waiting(rig: Rig) -> None:
    rig.server.script(*[readyz(True, 0)] * 4, readyz(True, 1))

    result = rig.run()

    assert result.ready is True
    assert result.ready_after_s == 2.0
    assert result.frames_processed == 1


def test_min_frames_is_a_threshold(rig: Rig) -> None:
    rig.server.script(readyz(frames=3), readyz(frames=4), readyz(frames=5))

    result = rig.run(min_frames=5)

    assert result.ready is True
    assert result.ready_after_s == 1.0


def test_ready_needs_the_unit_active_not_only_a_200(rig: Rig) -> None:
    """Type=notify: until READY=1 the unit is activating, whatever /readyz says."""
    rig.timeline((0.0, unit_props("activating")), (2.0, unit_props("active")))

    result = rig.run()

    assert result.ready is True
    assert result.ready_after_s == 2.0


def test_crash_loop_fails_fast_with_restarts_and_exit_status(rig: Rig) -> None:
    rig.server.script(readyz(False, 0))
    rig.timeline(
        (0.0, unit_props(pid=100)),
        (0.8, crashed(0, "inv-1", status=1)),
        (1.1, unit_props("activating", restarts=1, invocation="inv-2", pid=101)),
        (1.2, crashed(1, "inv-2", status=1)),
        (1.3, unit_props("activating", restarts=2, invocation="inv-3", pid=102)),
    )

    result = rig.run(timeout_s=120)

    assert result.failed
    assert result.msg == "rvm-edge restarted 2 times in 1.5 s (last exit: status=1)"
    assert result.elapsed_s == 1.5
    assert result.restarts == 2
    assert result.ready is False and result.ready_after_s is None


def test_restart_after_the_exit_status_was_cleared_says_so(rig: Rig) -> None:
    """systemd clears ExecMainStatus when it starts the next process; the gate must not invent one."""
    rig.server.script(readyz(False, 0))
    rig.timeline((0.0, unit_props()), (0.7, unit_props("activating", restarts=1, invocation="inv-2")))

    result = rig.run()

    assert result.msg == "rvm-edge restarted 1 time in 1.0 s (last exit not seen)"


def test_killed_by_a_signal_is_named(rig: Rig) -> None:
    rig.server.script(readyz(False, 0))
    killed = unit_props("activating", "auto-restart", pid=0, result="signal", code=3, status=11)
    rig.timeline((0.0, unit_props()), (0.5, killed), (1.0, unit_props(restarts=1, invocation="inv-2")))

    result = rig.run()

    assert result.msg == "rvm-edge restarted 1 time in 1.0 s (last exit: signal=SEGV (core dumped))"


def test_failed_unit_fails_fast(rig: Rig) -> None:
    rig.server.script(readyz(False, 0))
    rig.timeline(
        (0.0, unit_props("activating")),
        (2.2, unit_props("failed", restarts=0, pid=0, result="start-limit-hit", code=1, status=1)),
    )

    result = rig.run()

    assert result.failed
    assert result.msg == "rvm-edge failed (Result=start-limit-hit; last exit: status=1)"
    assert result.elapsed_s == 2.5
    assert result.unit_state["ActiveState"] == "failed"


def test_unit_failed_before_the_gate_fails_without_asking_readyz(rig: Rig) -> None:
    rig.timeline((0.0, unit_props("failed", result="exit-code", code=1, status=2)))

    result = rig.run()

    assert result.msg == "rvm-edge failed (Result=exit-code; last exit: status=2)"
    assert rig.server.requests == []
    assert result.elapsed_s == 0.0


def test_unknown_unit_fails_at_once(rig: Rig) -> None:
    rig.timeline((0.0, unit_props("inactive", load="not-found")))

    result = rig.run()

    assert result.msg == "rvm-edge is not a loaded unit (LoadState=not-found)"


def test_unit_stopping_after_it_ran_fails(rig: Rig) -> None:
    rig.server.script(readyz(False, 0))
    rig.timeline((0.0, unit_props("activating")), (1.0, unit_props("inactive", pid=0)))

    result = rig.run()

    assert result.msg == "rvm-edge stopped (inactive, Result=success; last exit not seen)"
    assert result.elapsed_s == 1.0


def test_inactive_unit_with_its_start_still_queued_is_not_yet(rig: Rig) -> None:
    rig.timeline((0.0, unit_props("inactive", pid=0)), (1.5, unit_props()))

    result = rig.run()

    assert result.ready is True
    assert result.ready_after_s == 1.5


def test_timeout_message_carries_the_last_body(rig: Rig) -> None:
    rig.server.script(readyz(False, 0))

    result = rig.run(timeout_s=10)

    assert result.failed
    assert result.msg.startswith(
        'rvm-edge not ready with >= 1 frame processed after 10 s (last /readyz: 503 {"ready":false,'
    )
    assert '"frames_processed":0' in result.msg
    assert result.elapsed_s == 10.0
    assert len(rig.server.requests) == 21
    assert result.readyz is not None and result.readyz["ready"] is False


def test_timeout_names_min_frames_and_a_unit_that_never_became_active(rig: Rig) -> None:
    rig.timeline((0.0, unit_props("activating")))

    result = rig.run(timeout_s=5, min_frames=5)

    assert result.msg.startswith(
        "rvm-edge not ready with >= 5 frames processed after 5 s (last /readyz: 200 {"
    )
    assert result.msg.endswith("; unit activating (start))")


def test_sleeps_never_run_past_the_deadline(rig: Rig) -> None:
    rig.server.script(readyz(False, 0))

    result = rig.run(timeout_s=1, poll_s=0.4)

    assert rig.clock.sleeps == pytest.approx([0.4, 0.4, 0.2])
    assert result.elapsed_s == pytest.approx(1.0)


def test_connection_refused_while_activating_is_not_yet(rig: Rig) -> None:
    late = ScriptedServer(free_port())
    rig.timeline((0.0, unit_props("activating", pid=100)), (3.0, unit_props(pid=100)))
    rig.clock.at(3.0, late.start)
    try:
        result = rig.run(url=late.url)
    finally:
        late.stop()

    assert not result.failed, result.msg
    assert result.ready_after_s == 3.0
    assert len(late.requests) == 1


def test_connection_refused_until_the_timeout_says_so(rig: Rig) -> None:
    rig.timeline((0.0, unit_props("activating")))

    result = rig.run(url=f"http://127.0.0.1:{free_port()}/readyz", timeout_s=3)

    assert result.msg == (
        "rvm-edge not ready with >= 1 frame processed after 3 s"
        " (last /readyz: connection refused; unit activating (start))"
    )
    assert result.readyz is None


GARBLED = {
    "html error page": (raw(502, "<html><body><h1>502 Bad Gateway</h1></body></html>"), 502),
    "truncated json": (raw(200, '{"ready": true, "frames_', "application/json"), 200),
    "body cut short": (raw(200, '{"ready": true', "application/json", declared_length=500), 200),
    "json but not an object": (raw(200, "[1, 2, 3]", "application/json"), 200),
    "empty body": (raw(200, "", "application/json"), 200),
}


@pytest.mark.parametrize("answer,status", GARBLED.values(), ids=GARBLED.keys())
def test_garbled_answers_are_not_ready_and_do_not_crash(
    server: ScriptedServer, answer: Any, status: int
) -> None:
    server.script(answer)

    probe = rvm_health_gate.http_probe(server.url, 2.0)

    assert probe.status == status
    assert probe.body is None
    assert probe.ready is False
    assert probe.describe().startswith(str(status))


def test_gate_waits_through_garbled_answers(rig: Rig) -> None:
    rig.server.script(*[answer for answer, _status in GARBLED.values()], readyz())

    result = rig.run()

    assert not result.failed, result.msg
    assert result.ready_after_s == 2.5


def test_probe_sends_no_credentials_and_messages_never_echo_the_url(rig: Rig) -> None:
    rig.server.script(readyz(False, 0))

    result = rig.run(url=rig.server.url + "?token=s3cret-value", timeout_s=1)

    assert "s3cret" not in json.dumps(result.as_dict())
    assert not {"Authorization", "Cookie"} & set(rig.server.requests[0])


# -- mode: ready, the window after the first ready answer ----------------------------------------------

WINDOW_EVENTS = {
    "NRestarts grows": (unit_props(restarts=1), "rvm-edge restarted 1 time in 20.0 s (last exit not seen)"),
    "InvocationID changes": (
        unit_props(invocation="inv-2"),
        "rvm-edge restarted 1 time in 20.0 s (last exit not seen)",
    ),
    "MainPID changes": (unit_props(pid=5000), "rvm-edge restarted 1 time in 20.0 s (last exit not seen)"),
    "leaves active": (
        unit_props("deactivating", "stop-sigterm"),
        "rvm-edge left active (deactivating (stop-sigterm); last exit not seen)",
    ),
    "stops": (
        unit_props("inactive", pid=0),
        "rvm-edge stopped (inactive, Result=success; last exit not seen)",
    ),
}


@pytest.mark.parametrize("state,problem", WINDOW_EVENTS.values(), ids=WINDOW_EVENTS.keys())
def test_restart_or_stop_inside_the_window_fails(rig: Rig, state: dict[str, str], problem: str) -> None:
    rig.timeline((0.0, unit_props()), (19.8, state))

    result = rig.run(window_s=60)

    assert result.failed
    assert result.msg == f"{problem}, 20.0 s into the 60 s window"
    assert result.ready is False
    assert result.ready_after_s == 0.0
    assert result.window_s == 20.0
    assert result.journal == rig.journal.lines


def test_quiet_window_passes_and_reports_what_it_watched(rig: Rig) -> None:
    result = rig.run(window_s=60)

    assert not result.failed, result.msg
    assert result.ready is True
    assert result.window_s == 60.0
    assert result.elapsed_s == 60.0
    assert result.restarts == 0
    assert len(rig.server.requests) == 121
    assert result.msg == "rvm-edge ready after 0.0 s, no restart in the 60 s window that followed"


def test_unready_longer_than_the_grace_in_the_window_fails(rig: Rig) -> None:
    rig.server.script(readyz(), readyz(), readyz(), readyz(False, 7))

    result = rig.run(window_s=60, unready_grace_s=10)

    assert result.failed
    assert result.msg.startswith(
        "rvm-edge not ready for 10.5 s during the 60 s window (grace 10 s; last /readyz: 503 {"
    )
    assert result.window_s == 12.0


def test_short_unready_blip_in_the_window_passes(rig: Rig) -> None:
    rig.server.script(readyz(), readyz(), readyz(), *[readyz(False, 7)] * 10, readyz())

    result = rig.run(window_s=60, unready_grace_s=10)

    assert not result.failed, result.msg
    assert result.ready is True
    assert result.window_s == 60.0


def test_readyz_must_be_ready_at_the_end_of_the_window(rig: Rig) -> None:
    # Probe k runs at t = 0.5 k; the window ends with probe 120 at t = 60.
    rig.server.script(*[readyz()] * 118, readyz(False, 9))

    result = rig.run(window_s=60, unready_grace_s=10)

    assert result.failed
    assert result.msg.startswith("rvm-edge not ready at the end of the 60 s window (last /readyz: 503 {")


def test_window_zero_returns_at_the_first_ready_answer(rig: Rig) -> None:
    result = rig.run(window_s=0)

    assert result.ready is True
    assert result.window_s == 0.0
    assert rig.clock.sleeps == []


# -- mode: idle ------------------------------------------------------------------------------------------


def test_idle_when_the_unit_is_not_running(rig: Rig) -> None:
    rig.timeline((0.0, unit_props("inactive", pid=0)))

    result = rig.run(mode="idle")

    assert not result.failed
    assert result.idle is True
    assert result.reason == "rvm-edge is not running"
    assert rig.server.requests == []
    assert result.elapsed_s == 0.0


def test_idle_when_readyz_does_not_answer(rig: Rig) -> None:
    result = rig.run(url=f"http://127.0.0.1:{free_port()}/readyz", mode="idle")

    assert result.idle is True
    assert result.reason == "rvm-edge is not running"
    assert result.msg == "rvm-edge is not running (/readyz: connection refused)"


def test_idle_waits_for_in_flight_to_drain(rig: Rig) -> None:
    rig.server.script(readyz(in_flight=2), readyz(in_flight=1), readyz(in_flight=0))

    result = rig.run(mode="idle", timeout_s=30)

    assert not result.failed, result.msg
    assert result.idle is True
    assert result.in_flight == 0
    assert result.elapsed_s == 1.0
    assert result.reason == "no items in flight"


def test_idle_with_a_not_ready_service_still_counts_in_flight(rig: Rig) -> None:
    rig.server.script(readyz(False, 0, in_flight=1), readyz(False, 0, in_flight=0))

    result = rig.run(mode="idle")

    assert result.idle is True
    assert result.ready is False
    assert result.elapsed_s == 0.5


def test_idle_times_out_naming_the_count(rig: Rig) -> None:
    rig.server.script(readyz(in_flight=2))

    result = rig.run(mode="idle", timeout_s=5)

    assert result.failed
    assert result.idle is False
    assert result.msg == "2 items still in flight on rvm-edge after 5 s"
    assert result.elapsed_s == 5.0
    assert result.journal == rig.journal.lines


def test_idle_without_an_in_flight_key_counts_as_zero_and_says_so(rig: Rig) -> None:
    rig.server.script(readyz(in_flight=None))

    result = rig.run(mode="idle")

    assert result.idle is True
    assert result.in_flight is None
    assert result.reason is not None and "no in_flight" in result.reason and "treated as 0" in result.reason


def test_idle_with_garbled_answers_times_out_as_unknown(rig: Rig) -> None:
    rig.server.script(raw(500, "<html>oops</html>"))

    result = rig.run(mode="idle", timeout_s=2)

    assert result.failed
    assert result.msg == "in_flight unknown on rvm-edge after 2 s (last /readyz: 500 <html>oops</html>)"


# -- journal ---------------------------------------------------------------------------------------------


def test_journal_is_returned_on_failure_only(rig: Rig) -> None:
    rig.server.script(readyz(False, 0))

    failed = rig.run(timeout_s=1, journal_lines=1)
    rig.server.script(readyz())
    passed = rig.run()

    assert failed.journal == ["Traceback: boom"]
    assert rig.journal.asked == [1]
    assert passed.journal is None
    assert "journal" in failed.as_dict() and "journal" not in passed.as_dict()


def test_journal_lines_zero_reads_no_journal(rig: Rig) -> None:
    rig.server.script(readyz(False, 0))

    result = rig.run(timeout_s=1, journal_lines=0)

    assert result.failed and result.journal == []
    assert rig.journal.asked == []


# -- parsing ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code,status,expected",
    [
        ("1", "1", "status=1"),
        ("exited", "3", "status=3"),
        ("2", "9", "signal=KILL"),
        ("killed", "15", "signal=TERM"),
        ("3", "11", "signal=SEGV (core dumped)"),
        ("2", "99", "signal=99"),
        ("0", "0", None),
        ("", "", None),
    ],
)
def test_exit_description(code: str, status: str, expected: str | None) -> None:
    assert UnitState({"ExecMainCode": code, "ExecMainStatus": status}).exit_description() == expected


def test_parse_show_keeps_equals_signs_in_values() -> None:
    props = parse_show("ActiveState=active\nNRestarts=3\nStatusText=ready=yes\n\nnot a property\n")

    assert props == {"ActiveState": "active", "NRestarts": "3", "StatusText": "ready=yes"}
    assert UnitState(props).n_restarts == 3


# -- the module end to end -------------------------------------------------------------------------------

JOURNAL = ["Started rvm-edge.", "ERROR model file missing: detector.onnx"]


def _executable(path: Path, script: str) -> None:
    path.write_text(script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _write_show(directory: Path, unit: str, props: dict[str, str]) -> None:
    (directory / f"show-{unit}.txt").write_text("".join(f"{key}={value}\n" for key, value in props.items()))


@pytest.fixture
def fake_systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """systemctl prints show-UNIT.txt (exit code in show.rc); both tools record their arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _executable(
        bin_dir / "systemctl",
        f'#!/bin/sh\necho "$*" >> {tmp_path}/systemctl.args\n'
        f"cat {tmp_path}/show-$2.txt\nexit $(cat {tmp_path}/show.rc 2>/dev/null || echo 0)\n",
    )
    _executable(
        bin_dir / "journalctl",
        f'#!/bin/sh\necho "$*" >> {tmp_path}/journalctl.args\nprintf "%s\\n" "{JOURNAL[0]}" "{JOURNAL[1]}"\n',
    )
    _write_show(tmp_path, "rvm-edge", unit_props())
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path


def test_module_passes_a_ready_service(fake_systemd: Path, server: ScriptedServer) -> None:
    result = run_gate_module({"url": server.url, "unit": "rvm-edge", "window_s": 0})

    assert result["rc"] == 0, result["msg"]
    assert result["ready"] is True and result["changed"] is False
    assert "journal" not in result
    assert result["unit_state"]["ActiveState"] == "active"
    args = (fake_systemd / "systemctl.args").read_text().splitlines()
    assert args[0] == (
        "show rvm-edge -p LoadState -p ActiveState -p SubState -p NRestarts -p InvocationID"
        " -p MainPID -p Result -p ExecMainStatus -p ExecMainCode"
    )


def test_module_runs_in_check_mode(fake_systemd: Path, server: ScriptedServer) -> None:
    server.script(readyz(in_flight=0))

    result = run_gate_module({"url": server.url, "unit": "rvm-edge", "mode": "idle"}, check=True)

    assert result["rc"] == 0, result["msg"]
    assert result["idle"] is True and result["changed"] is False
    assert "skipped" not in result


def test_module_failure_carries_the_journal(fake_systemd: Path, server: ScriptedServer) -> None:
    failed = unit_props("failed", pid=0, result="start-limit-hit", code=1, status=1)
    _write_show(fake_systemd, "rvm-edge", failed)

    result = run_gate_module({"url": server.url, "unit": "rvm-edge", "journal_lines": 12})

    assert result["rc"] == 1
    assert result["failed"] is True and result["changed"] is False
    assert result["msg"] == "rvm-edge failed (Result=start-limit-hit; last exit: status=1)"
    assert result["journal"] == JOURNAL
    journal_args = (fake_systemd / "journalctl.args").read_text().strip()
    assert journal_args == "--unit rvm-edge --lines 12 --no-pager --output cat"


def test_module_reports_a_systemctl_that_does_not_work(fake_systemd: Path, server: ScriptedServer) -> None:
    (fake_systemd / "show-rvm-edge.txt").write_text(
        "System has not been booted with systemd as init system (PID 1).\n"
    )
    (fake_systemd / "show.rc").write_text("1\n")

    result = run_gate_module({"url": server.url, "unit": "rvm-edge"})

    assert result["rc"] == 1
    assert result["msg"].startswith("systemctl show rvm-edge failed (rc=1): System has not been booted")


@pytest.mark.parametrize(
    "args,message",
    [
        ({"mode": "fast"}, "value of mode must be one of: ready, idle, got: fast"),
        ({"unit": None}, "missing required arguments: unit"),
        ({"poll_s": 0}, "parameter poll_s: must be > 0, got 0"),
        ({"timeout_s": -1}, "parameter timeout_s: must be >= 0, got -1"),
        ({"url": "ftp://127.0.0.1/readyz"}, "parameter url: expected an http:// or https:// URL"),
        ({"unit": "--all"}, "parameter unit: not a systemd unit name: '--all'"),
        ({"window_s": "soon"}, "window_s"),
    ],
)
def test_module_refuses_bad_arguments(fake_systemd: Path, args: dict[str, Any], message: str) -> None:
    full = {"url": "http://127.0.0.1:1/readyz", "unit": "rvm-edge", **args}
    full = {key: value for key, value in full.items() if value is not None}

    result = run_gate_module(full)

    assert result["rc"] == 1
    assert message in result["msg"]
    assert not (fake_systemd / "systemctl.args").exists(), "nothing may be read with bad arguments"


def test_documentation_matches_the_argument_spec_and_results(
    fake_systemd: Path, server: ScriptedServer
) -> None:
    doc: dict[str, Any] = yaml.safe_load(rvm_health_gate.DOCUMENTATION)
    returned: dict[str, Any] = yaml.safe_load(rvm_health_gate.RETURN)
    examples = yaml.safe_load(rvm_health_gate.EXAMPLES)

    assert doc["module"] == "rvm_health_gate"
    assert set(doc["options"]) == set(rvm_health_gate.ARGUMENT_SPEC)
    for name, spec in rvm_health_gate.ARGUMENT_SPEC.items():
        documented = doc["options"][name]
        expected = (spec["type"], spec.get("default"), spec.get("choices"), spec.get("required", False))
        actual = (documented["type"], documented.get("default"), documented.get("choices"))
        assert (*actual, documented.get("required", False)) == expected, name
    tasks = [t for task in examples for t in [task, *task.get("block", []), *task.get("rescue", [])]]
    used = [task["rvm_health_gate"] for task in tasks if "rvm_health_gate" in task]
    assert len(used) == 2, "EXAMPLES must show both modes"
    for task_args in used:
        assert set(task_args) <= set(doc["options"]), task_args

    server.script(readyz(in_flight=3))
    seen: set[str] = set()
    for args in ({"window_s": 0}, {"mode": "idle", "timeout_s": 0}):
        seen |= set(run_gate_module({"url": server.url, "unit": "rvm-edge", **args}))
    assert seen - {"changed", "failed", "invocation", "rc"} == set(returned)


PLAYBOOK = """
- name: rvm_health_gate through AnsiballZ
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Ready, then a short window
      rvm_health_gate: {url: "{{ url }}", unit: rvm-edge, window_s: 1, poll_s: 0.2}
      register: healthy
    - name: A failed unit
      rvm_health_gate: {url: "{{ url }}", unit: broken, journal_lines: 5}
      register: broken
      ignore_errors: true
    - name: Idle
      rvm_health_gate: {url: "{{ url }}", unit: rvm-edge, mode: idle}
      register: idle
    - name: Check the results
      ansible.builtin.assert:
        that:
          - healthy is not changed and healthy.ready and healthy.window_s >= 1
          - broken is failed and broken.msg.startswith('broken failed (Result=start-limit-hit')
          - broken.journal | length == 2
          - idle.idle and idle.reason == 'no items in flight'
"""


def test_module_through_ansible_playbook_on_the_device_python(
    fake_systemd: Path, server: ScriptedServer
) -> None:
    """AnsiballZ must ship rvm_health_gate_core with the module; the device runs Python 3.10."""
    playbook_bin = Path(sys.executable).parent / "ansible-playbook"
    if not playbook_bin.exists():
        pytest.skip("ansible-playbook is not installed beside this Python")
    interpreter = device_python("rvm_health_gate through ansible-playbook")
    _write_show(fake_systemd, "broken", unit_props("failed", result="start-limit-hit", code=1, status=1))
    (fake_systemd / "play.yml").write_text(PLAYBOOK)
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(fake_systemd / "none.cfg"),
        ANSIBLE_LIBRARY=str(Path(rvm_health_gate.__file__).parent),
        ANSIBLE_MODULE_UTILS=str(Path(rvm_health_gate.__file__).parent / "module_utils"),
        ANSIBLE_LOCAL_TEMP=str(fake_systemd / "tmp-local"),
        ANSIBLE_REMOTE_TEMP=str(fake_systemd / "tmp-remote"),
        ANSIBLE_NOCOLOR="1",
    )
    extra = f"url={server.url} ansible_python_interpreter={interpreter}"
    command = [str(playbook_bin), "-i", "localhost,", "-c", "local", "-e", extra, "play.yml"]

    proc = subprocess.run(
        command, env=env, cwd=fake_systemd, capture_output=True, text=True, timeout=300, check=False
    )

    assert proc.returncode == 0, proc.stdout + proc.stderr
