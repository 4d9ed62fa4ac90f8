"""The command line: parse, validate the config (exit 2 with every problem), run the subcommand, and turn
failures into one-line messages and exit statuses (0 success, 1 a step failed, 2 config or usage)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from rvm_backup.config import DEFAULT_CONFIG, Config, load_config
from rvm_backup.errors import EXIT_CONFIG, EXIT_FAILED, BackupError, ConfigError
from rvm_backup.journal import Journal, password_file_secret
from rvm_backup.report import cmd_check_config, cmd_snapshots, cmd_status
from rvm_backup.restore import cmd_restore
from rvm_backup.run import cmd_run
from rvm_backup.state import longest_run_s
from rvm_backup.strays import own_cgroup_procs, wait_for_strays

DESCRIPTION = "Device-side driver of the restic backups of an RVM (rvm-edge's SQLite data and config)."
COMMANDS = {
    "run": "consistent SQLite copies, restic backup, forget --prune, check 1/N, metrics",
    "restore": "restore a snapshot into an empty directory and check its databases",
    "snapshots": "this host's snapshots as JSON, newest last",
    "status": "state and metrics as JSON; exit 0 only if the last run succeeded",
    "check-config": "validate the config only (exit 0 or 2)",
}


def parser() -> argparse.ArgumentParser:
    """--config is accepted before or after the subcommand (`rvm-backup check-config --config %s`)."""
    config_help = f"the JSON config (default {DEFAULT_CONFIG})"
    main = argparse.ArgumentParser(prog="rvm-backup", description=DESCRIPTION)
    main.add_argument("--config", default=DEFAULT_CONFIG, help=config_help)
    commands = main.add_subparsers(dest="command", required=True)
    for name, text in COMMANDS.items():
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("--config", default=argparse.SUPPRESS, help=config_help)
        if name == "restore":
            sub.add_argument("--snapshot", required=True, help="`latest` or a snapshot ID (or unique prefix)")
            sub.add_argument("--target", required=True, help="a new or empty directory")
            sub.add_argument(
                "--wait-s",
                type=int,
                default=None,
                help="how long to wait for a backup run in progress (default: the longest a run can take, "
                "5 x timeout_s + 60)",
            )
    return main


def dispatch(args: argparse.Namespace, config: Config, journal: Journal) -> int:
    """Call the subcommand."""
    if args.command == "run":
        return cmd_run(config, journal)
    if args.command == "restore":
        wait_s = longest_run_s(config.timeout_s) if args.wait_s is None else args.wait_s
        return cmd_restore(config, journal, args.snapshot, args.target, max(wait_s, 0))
    if args.command == "snapshots":
        return cmd_snapshots(config, journal)
    if args.command == "status":
        return cmd_status(config, journal)
    return cmd_check_config(config, journal)


def config_failed(exc: ConfigError) -> NoReturn:
    """Every problem on its own line of stderr, then exit 2."""
    for problem in exc.problems:
        sys.stderr.write(f"{problem}\n")
    sys.stderr.write(f"rvm-backup: {len(exc.problems)} problem(s) in the config\n")
    raise SystemExit(EXIT_CONFIG)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, validate the config, run the subcommand; failures become messages and exit statuses."""
    args = parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        config_failed(exc)
    secret = password_file_secret(config.password_file)
    journal = Journal([secret] if secret else [])
    try:
        return dispatch(args, config, journal)
    except BackupError as exc:
        journal.error(str(exc))
    except OSError as exc:  # a directory that cannot be created, a full disk: a message, not a traceback
        journal.error(f"{exc.filename or ''}: {exc.strerror or exc}" if exc.filename else str(exc))
    finally:
        wait_for_strays(own_cgroup_procs())  # restic's ssh, before systemd sees the main process exit
    return EXIT_FAILED
