"""Thermal zones and trip points from a fake sysfs tree."""

from __future__ import annotations

from pathlib import Path

from rvm_tegra_exporter.thermal import TripPoint, read_zones
from tegra_fixtures import make_zone


def test_zones_in_numeric_order_with_trip_points(jetson: dict[str, Path]) -> None:
    reading = read_zones(jetson["thermal"])
    assert reading.errors == []
    assert [z.name for z in reading.zones] == [
        "thermal_zone0",
        "thermal_zone1",
        "thermal_zone2",
        "thermal_zone10",
    ]
    cpu = reading.zones[0]
    assert (cpu.kind, cpu.celsius) == ("cpu-thermal", 54.875)
    assert cpu.trip_points == [TripPoint(0, "passive", 99.0), TripPoint(1, "critical", 103.0)]


def test_a_powered_off_zone_has_no_temperature_but_keeps_its_trips(jetson: dict[str, Path]) -> None:
    cv0 = read_zones(jetson["thermal"]).zones[2]
    assert cv0.kind == "cv0-thermal"
    assert cv0.celsius is None
    assert cv0.trip_points == [TripPoint(0, "passive", 99.0)]


def test_no_thermal_directory_is_no_zones_and_no_error(tmp_path: Path) -> None:
    reading = read_zones(tmp_path / "absent")
    assert (reading.zones, reading.errors) == ([], [])


def test_an_unreadable_temperature_is_an_error_naming_the_file(tmp_path: Path) -> None:
    zone = make_zone(tmp_path, 0, "acpitz", "not-a-number", [])
    reading = read_zones(tmp_path)
    assert reading.zones[0].celsius is None
    assert len(reading.errors) == 1
    assert str(zone / "temp") in reading.errors[0]
