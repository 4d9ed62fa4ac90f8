"""Make ultralytics and onnxruntime usable with no network.

The control node that builds models may have no route to the internet (this project's lab has
none). ultralytics then hangs on update checks and tries to download two fonts the first time it
draws a label; onnxruntime looks up telemetry settings. :func:`prepare` switches all of that off
and puts the fonts ultralytics asks for into its config dir from a font that is already on disk
(matplotlib, an ultralytics dependency, ships DejaVu Sans). It must run before ``import ultralytics``
because ultralytics reads its settings at import time.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

#: Font files ultralytics' ``check_font`` looks for in its config dir before downloading them.
ULTRALYTICS_FONTS = ("Arial.ttf", "Arial.Unicode.ttf")


class OfflineSetupError(RuntimeError):
    """The offline preparation could not find a local font to stand in for Arial."""


def _local_font() -> Path:
    """A TrueType font that is certainly on disk: matplotlib's bundled DejaVu Sans, else Debian's."""
    candidates: list[Path] = []
    try:
        import matplotlib

        candidates.append(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf")
    except ImportError:
        pass
    candidates.append(Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"))
    for path in candidates:
        if path.is_file():
            return path
    raise OfflineSetupError(
        "no local TrueType font to stand in for Arial (looked at "
        + ", ".join(str(c) for c in candidates)
        + "); install matplotlib into the export venv (`make -C toolchain venv`) "
        "or `apt-get install fonts-dejavu-core`"
    )


def ultralytics_config_dir() -> Path:
    """The directory ultralytics uses for settings and fonts (same rule as ultralytics' own)."""
    env_dir = os.environ.get("YOLO_CONFIG_DIR")
    base = (
        Path(env_dir).expanduser()
        if env_dir
        else Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    )
    return base / "Ultralytics"


def prepare() -> Path:
    """Switch off network use and install stand-in fonts; returns the ultralytics config dir."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    config_dir = ultralytics_config_dir()
    config_dir.mkdir(parents=True, exist_ok=True)
    missing = [name for name in ULTRALYTICS_FONTS if not (config_dir / name).is_file()]
    if missing:
        font = _local_font()
        for name in missing:
            shutil.copyfile(font, config_dir / name)
    return config_dir
