"""Run the simulator: open the database, listen, tell systemd, serve until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from aiohttp import web

from rvm_platform_sim import __version__
from rvm_platform_sim.app import build_app
from rvm_platform_sim.config import SimConfig
from rvm_platform_sim.faults import FaultState
from rvm_platform_sim.sdnotify import notify, watchdog_interval_s
from rvm_platform_sim.store import Store

log = logging.getLogger("rvm_platform_sim")


async def _watchdog(interval_s: float) -> None:
    """Ping systemd from the event loop, so a blocked loop (not just a dead process) is caught."""
    while True:
        notify("WATCHDOG=1")
        await asyncio.sleep(interval_s)


async def serve(config: SimConfig) -> None:
    store = Store(config.db_path)
    app = build_app(config, store, FaultState())
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watchdog: asyncio.Task[None] | None = None
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        log.info(
            "listening",
            extra={
                "host": host,
                "port": port,
                "prefix": config.prefix,
                "admin_prefix": config.admin_prefix,
                "db": str(config.db_path),
                "version": __version__,
            },
        )
        notify(f"READY=1\nSTATUS=listening on {host}:{port}")
        interval = watchdog_interval_s()
        if interval is not None:
            watchdog = asyncio.create_task(_watchdog(interval))
        await stop.wait()
        log.info("stopping")
        notify("STOPPING=1")
    finally:
        if watchdog is not None:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
        await runner.cleanup()
        store.close()
