"""The pushed faults' figures (prodtest.push): the longest stretch of not-ready polls, the first failure."""

from __future__ import annotations

from prodtest.push import first_failure, longest_not_ready


def test_always_ready_is_zero() -> None:
    assert longest_not_ready([(0.0, True), (0.25, True), (0.5, True)]) == 0.0


def test_the_longest_of_two_gaps_counts_until_ready_again() -> None:
    samples = [(0.0, True), (1.0, False), (1.5, True), (2.0, False), (2.5, False), (4.0, True)]
    assert longest_not_ready(samples) == 2.0


def test_a_gap_still_open_at_the_end_counts_to_the_last_poll() -> None:
    assert longest_not_ready([(0.0, True), (3.0, False), (7.5, False)]) == 4.5


def test_first_failure_names_the_task_and_keeps_its_result() -> None:
    log = "\n".join(
        [
            "TASK [rvm_edge : Take the update lock of this device] ***",
            "ok: [rvm-lab-03]",
            "TASK [rvm_edge : Render the config (checked by that release's own rvm-edge) of release 0.1.0] ***",
            "fatal: [rvm-lab-03]: FAILED! => changed=false",
            "  msg: failed to validate",
            "  stderr: 'source.kind: Input should be ...'",
            "TASK [rvm_edge : Give the update lock of this device back] ***",
            "fatal: [rvm-lab-03]: FAILED! => later",
        ]
    )
    task, block = first_failure(log)
    assert "Render the config" in task
    assert "source.kind" in block and "later" not in block


def test_no_failure_gives_empty_strings() -> None:
    assert first_failure("TASK [x] ***\nok: [h]\n") == ("", "")
