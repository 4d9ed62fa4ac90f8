"""Recorded tegrastats lines and a fake sysfs/nvpmodel tree, shared by the tests (a unique module name, so
it never collides with another agent's test helpers; conftest.py exposes the fixture)."""

from __future__ import annotations

from pathlib import Path

# Orin Nano 8 GB, JetPack 6 (the format the issue quotes, with the date prefix tegrastats prints
# since JetPack 5), at idle and under load.
ORIN_NANO_IDLE = (
    "12-05-2026 22:12:39 RAM 2272/7620MB (lfb 2x4MB) SWAP 0/3810MB (cached 0MB) "
    "CPU [1%@729,0%@729,0%@729,2%@729,0%@729,0%@729] EMC_FREQ 0% GR3D_FREQ 0% "
    "cpu@54.9C soc2@52.8C soc0@53.3C gpu@53.6C tj@54.9C soc1@53.1C "
    "VDD_IN 4673mW/4673mW VDD_CPU_GPU_CV 482mW/482mW VDD_SOC 1445mW/1445mW"
)
ORIN_NANO_LOAD = (
    "RAM 5120/7620MB (lfb 12x4MB) SWAP 12/3810MB (cached 3MB) "
    "CPU [45%@1510,38%@1510,52%@1510,41%@1510,off,off] EMC_FREQ 23%@3199 GR3D_FREQ 87%@[624] "
    "cpu@61.2C soc2@58.1C soc0@58.9C gpu@62.3C tj@62.3C soc1@58.4C "
    "VDD_IN 11245mW/8120mW VDD_CPU_GPU_CV 5012mW/3206mW VDD_SOC 2811mW/2210mW"
)
# Jetson Nano (JetPack 4): rails without the mW unit, no SWAP cache, IRAM field.
NANO_JP4 = (
    "RAM 2020/3964MB (lfb 164x4MB) SWAP 0/1982MB (cached 0MB) IRAM 0/252kB(lfb 252kB) "
    "CPU [9%@345,21%@345,25%@345,3%@345] EMC_FREQ 0%@1600 GR3D_FREQ 0%@76 APE 25 "
    "PLL@42.5C CPU@44C PMIC@50C GPU@41C AO@50C thermal@42.25C "
    "POM_5V_IN 3140/3208 POM_5V_GPU 153/158 POM_5V_CPU 536/590"
)

NVPMODEL_CONF = """\
< PARAM TYPE=FILE NAME=CPU_ONLINE >
CORE_0 /sys/devices/system/cpu/cpu0/online

< POWER_MODEL ID=0 NAME=15W >
CPU_ONLINE CORE_0 1
< POWER_MODEL ID=1 NAME=25W >
CPU_ONLINE CORE_0 1
< POWER_MODEL ID=2 NAME=MAXN_SUPER >
CPU_ONLINE CORE_0 1

< PM_CONFIG DEFAULT=0 >
"""


def make_zone(root: Path, index: int, kind: str, milli_c: str, trips: list[tuple[str, str]]) -> Path:
    """A thermal_zone<index> directory as sysfs lays it out."""
    zone = root / f"thermal_zone{index}"
    zone.mkdir(parents=True)
    (zone / "type").write_text(f"{kind}\n")
    (zone / "temp").write_text(f"{milli_c}\n")
    for number, (trip_temp, trip_type) in enumerate(trips):
        (zone / f"trip_point_{number}_temp").write_text(f"{trip_temp}\n")
        (zone / f"trip_point_{number}_type").write_text(f"{trip_type}\n")
    return zone


def make_jetson(tmp_path: Path) -> dict[str, Path]:
    """A fake Orin Nano: thermal zones (one powered off) with trip points, and nvpmodel files."""
    thermal = tmp_path / "sys" / "devices" / "virtual" / "thermal"
    make_zone(thermal, 0, "cpu-thermal", "54875", [("99000", "passive"), ("103000", "critical")])
    make_zone(thermal, 1, "gpu-thermal", "53593", [("99000", "passive"), ("103000", "critical")])
    make_zone(thermal, 2, "cv0-thermal", "-256000", [("99000", "passive")])
    make_zone(thermal, 10, "tj-thermal", "54875", [("95500", "hot")])
    (thermal / "cooling_device0").mkdir()
    status = tmp_path / "var" / "lib" / "nvpmodel" / "status"
    status.parent.mkdir(parents=True)
    status.write_text("pmode:0002 fmode:quiet")
    conf = tmp_path / "etc" / "nvpmodel.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(NVPMODEL_CONF)
    textfile = tmp_path / "textfile"
    textfile.mkdir()
    return {"thermal": thermal, "status": status, "conf": conf, "textfile": textfile, "root": tmp_path}
