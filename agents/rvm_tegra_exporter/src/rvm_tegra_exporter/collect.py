"""One collection round: turn what this host has into the exporter's metric families.

Each source is optional. A missing source (no tegrastats, no thermal zones, no nvpmodel) gives no
series and no error: that is a host that is not a Jetson. A source that exists but cannot be read
or parsed sets ``rvm_tegra_exporter_collector_error{source=...}`` to 1 and leaves the other
sources' series in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .exposition import Gauge, render
from .nvpmodel import PowerModeError, read_power_mode
from .tegrastats import TegraSample
from .thermal import read_zones


@dataclass(frozen=True)
class Sources:
    """Where this host keeps its figures (overridable for tests and unusual boards)."""

    thermal_root: Path
    nvpmodel_status: Path
    nvpmodel_conf: Path


def _tegra_families(sample: TegraSample) -> list[Gauge]:
    memory = [
        ("rvm_tegra_ram_used_bytes", "RAM in use, from tegrastats.", sample.ram_used_bytes),
        ("rvm_tegra_ram_total_bytes", "RAM size, from tegrastats.", sample.ram_total_bytes),
        ("rvm_tegra_swap_used_bytes", "Swap in use, from tegrastats.", sample.swap_used_bytes),
        ("rvm_tegra_swap_total_bytes", "Swap size, from tegrastats.", sample.swap_total_bytes),
        ("rvm_tegra_swap_cached_bytes", "Swap cached, from tegrastats.", sample.swap_cached_bytes),
        ("rvm_tegra_gpu_load_ratio", "GPU (GR3D) load, 0-1, from tegrastats.", sample.gpu_load_ratio),
        (
            "rvm_tegra_emc_load_ratio",
            "Memory controller (EMC) load, 0-1, from tegrastats.",
            sample.emc_load_ratio,
        ),
    ]
    families = []
    for name, help_text, value in memory:
        gauge = Gauge(name, help_text)
        if value is not None:
            gauge.add(value)
        families.append(gauge)
    current = Gauge(
        "rvm_tegra_rail_power_watts",
        "Instantaneous power of a rail (VDD_IN is the whole module), from tegrastats.",
    )
    average = Gauge(
        "rvm_tegra_rail_power_average_watts", "Running average power of a rail since tegrastats started."
    )
    for rail, figures in sorted(sample.rails.items()):
        current.add(figures.current_mw / 1000, rail=rail)
        average.add(figures.average_mw / 1000, rail=rail)
    return [*families, current, average]


@dataclass(frozen=True)
class Round:
    """The exposition text of one round, and why any source failed (for the journal)."""

    text: str
    problems: list[str]


def collect(sources: Sources, sample: TegraSample | None, tegrastats_error: bool | None) -> Round:
    """Read the sysfs and nvpmodel sources and render them with the latest tegrastats figures.

    sample: the latest parsed tegrastats line (None when there is none); tegrastats_error: None
    when tegrastats is not used on this host, else whether its latest line failed.
    """
    problems: list[str] = []
    errors = Gauge(
        "rvm_tegra_exporter_collector_error",
        "1 when the source exists but its latest reading failed (see the service's journal), else 0.",
    )
    families: list[Gauge] = []
    if sample is not None:
        families += _tegra_families(sample)
    if tegrastats_error is not None:
        errors.add(int(tegrastats_error), source="tegrastats")

    reading = read_zones(sources.thermal_root)
    temperature = Gauge("rvm_tegra_thermal_zone_temp_celsius", "Temperature of a thermal zone.")
    trips = Gauge(
        "rvm_tegra_thermal_zone_trip_celsius",
        "A trip point of a thermal zone (trip_type passive, hot, critical, ...).",
    )
    for zone in reading.zones:
        if zone.celsius is not None:
            temperature.add(zone.celsius, zone=zone.name, type=zone.kind)
        for trip in zone.trip_points:
            trips.add(trip.celsius, zone=zone.name, type=zone.kind, trip=str(trip.index), trip_type=trip.kind)
    families += [temperature, trips]
    problems += reading.errors
    if sources.thermal_root.is_dir():
        errors.add(int(bool(reading.errors)), source="thermal")

    mode_info = Gauge("rvm_tegra_power_mode_info", "The active nvpmodel power mode (value always 1).")
    if sources.nvpmodel_status.exists():
        try:
            mode = read_power_mode(sources.nvpmodel_status, sources.nvpmodel_conf)
        except (OSError, PowerModeError) as exc:
            errors.add(1, source="nvpmodel")
            problems.append(str(exc))
        else:
            if mode is not None:
                mode_info.add(1, mode=mode.name, mode_id=str(mode.mode_id))
            errors.add(0, source="nvpmodel")
    families += [mode_info, errors]
    return Round(render(families), problems)
