"""A full data partition: the device frees its own images, closes its intake rather than fail, and
opens it again when the space is back, without a restart and without losing a record."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import numpy as np
import pytest

from rvm_edge.decision import ReasonCode
from rvm_edge.messages import Decision, Deposit, Detection, Detections, Frame, ItemResult, Verdict
from rvm_edge.service.deposit import ModelInfo
from rvm_edge.service.diskguard import DiskGuard
from rvm_edge.service.recorder import Recorder
from rvm_edge.service.store import DB_NAME, VACUUM_CHUNK_PAGES, Store

MODEL = ModelInfo("yolo-lab", "3", "ab" * 32, "onnxruntime")
BOTTLE = Detection(0, "bottle", 0.9, (10.0, 10.0, 40.0, 60.0))
ACCEPTED = Decision(Verdict.ACCEPTED, "ok", "plastic", BOTTLE, code=ReasonCode.ACCEPTED)
MB = 1e6


class Partition:
    """A partition of ``capacity`` bytes that holds the store's files and a ballast of someone else's:
    free space follows the database's real size on disk, so pruning must really give bytes back."""

    def __init__(self, data_dir: Path, capacity: float) -> None:
        self.data_dir, self.capacity, self.ballast = data_dir, capacity, 0.0

    def used(self) -> float:
        return sum(p.stat().st_size for p in self.data_dir.iterdir() if p.name.startswith(DB_NAME))

    def free_mb(self, _path: Path) -> float:
        return max(0.0, self.capacity - self.ballast - self.used()) / MB


def item(index: int) -> Deposit:
    # noise compresses badly: each JPEG is a few hundred kB, like a real intake frame
    pixels = np.random.default_rng(index).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    frame = Frame(index, pixels, "folder", 0.0, 0.0)
    r = ItemResult(
        index, "folder", 1_795_000_000.0, Detections(index, (640, 480), (BOTTLE,)), ACCEPTED, {}, frame
    )
    return Deposit(r, None)


def offer(rec: Recorder, index: int) -> None:
    d = item(index)
    rec.on_result(d.result)
    rec.on_deposit(d)


def rows(tmp_path: Path) -> list[tuple[int, str, int]]:
    conn = sqlite3.connect(str(tmp_path / DB_NAME))
    try:
        return conn.execute(
            "SELECT frame_index, state, image IS NOT NULL FROM deposits ORDER BY seq"
        ).fetchall()
    finally:
        conn.close()


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path)
    yield s
    s.close()


def test_a_low_partition_is_freed_from_the_devices_own_images_sent_ones_first(
    tmp_path: Path, store: Store
) -> None:
    part = Partition(tmp_path, 1e12)
    guard = DiskGuard(store, tmp_path, lambda: 30 * 86400, min_free_mb=2.0, free=part.free_mb)
    rec = Recorder(store, "hw-1", MODEL, 5_000_000, has_space=guard.has_space)
    for i in range(12):
        offer(rec, i)
    for seq in range(1, 7):  # the older half is on the platform already
        store.mark_sent(seq)
    store.reclaim()
    part.capacity = part.used() + 3 * MB  # 3 MB free: above the floor (2), below the low mark (4)
    assert guard.has_space()

    free = guard.check()

    assert free >= guard.low_mb  # the database really shrank on the partition
    kept = rows(tmp_path)
    assert [r[0] for r in kept] == list(range(12))  # every record is still there
    cleared = [r[0] for r in kept if not r[2]]
    assert cleared and cleared == list(range(len(cleared)))  # the oldest first ...
    assert all(state == "sent" for _, state, has in kept if not has)  # ... and only sent ones were needed
    assert not guard.closed and guard.cleared == len(cleared)


def test_a_full_partition_closes_the_intake_and_space_reopens_it_without_a_restart(
    tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    part = Partition(tmp_path, 1e12)
    guard = DiskGuard(store, tmp_path, lambda: 30 * 86400, min_free_mb=2.0, free=part.free_mb)
    rec = Recorder(store, "hw-1", MODEL, 5_000_000, has_space=guard.has_space)
    for i in range(3):
        offer(rec, i)
    store.reclaim()
    # someone else's ballast leaves 1 MB: more than all the device's images could give back
    part.ballast = part.capacity - part.used() - 1 * MB
    with caplog.at_level(logging.WARNING):
        guard.check()
    assert guard.closed and "intake closed" in caplog.text
    before = rows(tmp_path)

    offer(rec, 3)  # decided while the partition is full: not recorded, and the service keeps running
    assert rows(tmp_path) == before and rec.no_space == 1 and rec.recorded == 3

    part.ballast = 0.0  # the space is back: the next item is recorded, nothing restarted
    offer(rec, 4)
    assert [r[0] for r in rows(tmp_path)][-1] == 4 and rec.recorded == 4
    with caplog.at_level(logging.WARNING):
        guard.check()
    assert not guard.closed and "intake open" in caplog.text
    assert [r[0] for r in rows(tmp_path)][:3] == [0, 1, 2]  # nothing recorded earlier was lost


def test_sqlite_full_at_the_commit_refuses_the_item_instead_of_failing_the_pipeline(
    tmp_path: Path, store: Store
) -> None:
    rec = Recorder(store, "hw-1", MODEL, 5_000_000)
    offer(rec, 0)
    # SQLite's own "database or disk is full" (SQLITE_FULL), as a partition that filled between the
    # guard's look and the commit gives it: the database may not grow by another page
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count = {pages}")
    offer(rec, 1)  # does not raise: a raise here fails the pipeline and restarts into the same disk
    assert rec.no_space == 1 and rec.failed == 0 and rec.in_flight == 0
    assert [r[0] for r in rows(tmp_path)] == [0]  # rolled back whole, the earlier record intact
    store._conn.execute("PRAGMA max_page_count = 1073741823")
    offer(rec, 2)
    assert [r[0] for r in rows(tmp_path)] == [0, 2]


def test_other_database_errors_still_fail_the_pipeline(tmp_path: Path, store: Store) -> None:
    rec = Recorder(store, "hw-1", MODEL, 5_000_000)
    store._conn.execute("DROP TABLE deposits")
    with pytest.raises(sqlite3.OperationalError):
        offer(rec, 0)
    assert rec.failed == 1 and rec.no_space == 0


def test_pruning_gives_the_space_back_a_chunk_at_a_time(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A vacuum writes every page it moves to the WAL before the checkpoint: done in one go on a
    nearly full partition it filled the partition (prodtest's disk-low fault). Each step of the
    reclaim gives back at most a chunk, and leaves the WAL cut to nothing before the next."""
    rec = Recorder(store, "hw-1", MODEL, 5_000_000)
    for i in range(40):
        offer(rec, i)
    for seq in range(1, 41):
        store.mark_sent(seq)
    store.reclaim()
    wal = tmp_path / f"{DB_NAME}-wal"
    before = (tmp_path / DB_NAME).stat().st_size
    freed_per_step: list[int] = []
    wal_after_step: list[int] = []
    step = Store._vacuum_step

    def free_pages(s: Store) -> int:
        return int(s._conn.execute("PRAGMA freelist_count").fetchone()[0])

    def watched(self: Store) -> bool:
        pages = free_pages(self)
        more = step(self)
        freed_per_step.append(pages - free_pages(self))
        wal_after_step.append(wal.stat().st_size if wal.exists() else 0)
        return more

    monkeypatch.setattr(Store, "_vacuum_step", watched)
    assert store.prune_images(0, 30 * 86400, ("sent",)) == 40
    assert (tmp_path / DB_NAME).stat().st_size < 0.2 * before  # the images' pages are back on the partition
    assert len([f for f in freed_per_step if f]) > 2  # in several steps ...
    assert max(freed_per_step) <= VACUUM_CHUNK_PAGES  # ... of a chunk at most
    assert max(wal_after_step) == 0  # each followed by a checkpoint that cut the WAL


@pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/dev/loop-control").exists() or shutil.which("mkfs.ext4") is None,
    reason="needs root, loop devices and mkfs.ext4 for a real small partition",
)
def test_on_a_real_nearly_full_partition_the_guard_frees_space_without_filling_it(tmp_path: Path) -> None:
    """The lab's failure, on a real ext4 partition of 96 MB: most of it sent images, the rest
    filled by someone else's ballast down to a few MB. Clearing the images must not need room the
    partition does not have (one vacuum of everything did: SQLITE_FULL, and the service stopped)."""
    image, mnt = tmp_path / "part.ext4", tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["truncate", "-s", "96M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", str(image)], check=True)
    subprocess.run(["mount", "-o", "loop", str(image), str(mnt)], check=True)
    store: Store | None = None
    try:
        data = mnt / "data"
        store = Store(data)
        rec = Recorder(store, "hw-1", MODEL, 5_000_000)
        i = 0
        while store.status().image_bytes < 55e6:
            offer(rec, i)
            store.mark_sent(i + 1)
            i += 1
            if i % 20 == 0:  # the service's checkpointer does this in the background
                store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        ballast = mnt / "ballast"
        free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
        subprocess.run(["fallocate", "-l", str(free - 6 * 1024 * 1024), str(ballast)], check=True)
        guard = DiskGuard(store, data, lambda: 30 * 86400, min_free_mb=2.0)
        guard.low_mb = 40.0  # the partition is small: make room for 40 MB

        free_after = guard.check()

        assert free_after >= 40.0 and not guard.closed  # tens of MB back, from the device's own images
        assert store.status().pending == 0 and len(rows(data)) == i  # every record kept
    finally:
        if store is not None:
            store.close()
        subprocess.run(["umount", str(mnt)], check=False)
