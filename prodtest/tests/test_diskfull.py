"""The disk-full fault's arithmetic: how much ballast, and what the low phase leaves free."""

from __future__ import annotations

from prodtest.diskfull import FLOOR_MB, LOW_MB, MB, ballast_size, phase_low_leave_mb


def test_the_ballast_leaves_what_was_asked_in_whole_blocks() -> None:
    size = ballast_size(1500.0, 50.0)
    assert size % 4096 == 0
    assert 0 <= 1450.0 * MB - size < 4096  # 50 MB stay free, less than a block more
    assert ballast_size(40.0, 50.0) == 0  # already fuller than asked: nothing to add


def test_the_low_phase_stays_between_the_floor_and_the_low_mark() -> None:
    for sent_mb in (3.0, 20.0, 100.0, 5000.0):
        leave = phase_low_leave_mb(sent_mb)
        assert leave is not None
        assert FLOOR_MB < leave < LOW_MB  # the device must make room, but is never made not ready
        assert LOW_MB - leave <= 0.8 * sent_mb + 1e-9  # short by less than what it can clear


def test_a_device_with_almost_no_sent_images_cannot_show_the_low_phase() -> None:
    assert phase_low_leave_mb(1.0) is None
