"""The device's command line stays light even where torch and ultralytics are installed."""

from __future__ import annotations

import sys

from conftest import APP_TESTS


def test_rvm_edge_help_and_run_load_no_toolchain_torch_or_ultralytics() -> None:
    sys.path.insert(0, str(APP_TESTS))
    try:
        from import_probe import modules_loaded_by_the_cli
    finally:
        sys.path.remove(str(APP_TESTS))
    assert modules_loaded_by_the_cli(sys.executable) == []
