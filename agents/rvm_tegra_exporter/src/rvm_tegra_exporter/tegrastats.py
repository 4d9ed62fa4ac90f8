"""Parse one ``tegrastats`` line into numbers.

tegrastats has no machine-readable mode; its line format differs between boards and JetPack
releases (Orin: ``VDD_IN 4673mW/4673mW``; Nano/TX2: ``VDD_IN 3140/3208``; JetPack 5+ prefixes a
date). The parser therefore looks for each field on its own and leaves out what a line lacks
instead of insisting on one layout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_MB = 1024 * 1024
_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
_SWAP = re.compile(r"\bSWAP (\d+)/(\d+)MB(?: \(cached (\d+)MB\))?")
_GPU = re.compile(r"\bGR3D_FREQ (\d+)%")
_EMC = re.compile(r"\bEMC_FREQ (\d+)%")
# A rail: NAME current/average, in mW (Orin prints the unit, older boards do not). The lookahead
# keeps RAM 2272/7620MB and IRAM 0/252kB out: their second number runs into a unit letter.
_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")
_NOT_RAILS = frozenset({"RAM", "SWAP", "IRAM", "LFB"})


class TegrastatsParseError(ValueError):
    """A line that carries none of the fields tegrastats always prints (RAM)."""


@dataclass(frozen=True)
class Rail:
    """One power rail: the instantaneous and the running-average draw, in milliwatts."""

    current_mw: int
    average_mw: int


@dataclass(frozen=True)
class TegraSample:
    """The figures of one tegrastats line; None where the line did not carry the field."""

    ram_used_bytes: int
    ram_total_bytes: int
    swap_used_bytes: int | None = None
    swap_total_bytes: int | None = None
    swap_cached_bytes: int | None = None
    gpu_load_ratio: float | None = None
    emc_load_ratio: float | None = None
    rails: dict[str, Rail] = field(default_factory=dict)


def parse_line(line: str) -> TegraSample:
    """Return the figures of one tegrastats line; raise TegrastatsParseError if it has no RAM field."""
    ram = _RAM.search(line)
    if ram is None:
        raise TegrastatsParseError(
            f"not a tegrastats line (no 'RAM used/totalMB' field): {line.strip()[:120]!r}"
        )
    swap = _SWAP.search(line)
    gpu = _GPU.search(line)
    emc = _EMC.search(line)
    rails = {
        m.group(1): Rail(int(m.group(2)), int(m.group(3)))
        for m in _RAIL.finditer(line)
        if m.group(1) not in _NOT_RAILS
    }
    return TegraSample(
        ram_used_bytes=int(ram.group(1)) * _MB,
        ram_total_bytes=int(ram.group(2)) * _MB,
        swap_used_bytes=int(swap.group(1)) * _MB if swap else None,
        swap_total_bytes=int(swap.group(2)) * _MB if swap else None,
        swap_cached_bytes=int(swap.group(3)) * _MB if swap and swap.group(3) is not None else None,
        gpu_load_ratio=int(gpu.group(1)) / 100 if gpu else None,
        emc_load_ratio=int(emc.group(1)) / 100 if emc else None,
        rails=rails,
    )
