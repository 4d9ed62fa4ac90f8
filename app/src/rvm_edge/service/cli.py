"""The service's subcommands, registered into ``rvm-edge``'s parser by :func:`register`.

``run``, ``check-config``, ``outbox status|flush``, ``db backup|restore|check|version|migrate``. Every
command that needs the data directory takes ``--config`` (default /etc/rvm-edge/config.yml)
so operators never have to know where the database lives.
"""

from __future__ import annotations

import argparse
import dataclasses
import fcntl
import json
import os
import sys
from pathlib import Path
from typing import Any

from rvm_edge.service.config import (
    DEFAULT_CONFIG_PATH,
    ConfigError,
    SecretError,
    ServiceConfig,
    load_config,
    read_secret,
)

EXIT_INVALID = 2
# The name check-config gives the file it checks (the deploy's validate: checks a temporary copy).
# Not under RVM_EDGE__ (the config's own environment layer), so no release reads it as a key.
CHECK_AS_ENV = "RVM_EDGE_CHECK_AS"
EXIT_BUSY = 4


def _config_or_exit(path: Path) -> ServiceConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        for issue in exc.issues:
            print(f"rvm-edge: {issue}", file=sys.stderr)
        raise SystemExit(EXIT_INVALID) from None


def strict_problems(cfg: ServiceConfig) -> list[str]:
    """What ``--strict`` adds: secret files readable, models verified, data_dir usable."""
    from rvm_edge.manifest import verify

    problems: list[str] = []
    secrets = [("server.token_file", cfg.server.token_file)]
    if cfg.platform.base_url:
        secrets.append(("platform.api_key_file", cfg.platform.api_key_file))
    for key, template in secrets:
        try:
            read_secret(template, key)
        except SecretError as exc:
            problems.append(str(exc))
    manifests = [("models.manifest", cfg.models.manifest)]
    if cfg.models.segmentation.enabled:
        manifests.append(("models.segmentation.manifest", cfg.models.sam2_manifest()))
    for key, path in manifests:
        problems += [f"{key}: {p}" for p in verify(path)]
    if cfg.platform.ca_bundle and not cfg.platform.ca_bundle.is_file():
        problems.append(f"platform.ca_bundle: {cfg.platform.ca_bundle} does not exist")
    d = cfg.storage.data_dir
    probe = d if d.exists() else d.parent
    if not os.access(probe, os.W_OK):
        problems.append(f"storage.data_dir: {d} is not writable by this user")
    return problems


def cmd_check_config(args: argparse.Namespace) -> int:
    if args.schema:
        print(json.dumps(ServiceConfig.model_json_schema(), indent=2))
        return 0
    if args.file is None:
        print("rvm-edge: check-config needs a FILE (or --schema)", file=sys.stderr)
        return EXIT_INVALID
    # Ansible's `validate:` checks a temporary copy: its messages name the file it will become.
    shown = args.shown_as or os.environ.get(CHECK_AS_ENV) or str(args.file)
    try:
        cfg = load_config(args.file)
    except ConfigError as exc:
        for issue in exc.issues:
            if issue.origin == str(args.file):
                issue = dataclasses.replace(issue, origin=shown)
            print(f"rvm-edge: {issue}", file=sys.stderr)
        return EXIT_INVALID
    if args.strict:
        problems = strict_problems(cfg)
        for p in problems:
            print(f"rvm-edge: {shown}: {p}", file=sys.stderr)
        if problems:
            return EXIT_INVALID
    print(f"{shown}: ok (profile {cfg.profile}, device {cfg.device.id})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from rvm_edge.service.runner import run

    return run(args.config)


def _service_running(data_dir: Path) -> bool:
    """True when a running service holds the data directory's lock."""
    lock = data_dir / "rvm-edge.lock"
    if not lock.exists():
        return False
    fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def _store(cfg: ServiceConfig) -> Any:
    from rvm_edge.service.store import Store, StoreError

    try:
        return Store(cfg.storage.data_dir)
    except StoreError as exc:
        print(f"rvm-edge: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_BUSY) from None


def cmd_outbox_status(args: argparse.Namespace) -> int:
    cfg = _config_or_exit(args.config)
    store = _store(cfg)
    try:
        out = {**store.status().to_json(), "service_running": _service_running(cfg.storage.data_dir)}
        out["recent"] = store.recent(args.recent) if args.recent else []
    finally:
        store.close()
    print(json.dumps(out, indent=2))
    return 0


def cmd_outbox_flush(args: argparse.Namespace) -> int:
    """Parked deposits back into the queue; with no service running, also send everything now."""
    from rvm_edge.service.outbox import Sender, backoff_from
    from rvm_edge.service.platform import PlatformClient, PlatformSettings

    cfg = _config_or_exit(args.config)
    store = _store(cfg)
    try:
        requeued = store.requeue_parked()
        print(f"requeued {requeued} parked deposit(s)")
        if _service_running(cfg.storage.data_dir):
            print("the running service sends the queue (in order); watch `rvm-edge outbox status`")
            return 0
        p = cfg.platform
        if not p.base_url:
            print("rvm-edge: platform.base_url is not set: nothing to send to", file=sys.stderr)
            return EXIT_INVALID
        try:
            key = read_secret(p.api_key_file, "platform.api_key_file")
        except SecretError as exc:
            print(f"rvm-edge: {exc}", file=sys.stderr)
            return 5
        settings = PlatformSettings(p.base_url, p.timeout_s, p.connect_timeout_s, _ca(cfg), 1, 1.0)
        client = PlatformClient(settings, lambda: key)
        sender = Sender(store, client, backoff_from(0.1, 0.1), p.max_image_bytes, p.offline_batch_size)
        sent = 0
        while True:
            result = sender.step()
            if result is None:
                break
            if result is False:
                print(f"rvm-edge: stopped: {sender.state.last_error}", file=sys.stderr)
                print(json.dumps(store.status().to_json()))
                return 1
            sent += 1
        print(f"sent {sent} item(s); outbox empty")
        return 0
    finally:
        store.close()


def _ca(cfg: ServiceConfig) -> str | None:
    return str(cfg.platform.ca_bundle) if cfg.platform.ca_bundle else None


def cmd_db_check(args: argparse.Namespace) -> int:
    from rvm_edge.service.store import DB_NAME, check

    path = args.file or _config_or_exit(args.config).storage.data_dir / DB_NAME
    problems = check(path)
    for p in problems:
        print(f"FAIL {p}", file=sys.stderr)
    if not problems:
        print(f"ok   {path}")
    return 1 if problems else 0


def cmd_db_backup(args: argparse.Namespace) -> int:
    from rvm_edge.service.store import DB_NAME, backup, check

    src = _config_or_exit(args.config).storage.data_dir / DB_NAME
    if not src.is_file():
        print(f"rvm-edge: {src}: no database to back up", file=sys.stderr)
        return 1
    backup(src, args.dest)
    problems = check(args.dest)
    if problems:
        print("\n".join(f"FAIL {p}" for p in problems), file=sys.stderr)
        return 1
    print(f"backed up {src} -> {args.dest}")
    return 0


def cmd_db_restore(args: argparse.Namespace) -> int:
    from rvm_edge.service.store import DB_NAME, backup, check

    cfg = _config_or_exit(args.config)
    if _service_running(cfg.storage.data_dir):
        print("rvm-edge: the service is running: stop it first (systemctl stop rvm-edge)", file=sys.stderr)
        return EXIT_BUSY
    problems = check(args.src)
    if problems:
        print("\n".join(f"FAIL {p}" for p in problems), file=sys.stderr)
        print("rvm-edge: refusing to restore a backup that fails its check", file=sys.stderr)
        return 1
    dest = cfg.storage.data_dir / DB_NAME
    dest.parent.mkdir(parents=True, exist_ok=True)
    staged = dest.with_name(dest.name + ".restore.tmp")
    backup(args.src, staged, atomic=False)  # the backup's own WAL content too, not only its main file
    if dest.exists():
        keep = dest.with_name(dest.name + ".pre-restore")
        # through SQLite, not a file copy: after a crash the WAL can hold committed deposits that
        # the main file does not have yet, and the WAL is removed below
        backup(dest, keep)
        print(f"kept the current database as {keep}")
    # a WAL left beside the restored file would be replayed into it: remove it first
    for suffix in ("-wal", "-shm"):
        Path(str(dest) + suffix).unlink(missing_ok=True)
    staged.replace(dest)
    print(f"restored {args.src} -> {dest}")
    return 0


def cmd_db_version(args: argparse.Namespace) -> int:
    """JSON for the deploy: the schema this release knows and the one the database is at."""
    from rvm_edge.service.store import DB_NAME, LATEST, StoreError, database_schema

    path = _config_or_exit(args.config).storage.data_dir / DB_NAME
    try:
        current = database_schema(path)
    except StoreError as exc:
        print(f"rvm-edge: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"supported": LATEST, "database": current, "path": str(path)}))
    return 0


def cmd_db_migrate(args: argparse.Namespace) -> int:
    from rvm_edge.service.store import DB_NAME, StoreError, connect, migrate, schema_version

    cfg = _config_or_exit(args.config)
    if _service_running(cfg.storage.data_dir):
        print("rvm-edge: the service is running: stop it first", file=sys.stderr)
        return EXIT_BUSY
    path = cfg.storage.data_dir / DB_NAME
    conn = connect(path)
    try:
        for step in migrate(conn, args.to, path):
            print(step)
        print(f"schema version {schema_version(conn)}")
    except StoreError as exc:
        print(f"rvm-edge: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the service commands to ``rvm-edge``'s subparsers."""
    from rvm_edge.service.store import LATEST

    def config_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--config",
            type=Path,
            default=DEFAULT_CONFIG_PATH,
            help=f"config file (default {DEFAULT_CONFIG_PATH})",
        )

    p = sub.add_parser("run", help="run the service (systemd Type=notify)")
    config_arg(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "check-config",
        help="validate a config file; prints every error (file, key path, expected) and exits 2",
        description="Validate a config file (defaults < file < RVM_EDGE__SECTION__KEY environment). "
        "Without --strict no secret or model file is read, so it can validate a template before deploy.",
    )
    p.add_argument("file", type=Path, nargs="?")
    p.add_argument("--strict", action="store_true", help="also check secret files, models and data_dir")
    p.add_argument(
        "--as",
        dest="shown_as",
        metavar="NAME",
        help=f"name FILE as NAME in messages (a temporary copy checked before it lands; also ${CHECK_AS_ENV}, "
        "which releases without this option ignore)",
    )
    p.add_argument(
        "--schema", action="store_true", help="print the config's JSON Schema (keys, types, defaults)"
    )
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("outbox", help="the deposit outbox: status | flush")
    osub = p.add_subparsers(dest="outbox_command", required=True)
    s = osub.add_parser("status", help="pending / parked / sent counts, oldest age, as JSON")
    config_arg(s)
    s.add_argument("--recent", type=int, default=0, metavar="N", help="also list the N newest deposits")
    s.set_defaults(func=cmd_outbox_status)
    s = osub.add_parser(
        "flush", help="requeue parked deposits; send everything now when the service is stopped"
    )
    config_arg(s)
    s.set_defaults(func=cmd_outbox_flush)

    p = sub.add_parser("db", help="the local database: backup | restore | check | migrate")
    dsub = p.add_subparsers(dest="db_command", required=True)
    s = dsub.add_parser("backup", help="consistent online copy (safe while the service runs)")
    config_arg(s)
    s.add_argument("dest", type=Path)
    s.set_defaults(func=cmd_db_backup)
    s = dsub.add_parser("restore", help="replace the database with a checked backup (service stopped)")
    config_arg(s)
    s.add_argument("src", type=Path)
    s.set_defaults(func=cmd_db_restore)
    s = dsub.add_parser("check", help="integrity and schema version")
    config_arg(s)
    s.add_argument("--file", type=Path, default=None, help="check this database file instead")
    s.set_defaults(func=cmd_db_check)
    s = dsub.add_parser(
        "version", help="JSON: the schema version this release knows and the database's (read-only)"
    )
    config_arg(s)
    s.set_defaults(func=cmd_db_version)
    s = dsub.add_parser("migrate", help="move the schema up or down (before a rollback to an older release)")
    config_arg(s)
    s.add_argument("--to", type=int, default=LATEST, help=f"target schema version (default {LATEST})")
    s.set_defaults(func=cmd_db_migrate)
