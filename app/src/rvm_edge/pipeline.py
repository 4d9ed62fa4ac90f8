"""The running pipeline: source -> bounded queue -> detect + decide -> (segment) -> sinks.

Threads, one per stage, joined by bounded queues:

- a live camera never waits for the detector: when the queue is full the *oldest* frame is
  dropped (and counted), so the decision is always about what is in front of the camera now;
  a file source blocks instead, so every frame is processed;
- the decision goes to the sinks the moment it is made; segmentation runs on its own thread
  and can never hold it up (on a live source its queue drops the oldest item too);
- a sink sees every frame's :class:`ItemResult` immediately and a :class:`Deposit` once the
  item is complete (with its mask when it was segmented): the outbox (issue 4) plugs in there.

Ownership of the pixels: the :class:`ItemResult` carries its :class:`Frame`, and the pipeline
releases the frame (its buffer goes back to the source's pool) only after every sink has had the
item's :class:`Deposit`. So a sink may read ``result.frame.image`` in ``on_result`` and in
``on_deposit`` without copying; what it keeps longer it copies. The :class:`Segmentation` carries
the mask's pixels (SAM2 makes a new array per item, so they are the sink's to keep).

``start`` warms the models up before ``ready`` is set. ``stop`` is prompt: it waits for the
inference already running (native code cannot be interrupted), never for the frames behind it.
Every item decided by then reaches the sinks, so the recorder commits it; an item still waiting
for SAM2 gets its deposit without a mask; frames no stage has started on are released and
counted as ``frames_discarded``. Draining the queues instead made a stop take up to (queue size
+ 2) detector runs plus a SAM2 run per queued item, far past the service's drain budget on a
slow device.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from rvm_edge.decision import DecisionConfig, decide
from rvm_edge.detector import Detector
from rvm_edge.messages import Deposit, Detections, Frame, ItemResult, Segmentation
from rvm_edge.segment import Sam2Segmenter, mask_geometry, write_mask_png
from rvm_edge.sources import FrameSource

log = logging.getLogger(__name__)
T = TypeVar("T")


class QueueClosedError(Exception):
    """The queue was closed and is empty: the producer is done."""


class BoundedQueue(Generic[T]):
    """A bounded FIFO with the two backpressure policies the pipeline needs.

    ``drop_oldest=True`` (live camera): a full queue discards its oldest item, handing it to
    ``on_drop``; otherwise ``put`` blocks until there is room.
    """

    def __init__(self, maxsize: int, drop_oldest: bool, on_drop: Callable[[T], None] | None = None) -> None:
        if maxsize < 1:
            raise ValueError("queue size must be at least 1")
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self.maxsize, self.drop_oldest, self._on_drop = maxsize, drop_oldest, on_drop
        self.dropped = 0
        self._closed = False

    def put(self, item: T) -> None:
        dropped: T | None = None
        with self._cond:
            if self._closed:
                raise QueueClosedError
            if len(self._items) >= self.maxsize:
                if self.drop_oldest:
                    dropped = self._items.popleft()
                    self.dropped += 1
                else:
                    self._cond.wait_for(lambda: len(self._items) < self.maxsize or self._closed)
                    if self._closed:
                        raise QueueClosedError
            self._items.append(item)
            self._cond.notify_all()
        if dropped is not None and self._on_drop is not None:
            self._on_drop(dropped)

    def get(self, timeout: float | None = None) -> T:
        """Next item; raises :class:`QueueClosedError` once closed and empty, ``TimeoutError`` on timeout."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout):
                raise TimeoutError
            if not self._items:
                raise QueueClosedError
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def drain(self) -> list[T]:
        """Take everything queued at once (a stop hands it back instead of processing it)."""
        with self._cond:
            items = list(self._items)
            self._items.clear()
            self._cond.notify_all()
            return items

    def get_nowait(self) -> T | None:
        with self._cond:
            if not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class Sink(Protocol):
    """Where results go. Called from pipeline threads: keep it quick, hand heavy work to a queue.

    ``result.frame`` is lent: its pixels are valid until this item's ``on_deposit`` returns."""

    def on_result(self, result: ItemResult) -> None: ...

    def on_deposit(self, deposit: Deposit) -> None: ...


class CollectingSink:
    """Keeps everything in memory (CLI ``detect``, bench, tests); thread-safe."""

    def __init__(self) -> None:
        self.results: list[ItemResult] = []
        self.deposits: list[Deposit] = []
        self._lock = threading.Lock()

    def on_result(self, result: ItemResult) -> None:
        with self._lock:
            self.results.append(result)

    def on_deposit(self, deposit: Deposit) -> None:
        with self._lock:
            self.deposits.append(deposit)


@dataclass(frozen=True)
class PipelineConfig:
    queue_size: int = 4
    batch_size: int = 1  # frames per detector call; only > 1 when the model takes batches
    segment: bool = True
    segment_queue_size: int = 2
    mask_dir: Path | None = None  # where mask PNGs go; None keeps geometry only
    warmup_runs: int = 2
    timing_window: int = 1000  # recent samples kept per stage for percentiles


@dataclass
class PipelineStats:
    """Counters and recent per-stage timings; read by metrics and the benchmark."""

    frames_read: int = 0
    frames_processed: int = 0
    frames_dropped: int = 0
    frames_discarded: int = 0  # read, but not yet started on when the pipeline stopped
    frames_unreadable: int = 0
    source_reconnects: int = 0
    accepted: int = 0
    rejected: int = 0
    segmented: int = 0
    segment_skipped: int = 0
    errors: int = 0
    timings: dict[str, deque[float]] = field(default_factory=dict)
    # CPU seconds each stage's own thread has used (time.thread_time): what a stage costs at the
    # camera's rate. Work a library hands to its own threads (ONNX Runtime's, OpenVINO's
    # intra-op pools) is not in here: it shows in the process total only.
    cpu_s: dict[str, float] = field(default_factory=dict)

    def record(self, timings: dict[str, float], window: int) -> None:
        for k, v in timings.items():
            self.timings.setdefault(k, deque(maxlen=window)).append(v)


@dataclass
class _SegmentJob:
    frame: Frame
    result: ItemResult


class Pipeline:
    """Owns the stage threads; construct, ``start()``, then ``wait()`` or ``stop()``."""

    def __init__(
        self,
        source: FrameSource,
        detector: Detector,
        decision: DecisionConfig,
        segmenter: Sam2Segmenter | None = None,
        sinks: Iterable[Sink] = (),
        config: PipelineConfig | None = None,
    ) -> None:
        self.source, self.detector, self.decision = source, detector, decision
        self.config = config or PipelineConfig()
        self.segmenter = segmenter if self.config.segment else None
        self.sinks = list(sinks)
        self.stats = PipelineStats()
        self.ready = threading.Event()
        self.done = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        live = source.live
        self._frames: BoundedQueue[Frame] = BoundedQueue(self.config.queue_size, live, self._dropped)
        self._segments: BoundedQueue[_SegmentJob] = BoundedQueue(
            self.config.segment_queue_size, live, self._segment_dropped
        )
        self._threads: list[threading.Thread] = []
        self._batch = max(1, min(self.config.batch_size, detector.max_batch))
        self._errors: list[BaseException] = []
        self.on_failure: Callable[[], None] | None = None  # called once a stage has died
        decision.check_classes(detector.classes)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Warm up (so the first real frame is not slow), then start the stage threads; sets ``ready``."""
        if self.config.warmup_runs:
            self.detector.warm_up(self.config.warmup_runs)
            if self.segmenter is not None:
                self.segmenter.warm_up()
        stages = [("source", self._read_loop), ("detect", self._detect_loop)]
        if self.segmenter is not None:
            stages.append(("segment", self._segment_loop))
        for name, target in stages:
            t = threading.Thread(target=self._guard(target), name=f"rvm-{name}", daemon=True)
            self._threads.append(t)
            t.start()
        self.ready.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until a finite source is fully processed; False on timeout."""
        return self.done.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop promptly (graceful shutdown): stop reading, let the detector finish the batch it
        is running, deliver every decided item, release the rest (see the module docstring).

        The queues are closed first, not after the joins: a reader blocked in ``put`` on a full
        queue (file sources block) and a detector blocked handing an item to a busy segmenter
        are woken by the close instead of waiting for a stage to make room.
        """
        self._stopping.set()  # before anything wakes a stage, so each one sees it
        self.source.stop()
        self._frames.close()
        self._segments.close()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self.ready.clear()

    def _cpu(self, stage: str) -> None:
        """Record the calling stage thread's CPU seconds so far (a cheap clock read per item)."""
        self.stats.cpu_s[stage] = time.thread_time()

    def _guard(self, target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # a dead stage must be visible, not a silent hang
                log.exception("pipeline stage %s failed", threading.current_thread().name)
                self._errors.append(exc)
                self._frames.close()
                self._segments.close()
                self.done.set()
                if self.on_failure is not None:
                    self.on_failure()

        return run

    @property
    def failure(self) -> BaseException | None:
        return self._errors[0] if self._errors else None

    # -- stages ----------------------------------------------------------------------------
    def _read_loop(self) -> None:
        try:
            for frame in self.source:
                self._cpu("source")
                with self._lock:
                    self.stats.frames_read += 1
                try:
                    self._frames.put(frame)
                except QueueClosedError:  # stopped (or a stage failed) while it waited for room
                    self._discard([frame])
                    break
        finally:
            with self._lock:
                self.stats.frames_unreadable = self.source.stats.unreadable
                self.stats.source_reconnects = self.source.stats.reconnects
            self._frames.close()

    def _discard(self, frames: list[Frame]) -> None:
        for f in frames:
            f.release()
        with self._lock:
            self.stats.frames_discarded += len(frames)

    def _dropped(self, frame: Frame) -> None:
        frame.release()
        with self._lock:
            self.stats.frames_dropped += 1

    def _segment_dropped(self, job: _SegmentJob) -> None:
        with self._lock:
            self.stats.segment_skipped += 1
        try:
            self._emit_deposit(Deposit(job.result, None))
        finally:
            job.frame.release()

    def _next_batch(self) -> list[Frame]:
        first = self._frames.get()
        batch = [first]
        while len(batch) < self._batch:
            nxt = self._frames.get_nowait()
            if nxt is None:
                break
            batch.append(nxt)
        return batch

    def _detect_loop(self) -> None:
        try:
            while True:
                try:
                    frames = self._next_batch()
                except QueueClosedError:
                    break
                if self._stopping.is_set():  # nothing decided yet: these and the queue can go
                    self._discard(frames + self._frames.drain())
                    break
                t_start = time.perf_counter()
                try:
                    dets = self.detector.detect_batch([f.image for f in frames], [f.index for f in frames])
                except Exception:
                    log.exception("detector failed on frames %s", [f.index for f in frames])
                    with self._lock:
                        self.stats.errors += 1
                    for f in frames:
                        f.release()
                    continue
                for frame, det in zip(frames, dets, strict=True):
                    self._decide(frame, det, t_start)
                self._cpu("detect")
        finally:
            self._segments.close()
            if self.segmenter is None:
                self.done.set()

    def _decide(self, frame: Frame, det: Detections, t_start: float) -> None:
        t0 = time.perf_counter()
        verdict = decide(det, self.decision)
        t1 = time.perf_counter()
        timings = {
            "queue_wait_ms": (t_start - frame.t_read) * 1e3,
            **det.timings_ms,
            "decision_ms": (t1 - t0) * 1e3,
            "e2e_ms": (t1 - frame.t_read) * 1e3,
        }
        result = ItemResult(frame.index, frame.source, frame.timestamp, det, verdict, timings, frame)
        with self._lock:
            self.stats.frames_processed += 1
            if verdict.accepted:
                self.stats.accepted += 1
            else:
                self.stats.rejected += 1
            self.stats.record(timings, self.config.timing_window)
        for sink in self.sinks:
            sink.on_result(result)
        if verdict.accepted and self.segmenter is not None:
            try:
                self._segments.put(_SegmentJob(frame, result))
                return
            except QueueClosedError:  # stopping: delivered now, without a mask
                with self._lock:
                    self.stats.segment_skipped += 1
        try:
            self._emit_deposit(Deposit(result, None))
        finally:
            frame.release()

    def _segment_loop(self) -> None:
        assert self.segmenter is not None
        try:
            while True:
                try:
                    job = self._segments.get()
                except QueueClosedError:
                    break
                if self._stopping.is_set():
                    # decided: it must be delivered, but not after one SAM2 run per queued item
                    self._segment_dropped(job)
                    continue
                try:
                    self._emit_deposit(Deposit(job.result, self._segment(job)))
                except Exception:
                    log.exception("segmentation failed for frame %d", job.frame.index)
                    with self._lock:
                        self.stats.errors += 1
                    self._emit_deposit(Deposit(job.result, None))
                finally:
                    job.frame.release()
                    self._cpu("segment")
        finally:
            self.done.set()

    def _segment(self, job: _SegmentJob) -> Segmentation:
        assert self.segmenter is not None and job.result.decision.item is not None
        box = job.result.decision.item.box
        t0 = time.perf_counter()
        masks, sam_timings = self.segmenter.segment(job.frame.image, [box])
        mask, score = masks[0]
        t1 = time.perf_counter()
        path = None
        if self.config.mask_dir is not None:
            path = str(write_mask_png(mask, self.config.mask_dir / f"{job.frame.index:08d}.png"))
        geometry = mask_geometry(mask, box)
        timings = {
            **sam_timings,
            "segment_ms": (t1 - t0) * 1e3,
            "mask_write_ms": (time.perf_counter() - t1) * 1e3,
        }
        with self._lock:
            self.stats.segmented += 1
            self.stats.record(timings, self.config.timing_window)
        return Segmentation(job.frame.index, path, geometry, score, timings, mask)

    def _emit_deposit(self, deposit: Deposit) -> None:
        for sink in self.sinks:
            sink.on_deposit(deposit)
