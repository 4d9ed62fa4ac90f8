#!/usr/bin/python3
"""rvm-hardening-metrics: the hardening role's figures for node-exporter's textfile collector.

Why a file and not an exporter: node-exporter already runs on every host and reads this directory, so
the firewall's drop counters and a pending reboot reach Prometheus without another listening port.
Written atomically (temp file + rename) so a scrape never sees half a file. Standard library only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

TABLE = "rvm_filter"
COUNTERS = {"input_dropped": "input", "forward_dropped": "forward"}
REBOOT_FLAG = Path("/var/run/reboot-required")
REBOOT_PACKAGES = Path("/var/run/reboot-required.pkgs")
LAST_REVERT = Path("/var/lib/rvm-hardening/last-revert")


def nft_counters() -> dict[str, tuple[int, int]] | None:
    """Packets and bytes of each named counter of our table; None when the table is not loaded."""
    proc = subprocess.run(
        ["nft", "-j", "list", "counters", "table", "inet", TABLE],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return None
    found: dict[str, tuple[int, int]] = {}
    for entry in json.loads(proc.stdout).get("nftables", []):
        counter = entry.get("counter")
        if counter and counter.get("name") in COUNTERS:
            found[counter["name"]] = (int(counter.get("packets", 0)), int(counter.get("bytes", 0)))
    return found


def render() -> str:
    """The metrics, in Prometheus' text format."""
    lines: list[str] = []
    counters = nft_counters()
    lines += [
        "# HELP rvm_firewall_loaded 1 when the hardening role's nftables table is loaded.",
        "# TYPE rvm_firewall_loaded gauge",
        f"rvm_firewall_loaded {0 if counters is None else 1}",
        "# HELP rvm_firewall_dropped_packets_total Packets dropped by the default-deny firewall.",
        "# TYPE rvm_firewall_dropped_packets_total counter",
    ]
    for name, chain in COUNTERS.items():
        packets = (counters or {}).get(name, (0, 0))[0]
        lines.append(f'rvm_firewall_dropped_packets_total{{chain="{chain}"}} {packets}')
    lines += [
        "# HELP rvm_firewall_dropped_bytes_total Bytes dropped by the default-deny firewall.",
        "# TYPE rvm_firewall_dropped_bytes_total counter",
    ]
    for name, chain in COUNTERS.items():
        octets = (counters or {}).get(name, (0, 0))[1]
        lines.append(f'rvm_firewall_dropped_bytes_total{{chain="{chain}"}} {octets}')
    if LAST_REVERT.exists():
        lines += [
            "# HELP rvm_firewall_last_revert_timestamp_seconds When a firewall change was last reverted.",
            "# TYPE rvm_firewall_last_revert_timestamp_seconds gauge",
            f"rvm_firewall_last_revert_timestamp_seconds {LAST_REVERT.read_text().strip() or 0}",
        ]
    packages = REBOOT_PACKAGES.read_text().split() if REBOOT_PACKAGES.exists() else []
    lines += [
        "# HELP rvm_reboot_required 1 when an update waits for a reboot (done in the maintenance window).",
        "# TYPE rvm_reboot_required gauge",
        f"rvm_reboot_required {1 if REBOOT_FLAG.exists() else 0}",
        "# HELP rvm_reboot_required_packages Packages whose update waits for a reboot.",
        "# TYPE rvm_reboot_required_packages gauge",
        f"rvm_reboot_required_packages {len(set(packages))}",
    ]
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, text: str) -> None:
    """Write beside the target and rename, so node-exporter never reads a partial file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: rvm-hardening-metrics OUTPUT.prom", file=sys.stderr)
        return 2
    write_atomically(Path(argv[1]), render())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
