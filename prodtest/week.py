"""End-to-end validation: an operator's week on the lab, scripted (stage 6, item 5).

A new device is enrolled through ZeroTier and converged; a release is deployed to it and to a device
of the fleet; a broken release fails on its canary and goes no further; both devices are rolled back;
a backup is taken and a lost database restored from it; a stopped service raises an alert and its
resolution. Each step is timed and checked against what the three witnesses report: the platform
(the simulator's admin API: machines, heartbeats with the running version, deposits), the monitoring
server (Prometheus series and the lab alert receiver's notifications) and the device itself
(``/readyz``, its ``current`` release, its database). The control node's own word (a playbook's exit
status) is recorded too, but never alone.

The steps share the devices (``rvm-lab-05``, made for the run, and the fleet's first device), so a step
whose precondition failed is marked failed, not skipped. Whatever happens, the new device, its
ZeroTier member and the servers' settings for it are removed and the fleet's device goes back to the
release it ran (``finally``). Every wait is bounded.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prodtest.figures import Figure, Results
from prodtest.lab import MONITOR, ROOT, Lab, LabError, address, backup_running, podman_exec, sh, wait_until
from prodtest.progress import STOP, say
from prodtest.push import play_env
from prodtest.releases import build_release
from prodtest.scale import backup_cleanup_script

STAGE = "End-to-end week"
NEW = "rvm-lab-05"
ZT = "inventories/lab-zerotier"
LAB = "inventories/lab"
NETWORK = "8056c2e21c000001"
CENTRAL = "http://127.0.0.1:9994/api/v1"
SERVERS = "rvm-platform,rvm-backup"
PLAY_TIMEOUT_S = 1200
# lab-short gate timings (the commit deadline = 30 + 10 + 5 s after the switch), as the fleet tests
SHORT = {"rvm_edge_health_timeout_s": 30, "rvm_edge_health_window_s": 10, "rvm_edge_commit_margin_s": 5}
ALERT_TARGET_S = 60.0  # the seed's "< 1 min alert notification"
RECOVERY_TARGET_S = 30.0


@dataclass
class Check:
    source: str  # platform | monitoring | device | zerotier (Central) | control (a playbook)
    what: str
    ok: bool
    detail: str = ""


@dataclass
class Step:
    name: str
    seconds: float = 0.0
    checks: list[Check] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error and bool(self.checks) and all(c.ok for c in self.checks)

    def check(self, source: str, what: str, ok: bool, detail: str = "") -> bool:
        self.checks.append(Check(source, what, bool(ok), detail))
        say(
            f"week: {self.name}: {'ok ' if ok else 'NO '} [{source}] {what}{f' ({detail})' if detail else ''}"
        )
        return bool(ok)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seconds": round(self.seconds, 1),
            "ok": self.ok,
            "error": self.error,
            "checks": [c.__dict__ for c in self.checks],
        }


def playbook(*args: str, timeout: float = PLAY_TIMEOUT_S) -> tuple[int, str]:
    """ansible-playbook from the project's root with its ansible.cfg; (exit status, output)."""
    proc = sh([str(ROOT / ".venv" / "bin" / "ansible-playbook"), *args], timeout, env=play_env())
    return proc.returncode, proc.stdout + proc.stderr


def ev(values: dict[str, Any]) -> list[str]:
    return ["-e", json.dumps(values)]


def current_release(device: str) -> str:
    return podman_exec(device, "readlink /opt/rvm-edge/current").strip().rsplit("/", 1)[-1]


def releases(device: str) -> set[str]:
    return set(podman_exec(device, "ls /opt/rvm-edge/releases").split())


def ready_version(lab: Lab, device: str) -> str | None:
    """The version /readyz reports, or None when the device is not ready."""
    try:
        r = lab.http.get(f"http://{lab.addr[device]}:8080/readyz", timeout=5)
    except OSError:
        return None
    body = r.json() if r.status_code == 200 else {}
    return str(body.get("version")) if body.get("ready") else None


def central(method: str, path: str) -> int:
    """One request to the ZeroTier Central LAB STAND-IN (loopback) with the lab's token (read from
    .lab/, never printed)."""
    token = (ROOT / ".lab" / "zerotier-central-token").read_text().strip()
    request = urllib.request.Request(
        f"{CENTRAL}{path}", method=method, headers={"Authorization": f"token {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return int(reply.status)


def zt_inventory() -> dict[str, Any]:
    proc = sh([str(ROOT / ".venv" / "bin" / "ansible-inventory"), "-i", ZT, "--list"])
    if proc.returncode != 0:
        raise LabError(f"ansible-inventory -i {ZT}: {proc.stderr.strip()[-300:]}")
    return json.loads(proc.stdout, object_hook=lambda d: d.get("__ansible_unsafe", d) if len(d) == 1 else d)


class Week:
    """The scripted week; ``run()`` returns the steps (also added to ``results`` as figures)."""

    def __init__(self, lab: Lab, results: Results, work: Path) -> None:
        self.lab, self.results, self.work = lab, results, work
        self.fleet_device = lab.devices[0]
        self.steps: list[Step] = []
        self.versions: dict[str, str] = {}
        self.base: dict[str, str] = {}

    # -- witnesses -------------------------------------------------------------------------
    def machine(self, name: str) -> dict[str, Any] | None:
        return next((m for m in self.lab.sim("GET", "/machines") if m.get("name") == name), None)

    def heartbeat_version(self, name: str, since: float) -> str | None:
        m = self.machine(name)
        if m is None:
            return None
        beats = self.lab.sim("GET", f"/heartbeats?machine_id={m['id']}")
        recent = [b for b in beats if _epoch(b.get("received_at")) >= since]
        if not recent:
            return None
        body = recent[-1].get("body") or recent[-1]
        return str(body.get("version")) if isinstance(body, dict) and body.get("version") else None

    def platform_version(self, step: Step, device: str, want: str, since: float) -> bool:
        got: list[str | None] = [None]

        def probe() -> bool | None:
            got[0] = self.heartbeat_version(device, since)
            return got[0] == want or None

        with suppress(LabError):
            wait_until(f"a heartbeat of {device} saying {want}", probe, 120, 2, STOP)
        return step.check("platform", f"{device}'s heartbeat says {want}", got[0] == want, f"last: {got[0]}")

    def deposits_after(self, name: str, since: float) -> int:
        m = self.machine(name)
        if m is None:
            return 0
        return sum(
            1
            for d in self.lab.sim("GET", f"/deposits?machine_id={m['id']}")
            if _epoch(d.get("received_at")) >= since
        )

    def platform_deposits(self, step: Step, device: str, since: float) -> bool:
        n = [0]

        def probe() -> bool | None:
            n[0] = self.deposits_after(device, since)
            return n[0] > 0 or None

        with suppress(LabError):
            wait_until(f"a deposit from {device}", probe, 120, 2, STOP)
        return step.check(
            "platform", f"deposits from {device} arrive", n[0] > 0, f"{n[0]} since the step began"
        )

    def prom_version(self, step: Step, device: str, want: str) -> bool:
        seen: list[str] = []

        def probe() -> bool | None:
            rows = self.lab.prom(f'rvm_edge_build_info{{device="{device}"}}') or []
            seen[:] = [r["metric"].get("exported_version") or r["metric"].get("version", "") for r in rows]
            return want in seen or None

        with suppress(LabError):
            wait_until(f"Prometheus: {device} runs {want}", probe, 90, 3, STOP)
        return step.check("monitoring", f"Prometheus: {device} runs {want}", want in seen, f"seen {seen}")

    def prom_one(self, step: Step, query: str, what: str, timeout: float) -> bool:
        """Wait (bounded) until the instant query ``query`` gives exactly one series at 1."""
        value: list[float] = []

        def probe() -> bool | None:
            rows = self.lab.prom(query) or []
            value[:] = [float(r["value"][1]) for r in rows]
            return value == [1.0] or None

        with suppress(LabError):
            wait_until(f"Prometheus: {what}", probe, timeout, 3, STOP)
        return step.check("monitoring", f"Prometheus: {what}", value == [1.0], f"{query} = {value}")

    def prom_up(self, step: Step, device: str) -> bool:
        return self.prom_one(
            step, f'up{{job="rvm_edge",device="{device}"}}', f"scrapes {device}'s rvm-edge", 120
        )

    def prom_ready(self, step: Step, device: str) -> bool:
        return self.prom_one(step, f'rvm_edge_ready{{device="{device}"}}', f"{device} ready", 90)

    def device_on(self, step: Step, device: str, want: str) -> bool:
        got: list[str | None] = [None, None]

        def probe() -> bool | None:
            got[0], got[1] = current_release(device), ready_version(self.lab, device)
            return (got[0] == want and got[1] == want) or None

        with suppress(LabError):
            wait_until(f"{device} ready on {want}", probe, 120, 1, STOP)
        return step.check(
            "device",
            f"{device} ready on {want}",
            got[0] == want and got[1] == want,
            f"current {got[0]}, /readyz {got[1]}",
        )

    def notifications(self, since: float) -> list[dict[str, Any]]:
        """The lab alert receiver's webhook alerts since ``since`` (asked from inside rvm-monitor:
        the receiver listens on its loopback)."""
        out = podman_exec(MONITOR, f"curl -sS --max-time 10 'http://127.0.0.1:9095/records?since={since}'")
        found = []
        for rec in json.loads(out):
            if rec.get("channel") == "webhook":
                for alert in rec["payload"]["alerts"]:
                    found.append(
                        {"status": alert["status"], "labels": alert["labels"], "at": rec["received_at"]}
                    )
        return found

    # -- the steps -------------------------------------------------------------------------
    @contextmanager
    def step(self, name: str) -> Iterator[Step]:
        s = Step(name)
        self.steps.append(s)
        say(f"week: {name} ...")
        t0 = time.monotonic()
        try:
            yield s
        except (LabError, OSError, ValueError, KeyError) as exc:
            s.error = str(exc)[:500]
            say(f"week: {name}: FAILED: {s.error}")
        finally:
            s.seconds = time.monotonic() - t0
            say(f"week: {name}: {'ok' if s.ok else 'FAILED'} in {s.seconds:.0f} s")

    def enroll(self) -> None:
        with self.step("enroll a new device") as s:
            made = sh([str(ROOT / ".venv" / "bin" / "python"), "lab/labctl.py", "add", NEW], 300)
            if made.returncode != 0:
                raise LabError(f"labctl add {NEW}: {made.stdout[-300:]}{made.stderr[-300:]}")
            ip = address(NEW)
            bare = self.work / "bare.ini"
            bare.write_text(f"{NEW}\n")
            rc, out = playbook(
                "-i", LAB, "-i", str(bare), "site.yml", "-l", NEW, "--tags", "zerotier", "-e", "zerotier_central_token=",
                "-e", f"ansible_ssh_private_key_file={ROOT}/.lab/ssh/id_ed25519",
            )  # fmt: skip
            said = " ".join(out.split())
            found = re.search(
                rf"node ([0-9a-f]{{10}}) \({NEW}\) is not authorized on network {NETWORK}", said
            )
            if not s.check("device", "joined and waits unauthorized, naming its node id", rc != 0 and found):
                raise LabError("the device did not name its node id")
            node = found.group(1) if found else ""
            rc, out = playbook(
                "-i", ZT, "playbooks/enroll.yml", "-e", f"enroll_node_id={node}", "-e", f"enroll_name={NEW}",
                "-e", "enroll_site=lab", "-e", f"enroll_ip={ip}",
            )  # fmt: skip
            s.check("control", "enroll.yml authorized it", rc == 0, out[-200:] if rc else "")
            hv = zt_inventory()["_meta"]["hostvars"].get(NEW, {})
            s.check(
                "platform",
                "ZeroTier Central lists it at its address",
                hv.get("ansible_host") == ip,
                f"{hv.get('ansible_host')}",
            )
            sh([str(ROOT / ".venv" / "bin" / "ansible"), "-i", ZT, NEW, "-m", "ansible.builtin.setup"], 300)
            for args in (
                ("-i", ZT, "-l", SERVERS, "--tags", "hardening_configure", "playbooks/hardening.yml"),
                ("-i", ZT, "--tags", "rvm_platform_sim_machines", "playbooks/platform_sim.yml"),
                ("-i", ZT, "-l", MONITOR, "playbooks/monitoring.yml"),
            ):
                rc, out = playbook(*args)
                if rc != 0:
                    raise LabError(f"{args[-1]}: {out[-500:]}")
            since = time.time()
            rc, out = playbook("-i", ZT, "site.yml", "-l", NEW)
            s.check("control", f"site.yml -l {NEW} converged it", rc == 0, out[-300:] if rc else "")
            self.lab.addr[NEW] = ip
            self.base[NEW] = current_release(NEW)
            self.device_on(s, NEW, self.base[NEW])
            self.platform_deposits(s, NEW, since)
            self.prom_up(s, NEW)

    def deploy(self, good: str, dist: Path) -> None:
        with self.step("deploy a release") as s:
            targets = f"{self.fleet_device},{NEW}"
            since = time.time()
            rc, out = playbook(
                "-i", ZT, "playbooks/deploy.yml", "-l", targets,
                *ev({"rvm_edge_version": good, "rvm_edge_bundle_dir": str(dist), **SHORT}),
            )  # fmt: skip
            s.check("control", f"deploy.yml of {good} to {targets}", rc == 0, out[-300:] if rc else "")
            for d in (self.fleet_device, NEW):
                self.device_on(s, d, good)
                self.platform_version(s, d, good, since)
                self.prom_version(s, d, good)

    def canary(self, good: str, broken: str, dist: Path) -> None:
        with self.step("a canary failure") as s:
            targets = f"{self.fleet_device},{NEW}"
            rc, out = playbook(
                "-i", ZT, "playbooks/deploy.yml", "-l", targets,
                *ev({"rvm_edge_version": broken, "rvm_edge_bundle_dir": str(dist), "rvm_edge_deploy_serial": [1, "100%"], **SHORT}),
            )  # fmt: skip
            reached = [d for d in (self.fleet_device, NEW) if broken in releases(d)]
            s.check(
                "control",
                "deploy.yml failed at the health gate",
                rc != 0 and "gate" in out.lower(),
                f"exit {rc}",
            )
            s.check(
                "device",
                "the broken release reached one device only (the canary)",
                len(reached) == 1,
                f"installed on {reached}",
            )
            for d in (self.fleet_device, NEW):
                self.device_on(s, d, good)
            if reached:
                canary = reached[0]
                lines = podman_exec(canary, "tail -n 5 /opt/rvm-edge/deploys.jsonl")
                s.check(
                    "device",
                    f"{canary}'s deploy log says the broken release was rolled back",
                    broken in lines and "roll" in lines.lower(),
                )
                self.platform_version(s, canary, good, time.time())
                self.prom_version(s, canary, good)
                self.prom_ready(s, canary)

    def roll_back(self) -> None:
        with self.step("roll back") as s:
            for d in (self.fleet_device, NEW):
                since = time.time()
                rc, out = playbook(
                    "-i", ZT, "playbooks/rollback.yml", "-l", d, *ev({"rvm_edge_rollback_to": self.base[d]})
                )
                s.check(
                    "control", f"rollback.yml of {d} to {self.base[d]}", rc == 0, out[-300:] if rc else ""
                )
                self.device_on(s, d, self.base[d])
                self.platform_version(s, d, self.versions[self.base[d]], since)
                self.prom_version(s, d, self.versions[self.base[d]])

    def backup_and_restore(self) -> None:
        d = self.fleet_device
        saved: set[str] = set()
        with self.step("a backup") as s:
            t0 = time.time()
            rc, out = playbook("playbooks/backup.yml", "-l", d, *ev({"backup_run_now": True}))
            s.check("control", f"backup.yml -l {d} -e backup_run_now=true", rc == 0, out[-300:] if rc else "")
            status = sh(["podman", "exec", d, "rvm-backup", "status"], 120)
            s.check(
                "device",
                "rvm-backup status: a good snapshot",
                status.returncode == 0,
                status.stdout.strip()[-160:],
            )
            saved = deposit_ids(d, "/var/lib/rvm-backup/staging/rvm-edge.sqlite3")
            s.check("device", "the backup holds the device's deposits", bool(saved), f"{len(saved)} deposits")
            stamp: list[float] = []

            def probe() -> bool | None:
                rows = self.lab.prom(f'rvm_backup_last_success_timestamp_seconds{{device="{d}"}}') or []
                stamp[:] = [float(r["value"][1]) for r in rows]
                return (bool(stamp) and max(stamp) >= t0) or None

            with suppress(LabError):
                wait_until("Prometheus: the backup's success", probe, 120, 3, STOP)
            s.check(
                "monitoring",
                "Prometheus: last backup success after the step began",
                bool(stamp) and max(stamp) >= t0,
                f"{stamp}",
            )
        with self.step("a restore") as s:
            # The hourly timer is held from the loss to the restore: a scheduled run between them would
            # back up the emptied database and rightly become `latest`.
            podman_exec(d, "systemctl stop rvm-backup.timer")
            try:
                wait_until("no rvm-backup run in progress", lambda: not backup_running(d), 600, 2, STOP)
                lose = "systemctl stop rvm-edge && rm -f /var/lib/rvm-edge/rvm-edge.sqlite3* && systemctl start rvm-edge"
                podman_exec(d, lose, 120)
                lost = not (saved & deposit_ids(d, "/var/lib/rvm-edge/rvm-edge.sqlite3"))
                s.check("device", "the database was lost (none of the backed-up deposits left)", lost)
                since = time.time()
                rc, out = playbook("playbooks/restore.yml", "-l", d)
            finally:
                podman_exec(d, "systemctl start rvm-backup.timer")
            s.check("control", f"restore.yml -l {d}", rc == 0, out[-300:] if rc else "")
            m = re.search(r"ready ([0-9.]+) s after it stopped", out)
            recovery = float(m[1]) if m else None
            self.results.add(
                Figure("week.restore.recovery_s", "restore: ready again after the service stopped", recovery, "s",
                       RECOVERY_TARGET_S, stage=STAGE),
            )  # fmt: skip
            back = deposit_ids(d, "/var/lib/rvm-edge/rvm-edge.sqlite3")
            s.check(
                "device",
                "every backed-up deposit is back",
                saved <= back,
                f"{len(saved & back)}/{len(saved)}",
            )
            self.device_on(s, d, self.base[d])
            self.prom_ready(s, d)
            self.platform_deposits(s, d, since)

    def alert(self) -> None:
        with self.step("an alert and its resolution") as s:
            t0 = time.time()
            podman_exec(NEW, "systemctl stop rvm-edge")
            fired = resolved = None
            try:
                with suppress(LabError):
                    fired = wait_until(
                        "RvmEdgeDown at the receiver", lambda: self._alert(t0, "firing"), 180, 2, STOP
                    )
            finally:
                t1 = time.time()
                podman_exec(NEW, "systemctl start rvm-edge")
            s.check("monitoring", f"RvmEdgeDown for {NEW} notified", fired is not None)
            with suppress(LabError):
                resolved = wait_until(
                    "the resolution at the receiver", lambda: self._alert(t1, "resolved"), 180, 2, STOP
                )
            s.check("monitoring", f"RvmEdgeDown for {NEW} resolved", resolved is not None)
            self.device_on(s, NEW, self.base[NEW])
            self.platform_deposits(s, NEW, t1)
            self.results.add(
                Figure("week.alert.notified_s", "alert: service stopped -> notification at the receiver",
                       fired - t0 if fired else None, "s", ALERT_TARGET_S, stage=STAGE, note="lab scrape 5 s, rule for 30 s"),
                Figure("week.alert.resolved_s", "alert: service started -> resolution at the receiver",
                       resolved - t1 if resolved else None, "s", ALERT_TARGET_S, stage=STAGE),
            )  # fmt: skip

    def _alert(self, since: float, status: str) -> float | None:
        for n in self.notifications(since):
            if (
                n["status"] == status
                and n["labels"].get("alertname") == "RvmEdgeDown"
                and n["labels"].get("device") == NEW
            ):
                return float(n["at"])
        return None

    def cleanup(self) -> None:
        """The lab as it was: the new device, its member and the servers' settings for it gone; the
        fleet's device on the release it ran."""
        say("week: cleaning up (the new device and its member removed, the servers' settings reset)")
        with suppress(Exception):
            for host, hv in zt_inventory()["_meta"]["hostvars"].items():
                if host == NEW and hv.get("zt_node_id"):
                    central("DELETE", f"/network/{NETWORK}/member/{hv['zt_node_id']}")
        sh([str(ROOT / ".venv" / "bin" / "python"), "lab/labctl.py", "remove", NEW], 300)
        with suppress(LabError):  # its sftp account and repository on the backup server
            podman_exec("rvm-backup", backup_cleanup_script(NEW, re.compile(re.escape(NEW) + "$")), 120)
        self.lab.addr.pop(NEW, None)
        playbook("-i", LAB, "-l", SERVERS, "--tags", "hardening_configure", "playbooks/hardening.yml")
        playbook("-i", LAB, "-l", MONITOR, "playbooks/monitoring.yml")
        base = self.base.get(self.fleet_device)
        if base and current_release(self.fleet_device) != base:
            playbook("playbooks/rollback.yml", "-l", self.fleet_device, *ev({"rvm_edge_rollback_to": base}))

    def run(self) -> list[Step]:
        self.base[self.fleet_device] = current_release(self.fleet_device)
        stamp = int(time.time())
        good, broken = f"0.1.0.post{stamp}", f"0.1.0.post{stamp + 1}"
        dist = self.work / "dist"
        say(f"week: building {good} (good) and {broken} (broken: exits 8 s after it is ready)")
        build_release(good, dist)
        build_release(broken, dist, broken=True)
        try:
            self.enroll()
            # the version each release reports (a release directory may carry another name)
            for d in (self.fleet_device, NEW):
                self.versions[self.base[d]] = ready_version(self.lab, d) or self.base[d]
            self.versions[good] = good
            self.deploy(good, dist)
            self.canary(good, broken, dist)
            self.roll_back()
            self.backup_and_restore()
            self.alert()
        finally:
            self.cleanup()
        return self.steps


def deposit_ids(device: str, path: str) -> set[str]:
    script = f"import sqlite3;c=sqlite3.connect('file:{path}?mode=ro',uri=True);print('\\n'.join(r[0] for r in c.execute('SELECT deposit_id FROM deposits')))"
    proc = sh(["podman", "exec", device, "python3", "-c", script], 120)
    return set(proc.stdout.split()) if proc.returncode == 0 else set()


def _epoch(stamp: Any) -> float:
    """The simulator's ISO timestamps (or epoch numbers) as epoch seconds; 0 when absent."""
    if isinstance(stamp, int | float):
        return float(stamp)
    if not stamp:
        return 0.0
    from datetime import datetime

    return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()


def run_week(lab: Lab, results: Results) -> None:
    if NEW in lab.devices:
        raise LabError(f"{NEW} is a device of the fleet: the week makes it itself")
    with tempfile.TemporaryDirectory(prefix="prodtest-week-") as tmp:
        steps = Week(lab, results, Path(tmp)).run()
    results.raw[STAGE] = {"steps": [s.to_json() for s in steps]}
    for s in steps:
        failed = [f"[{c.source}] {c.what}" for c in s.checks if not c.ok] + ([s.error] if s.error else [])
        sources = sorted({c.source for c in s.checks})
        results.add(
            Figure(
                f"week.{re.sub(r'[^a-z]+', '_', s.name.lower()).strip('_')}.ok", f"{s.name}: every check holds",
                float(s.ok), "yes=1", 1, ">=", stage=STAGE,
                note=(f"{len(s.checks)} checks ({', '.join(sources)}), {s.seconds:.0f} s"
                      + (f"; failed: {'; '.join(failed)[:300]}" if failed else "")),
            ),
        )  # fmt: skip
