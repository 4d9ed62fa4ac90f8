"""The power mode by name from nvpmodel's status and conf."""

from __future__ import annotations

from pathlib import Path

import pytest
from rvm_tegra_exporter.nvpmodel import PowerMode, PowerModeError, parse_conf, parse_status, read_power_mode
from tegra_fixtures import NVPMODEL_CONF


def test_conf_names_by_id() -> None:
    assert parse_conf(NVPMODEL_CONF) == {0: "15W", 1: "25W", 2: "MAXN_SUPER"}


@pytest.mark.parametrize(
    ("text", "mode"), [("pmode:0002 fmode:quiet", 2), ("pmode:0000\n", 0), ("pmode:0001", 1)]
)
def test_status(text: str, mode: int) -> None:
    assert parse_status(text) == mode


def test_active_mode(jetson: dict[str, Path]) -> None:
    assert read_power_mode(jetson["status"], jetson["conf"]) == PowerMode(2, "MAXN_SUPER")


def test_not_a_jetson(tmp_path: Path) -> None:
    assert read_power_mode(tmp_path / "status", tmp_path / "nvpmodel.conf") is None


def test_a_mode_the_conf_does_not_define_names_both_files(jetson: dict[str, Path]) -> None:
    jetson["status"].write_text("pmode:0007")
    with pytest.raises(PowerModeError, match=r"power mode 7 of .*status is not defined in .*nvpmodel.conf"):
        read_power_mode(jetson["status"], jetson["conf"])


def test_garbled_status() -> None:
    with pytest.raises(PowerModeError, match="no 'pmode:<id>'"):
        parse_status("garbage")
