"""The device's Python (3.10, JetPack 6) for tests that run a module the way a device does.

Found on PATH (``python3.10``) or through pyenv when it is installed, never by a home-directory
path. Without one the test runs on this Python and says so: in pytest's warnings summary and in
$RVM_TEST_NOTES, which the top-level ``make test`` prints at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path


def _python310() -> str | None:
    """JetPack 6's Python: ``python3.10`` on PATH, else pyenv's 3.10 when pyenv is installed."""
    for probe in (["python3.10"], ["pyenv", "exec", "python3.10"]):
        try:
            out = subprocess.run(
                [*probe, "-c", "import sys; print(sys.executable)"],
                capture_output=True,
                text=True,
                check=False,
            )
        except FileNotFoundError:
            continue
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    try:
        prefix = subprocess.run(["pyenv", "prefix", "3.10"], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return None
    found = Path(prefix.stdout.strip()) / "bin" / "python3.10"
    return str(found) if prefix.returncode == 0 and found.exists() else None


def device_python(what: str) -> str:
    """Python 3.10 when this machine has one; otherwise this Python, said in the warnings summary
    and in $RVM_TEST_NOTES (the summary of the top-level `make test`)."""
    found = _python310()
    if found:
        return found
    note = (
        f"NOTE {what} ran on Python {sys.version.split()[0]}, NOT on the "
        "device's 3.10: no python3.10 on PATH and no pyenv 3.10 here"
    )
    warnings.warn(note, stacklevel=2)
    notes = os.environ.get("RVM_TEST_NOTES")
    if notes:
        Path(notes).parent.mkdir(parents=True, exist_ok=True)
        with open(notes, "a", encoding="utf-8") as f:
            f.write(note + "\n")
    return sys.executable
