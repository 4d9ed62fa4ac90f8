"""Frame sources: V4L2/USB camera, GStreamer pipeline (Jetson CSI), video file, image folder.

A live source (camera) never ends: a lost camera is reopened with exponential backoff and each
reconnect is counted, so a loose cable shows up in the metrics instead of as a crash loop.
File sources end (or loop). Unreadable images are skipped and counted.

Frames from capture devices are read into buffers from a small pool and handed back by the
last stage that uses them, so a running camera allocates nothing per frame.

``fps`` paces a source (the lab plays a video or a folder as if it were a camera): the source
waits for the frame's turn *before* it reads and stamps it, so the wait is never counted as
queue wait or latency. A source that cannot keep up is counted (``stats.late``), not hidden.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from rvm_edge.messages import Frame

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v"}


class SourceError(ValueError):
    """A source specification that cannot be opened at all (not a transient camera loss)."""


@dataclass
class SourceStats:
    frames: int = 0
    unreadable: int = 0
    reconnects: int = 0
    late: int = 0  # paced frames read more than one period after their turn: the source is too slow


class BufferPool:
    """Reusable frame buffers: ``acquire`` takes a free one (or makes one), ``release`` returns it.

    Bounded by how many frames are in flight (queue sizes), so the pool stops growing once the
    pipeline is full; after that a camera allocates nothing per frame.
    """

    def __init__(self, limit: int = 16) -> None:
        self._free: list[np.ndarray] = []
        self._lock = threading.Lock()
        self.limit = limit
        self.allocated = 0

    def acquire(self, shape: tuple[int, ...] | None = None) -> np.ndarray | None:
        with self._lock:
            for i, buf in enumerate(self._free):
                if shape is None or buf.shape == shape:
                    return self._free.pop(i)
        return None  # the caller lets OpenCV allocate, then releases that buffer into the pool

    def release(self, buf: np.ndarray) -> None:
        with self._lock:
            if len(self._free) < self.limit:
                self._free.append(buf)


class Capture(Protocol):
    """The part of ``cv2.VideoCapture`` a source uses (so a test can pass a double)."""

    def isOpened(self) -> bool: ...  # noqa: N802 (OpenCV's name)

    def read(self, image: np.ndarray | None = None) -> tuple[bool, np.ndarray | None]: ...

    def release(self) -> None: ...


class FrameSource:
    """Base: iterate frames until the source ends or :meth:`stop` is called."""

    live = False
    name = "source"

    def __init__(self, fps: float | None = None) -> None:
        if fps is not None and fps <= 0:
            raise SourceError(f"fps must be above 0, got {fps}")
        self.stats = SourceStats()
        self._stop = threading.Event()
        self._index = 0
        self.period = 1.0 / fps if fps else 0.0
        self._next_at: float | None = None

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _wait_turn(self) -> bool:
        """Block until the next frame is due at ``fps`` (at once when unpaced); False when stopped.

        A frame that comes more than a period late is counted in ``stats.late`` and the schedule
        restarts from now: a slow source must not be followed by a burst that catches up.
        """
        if not self.period:
            return not self._stop.is_set()
        now = time.monotonic()
        if self._next_at is None:
            self._next_at = now
        delay = self._next_at - now
        if delay > 0:
            if self._stop.wait(delay):
                return False
        elif -delay > self.period:
            self.stats.late += 1
            self._next_at = now
        self._next_at += self.period
        return not self._stop.is_set()

    def _frame(self, image: np.ndarray, pool: BufferPool | None = None, source: str | None = None) -> Frame:
        f = Frame(self._index, image, source or self.name, time.time(), time.perf_counter(), pool)
        self._index += 1
        self.stats.frames += 1
        return f

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class CaptureSource(FrameSource):
    """A capture device (V4L2 index/path or GStreamer pipeline) or a video file through OpenCV.

    ``live`` sources reconnect forever with backoff; files end at EOF (or loop).
    """

    def __init__(
        self,
        name: str,
        opener: Callable[[], Capture],
        live: bool,
        loop: bool = False,
        backoff_s: tuple[float, float] = (0.5, 30.0),
        pool: BufferPool | None = None,
        fps: float | None = None,
    ) -> None:
        super().__init__(fps)
        self.name, self.live, self.loop = name, live, loop
        self._opener = opener
        self._backoff = backoff_s
        self.pool = pool or BufferPool()
        self._cap: Capture | None = None

    def _open(self) -> Capture | None:
        cap = self._opener()
        if cap.isOpened():
            return cap
        cap.release()
        return None

    def _reconnect(self) -> bool:
        """Reopen with exponential backoff until it works or stop() is called; counts each reconnect."""
        delay = self._backoff[0]
        while not self._stop.is_set():
            if self._cap is not None:
                self._cap.release()
                self._cap = None
            cap = self._open()
            if cap is not None:
                self._cap = cap
                return True
            log.warning("source %s unavailable, retrying in %.1f s", self.name, delay)
            if self._stop.wait(delay):  # interruptible backoff, not a synchronisation sleep
                break
            delay = min(delay * 2, self._backoff[1])
        return False

    def __iter__(self) -> Iterator[Frame]:
        self._cap = self._open()
        if self._cap is None and not self.live:
            raise SourceError(
                f"{self.name}: cannot open this video file (missing, or a format OpenCV cannot read)"
            )
        first = True
        while self._wait_turn():
            if self._cap is None:
                if not self._reconnect():
                    break
                self.stats.reconnects += 1
            buf = self.pool.acquire()
            ok, image = self._cap.read(buf) if buf is not None else self._cap.read()
            if ok and image is not None:
                first = False
                yield self._frame(image, self.pool)
                continue
            if buf is not None:
                self.pool.release(buf)
            if self.live:
                log.warning("source %s lost (read failed); reconnecting", self.name)
                self._cap.release()
                self._cap = None
            elif self.loop and not first:
                self._cap.release()
                self._cap = self._open()
                first = True
            else:
                break
        self.close()

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class ImageFolderSource(FrameSource):
    """Every image in a folder, sorted by name, once or looping; unreadable files are skipped and counted."""

    def __init__(self, folder: Path, loop: bool = False, fps: float | None = None) -> None:
        super().__init__(fps)
        self.name = str(folder)
        self.loop = loop
        self.files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise SourceError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")

    def __iter__(self) -> Iterator[Frame]:
        while not self._stop.is_set():
            readable = 0
            for path in self.files:
                if not self._wait_turn():
                    return
                image = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if image is None:
                    self.stats.unreadable += 1
                    log.warning("skipping unreadable image %s", path)
                    continue
                readable += 1
                yield self._frame(image, source=str(path))
            if not self.loop or readable == 0:
                return


def _v4l2(device: int | str) -> Callable[[], Capture]:
    return lambda: cv2.VideoCapture(device, cv2.CAP_V4L2)


def opencv_has_gstreamer(build_info: str | None = None) -> bool:
    """PyPI's OpenCV wheels are built without GStreamer; JetPack's OpenCV (apt) has it."""
    info = build_info if build_info is not None else cv2.getBuildInformation()
    return any("GStreamer:" in line and "YES" in line for line in info.splitlines())


def _gstreamer(pipeline: str) -> Callable[[], Capture]:
    if not opencv_has_gstreamer():
        # without this check the source would retry forever on a pipeline this OpenCV cannot open
        raise SourceError(
            "this OpenCV is built without GStreamer, so it cannot open a GStreamer pipeline (the Jetson CSI "
            "camera); on a Jetson use JetPack's OpenCV (apt install python3-opencv, then remove "
            "opencv-python-headless from the venv), or give a V4L2 camera (0, /dev/video0)"
        )
    return lambda: cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)


def csi_pipeline(sensor_id: int = 0, width: int = 1280, height: int = 720, fps: int = 30) -> str:
    """The Jetson CSI camera through ``nvarguscamerasrc``, converted to BGR for OpenCV; ``drop=true``
    keeps only the newest frame in appsink so latency never builds up."""
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! video/x-raw(memory:NVMM),width={width},height={height},"
        f"framerate={fps}/1 ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
        "appsink drop=true max-buffers=1"
    )


def open_source(spec: str, loop: bool = False, fps: float | None = None) -> FrameSource:
    """A source from one string: ``0`` or ``/dev/video0`` (camera), ``csi`` or a GStreamer pipeline
    (contains ``!``), a video file, or an image folder; ``fps`` paces it (see the module docstring)."""
    if spec.isdigit():
        return CaptureSource(f"camera {spec}", _v4l2(int(spec)), live=True, fps=fps)
    if spec.startswith("/dev/video"):
        return CaptureSource(spec, _v4l2(spec), live=True, fps=fps)
    if spec == "csi" or spec.startswith("csi:"):
        sensor = int(spec.split(":", 1)[1]) if ":" in spec else 0
        return CaptureSource(f"csi camera {sensor}", _gstreamer(csi_pipeline(sensor)), live=True, fps=fps)
    if "!" in spec:
        return CaptureSource("gstreamer", _gstreamer(spec), live=True, fps=fps)
    path = Path(spec)
    if path.is_dir():
        return ImageFolderSource(path, loop, fps)
    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        return CaptureSource(str(path), lambda: cv2.VideoCapture(str(path)), live=False, loop=loop, fps=fps)
    if path.is_file():
        raise SourceError(
            f"{spec}: not a video file ({', '.join(sorted(VIDEO_SUFFIXES))}); for images give their folder"
        )
    raise SourceError(
        f"{spec}: no such camera, file or folder (expected a camera index like 0, /dev/videoN, 'csi', "
        "a GStreamer pipeline, a video file or an image folder)"
    )
