"""Which control-node or lab modules the device's command line loads (it must load none).

Shared by app/tests/test_cli.py (the runtime venv, with the toolchain's source on the path) and
toolchain/tests/test_runtime_stays_light.py (the toolchain venv, where torch and ultralytics are
installed): in both an import of a forbidden module would succeed, so it would show here.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

FORBIDDEN = ("rvm_toolchain", "torch", "ultralytics", "sam2", "rvm_platform_sim")
_PROBE = """
import contextlib, io, sys
from rvm_edge.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    for argv in (["--help"], ["run", "--help"], ["models", "--help"]):
        try:
            main(argv)
        except SystemExit:
            pass
import rvm_edge.service.runner  # what `rvm-edge run` runs
assert "rvm-edge" in out.getvalue() and " run " in out.getvalue(), out.getvalue()[:200]
print(" ".join(sorted(m for m in sys.modules if m.split(".")[0] in FORBIDDEN)))
"""


def modules_loaded_by_the_cli(python: str, extra_path: Path | None = None) -> list[str]:
    """Run `rvm-edge --help`, `run --help`, `models --help` and import the service's runner in a
    fresh ``python``; return the forbidden modules it loaded."""
    env = dict(os.environ)
    if extra_path is not None:
        env["PYTHONPATH"] = str(extra_path)
    code = f"FORBIDDEN = {FORBIDDEN!r}\n{_PROBE}"
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.split()
