"""Shared by the tests of every device agent under agents/: each agent's src/ goes on sys.path, so its unit
tests import the package from the source tree. Agents are never installed on the control node; devices get
them as zipapps built by agents/zipapp.py, which their end-to-end tests build and run."""

from __future__ import annotations

import sys
from pathlib import Path

for sources in sorted(Path(__file__).resolve().parent.glob("*/src")):
    if str(sources) not in sys.path:
        sys.path.insert(0, str(sources))
