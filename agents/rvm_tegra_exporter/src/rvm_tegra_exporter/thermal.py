"""Thermal zones and their trip points from sysfs.

Each ``thermal_zoneN`` directory holds ``type``, ``temp`` (millidegrees Celsius) and numbered
``trip_point_K_temp`` / ``trip_point_K_type`` files. Alerts compare a zone's temperature with its
own trip points, because the safe limit differs per zone and per board. Jetsons report a zone
that is powered off (cv0-thermal on an Orin Nano, for example) as -256 °C: that is no reading, so
the zone's temperature is left out rather than exported as a real value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_ROOT = Path("/sys/devices/virtual/thermal")
_NO_READING_MILLI_C = -256000
_TRIP = re.compile(r"^trip_point_(\d+)_temp$")


@dataclass(frozen=True)
class TripPoint:
    """A trip point of a zone: its number, kind (passive, hot, critical, ...) and temperature."""

    index: int
    kind: str
    celsius: float


@dataclass(frozen=True)
class Zone:
    """One thermal zone; temperature is None when the zone gives no reading."""

    name: str
    kind: str
    celsius: float | None
    trip_points: list[TripPoint] = field(default_factory=list)


@dataclass(frozen=True)
class ThermalReading:
    """The zones read, plus one message per file that exists but could not be read."""

    zones: list[Zone]
    errors: list[str]


def _zone_number(path: Path) -> int:
    digits = path.name.removeprefix("thermal_zone")
    return int(digits) if digits.isdigit() else -1


def _read(path: Path) -> str:
    return path.read_text(encoding="ascii", errors="replace").strip()


def _milli_c(text: str) -> float | None:
    value = int(text)
    return None if value <= _NO_READING_MILLI_C else value / 1000


def read_zones(root: Path = DEFAULT_ROOT) -> ThermalReading:
    """Read every zone under root; a missing root (containers, most VMs) is simply no zones."""
    zones: list[Zone] = []
    errors: list[str] = []
    if not root.is_dir():
        return ThermalReading(zones, errors)
    for zone_dir in sorted(root.glob("thermal_zone*"), key=_zone_number):
        try:
            kind = _read(zone_dir / "type")
        except OSError as exc:
            errors.append(f"{zone_dir / 'type'}: {exc.strerror or exc}")
            continue
        celsius: float | None = None
        try:
            celsius = _milli_c(_read(zone_dir / "temp"))
        except (OSError, ValueError) as exc:
            errors.append(f"{zone_dir / 'temp'}: {getattr(exc, 'strerror', None) or exc}")
        trips: list[TripPoint] = []
        for trip_file in sorted(zone_dir.glob("trip_point_*_temp")):
            match = _TRIP.match(trip_file.name)
            if match is None:
                continue
            index = int(match.group(1))
            try:
                trip_c = _milli_c(_read(trip_file))
                trip_kind = _read(zone_dir / f"trip_point_{index}_type")
            except (OSError, ValueError) as exc:
                errors.append(f"{trip_file}: {getattr(exc, 'strerror', None) or exc}")
                continue
            if trip_c is not None:
                trips.append(TripPoint(index, trip_kind, trip_c))
        trips.sort(key=lambda t: t.index)
        zones.append(Zone(zone_dir.name, kind, celsius, trips))
    return ThermalReading(zones, errors)
