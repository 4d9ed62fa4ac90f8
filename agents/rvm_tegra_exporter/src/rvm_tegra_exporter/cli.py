"""rvm-tegra-exporter: write Jetson figures for node-exporter's textfile collector.

Long-running (systemd ``Type=exec``): where ``tegrastats`` exists it runs ``tegrastats --interval
<ms>`` and writes one file per line it prints, so memory, GPU load and power are as fresh as the
interval; elsewhere it reads the thermal zones and power mode on its own every interval. A
tegrastats that exits is started again after one interval (and counted as a collector error
meanwhile). ``--once`` writes a single round and exits (for tests and a manual look).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from . import __version__, nvpmodel, thermal
from .collect import Sources, collect
from .tegrastats import TegraSample, TegrastatsParseError, parse_line
from .textfile import write_atomic

DEFAULT_TEXTFILE_DIR = Path("/var/lib/prometheus/node-exporter")
FILE_NAME = "rvm_tegra.prom"


def build_parser() -> argparse.ArgumentParser:
    """The command line (every path overridable, so tests run against a fake sysfs tree)."""
    parser = argparse.ArgumentParser(prog="rvm-tegra-exporter", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--textfile-dir", type=Path, default=DEFAULT_TEXTFILE_DIR, help="node-exporter's textfile directory"
    )
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between rounds (default 5)")
    parser.add_argument(
        "--tegrastats", default="tegrastats", help="tegrastats command or path; absent: no tegrastats figures"
    )
    parser.add_argument("--thermal-root", type=Path, default=thermal.DEFAULT_ROOT)
    parser.add_argument("--nvpmodel-status", type=Path, default=nvpmodel.DEFAULT_STATUS)
    parser.add_argument("--nvpmodel-conf", type=Path, default=nvpmodel.DEFAULT_CONF)
    parser.add_argument("--once", action="store_true", help="write one round and exit")
    return parser


def _signal_group(child: subprocess.Popen[str], signum: int) -> None:
    """Signal tegrastats' process group (it leads it); a group already gone is fine."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signum)


class Exporter:
    """Owns the latest tegrastats figures and writes a round whenever something new arrives."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.target = args.textfile_dir / FILE_NAME
        self.interval = args.interval
        self.once = args.once
        self.sources = Sources(args.thermal_root, args.nvpmodel_status, args.nvpmodel_conf)
        self.tegrastats = shutil.which(args.tegrastats)
        self.stop = threading.Event()
        self.child: subprocess.Popen[str] | None = None
        self._reported: list[str] = []

    def write(self, sample: TegraSample | None, tegrastats_error: bool | None) -> None:
        """Write one round; report source problems to the journal once each time they change."""
        result = collect(self.sources, sample, tegrastats_error)
        write_atomic(self.target, result.text)
        if result.problems != self._reported:
            for problem in result.problems:
                print(f"rvm-tegra-exporter: {problem}", file=sys.stderr, flush=True)
            self._reported = result.problems

    def lines(self) -> Iterator[str]:
        """tegrastats' lines; ends when it exits or when asked to stop (and never leaves it running)."""
        assert self.tegrastats is not None
        command = [self.tegrastats, "--interval", str(max(1, round(self.interval * 1000)))]
        # Its own process group, so that stopping it also stops anything it started (a wrapper
        # script's children would otherwise hold the pipe open and the read would never end).
        child = subprocess.Popen(
            command, stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL, start_new_session=True
        )
        self.child = child
        assert child.stdout is not None
        try:
            yield from child.stdout
        finally:
            _signal_group(child, signal.SIGTERM)
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                _signal_group(child, signal.SIGKILL)
                child.wait()
            child.stdout.close()
            self.child = None
        if not self.stop.is_set():
            print(
                f"rvm-tegra-exporter: {command[0]} exited with {child.returncode}",
                file=sys.stderr,
                flush=True,
            )

    def run_with_tegrastats(self) -> None:
        """One round per tegrastats line; a bad line keeps the last good figures and flags the error."""
        sample: TegraSample | None = None
        while not self.stop.is_set():
            for line in self.lines():
                try:
                    sample, failed = parse_line(line), False
                except TegrastatsParseError as exc:
                    print(f"rvm-tegra-exporter: {exc}", file=sys.stderr, flush=True)
                    failed = True
                self.write(sample, failed)
                if self.once:
                    self.stop.set()
                if self.stop.is_set():
                    break
            else:
                self.write(sample, True)
                if self.once:
                    return
            self.stop.wait(self.interval)

    def run_without_tegrastats(self) -> None:
        """Thermal zones and power mode only, every interval."""
        while True:
            self.write(None, None)
            if self.once or self.stop.wait(self.interval):
                return

    def request_stop(self, _signum: int, _frame: FrameType | None) -> None:
        """SIGTERM/SIGINT: finish the current round, stop tegrastats, exit 0."""
        self.stop.set()
        if self.child is not None:
            _signal_group(self.child, signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the zipapp and the console script."""
    args = build_parser().parse_args(argv)
    if args.interval <= 0:
        print("rvm-tegra-exporter: --interval must be a positive number of seconds", file=sys.stderr)
        return 2
    if not args.textfile_dir.is_dir():
        print(f"rvm-tegra-exporter: textfile directory {args.textfile_dir} does not exist", file=sys.stderr)
        return 2
    exporter = Exporter(args)
    signal.signal(signal.SIGTERM, exporter.request_stop)
    signal.signal(signal.SIGINT, exporter.request_stop)
    if exporter.tegrastats is not None:
        exporter.run_with_tegrastats()
    else:
        exporter.run_without_tegrastats()
    return 0


if __name__ == "__main__":
    sys.exit(main())
