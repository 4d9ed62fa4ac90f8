"""A build interrupted between any two filesystem steps never leaves a usable-looking wrong engine.

The house pattern (tests/library/test_rvm_release_crash.py): the module runs in a forked child
whose k-th filesystem-changing call (replace, rename, unlink, mkdir, fsync) either kills it with
os._exit, like SIGKILL or a power cut, or fails with EIO, which the module must report naming it.
After every k: the engine of the other key (the previous engine) is untouched and still verifies;
the engine being built either does not verify or is exactly the complete build; a re-run finishes.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from model_engine_helpers import DETECTOR, JETSON, ModuleRun, model_args, tree

CRASHED, COMPLETED, MODULE_FAILED, WRONG_MESSAGE, INJECTED_FAILED, INJECTED_SWALLOWED = 77, 0, 2, 3, 78, 79
CRASH_POINTS = ("replace", "rename", "unlink", "mkdir", "fsync")
INJECTED = "injected I/O error"
OTHER_DEVICE = JETSON.replace("R36.4.3", "R36.3.0")


def run_interrupted_at(args: dict[str, Any], k: int, mode: str) -> int:
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        code = 1
        try:
            calls = itertools.count(1)
            injected: list[int] = []
            for name in CRASH_POINTS:
                original = getattr(os, name)

                def interrupted(*a: Any, _original: Callable[..., Any] = original, **kw: Any) -> Any:
                    if next(calls) == k:
                        if mode == "kill":
                            os._exit(CRASHED)
                        injected.append(k)
                        raise OSError(errno.EIO, INJECTED)
                    return _original(*a, **kw)

                setattr(os, name, interrupted)
            result = ModuleRun()(args)
            if not injected:
                code = MODULE_FAILED if result.get("failed") else COMPLETED
            elif result.get("failed"):
                code = INJECTED_FAILED if INJECTED in result["msg"] else WRONG_MESSAGE
            else:
                code = INJECTED_SWALLOWED
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def normal(files: dict[str, bytes]) -> dict[str, Any]:
    """State to compare: key.json without its build time; the timing cache is a cache, not state."""
    out: dict[str, Any] = {}
    for rel, data in files.items():
        if rel.startswith("trt-timing-"):
            continue
        if rel.endswith("/key.json"):
            doc = json.loads(data)
            doc.pop("build_s")
            out[rel] = doc
        else:
            out[rel] = data
    return out


def _verifies(run: ModuleRun, args: dict[str, Any]) -> bool:
    return run({**args, "state": "verified"})["rc"] == 0


SCENARIOS = {
    # the device moved to another L4T release: a new key, the previous engine must survive
    "new key beside the previous engine": ("tensorrt", False),
    "new key, real ONNX Runtime build": ("onnxruntime", False),
    # the engine of this key was found corrupt and is rebuilt in place
    "rebuild of a corrupt engine": ("tensorrt", True),
}


# the ONNX Runtime commit path is the same code as TensorRT's: one mode (kill) keeps the run short
CASES = [
    (name, mode)
    for name in SCENARIOS
    for mode in ("kill", "eio")
    if not (name.endswith("Runtime build") and mode == "eio")
]


@pytest.mark.parametrize(("name", "mode"), CASES)
def test_interruption_at_every_step_leaves_the_previous_engine(name: str, mode: str, tmp_path: Path) -> None:
    backend, corrupt_first = SCENARIOS[name]
    run = ModuleRun()
    template = tmp_path / "template"
    previous = model_args(DETECTOR, template, backend=backend, device_identity=OTHER_DEVICE)
    op = model_args(DETECTOR, template, backend=backend, device_identity=JETSON)
    assert run(previous)["rc"] == 0
    if corrupt_first:
        built = run(op)
        Path(built["engine"]).write_bytes(b"LABTRT01 corrupt")
    prev_engine = Path(run(previous)["engine"])
    prev_bytes = prev_engine.read_bytes()

    reference = tmp_path / "reference"
    shutil.copytree(template, reference)
    done = run({**op, "engines_dir": str(reference)})
    assert done["changed"] is True and done["rc"] == 0
    expected = normal(tree(reference))

    def at(root: Path) -> dict[str, Any]:
        return {**op, "engines_dir": str(root)}

    for k in itertools.count(1):
        root = tmp_path / f"{mode}-{k}"
        shutil.copytree(template, root)
        code = run_interrupted_at(at(root), k, mode)
        if code == COMPLETED:
            break
        assert code in ({"kill": CRASHED, "eio": INJECTED_FAILED}[mode], INJECTED_SWALLOWED), (
            f"step {k}: exit {code}"
        )
        moved_prev = root / prev_engine.relative_to(template)
        assert moved_prev.read_bytes() == prev_bytes, f"step {k}: the previous engine changed"
        assert _verifies(run, {**previous, "engines_dir": str(root)}), (
            f"step {k}: the previous engine no longer verifies"
        )
        if _verifies(run, at(root)):  # only a complete, matching engine may verify
            engine = Path(run({**at(root), "state": "verified"})["engine"])
            rel = str(engine.relative_to(root))
            if backend == "tensorrt":  # the stand-in's builds are deterministic: compare bytes
                assert engine.read_bytes() == expected[rel], f"step {k}: a wrong engine verifies"
        rerun = run(at(root))
        assert rerun["rc"] == 0, f"step {k}: re-run failed: {rerun['msg']}"
        assert _verifies(run, at(root))
        left = normal(tree(root))
        assert left.keys() == expected.keys(), f"step {k}: leftovers {set(left) ^ set(expected)}"
        if backend == "tensorrt":
            assert left == expected
        shutil.rmtree(root)
    assert k > 4, "the build must have been interrupted at several steps"
