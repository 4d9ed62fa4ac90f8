"""``rvm-platform-sim``: the command line of the simulator.

Exit codes: 0 clean stop, 2 bad arguments or settings (the message names the option).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from rvm_platform_sim import __version__
from rvm_platform_sim.config import ConfigError, SimConfig, normalize_prefix, read_admin_token
from rvm_platform_sim.jsonlog import setup_logging

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rvm-platform-sim",
        description="Lab-only simulator of the MyRVM platform edge API, with a test admin API.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="TCP port; 0 picks a free one (default 8000)")
    p.add_argument("--db", default="rvm-platform-sim.sqlite3", help="SQLite database file")
    p.add_argument(
        "--admin-token-file",
        default=None,
        help="file holding the admin API bearer token (default: $CREDENTIALS_DIRECTORY/admin-token)",
    )
    p.add_argument("--prefix", default="/api/v1", help="edge API path prefix (default /api/v1)")
    p.add_argument("--admin-prefix", default="/_sim", help="admin API path prefix (default /_sim)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def build_config(args: argparse.Namespace) -> SimConfig:
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: must be 0..65535")
    prefix = normalize_prefix(args.prefix, "--prefix")
    admin_prefix = normalize_prefix(args.admin_prefix, "--admin-prefix")
    if not admin_prefix:
        raise ConfigError("--admin-prefix must not be the root: the admin API needs its own path")
    if admin_prefix == prefix or admin_prefix.startswith(prefix + "/edge"):
        raise ConfigError(f"--admin-prefix {admin_prefix!r} must be separate from the edge API {prefix!r}")
    db = Path(args.db)
    if not db.parent.is_dir():
        raise ConfigError(f"--db {db}: directory {db.parent} does not exist")
    return SimConfig(
        host=args.host,
        port=args.port,
        db_path=db,
        admin_token=read_admin_token(args.admin_token_file),
        prefix=prefix,
        admin_prefix=admin_prefix,
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        config = build_config(args)
    except ConfigError as exc:
        print(f"rvm-platform-sim: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        from rvm_platform_sim.server import serve

        asyncio.run(serve(config))
    except OSError as exc:
        logging.getLogger("rvm_platform_sim").error("cannot listen", extra={"error": str(exc)})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
