"""Frame sources: folders, video files, and a live camera that comes and goes."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import draw_frame
from rvm_edge.messages import FrameReleasedError
from rvm_edge.sources import CaptureSource, ImageFolderSource, SourceError, open_source, opencv_has_gstreamer


def write_video(path: Path, frames: int) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(draw_frame(seed=i))
    writer.release()
    return path


def test_image_folder_skips_and_counts_unreadable_files(frames_dir: Path) -> None:
    (frames_dir / "frame_002.png").write_bytes(b"truncated")
    src = open_source(str(frames_dir))
    assert isinstance(src, ImageFolderSource) and not src.live
    frames = list(src)
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert [Path(f.source).name for f in frames] == [
        "frame_000.png",
        "frame_001.png",
        "frame_003.png",
        "frame_004.png",
    ]
    assert src.stats.unreadable == 1 and src.stats.frames == 4


def test_image_folder_loops_until_stopped(frames_dir: Path) -> None:
    src = ImageFolderSource(frames_dir, loop=True)
    seen = []
    for f in src:
        seen.append(Path(f.source).name)
        if len(seen) == 12:
            src.stop()
    assert seen[5:7] == ["frame_000.png", "frame_001.png"] and len(seen) == 12


def test_video_file_plays_once(tmp_path: Path) -> None:
    src = open_source(str(write_video(tmp_path / "clip.avi", 7)))
    frames = list(src)
    assert len(frames) == 7 and frames[0].image.shape == (120, 160, 3)
    assert not src.live


def test_bad_specs_say_what_is_accepted(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such camera, file or folder"):
        open_source(str(tmp_path / "nope"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SourceError, match="not a video file"):
        open_source(str(tmp_path / "notes.txt"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images"):
        open_source(str(tmp_path / "empty"))


def test_camera_specs_are_live() -> None:
    assert open_source("0").live and open_source("/dev/video3").live


def test_gstreamer_sources_need_an_opencv_with_gstreamer() -> None:
    assert opencv_has_gstreamer("  Video I/O:\n    GStreamer:                   YES (1.20.3)\n")
    assert not opencv_has_gstreamer("  Video I/O:\n    GStreamer:                   NO\n")
    if opencv_has_gstreamer():
        assert open_source("csi").live and open_source("videotestsrc ! appsink").live
    else:  # PyPI's headless wheel: a clear refusal instead of reconnecting forever
        with pytest.raises(SourceError, match=r"built without GStreamer.*JetPack.s OpenCV"):
            open_source("csi")


def test_lost_camera_reconnects_with_backoff_and_counts(tmp_path: Path) -> None:
    """A 'camera' whose stream ends after 3 frames (unplugged) and is back on reopen: it keeps going."""
    video = write_video(tmp_path / "cam.avi", 3)
    opened = []

    def opener() -> cv2.VideoCapture:
        opened.append(1)
        return cv2.VideoCapture(str(video))

    src = CaptureSource("camera test", opener, live=True, backoff_s=(0.001, 0.01))
    frames, buffers = [], set()
    for f in src:
        frames.append(f)
        buffers.add(id(f.image))
        f.release()
        if len(frames) == 10:
            src.stop()
    assert len(frames) == 10
    assert src.stats.reconnects == 3 and len(opened) == 4
    # frames reuse pooled buffers once released: no allocation per frame
    assert len(buffers) <= 3
    # a released frame's pixels are gone from it: reading them is an error, not another frame's image
    with pytest.raises(FrameReleasedError, match="frame 0: its pixels were released"):
        _ = frames[0].image
    frames[0].release()  # a second release does nothing (the buffer is not pooled twice)
    assert len(src.pool._free) <= 3


def test_camera_that_never_appears_is_retried_not_crashed(tmp_path: Path) -> None:
    attempts = threading.Semaphore(0)

    def opener() -> cv2.VideoCapture:
        attempts.release()
        return cv2.VideoCapture(str(tmp_path / "no-such-device.avi"))

    src = CaptureSource("camera 9", opener, live=True, backoff_s=(0.001, 0.002))
    result: list[object] = []
    t = threading.Thread(target=lambda: result.extend(src))
    t.start()
    for _ in range(5):  # the source keeps trying
        assert attempts.acquire(timeout=5)
    src.stop()
    t.join(5)
    assert not t.is_alive() and result == []


def test_frames_are_bgr_uint8(frames_dir: Path) -> None:
    f = next(iter(open_source(str(frames_dir))))
    assert f.image.dtype == np.uint8 and f.image.shape == (120, 160, 3)


def test_a_paced_source_waits_before_it_stamps_the_frame(frames_dir: Path) -> None:
    """``fps`` plays a folder like a camera: frames are read (and stamped) one period apart, so
    the pacing is never counted as the pipeline's queue wait."""
    fps = 20.0
    src = open_source(str(frames_dir), fps=fps)
    stamps = [f.t_read for f in src]
    assert len(stamps) == 5
    # on the rate's grid (a frame read late does not push the ones after it further back)
    since_first = [t - stamps[0] for t in stamps]
    assert all(s >= (k - 0.5) / fps for k, s in enumerate(since_first)), since_first
    assert src.stats.late == 0


class SlowCapture:
    """A camera slower than the asked rate: each read takes ``delay_s`` (the hardware's time)."""

    def __init__(self, frames: int, delay_s: float) -> None:
        self.left, self.delay_s = frames, delay_s
        self.slow = threading.Event()

    def isOpened(self) -> bool:
        return True

    def read(self, image: np.ndarray | None = None) -> tuple[bool, np.ndarray | None]:
        if self.left == 0:
            return False, None
        self.left -= 1
        self.slow.wait(self.delay_s)  # the device takes this long; nothing sets the event
        return True, np.zeros((8, 8, 3), np.uint8)

    def release(self) -> None:
        pass


def test_a_source_slower_than_its_rate_is_counted_late_not_averaged_away() -> None:
    cap = SlowCapture(6, delay_s=0.05)
    src = CaptureSource("slow", lambda: cap, live=False, fps=100.0)
    frames = list(src)
    assert len(frames) == 6
    assert src.stats.late >= 4  # every frame after the first came 40 ms past its 10 ms turn


def test_a_rate_of_zero_or_below_is_refused(frames_dir: Path) -> None:
    for fps in (0.0, -2.0):
        with pytest.raises(SourceError, match="fps must be above 0"):
            open_source(str(frames_dir), fps=fps)
