"""Device faults in the middle of a deploy: the device's power cut (its container restarted) and a
network partition between the control node and the device, both while the play sits in the health
gate of a good release. Neither may leave the device on a release nobody gated, nor its update lock
held (docs/deploy.md, "Commit or rollback, decided on the device").

Each pushes ``<running>-midrestart`` / ``<running>-partition``: the lab models unchanged (a GOOD
release: only the missing commit sends it back), with lab-short gate timings so the device's commit
deadline is GATE_DEADLINE_S after the switch. The fault is injected from a hook (prodtest.push) as
soon as the device has switched (its pending.json exists), before the gate can pass. Afterwards the
device's own guard must roll it back at the deadline, and the next operator run must get the lock
without ``rvm_edge_lock_break``. The device is always left on the release it ran, ready, with no
partition and no lock (``finally``).

The control node's address, as the device sees it, is the lab network's gateway: the partition drops
only that address, in an nftables table of its own inside the DEVICE's network namespace
(``podman exec DEVICE nft``; the container has CAP_NET_ADMIN for its own namespace only). The play
must reach the device over that network, so the partition's push uses inventories/lab-zerotier (ssh
to the lab address); inventories/lab's ``podman exec`` carries no network at all.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prodtest.figures import Figure, Results
from prodtest.lab import ROOT, Lab, LabError, address, main_pid, podman_exec, sh, wait_until
from prodtest.progress import STOP, say
from prodtest.push import (
    LOCK,
    Pushed,
    device_state,
    longest_not_ready,
    play_env,
    playbook_argv,
    push,
    stop_play,
)
from prodtest.releases import bundle

STAGE = "Device faults"
MODELS = ROOT / "app" / "models" / "lab"
OUT = ROOT / ".cache" / "prodtest" / "middeploy"
ARCH = "x86_64"
STATE_DIR = "/var/lib/rvm-edge-release"
PENDING = f"{STATE_DIR}/pending.json"
DEPLOYS = "/opt/rvm-edge/deploys.jsonl"
GUARD = "rvm-edge-commit-guard@"
ZEROTIER = "inventories/lab-zerotier"
TABLE = "prodtest_partition"
# commit deadline = timeout + window + margin = 75 s after the switch; the 30 s window leaves time to
# see pending.json and strike before the gate could pass and commit
GATE = {"rvm_edge_health_timeout_s": 30, "rvm_edge_health_window_s": 30, "rvm_edge_commit_margin_s": 15}
GATE_DEADLINE_S = sum(GATE.values())
SWITCH_WAIT_S = 600  # install, offline venv and engine build on a loaded 2-core machine
PLAY_END_WAIT_S = 180  # after the fault, the play must end by itself within this (else: it hung)
GUARD_WAIT_S = 120  # after the deadline, the guard's line must be there within this
READY_WAIT_S = 120
TARGET_S = 30.0  # the seed's automatic recovery
BUDGET_S = 10.0  # ours, and docs/deploy.md's from a missed deadline to healthy


@dataclass(frozen=True)
class PendingCommit:
    """The device's pending.json: what was switched to, the way back, the wall-clock deadline."""

    release: str
    previous: str
    deadline: float

    @classmethod
    def parse(cls, text: str) -> PendingCommit:
        try:
            raw = json.loads(text)
            return cls(str(raw["release"]), str(raw["previous"]), float(raw["deadline"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise LabError(f"{PENDING} cannot be read ({exc}): {text[:200]!r}") from None


@dataclass(frozen=True)
class EndState:
    """Where the device ends: its release, ready, a commit still pending, the update lock."""

    release: str
    ready: bool
    pending: bool
    lock_held: bool

    def on_one_healthy(self, release: str) -> bool:
        """Exactly one healthy release, the one named: current, ready, nothing pending, no lock."""
        return self.release == release and self.ready and not self.pending and not self.lock_held


def guard_rollbacks(jsonl: str) -> list[dict[str, Any]]:
    """The deploys.jsonl lines the device's own guard wrote (a torn or foreign line is skipped)."""
    lines = []
    for text in jsonl.splitlines():
        try:
            line = json.loads(text)
        except ValueError:
            continue
        if isinstance(line, dict) and str(line.get("by", "")).startswith(GUARD):
            lines.append(line)
    return lines


def rollback_of(lines: list[dict[str, Any]], pending: PendingCommit) -> dict[str, Any] | None:
    """The guard's rollback of this pending commit (the newest line from its release to its previous)."""
    for line in reversed(lines):
        if line.get("from") == pending.release and line.get("to") == pending.previous:
            return line
    return None


def partition_ruleset(control: str) -> str:
    """An nftables table of its own that drops every packet from and to the control node only, in
    chains hooked before the hardening role's (priority filter - 10); loaded into the device's
    namespace, replacing a leftover of an earlier run."""
    ip = ipaddress.ip_address(control)
    if ip.is_loopback or ip.is_unspecified or ip.is_multicast:
        raise LabError(f"{control} cannot be the control node's lab address")
    family = "ip" if ip.version == 4 else "ip6"
    return (
        f"table inet {TABLE}\n"
        f"delete table inet {TABLE}\n"
        f"table inet {TABLE} {{\n"
        "\tchain input {\n"
        "\t\ttype filter hook input priority filter - 10; policy accept;\n"
        f"\t\t{family} saddr {ip} drop\n"
        "\t}\n"
        "\tchain output {\n"
        "\t\ttype filter hook output priority filter - 10; policy accept;\n"
        f"\t\t{family} daddr {ip} drop\n"
        "\t}\n"
        "}\n"
    )


def nft_argv(device: str) -> list[str]:
    """``nft -f -`` run inside DEVICE's own network namespace (never the host's)."""
    return ["podman", "exec", "-i", device, "nft", "-f", "-"]


HEAL = f"if nft list table inet {TABLE} >/dev/null 2>&1; then nft delete table inet {TABLE}; fi"


def gateway_for(networks: list[dict[str, Any]], device_ip: str) -> str:
    """The gateway of the podman subnet the device is on: the control node's address as the device
    sees it (podman network inspect's JSON)."""
    ip = ipaddress.ip_address(device_ip)
    for net in networks:
        for sub in net.get("subnets") or []:
            if ip in ipaddress.ip_network(sub["subnet"]) and sub.get("gateway"):
                return str(sub["gateway"])
    raise LabError(f"no podman network subnet holds {device_ip}")


def readiness(lines: str) -> list[tuple[float, bool]]:
    """The in-device poller's lines (``<epoch> <0|1>``) as samples; anything else is skipped."""
    samples = []
    for line in lines.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] in ("0", "1"):
            try:
                samples.append((float(parts[0]), parts[1] == "1"))
            except ValueError:
                continue
    return samples


# ---------------------------------------------------------------- the lab side


def build_release(version: str) -> Path:
    """rvm-edge-VERSION-x86_64.tar.gz in OUT/dist with the lab models as they are (a good release);
    the bundle directory."""
    bundle(version, OUT / "dist")
    return OUT / "dist"


def read_pending(device: str) -> PendingCommit | None:
    out = podman_exec(device, f"cat {PENDING} 2>/dev/null || true").strip()
    return PendingCommit.parse(out) if out else None


def read_guard_lines(device: str) -> list[dict[str, Any]]:
    return guard_rollbacks(podman_exec(device, f"cat {DEPLOYS} 2>/dev/null || true", timeout=30))


def end_state(lab: Lab, device: str) -> EndState:
    out = podman_exec(
        device, f"readlink /opt/rvm-edge/current; test -e {PENDING} && echo pending || echo none;"
        f" test -e {LOCK} && echo held || echo free",
    ).split()  # fmt: skip
    return EndState(
        out[0].rsplit("/", 1)[-1], lab.readyz(device, timeout=3), out[1] == "pending", out[2] == "held"
    )


def wait_switched(device: str, play: subprocess.Popen[str], version: str) -> PendingCommit:
    """Poll (bounded) until the play has switched DEVICE to VERSION and armed its commit."""

    def probe() -> PendingCommit | None:
        pending = read_pending(device)
        if pending is not None and pending.release == version:
            return pending
        if play.poll() is not None:
            raise LabError(f"the deploy of {version} ended (rc {play.returncode}) before {device} switched")
        return None

    return wait_until(f"{device} switched to {version} ({PENDING})", probe, SWITCH_WAIT_S, 0.5, STOP)


def wait_in_gate(
    lab: Lab, device: str, play: subprocess.Popen[str], version: str, old_pid: str
) -> PendingCommit:
    """Poll (bounded) until the play is inside its health gate: switched and armed, and rvm-edge
    restarted (a new main process) and ready on VERSION; the gate's window then runs for
    rvm_edge_health_window_s before the play could commit."""
    pending = wait_switched(device, play, version)

    def restarted() -> bool | None:
        if play.poll() is not None:
            raise LabError(f"the deploy of {version} ended (rc {play.returncode}) before its health gate")
        return (main_pid(device) not in (0, int(old_pid or 0)) and lab.readyz(device, timeout=2)) or None

    wait_until(f"{device} restarted and ready on {version} (its gate)", restarted, READY_WAIT_S, 0.5, STOP)
    return pending


def note_pending(raw: dict[str, Any], pending: PendingCommit) -> None:
    """The pending commit in the raw data, and how long after the switch the fault struck."""
    raw["pending"] = {"release": pending.release, "previous": pending.previous, "deadline": pending.deadline}
    raw["armed_to_fault_s"] = round(time.time() - (pending.deadline - GATE_DEADLINE_S), 1)


def wait_ready(lab: Lab, device: str, what: str, timeout: float = READY_WAIT_S) -> float:
    """Seconds until DEVICE's /readyz answers 200 (bounded)."""
    t0 = time.monotonic()
    wait_until(f"{device} ready {what}", lambda: lab.readyz(device, timeout=2) or None, timeout, 0.25, STOP)
    return time.monotonic() - t0


def wait_guard(device: str, pending: PendingCommit, seen: int) -> dict[str, Any]:
    """The guard's deploys.jsonl line for this pending commit, after the ``seen`` ones (bounded: the
    deadline plus GUARD_WAIT_S)."""
    bound = max(0.0, pending.deadline - time.time()) + GUARD_WAIT_S
    return wait_until(
        f"{device}'s guard to roll {pending.release} back",
        lambda: rollback_of(read_guard_lines(device)[seen:], pending),
        bound,
        1.0,
        STOP,
    )


def wait_play_end(play: subprocess.Popen[str], bound: float) -> float | None:
    """Seconds until the play ended by itself, None when it had not after ``bound`` s (it hung)."""
    t0 = time.monotonic()
    try:
        wait_until("the play to end", lambda: play.poll() is not None or None, bound, 0.5, STOP)
    except LabError:
        return None
    return time.monotonic() - t0


def end_stamp(play: subprocess.Popen[str]) -> list[float]:
    """A list that gets time.monotonic() when the play exits (a daemon thread waits on it; the play
    itself is bounded by prodtest.push): when it ended, not when someone looked."""
    stamp: list[float] = []
    threading.Thread(target=lambda: (play.wait(), stamp.append(time.monotonic())), daemon=True).start()
    return stamp


def power_cycle(device: str) -> None:
    """The device's power cut and power-on: its container killed outright (no shutdown: the play and
    the service get no warning) and started again at the address and MAC it had (a device keeps its
    DHCP reservation; podman's host-local IPAM would hand out the next free address, which no device
    does and which strands the lab's inventories), then its persisted net.* sysctls applied (systemd-
    sysctl does that at boot on a device; the lab image masks it). tests/fleet does the same."""
    proc = sh(["podman", "inspect", device])
    if proc.returncode != 0:
        raise LabError(f"podman inspect {device}: {proc.stderr.strip()[-300:]}")
    net, settings = next(iter(json.loads(proc.stdout)[0]["NetworkSettings"]["Networks"].items()))
    steps = [
        ["podman", "kill", device],
        ["podman", "wait", device],
        ["podman", "container", "cleanup", device],
        ["podman", "network", "disconnect", net, device],
        ["podman", "network", "connect", "--ip", settings["IPAddress"], "--mac-address", settings["MacAddress"], net, device],
        ["podman", "start", device],
    ]  # fmt: skip
    for argv in steps:
        step = sh(argv, 120)
        if step.returncode != 0 and argv[1] != "cleanup":
            raise LabError(f"{' '.join(argv[:3])} failed: {step.stderr.strip()[-300:]}")
    podman_exec(device, "grep -h '^net\\.' /etc/sysctl.d/*.conf | xargs -r sysctl -q -w")


def control_node_address(device: str) -> str:
    proc = sh(["podman", "network", "inspect", *network_names(device)])
    if proc.returncode != 0:
        raise LabError(f"podman network inspect: {proc.stderr.strip()[-300:]}")
    return gateway_for(json.loads(proc.stdout), address(device))


def network_names(device: str) -> list[str]:
    proc = sh(
        ["podman", "inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", device]
    )
    if proc.returncode != 0 or not proc.stdout.split():
        raise LabError(f"{device} is on no podman network: {proc.stderr.strip()[-300:]}")
    return proc.stdout.split()


def cut(device: str, control: str) -> None:
    proc = subprocess.run(
        nft_argv(device),
        input=partition_ruleset(control),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if proc.returncode != 0:
        raise LabError(f"{device}: nft -f - failed: {proc.stderr.strip()[-300:]}")


def heal(device: str) -> None:
    podman_exec(device, HEAL, timeout=30)


@contextmanager
def polled_inside(device: str, max_s: float) -> Iterator[list[tuple[float, bool]]]:
    """/readyz polled from inside DEVICE on loopback every 0.25 s (the control node's own polls cannot
    cross the partition), at most ``max_s`` s; closing its stdin ends it. Yields the samples so far."""
    script = (
        "import select,sys,time,urllib.request\n"
        "end=time.time()+float(sys.argv[1])\n"
        "while time.time()<end:\n"
        "    try:\n"
        "        ok=urllib.request.urlopen('http://127.0.0.1:8080/readyz',timeout=2).status==200\n"
        "    except Exception:\n"
        "        ok=False\n"
        "    print(f'{time.time():.3f} {int(ok)}',flush=True)\n"
        "    r,_,_=select.select([sys.stdin],[],[],0.25)\n"
        "    if r and not sys.stdin.read(1):\n"
        "        break\n"
    )
    proc = subprocess.Popen(
        ["podman", "exec", "-i", device, "python3", "-u", "-c", script, str(int(max_s))],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    samples: list[tuple[float, bool]] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            samples.extend(readiness(line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield samples
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        reader.join(timeout=10)


def operator_run(device: str, running: str, inventory: str | None) -> dict[str, Any]:
    """The next operator's run after the fault: deploy.yml of the release the device runs (the
    inventory's pin; docs/deploy.md: the device went back by itself, a re-run takes the lock and
    changes nothing), without rvm_edge_lock_break. Its rc and time."""
    argv = playbook_argv(device, {"rvm_edge_version": running}, inventory=inventory)
    t0 = time.monotonic()
    proc = sh(argv, 600, env=play_env())
    return {"rc": proc.returncode, "seconds": round(time.monotonic() - t0, 1), "tail": proc.stdout[-1200:]}


def restore(lab: Lab, device: str, running: str) -> None:
    """Leave the device on RUNNING, ready, unpartitioned: heal, then rollback.yml only when current is
    not RUNNING (drops a pending commit: the operator decides), then a bounded wait for ready."""
    try:
        heal(device)
        state = end_state(lab, device)
        if state.release != running:
            say(f"device faults: {device} on {state.release}: rollback.yml to {running}")
            argv = playbook_argv(device, {"rvm_edge_rollback_to": running}, playbook="playbooks/rollback.yml")
            proc = sh(argv, 600, env=play_env())
            if proc.returncode != 0:
                say(f"device faults: rollback.yml failed (rc {proc.returncode}): {proc.stdout[-600:]}")
        wait_ready(lab, device, "after the mid-deploy fault")
    except (LabError, subprocess.TimeoutExpired) as exc:
        say(f"device faults: could not leave {device} as it was: {exc}")


def yes(flag: bool) -> float:
    return 1.0 if flag else 0.0


# ---------------------------------------------------------------- fault 1: a restart mid-deploy


def _restart_hook(
    lab: Lab, device: str, version: str, old_pid: str, raw: dict[str, Any]
) -> Callable[[subprocess.Popen[str]], None]:
    def during(play: subprocess.Popen[str]) -> None:
        note_pending(raw, wait_in_gate(lab, device, play, version, old_pid))
        say(
            f"device faults: {device} in the health gate of {version}; power cut (container killed), power-on"
        )
        t0, before, stamp = time.monotonic(), address(device), end_stamp(play)
        power_cycle(device)
        raw["booted_s"] = round(time.monotonic() - t0, 1)
        if address(device) != before:
            raise LabError(f"{device} came back at {address(device)}, not {before}")
        raw["ready_after_restart_s"] = round(
            wait_ready(lab, device, "after the restart") + raw["booted_s"], 2
        )
        raw["ready_on"] = end_state(lab, device).release
        say(
            f"device faults: {device} ready {raw['ready_after_restart_s']:.1f} s after the power cut, on {raw['ready_on']}"
        )
        ended = wait_play_end(play, PLAY_END_WAIT_S)
        raw["play_ended_after_restart_s"] = None if ended is None or not stamp else round(stamp[0] - t0, 1)

    return during


def run_mid_deploy_restart(lab: Lab, device: str, results: Results) -> dict[str, Any]:
    running = device_state(device)["release"].rsplit("/", 1)[-1]
    version = f"{running}-midrestart"
    raw: dict[str, Any] = {"device": device, "running": running, "version": version, "gate": GATE}
    say(f"device faults: building {version} (a good release) for a restart mid-deploy")
    dist = build_release(version)
    seen, old_pid = len(read_guard_lines(device)), device_state(device)["pid"]
    try:
        say(f"device faults: {version} pushed to {device}; the container restarts once in the health gate")
        pushed = push(lab, device, {"rvm_edge_version": version, "rvm_edge_bundle_dir": str(dist), **GATE},
                      during=_restart_hook(lab, device, version, old_pid, raw))  # fmt: skip
        raw["play"] = _play_raw(pushed)
        _after_deadline(lab, device, raw, seen, None)
    finally:
        restore(lab, device, running)
        _restart_figures(raw, results)  # what was measured, also when a step failed (the rest: not measured)
    return raw


def _play_raw(pushed: Pushed) -> dict[str, Any]:
    unreachable = "UNREACHABLE!" in pushed.output
    return {
        "returncode": pushed.returncode, "seconds": round(pushed.play_s, 1), "unreachable": unreachable,
        "failed_task": pushed.failed_task, "refusal": pushed.refusal[:800], "tail": pushed.output[-1500:],
    }  # fmt: skip


def _after_deadline(lab: Lab, device: str, raw: dict[str, Any], seen: int, inventory: str | None) -> None:
    """The guard's rollback at the deadline, where the device ends, and the next operator's run."""
    pending = PendingCommit(raw["pending"]["release"], raw["pending"]["previous"], raw["pending"]["deadline"])
    line = raw.get("guard") or wait_guard(device, pending, seen)
    raw["guard"] = line
    wait_ready(lab, device, "after the guard's rollback")
    state = end_state(lab, device)
    raw["end"] = state.__dict__
    raw["one_healthy_release"] = state.on_one_healthy(raw["running"])
    say(
        f"device faults: guard rolled {pending.release} back to {line.get('to')} ({line.get('result')}), "
        f"healthy {line.get('healthy_after_deadline_s')} s after the deadline; end {state}"
    )
    follow = operator_run(device, raw["running"], inventory)
    raw["operator_run"] = follow
    say(
        f"device faults: next operator run (deploy.yml {raw['running']}, no lock_break): rc {follow['rc']} in {follow['seconds']} s"
    )


def _restart_figures(raw: dict[str, Any], results: Results) -> None:
    ended = raw.get("play_ended_after_restart_s")
    play = raw.get("play") or {}
    results.add(
        Figure(
            "dev.midrestart.ready_s", "restart mid-deploy: ready again after the power cut",
            raw.get("ready_after_restart_s"), "s", TARGET_S, stage=STAGE,
            note=f"our budget {BUDGET_S:.0f} s; boot {raw.get('booted_s')} s; ready on {raw.get('ready_on')}",
        ),
        Figure(
            "dev.midrestart.play_ended", "restart mid-deploy: the play ended by itself (did not hang)",
            yes(ended is not None), "yes=1", 1, ">=", stage=STAGE,
            note=f"rc {play.get('returncode')}, {ended} s after the restart; unreachable {play.get('unreachable')}",
        ),
        *_end_figures("midrestart", "restart mid-deploy", "the next deploy.yml", raw),
    )  # fmt: skip


# ---------------------------------------------------------------- fault 2: a partition mid-deploy


def _partition_hook(
    lab: Lab, device: str, version: str, control: str, seen: tuple[int, str], raw: dict[str, Any]
) -> Callable[[subprocess.Popen[str]], None]:
    def during(play: subprocess.Popen[str]) -> None:
        pending = wait_in_gate(lab, device, play, version, seen[1])
        note_pending(raw, pending)
        hold_s = max(0.0, pending.deadline - time.time()) + GUARD_WAIT_S + READY_WAIT_S
        t_cut: float | None = None
        with polled_inside(device, hold_s) as samples:
            try:
                stamp = end_stamp(play)
                cut(device, control)
                t_cut, t0 = time.time(), time.monotonic()
                if lab.readyz(device, timeout=2):  # the control node must no longer get through
                    raise LabError(
                        f"{device}: the partition did not take (the control node still reaches it)"
                    )
                say(
                    f"device faults: {device} cut off from {control} (nft table {TABLE} in its namespace), held past the deadline"
                )
                raw["guard"] = wait_guard(device, pending, seen[0])
                raw["play_ended_in_partition"] = play.poll() is not None
                raw["play_ended_after_cut_s"] = round(stamp[0] - t0, 1) if stamp else None
                wait_until(
                    f"{device} ready on {pending.previous} (polled inside)",
                    lambda: back_on(device, pending.previous, samples) or None,
                    READY_WAIT_S, 0.5, STOP,
                )  # fmt: skip
                raw["play_terminated"] = stop_play(play)
            finally:
                heal(device)
                raw["partition_s"] = None if t_cut is None else round(time.time() - t_cut, 1)
        inside = [s for s in samples if t_cut is not None and s[0] >= t_cut]
        raw["inside_polls"] = len(inside)
        raw["longest_not_ready_s"] = round(longest_not_ready(inside), 2) if inside else None
        say(
            f"device faults: partition healed after {raw['partition_s']} s; longest not ready {raw['longest_not_ready_s']} s"
        )

    return during


def back_on(device: str, release: str, samples: list[tuple[float, bool]]) -> bool:
    """The newest poll inside the device said ready and current names RELEASE."""
    if not samples or not samples[-1][1]:
        return False
    return podman_exec(device, "readlink /opt/rvm-edge/current").strip().rsplit("/", 1)[-1] == release


def run_mid_deploy_partition(lab: Lab, device: str, results: Results) -> dict[str, Any]:
    running = device_state(device)["release"].rsplit("/", 1)[-1]
    version = f"{running}-partition"
    control = control_node_address(device)
    raw: dict[str, Any] = {
        "device": device,
        "running": running,
        "version": version,
        "gate": GATE,
        "control": control,
    }
    say(f"device faults: building {version} (a good release) for a partition mid-deploy")
    dist = build_release(version)
    seen = (len(read_guard_lines(device)), device_state(device)["pid"])
    try:
        say(
            f"device faults: {version} pushed to {device} over {ZEROTIER}; partitioned once in the health gate"
        )
        pushed = push(lab, device, {"rvm_edge_version": version, "rvm_edge_bundle_dir": str(dist), **GATE},
                      inventory=ZEROTIER, during=_partition_hook(lab, device, version, control, seen, raw))  # fmt: skip
        raw["play"] = _play_raw(pushed)
        _after_deadline(lab, device, raw, seen[0], ZEROTIER)
    finally:
        restore(lab, device, running)
        _partition_figures(raw, results)  # also when a step failed (the rest: not measured)
    return raw


def _end_figures(key: str, fault: str, next_run: str, raw: dict[str, Any]) -> list[Figure]:
    """What both mid-deploy faults end with: the guard's rollback from the deadline, one healthy
    release (the one the device ran), and the lock taken by the next operator run."""
    guard = raw.get("guard") or {}
    follow = raw.get("operator_run") or {}
    return [
        Figure(
            f"dev.{key}.deadline_to_ready_s", f"{fault}: the guard's rollback, deadline to healthy",
            guard.get("healthy_after_deadline_s"), "s", BUDGET_S, stage=STAGE,
            note=f"the guard's deploys.jsonl line; {guard.get('reason', 'no guard rollback')}"[:200],
        ),
        Figure(
            f"dev.{key}.one_release", f"{fault}: one healthy release, the one it ran, nothing pending, lock free",
            yes(bool(raw.get("one_healthy_release"))), "yes=1", 1, ">=", stage=STAGE, note=f"{raw.get('end')}",
        ),
        Figure(
            f"dev.{key}.lock_recoverable", f"{fault}: {next_run} succeeds without lock_break",
            yes(follow.get("rc") == 0), "yes=1", 1, ">=", stage=STAGE, note=f"{follow.get('seconds')} s",
        ),
    ]  # fmt: skip


def _partition_figures(raw: dict[str, Any], results: Results) -> None:
    results.add(
        Figure(
            "dev.partition.not_ready_s", "partition mid-deploy: longest stretch not ready (polled inside the device)",
            raw.get("longest_not_ready_s"), "s", TARGET_S, stage=STAGE,
            note=f"our budget {BUDGET_S:.0f} s; the guard's rollback restart; {raw.get('inside_polls')} polls over {raw.get('partition_s')} s",
        ),
        *_end_figures("partition", "partition mid-deploy", "the next deploy.yml over the healed link", raw),
        Figure(
            "dev.partition.play_s", "partition mid-deploy: the control node's play, start to end", (raw.get("play") or {}).get("seconds"),
            "s", stage=STAGE,
            note=f"rc {(raw.get('play') or {}).get('returncode')}; ended by itself {raw.get('play_ended_after_cut_s')} s after the cut (ssh keepalive); terminated: {raw.get('play_terminated')}",
        ),
    )  # fmt: skip
