"""The running pipeline: backpressure, ordering, drain, and segmentation never holding up a decision."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import draw_frame
from onnx_models import tiny_sam2
from rvm_edge.decision import DecisionConfig
from rvm_edge.detector import Detector, load_detector
from rvm_edge.messages import Deposit, ItemResult
from rvm_edge.pipeline import BoundedQueue, CollectingSink, Pipeline, PipelineConfig, QueueClosedError
from rvm_edge.segment import Sam2Segmenter
from rvm_edge.service.deposit import ModelInfo
from rvm_edge.service.recorder import Recorder
from rvm_edge.service.store import DB_NAME, Store
from rvm_edge.sources import BufferPool, FrameSource, ImageFolderSource, open_source

DEADLINE = 20.0  # seconds: generous upper bound for a waiting test, never a sleep


def test_drop_oldest_queue_keeps_the_newest() -> None:
    dropped: list[int] = []
    q: BoundedQueue[int] = BoundedQueue(2, drop_oldest=True, on_drop=dropped.append)
    for i in range(5):
        q.put(i)
    assert [q.get(), q.get()] == [3, 4] and dropped == [0, 1, 2] and q.dropped == 3


def test_blocking_queue_waits_for_room_and_close_ends_consumers() -> None:
    q: BoundedQueue[int] = BoundedQueue(1, drop_oldest=False)
    q.put(1)
    put_done = threading.Event()

    def producer() -> None:
        q.put(2)
        put_done.set()

    t = threading.Thread(target=producer)
    t.start()
    assert not put_done.wait(0.05)  # full: the producer is held back
    assert q.get() == 1
    assert put_done.wait(DEADLINE) and q.get() == 2
    q.close()
    with pytest.raises(QueueClosedError):
        q.get()
    t.join()


def test_every_file_frame_is_decided_in_order(one_bottle_model: Path, frames_dir: Path) -> None:
    sink = CollectingSink()
    det = load_detector(one_bottle_model)
    pipe = Pipeline(
        open_source(str(frames_dir)), det, DecisionConfig(), None, [sink], PipelineConfig(queue_size=1)
    )
    pipe.start()
    assert pipe.ready.is_set()
    assert pipe.wait(DEADLINE)
    pipe.stop()
    assert [r.frame_index for r in sink.results] == [0, 1, 2, 3, 4]
    assert pipe.stats.frames_processed == 5 and pipe.stats.frames_dropped == 0
    # the fixed model sees a 20x30 px bottle on a 64 px input: 50x75 of a 160x120 frame, accepted
    assert all(r.decision.accepted and r.decision.material == "plastic" for r in sink.results)
    assert {"queue_wait_ms", "preprocess_ms", "model_ms", "postprocess_ms", "decision_ms", "e2e_ms"} <= set(
        sink.results[0].timings_ms
    )
    assert [d.result.frame_index for d in sink.deposits] == [0, 1, 2, 3, 4]
    assert all(d.segmentation is None for d in sink.deposits)


def test_unreadable_frames_are_skipped_and_counted(one_bottle_model: Path, frames_dir: Path) -> None:
    (frames_dir / "frame_001.png").write_bytes(b"\x89PNG broken")
    pipe = Pipeline(open_source(str(frames_dir)), load_detector(one_bottle_model), DecisionConfig(), None, [])
    pipe.start()
    assert pipe.wait(DEADLINE)
    pipe.stop()
    assert pipe.stats.frames_processed == 4 and pipe.stats.frames_unreadable == 1


class GatedDetector(Detector):
    """The real detector, held at a gate so a test controls when inference finishes."""

    def __init__(self, inner: Detector) -> None:
        super().__init__(inner.backend, inner.classes, inner.config)
        self.gate = threading.Event()
        self.entered = threading.Semaphore(0)

    def detect_batch(self, images, frame_indices=None):
        self.entered.release()
        assert self.gate.wait(DEADLINE)
        return super().detect_batch(images, frame_indices)


class EndlessCamera(FrameSource):
    """A live source that produces frames as fast as it is read, until stopped."""

    live = True
    name = "camera test"

    def __init__(self, produced: threading.Semaphore) -> None:
        super().__init__()
        self.produced = produced
        self.image = draw_frame()

    def __iter__(self):
        while not self.stopped:
            self.produced.release()
            yield self._frame(self.image.copy())


def test_live_camera_drops_the_oldest_frames_when_the_detector_is_busy(one_bottle_model: Path) -> None:
    det = GatedDetector(load_detector(one_bottle_model))
    produced = threading.Semaphore(0)
    sink = SignalSink(results_wanted=2)
    cfg = PipelineConfig(queue_size=2, warmup_runs=0)
    camera = EndlessCamera(produced)
    pipe = Pipeline(camera, det, DecisionConfig(), None, [sink], cfg)
    pipe.start()
    assert det.entered.acquire(timeout=DEADLINE)  # the detector holds one frame
    busy_from = camera.stats.frames
    while camera.stats.frames < busy_from + 50:  # the camera keeps delivering meanwhile
        assert produced.acquire(timeout=DEADLINE)
    det.gate.set()
    assert sink.all_results.wait(DEADLINE)  # a frame from after the busy spell was decided
    pipe.stop()
    assert pipe.stats.frames_dropped >= 40
    indices = [r.frame_index for r in sink.results]
    # after the busy spell it works on recent frames, not on the backlog
    assert indices[1] - indices[0] >= 40
    assert pipe.stats.frames_processed == len(sink.results)


class GatedSegmenter(Sam2Segmenter):
    """The SAM2 flow on tiny ONNX models, held at a gate: segmentation as slow as the test wants."""

    def __init__(self, enc: Path, dec: Path) -> None:
        super().__init__(enc, dec)
        self.gate = threading.Event()

    def segment(self, image, boxes):
        assert self.gate.wait(DEADLINE)
        return super().segment(image, boxes)


class SignalSink(CollectingSink):
    def __init__(self, results_wanted: int) -> None:
        super().__init__()
        self.wanted = results_wanted
        self.all_results = threading.Event()

    def on_result(self, result: ItemResult) -> None:
        super().on_result(result)
        if len(self.results) >= self.wanted:
            self.all_results.set()

    def on_deposit(self, deposit: Deposit) -> None:
        super().on_deposit(deposit)


def test_segmentation_never_delays_the_decision(
    one_bottle_model: Path, frames_dir: Path, tmp_path: Path
) -> None:
    seg = GatedSegmenter(*tiny_sam2(tmp_path / "sam2"))
    sink = SignalSink(results_wanted=5)
    cfg = PipelineConfig(segment_queue_size=8, mask_dir=tmp_path / "masks")
    pipe = Pipeline(
        open_source(str(frames_dir)), load_detector(one_bottle_model), DecisionConfig(), seg, [sink], cfg
    )
    pipe.start()
    # every decision arrives while SAM2 is still stuck on the first item
    assert sink.all_results.wait(DEADLINE)
    assert sink.deposits == []
    seg.gate.set()
    assert pipe.wait(DEADLINE)
    pipe.stop()
    assert [d.result.frame_index for d in sink.deposits] == [0, 1, 2, 3, 4]
    first = sink.deposits[0].segmentation
    assert first is not None and first.mask_path is not None and Path(first.mask_path).is_file()
    assert 0 < first.geometry.fill_ratio <= 1 and first.geometry.area_px > 0
    assert pipe.stats.segmented == 5


def test_batching_processes_the_same_frames(one_bottle_model: Path, frames_dir: Path) -> None:
    sink = CollectingSink()
    det = load_detector(one_bottle_model, batch=4)
    pipe = Pipeline(
        open_source(str(frames_dir)), det, DecisionConfig(), None, [sink], PipelineConfig(batch_size=4)
    )
    pipe.start()
    assert pipe.wait(DEADLINE)
    pipe.stop()
    assert sorted(r.frame_index for r in sink.results) == [0, 1, 2, 3, 4]
    boxes = {r.detections.items[0].box for r in sink.results}
    assert len(boxes) == 1  # same frame size, same model output: same box whatever the batch


class SteppedDetector(Detector):
    """The real detector, allowed one inference per permit the test hands out: a slow device
    whose every inference the test decides when to finish."""

    def __init__(self, inner: Detector) -> None:
        super().__init__(inner.backend, inner.classes, inner.config)
        self.permits = threading.Semaphore(0)
        self.entered = threading.Semaphore(0)

    def detect_batch(self, images, frame_indices=None):
        self.entered.release()
        assert self.permits.acquire(timeout=DEADLINE)
        return super().detect_batch(images, frame_indices)


class LoopedFolder(ImageFolderSource):
    """The lab devices' source (a looping image folder) that counts the frames it hands out and
    says when it is stopped."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder, loop=True)
        self.produced = threading.Semaphore(0)
        self.stop_called = threading.Event()

    def __iter__(self):
        for frame in super().__iter__():
            self.produced.release()
            yield frame

    def stop(self) -> None:
        super().stop()
        self.stop_called.set()


STOP_TIMEOUT = 5.0  # the stop's own limit here; the service gives it PIPELINE_DRAIN_S (8 s)
PROMPT_S = 1.0  # what a stop may take once the inference it waited for is done


def stop_in_thread(pipe: Pipeline) -> tuple[threading.Thread, list[float]]:
    returned_at: list[float] = []

    def run() -> None:
        pipe.stop(timeout=STOP_TIMEOUT)
        returned_at.append(time.monotonic())

    t = threading.Thread(target=run)
    t.start()
    return t, returned_at


def test_stop_waits_for_the_running_inference_only_and_commits_every_decided_item(
    one_bottle_model: Path, frames_dir: Path, tmp_path: Path
) -> None:
    """The service's shape (a looping folder, the recorder as the sink, file-source
    backpressure) on a detector slower than the source: the queue is full and the reader is held
    in ``put`` when the stop comes, mid-inference. The stop used to run every queued frame
    through the detector (queue size + 2 inferences: 8 s past the drain budget on a slow device);
    now it waits for the running one, whose item the recorder commits, and releases the rest."""
    det = SteppedDetector(load_detector(one_bottle_model))
    folder = LoopedFolder(frames_dir)
    store = Store(tmp_path / "data")
    recorder = Recorder(store, "hw-1", ModelInfo("fixed", "1", "ab" * 32, "onnxruntime"), 100_000)
    sink = CollectingSink()
    cfg = PipelineConfig(queue_size=4, segment=False, warmup_runs=0)
    pipe = Pipeline(folder, det, DecisionConfig(), None, [recorder, sink], cfg)
    pipe.start()
    stopper = None
    try:
        assert det.entered.acquire(timeout=DEADLINE)  # frame 0 is being inferred
        for _ in range(1 + 4 + 1):  # then 4 fill the queue and the reader holds a 6th for it
            assert folder.produced.acquire(timeout=DEADLINE)
        stopper, returned_at = stop_in_thread(pipe)
        assert folder.stop_called.wait(DEADLINE)  # the stop has begun: the pipeline is stopping
        released_at = time.monotonic()
        det.permits.release()  # the running inference finishes; no other is allowed
        stopper.join(DEADLINE)
        assert returned_at and not any(t.is_alive() for t in pipe._threads)
        assert returned_at[0] - released_at < PROMPT_S
    finally:
        for _ in range(16):  # never leave the old behaviour's detector waiting for a permit
            det.permits.release()
        if stopper is not None:
            stopper.join(DEADLINE)
        store.close()
    # the item decided before the stop was committed; nothing is left between decision and commit
    assert [r.frame_index for r in sink.results] == [d.result.frame_index for d in sink.deposits] == [0]
    assert recorder.recorded == pipe.stats.frames_processed == 1 and recorder.in_flight == 0
    with sqlite3.connect(tmp_path / "data" / DB_NAME) as db:
        assert [row[0] for row in db.execute("SELECT frame_index FROM deposits ORDER BY seq")] == [0]
    # the frames no stage had started on are accounted for, not silently lost
    assert pipe.stats.frames_read == 6 and pipe.stats.frames_discarded == 5


class SteppedSegmenter(Sam2Segmenter):
    """The SAM2 flow on tiny ONNX models, one run per permit the test hands out."""

    def __init__(self, enc: Path, dec: Path) -> None:
        super().__init__(enc, dec)
        self.permits = threading.Semaphore(0)
        self.entered = threading.Semaphore(0)

    def segment(self, image, boxes):
        self.entered.release()
        assert self.permits.acquire(timeout=DEADLINE)
        return super().segment(image, boxes)


def test_stop_delivers_items_waiting_for_sam2_without_their_mask(
    one_bottle_model: Path, frames_dir: Path, tmp_path: Path
) -> None:
    """SAM2 is the slow stage: at the stop one item is being segmented, one waits in its queue and
    the detector is held handing it a third. The stop waits for the running SAM2 call only; every
    decided item still reaches the sinks, the waiting ones without a mask."""
    seg = SteppedSegmenter(*tiny_sam2(tmp_path / "sam2"))
    sink = SignalSink(results_wanted=3)
    folder = LoopedFolder(frames_dir)
    cfg = PipelineConfig(queue_size=1, segment_queue_size=1, warmup_runs=0)
    pipe = Pipeline(folder, load_detector(one_bottle_model), DecisionConfig(), seg, [sink], cfg)
    pipe.start()
    stopper = None
    try:
        assert seg.entered.acquire(timeout=DEADLINE)  # frame 0 is being segmented
        assert sink.all_results.wait(DEADLINE)  # 1 waits for SAM2, the detector holds 2 for it
        stopper, returned_at = stop_in_thread(pipe)
        assert folder.stop_called.wait(DEADLINE)
        released_at = time.monotonic()
        seg.permits.release()  # the running SAM2 call finishes; no other is allowed
        stopper.join(DEADLINE)
        assert returned_at and not any(t.is_alive() for t in pipe._threads)
        assert returned_at[0] - released_at < PROMPT_S
    finally:
        for _ in range(16):
            seg.permits.release()
        if stopper is not None:
            stopper.join(DEADLINE)
    decided = [r.frame_index for r in sink.results]
    assert decided[:3] == [0, 1, 2]
    assert sorted(d.result.frame_index for d in sink.deposits) == decided
    masks = {d.result.frame_index: d.segmentation for d in sink.deposits}
    assert masks[0] is not None and all(masks[i] is None for i in decided[1:])
    assert pipe.stats.segmented == 1 and pipe.stats.segment_skipped == len(decided) - 1


def test_stop_after_a_finite_source_ends_loses_nothing(one_bottle_model: Path, frames_dir: Path) -> None:
    det = GatedDetector(load_detector(one_bottle_model))
    sink = CollectingSink()
    pipe = Pipeline(
        open_source(str(frames_dir)),
        det,
        DecisionConfig(),
        None,
        [sink],
        PipelineConfig(queue_size=8, warmup_runs=0),
    )
    pipe.start()
    assert det.entered.acquire(timeout=DEADLINE)
    det.gate.set()
    assert pipe.wait(DEADLINE)
    pipe.stop()
    assert pipe.stats.frames_processed == pipe.stats.frames_read == len(sink.results) == 5
    assert pipe.stats.frames_discarded == 0


def test_mapping_that_misses_a_model_class_is_refused(one_bottle_model: Path, frames_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"missing \['other'\]"):
        Pipeline(
            open_source(str(frames_dir)),
            load_detector(one_bottle_model),
            DecisionConfig(materials={"bottle": "plastic", "can": "metal"}),
        )


def test_frames_are_numpy_views_not_copies_per_stage(one_bottle_model: Path) -> None:
    det = load_detector(one_bottle_model)
    img = np.zeros((64, 64, 3), np.uint8)
    t1, _ = det.pre([img])
    t2, _ = det.pre([img])
    assert np.shares_memory(t1, t2)  # one tensor buffer for the life of the detector


class PooledCamera(FrameSource):
    """A finite camera that reads into reused buffers, like CaptureSource: frame i's pixels are
    all ``i``, written into whichever buffer the pool hands back."""

    def __init__(self, frames: int) -> None:
        super().__init__()
        self.frames = frames
        self.pool = BufferPool(limit=4)
        self.allocated = 0

    def __iter__(self):
        for i in range(self.frames):
            buf = self.pool.acquire((120, 160, 3))
            if buf is None:
                self.allocated += 1
                buf = draw_frame()
            buf[:] = i
            yield self._frame(buf, self.pool)


class PixelSink(CollectingSink):
    """Reads each item's pixels from the message when its deposit arrives, as the recorder does."""

    def __init__(self) -> None:
        super().__init__()
        self.pixels: dict[int, int] = {}

    def on_deposit(self, deposit: Deposit) -> None:
        super().on_deposit(deposit)
        frame = deposit.result.frame
        assert frame is not None
        self.pixels[frame.index] = int(frame.image.max())


def test_the_frame_travels_with_the_item_until_every_sink_had_its_deposit(
    one_bottle_model: Path, tmp_path: Path
) -> None:
    """SAM2 holds accepted items longer than the detector: the deposit still carries its own
    frame's pixels (not a newer frame's in a reused buffer), every frame goes back to the pool
    afterwards, and the pool stays small (memory flat)."""
    camera = PooledCamera(12)
    sink = PixelSink()
    seg = Sam2Segmenter(*tiny_sam2(tmp_path / "sam2"))
    cfg = PipelineConfig(queue_size=2, segment_queue_size=2, warmup_runs=0)
    pipe = Pipeline(camera, load_detector(one_bottle_model), DecisionConfig(), seg, [sink], cfg)
    pipe.start()
    assert pipe.wait(DEADLINE)
    pipe.stop()
    assert pipe.failure is None and pipe.stats.segmented == 12
    assert sink.pixels == {i: i for i in range(12)}
    assert all(d.segmentation is not None and d.segmentation.mask is not None for d in sink.deposits)
    assert all(r.frame is not None and r.frame.released for r in sink.results)
    assert camera.allocated <= 2 + 2 + 3  # queues + one per stage in hand, never one per frame


def test_pacing_is_not_counted_as_queue_wait(one_bottle_model: Path, frames_dir: Path) -> None:
    """A paced file source (the lab's camera) waits before it stamps a frame: the queue wait
    stays the detector's, far below the pacing period (it used to include the whole period)."""
    fps = 5.0
    sink = CollectingSink()
    pipe = Pipeline(
        open_source(str(frames_dir), fps=fps), load_detector(one_bottle_model), DecisionConfig(), None, [sink]
    )
    pipe.start()
    assert pipe.wait(DEADLINE)
    pipe.stop()
    waits = sorted(r.timings_ms["queue_wait_ms"] for r in sink.results)
    assert len(waits) == 5 and waits[len(waits) // 2] < 0.5 * 1e3 / fps, waits
