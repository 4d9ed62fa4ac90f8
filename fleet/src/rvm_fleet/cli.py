"""`rvm-fleet`: the fleet's playbooks as commands, on ansible-runner, with live progress and history.

Every check that can refuse (usage, unknown version, a limit matching nothing, a device not in the
inventory, a deploy already running) happens before the runner starts: exit 2 means nothing ran.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rvm_fleet import ee, errors, execute, runs, status
from rvm_fleet import project as proj
from rvm_fleet.display import choose
from rvm_fleet.lock import exclusive

DEVICES = "rvm_devices"


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits 2 already; keep its message
        self.print_usage(sys.stderr)
        self.exit(errors.USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> Parser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-i", "--inventory", help="inventory (default: ansible.cfg's)")
    common.add_argument("--json", action="store_true", help="machine-readable output only")
    common.add_argument(
        "--ee",
        metavar="IMAGE",
        default=os.environ.get("RVM_FLEET_EE"),
        help="run the playbook inside this execution environment (podman; `make ee` builds"
        " localhost/rvm-ee:latest; default: $RVM_FLEET_EE, else the control venv)",
    )
    p = Parser(prog="rvm-fleet", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    d = sub.add_parser("deploy", parents=[common], help="deploy.yml: a release to the devices")
    d.add_argument("version")
    d.add_argument("-l", "--limit")
    d.add_argument("--serial", nargs="+", help="batch sizes, e.g. 1 20%% 100%% (default: the playbook's)")
    d.add_argument("--max-fail-percentage", type=int)
    r = sub.add_parser("rollback", parents=[common], help="rollback.yml: to previous or --to VERSION")
    r.add_argument("--to")
    r.add_argument("-l", "--limit")
    c = sub.add_parser("converge", parents=[common], help="site.yml")
    c.add_argument("-l", "--limit")
    c.add_argument(
        "--full",
        action="store_true",
        help="converge every host in full, even one whose last converge still holds (docs/converge.md)",
    )
    s = sub.add_parser("status", parents=[common], help="one row per device")
    s.add_argument("-l", "--limit")
    s.add_argument(
        "--prometheus",
        default=os.environ.get("RVM_FLEET_PROMETHEUS_URL"),
        help="Prometheus URL (default: the inventory's monitoring_servers host, port 9090)",
    )
    e = sub.add_parser("enroll", parents=[common], help="enroll.yml: authorize a device on ZeroTier")
    e.add_argument("device")
    e.add_argument("--node-id", required=True)
    e.add_argument("--site", required=True)
    e.add_argument("--ip")
    b = sub.add_parser("backup", parents=[common], help="backup.yml with a backup now")
    b.add_argument("-l", "--limit")
    rs = sub.add_parser("restore", parents=[common], help="restore.yml on one device")
    rs.add_argument("device")
    rs.add_argument("--snapshot")
    for locking in (d, r, rs):
        locking.add_argument(
            "--break-lock",
            action="store_true",
            help="take over the device's update lock now (a run that died holding it; see docs/fleet-cli.md)",
        )
    h = sub.add_parser("history", parents=[common], help="past runs, or one run")
    h.add_argument("run", nargs="?")
    return p


def _serial(values: list[str]) -> list[int | str]:
    out: list[int | str] = []
    for v in values:
        if v.endswith("%") and v[:-1].isdigit() and 0 < int(v[:-1]) <= 100:
            out.append(v)
        elif v.isdigit() and int(v) > 0:
            out.append(int(v))
        else:
            raise errors.UsageError(f"--serial {v!r}: expected a positive count or a percentage like 20%")
    return out


def _hosts(project: proj.Project, limit: str | None, pattern: str = DEVICES) -> list[str]:
    hosts = proj.match_hosts(project, pattern, limit)
    if not hosts:
        raise errors.UsageError(f"limit {limit!r} matches no host of {pattern} in {project.inventory}")
    return hosts


def _check_version(project: proj.Project, version: str) -> None:
    if not list((project.root / "dist").glob(f"rvm-edge-{version}-*.tar.gz")):
        raise errors.UsageError(
            f"unknown version {version!r}: no bundle dist/rvm-edge-{version}-<arch>.tar.gz in {project.root}"
            " (build it with `make release`)"
        )


def _plan(
    args: argparse.Namespace, project: proj.Project
) -> tuple[str, str | None, list[str], dict[str, Any]]:
    """Playbook, limit, planned hosts and extra vars of a playbook command; UsageError when refused."""
    cmd = args.command
    if cmd == "deploy":
        _check_version(project, args.version)
        extra: dict[str, Any] = {"rvm_edge_version": args.version}
        if args.serial:
            extra["rvm_edge_deploy_serial"] = _serial(args.serial)
        if args.max_fail_percentage is not None:
            extra["rvm_edge_deploy_max_fail_percentage"] = args.max_fail_percentage
        return "playbooks/deploy.yml", args.limit, _hosts(project, args.limit), extra
    if cmd == "rollback":
        extra = {"rvm_edge_rollback_to": args.to} if args.to else {}
        return "playbooks/rollback.yml", args.limit, _hosts(project, args.limit), extra
    if cmd == "converge":
        extra = {"rvm_converge_force": True} if args.full else {}
        return "site.yml", args.limit, _hosts(project, args.limit, "all"), extra
    if cmd == "backup":
        return (
            "playbooks/backup.yml",
            args.limit,
            _hosts(project, args.limit, "all"),
            {"backup_run_now": True},
        )
    if cmd == "restore":
        if args.device not in proj.match_hosts(project, DEVICES):
            raise errors.UsageError(f"device {args.device!r} is not in {DEVICES} of {project.inventory}")
        extra = {"backup_restore_snapshot": args.snapshot} if args.snapshot else {}
        return "playbooks/restore.yml", args.device, [args.device], extra
    if cmd == "enroll":
        extra = {"enroll_node_id": args.node_id, "enroll_name": args.device, "enroll_site": args.site}
        if args.ip:
            extra["enroll_ip"] = args.ip
        return "playbooks/enroll.yml", None, ["localhost"], extra
    raise errors.UsageError(f"unknown command {cmd}")


def _extravars(args: argparse.Namespace, extra: dict[str, Any]) -> dict[str, Any]:
    if getattr(args, "break_lock", False):
        return {**extra, "rvm_edge_lock_break": True}
    return extra


def run_command(args: argparse.Namespace, argv: list[str]) -> int:
    project = proj.load(args.inventory)
    playbook, limit, planned, extra = _plan(args, project)
    extra = _extravars(args, extra)
    project.playbook(playbook)
    if args.ee:
        ee.check_image(args.ee)
    artifacts = project.cache / "artifacts"
    record = runs.RunRecord(
        ident=runs.unique_ident(artifacts, args.command),
        command=args.command,
        argv=argv,
        playbook=playbook,
        limit=limit,
        who=runs.who(),
        started=time.time(),
        detail={"extravars": extra, **({"execution_environment": args.ee} if args.ee else {})},
    )
    display = choose(args.json)
    if args.command in ("deploy", "rollback", "restore"):
        with exclusive(project.cache / "deploy.lock", "a deploy, rollback or restore"):
            return (
                execute.run_playbook(project, record, planned, display, extra, image=args.ee).exit_code or 0
            )
    return execute.run_playbook(project, record, planned, display, extra, image=args.ee).exit_code or 0


def _print_table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def cmd_status(args: argparse.Namespace) -> int:
    project = proj.load(args.inventory)
    with ThreadPoolExecutor(2) as pool:  # both ask ansible (~1 s each): in parallel
        url = pool.submit(lambda: args.prometheus or status.discover_prometheus(project))
        hosts = _hosts(project, args.limit)
        again = None if args.prometheus else lambda: status.discover_prometheus(project, refresh=True)
        rows = status.collect(project, hosts, url.result(), rediscover=again)
    if args.json:
        print(json.dumps(status.as_json(rows), indent=1))
    else:
        _print_table(status.table(rows))
    return errors.OK if all(r.reachable and r.ready for r in rows) else errors.DEVICE_FAILED


def cmd_history(args: argparse.Namespace) -> int:
    project = proj.load(args.inventory)
    artifacts = project.cache / "artifacts"
    if args.run:
        record = runs.load(artifacts, args.run)
        if record is None:
            raise errors.UsageError(f"no run {args.run!r} in {artifacts} (see `rvm-fleet history`)")
        if args.json:
            print(json.dumps(record.as_dict(), indent=1))
        else:
            for key, value in record.as_dict().items():
                if key != "detail":
                    print(f"{key:12} {value}")
            for dev in record.detail.get("devices", []):
                print(f"  {dev['host']:16} batch {dev['batch']}  {dev['state']:11} {dev['message']}")
            print(f"artifacts    {execute.artifact_dir(project, record.ident)}")
        return errors.OK
    records = runs.all_runs(artifacts)
    if args.json:
        print(json.dumps([r.as_dict() for r in records], indent=1))
        return errors.OK
    rows = [["RUN", "WHO", "WHEN (UTC)", "WHAT", "RESULT", "EXIT", "DURATION"]]
    for r in records:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.started))
        what = " ".join(r.argv) or r.command
        dur = "-" if r.duration_s is None else f"{r.duration_s} s"
        rows.append([r.ident, r.who, when, what, r.status, str(r.exit_code), dur])
    _print_table(rows)
    return errors.OK


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "status":
            return cmd_status(args)
        if args.command == "history":
            return cmd_history(args)
        return run_command(args, argv)
    except errors.UsageError as exc:
        print(f"rvm-fleet {args.command}: {exc}", file=sys.stderr)
        return errors.USAGE


if __name__ == "__main__":
    sys.exit(main())
