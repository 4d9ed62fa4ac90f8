"""The lab fleet, brought up and converged ONCE per session and shared by every fleet test file.

Test files run in name order; test_zz_final.py (second converge with changed=0, the deploy scenario, `lab up`
again, `lab down`) runs last. Running one file alone converges the lab first and leaves it up.

While developing one file against a lab that is already up and converged from the same tree,
`RVM_FLEET_REUSE=1` skips `lab up` and the first converge (the fixture then yields no recap). CI
never sets it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import pytest
from fleet_helpers import FIGURES, FIRST_DEPLOY_REPORT, LABCTL, Recap, playbook, sh


@pytest.fixture(scope="session")
def fleet() -> Iterator[Recap | None]:
    """`lab up`, then `site.yml`: the recap of that first converge (the figures note its times)."""
    if os.environ.get("RVM_FLEET_REUSE") == "1":
        yield None
        print("\nFLEET FIGURES " + json.dumps(FIGURES))
        return
    start = time.monotonic()
    proc = sh([*LABCTL, "up"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    FIGURES["lab_up_s"] = round(time.monotonic() - start, 1)
    FIRST_DEPLOY_REPORT.unlink(missing_ok=True)
    os.environ["RVM_DEPLOY_REPORT"] = str(FIRST_DEPLOY_REPORT)
    try:
        recap, _, elapsed = playbook()
    finally:
        del os.environ["RVM_DEPLOY_REPORT"]
    FIGURES["converge_s"] = round(elapsed, 1)
    yield recap
    print("\nFLEET FIGURES " + json.dumps(FIGURES))
