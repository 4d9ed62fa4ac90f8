"""The tegrastats parser against recorded lines from an Orin Nano (JetPack 6) and a Nano (JetPack 4)."""

from __future__ import annotations

import pytest
from rvm_tegra_exporter.tegrastats import Rail, TegrastatsParseError, parse_line
from tegra_fixtures import NANO_JP4, ORIN_NANO_IDLE, ORIN_NANO_LOAD

MB = 1024 * 1024


def test_orin_nano_idle_line() -> None:
    sample = parse_line(ORIN_NANO_IDLE)
    assert (sample.ram_used_bytes, sample.ram_total_bytes) == (2272 * MB, 7620 * MB)
    assert (sample.swap_used_bytes, sample.swap_total_bytes, sample.swap_cached_bytes) == (0, 3810 * MB, 0)
    assert sample.gpu_load_ratio == 0.0
    assert sample.emc_load_ratio == 0.0
    assert sample.rails == {
        "VDD_IN": Rail(4673, 4673),
        "VDD_CPU_GPU_CV": Rail(482, 482),
        "VDD_SOC": Rail(1445, 1445),
    }


def test_orin_nano_under_load_with_frequencies() -> None:
    sample = parse_line(ORIN_NANO_LOAD)
    assert sample.gpu_load_ratio == 0.87
    assert sample.emc_load_ratio == 0.23
    assert sample.swap_cached_bytes == 3 * MB
    assert sample.rails["VDD_IN"] == Rail(11245, 8120)
    assert sample.rails["VDD_CPU_GPU_CV"] == Rail(5012, 3206)


def test_older_format_rails_without_unit_and_no_memory_fields_as_rails() -> None:
    sample = parse_line(NANO_JP4)
    assert sample.ram_total_bytes == 3964 * MB
    assert set(sample.rails) == {"POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"}
    assert sample.rails["POM_5V_IN"] == Rail(3140, 3208)


def test_missing_fields_are_none_not_zero() -> None:
    sample = parse_line("RAM 100/200MB")
    assert sample.gpu_load_ratio is None
    assert sample.swap_total_bytes is None
    assert sample.rails == {}


@pytest.mark.parametrize("line", ["", "tegrastats: command not found", "CPU [1%@729] GR3D_FREQ 0%"])
def test_a_line_without_ram_is_refused_and_quoted(line: str) -> None:
    with pytest.raises(TegrastatsParseError, match="no 'RAM used/totalMB' field"):
        parse_line(line)
