"""Faults real disks produce, on a copied collection damaged by the test itself: concurrent creations, a
lost record, a lost segment, damaged vectors, a damaged id tracker, a full disk, unreadable storage."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from helpers import fill, identity, unit_vec

from clamp2_engine.errors import CollectionDamagedError, DiskFullError
from clamp2_engine.search.ranking import nearest
from clamp2_engine.store import Point, StoreSpec, edge_files, open_store, point_id
from clamp2_engine.store.health import repair, verify


@pytest.fixture
def edge(tmp_path) -> Path:
    """A folder store holding collection ``c`` (6 points, optimized: in one segment, not only in the
    write-ahead log), closed."""
    root = tmp_path / "edge"
    with open_store(StoreSpec(path=root)) as s:
        fill(s).optimize()
    return root


def segments(root: Path, vector: str | None = None) -> list[Path]:
    """The segment folders of collection ``c``, of every vector group (of those holding ``vector``)."""
    groups = [g for g in sorted((root / "c" / "shards").iterdir()) if (g / "segments").is_dir()]
    groups = [g for g in groups if vector is None or vector in g.name.split("+")]
    return [seg for g in groups for seg in sorted((g / "segments").iterdir())]


def segment(root: Path) -> Path:
    """A segment of collection ``c`` (the first group's)."""
    return segments(root)[0]


def flip(path: Path, start: int = 0, n: int = 64) -> None:
    data = bytearray(path.read_bytes())
    for i in range(start, min(len(data), start + n)):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


CREATOR = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[2])
    from helpers import fill
    from clamp2_engine.store import StoreSpec, open_store, StoreInUseError
    try:
        with open_store(StoreSpec(path=sys.argv[1])) as s:
            fill(s, n=int(sys.argv[3]))
    except StoreInUseError as exc:
        print("in use:", exc)
    """
)


def test_two_first_ingests_at_once_make_one_whole_collection(tmp_path):
    root = tmp_path / "edge"
    tests = str(Path(__file__).parent)
    for _trial in range(3):
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", CREATOR, str(root), tests, "6"], stdout=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        outs = [p.communicate(timeout=120)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs  # done, or told the collection is in use
        with open_store(StoreSpec(path=root)) as s:
            [row] = s.list()
            assert (row["name"], row["points"], row["status"]) == ("c", 6, "ok")
            assert s.collection("c").count() == 6
            s.drop("c")


def test_a_lost_record_is_reported_never_wiped_and_repaired_from_its_copy(edge):
    (edge / "c" / "collection.json").unlink()
    with open_store(StoreSpec(path=edge)) as s:
        with pytest.raises(CollectionDamagedError, match="lost its record"):
            s.ensure("c", identity(), {})  # the next ingest: never taken for an unfinished creation
        [row] = s.list()
        assert row["status"] == "damaged"
        assert "lost its record" in row["problem"]
        health = verify(s, "c")
        assert health.record == "lost"
        assert repair(s, "c", health).record == "from its copy"
        assert s.collection("c").count() == 6
        assert verify(s, "c").ok


def test_a_record_without_copy_is_written_again_for_the_model_named(edge):
    (edge / "c" / "collection.json").unlink()
    (edge / "c" / "collection.json.bak").unlink()
    with open_store(StoreSpec(path=edge)) as s:
        health = verify(s, "c")
        with pytest.raises(CollectionDamagedError, match="no copy"):
            repair(s, "c", health)
        with pytest.raises(Exception, match="16-d"):
            repair(s, "c", health, identity(dim=16))
        repair(s, "c", health, identity())
        assert s.collection("c").record.points == 6


def test_a_damaged_record_says_so(edge):
    (edge / "c" / "collection.json").write_text("{ not json")
    with open_store(StoreSpec(path=edge)) as s:
        with pytest.raises(CollectionDamagedError, match="record of collection 'c' .* is damaged"):
            s.collection("c")


def test_an_unfinished_creation_is_cleared_by_its_marker(tmp_path):
    root = tmp_path / "edge"
    (root / "c" / "shard").mkdir(parents=True)
    (root / "c" / "creating").touch()
    with open_store(StoreSpec(path=root)) as s:
        assert s.list() == []
        fill(s)
        assert s.collection("c").count() == 6


def test_a_lost_segment_is_set_aside_reported_and_repaired(edge):
    with open_store(StoreSpec(path=edge)) as s:  # a second batch: the write-ahead log keeps only the last
        coll = s.collection("c")
        coll.upsert(
            [Point(point_id(f"k:x{i}"), {"abc": unit_vec(50 + i)}, {"unit": f"x{i}"}) for i in range(2)]
        )
        coll.optimize()
    lost = segments(edge)
    for seg in lost:
        (seg / "version.info").unlink()  # Qdrant Edge deletes such a segment on open
    with open_store(StoreSpec(path=edge)) as s:
        with pytest.raises(CollectionDamagedError, match="holds 2 of its 8 points: 6 were lost"):
            s.collection("c")
        assert all((edge / "c" / "shards" / "set-aside" / seg.name).is_dir() for seg in lost)  # kept
    with open_store(StoreSpec(path=edge)) as s:
        health = verify(s, "c")
        assert not health.ok
        assert repair(s, "c", health).points == 2
        assert s.collection("c").count() == 2  # the record tells the truth; ingest adds the rest again


def test_damaged_vectors_never_give_a_silent_wrong_answer(edge):
    for seg in segments(edge, "abc"):  # every slot of 8 floats (the three abc vectors), 50x too long
        with (seg / "vector_storage-abc" / "vectors" / "chunk_0.mmap").open("r+b") as fh:
            fh.write(np.tile(50 * unit_vec(0), 6).astype(np.float32).tobytes())
    with open_store(StoreSpec(path=edge)) as s:
        coll = s.collection("c")
        with pytest.raises(CollectionDamagedError, match="outside|cannot"):
            nearest(coll, unit_vec(0), modality="abc")
        health = verify(s, "c")
        assert len(health.damaged) == 3
        assert all("abc vector has length 50" in why for why in health.damaged.values())
        assert repair(s, "c", health).deleted == 3
        assert nearest(s.collection("c"), unit_vec(1), modality="mtf")[0][0].score < 1.001
        assert s.collection("c").count() == 3


def test_zeroed_vectors_are_found(edge):
    for seg in segments(edge, "mtf"):  # every slot of 8 floats (the three mtf vectors)
        with (seg / "vector_storage-mtf" / "vectors" / "chunk_0.mmap").open("r+b") as fh:
            fh.write(bytes(4 * 8 * 6))
    with open_store(StoreSpec(path=edge)) as s:
        with pytest.raises(CollectionDamagedError, match="exactly 0"):
            nearest(s.collection("c"), unit_vec(1), modality="mtf")
        assert len(verify(s, "c").damaged) == 3


def test_a_damaged_id_tracker_aborts_a_child_not_this_process(edge):
    flip(segment(edge) / "mutable_id_tracker.mappings", start=16, n=48)
    with open_store(StoreSpec(path=edge)) as s:
        with pytest.raises(CollectionDamagedError, match="id tracker") as err:
            s.collection("c")
        assert str(edge / "c" / "shards") in str(err.value)
        [row] = s.list()  # the listing goes on, naming the damage
        assert row["status"] == "damaged"
        s.drop("c")  # and it can be dropped
        assert s.list() == []


def test_an_unchanged_collection_opens_without_a_trial(edge, monkeypatch):
    calls = []
    monkeypatch.setattr(edge_files.subprocess, "run", lambda *a, **k: calls.append(a))
    with open_store(StoreSpec(path=edge)) as s:
        assert s.collection("c").count() == 6  # closed clean by this engine: no child process
    assert calls == []


def test_storage_errors_are_typed_one_line_errors(edge):
    flip(segment(edge) / "payload_storage" / "page_0.dat", n=4096)
    with open_store(StoreSpec(path=edge)) as s:
        coll = s.collection("c")
        with pytest.raises(CollectionDamagedError) as err:
            list(coll.scroll())
        assert "\n" not in str(err.value)
        assert "collections verify c" in str(err.value)
        health = verify(s, "c")
        assert health.damaged
        assert all(why.startswith("unreadable:") for why in health.damaged.values())
        done = repair(s, "c", health)  # a new storage of the intact points; the old one set aside
        assert done.deleted == len(health.damaged)
        assert done.points == 6 - len(health.damaged)
    with open_store(StoreSpec(path=edge)) as s:
        assert verify(s, "c").ok
        assert s.collection("c").count() == 6 - len(health.damaged)
    assert len(list((edge / ".set-aside").iterdir())) == 1


def test_a_write_the_disk_cannot_take_is_refused_before_it_starts(edge, monkeypatch):
    usage = shutil.disk_usage(edge)
    with open_store(StoreSpec(path=edge)) as s:
        coll = s.collection("c")
        monkeypatch.setattr(edge_files.shutil, "disk_usage", lambda _p: usage._replace(free=10 * 2**20))
        with pytest.raises(DiskFullError, match="10 MiB free in .*about"):
            coll.upsert([Point(point_id("k:new"), {"abc": unit_vec(9)}, {"unit": "new"})])
        with pytest.raises(DiskFullError):
            s.ensure("d", identity(), {})
        with pytest.raises(DiskFullError, match="opening"):
            s.collection("c").release() or s.collection("c")
    monkeypatch.undo()
    with open_store(StoreSpec(path=edge)) as s:
        assert s.collection("c").count() == 6
        assert not s.exists("d")


@pytest.fixture
def small_disk(tmp_path):
    """A 400 MiB ext4 file system of its own (a loop-mounted image), where the machine lets the test
    make and mount one (root, loop devices)."""
    image, mnt = tmp_path / "disk.img", tmp_path / "small"
    mnt.mkdir()
    with image.open("wb") as fh:
        fh.truncate(400 * 2**20)
    system = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])  # root's tools
    mkfs, mount = (shutil.which(tool, path=system) or tool for tool in ("mkfs.ext4", "mount"))
    for cmd in ([mkfs, "-q", str(image)], [mount, "-o", "loop", str(image), str(mnt)]):
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"cannot make a small file system here ({cmd[0]}: {exc})")
        if done.returncode != 0:
            pytest.skip(
                f"cannot make a small file system here ({cmd[0]}: {done.stderr.decode().strip()[:100]})"
            )
    yield mnt
    subprocess.run([shutil.which("umount", path=system) or "umount", "-l", str(mnt)], check=False)


FILLER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[2])
    import numpy as np
    from helpers import identity
    from clamp2_engine.errors import DiskFullError
    from clamp2_engine.store import Point, StoreSpec, open_store, point_id
    with open_store(StoreSpec(path=sys.argv[1])) as s:
        coll = s.ensure("c", identity(dim=512), {})
        rng = np.random.default_rng(0)
        try:
            for b in range(10_000):
                pts = [Point(point_id(f"k:{b}:{i}"), {v: rng.standard_normal(512) for v in ("abc", "mtf", "text")},
                             {"unit": f"{b}:{i}", "pad": "x" * 4000}) for i in range(256)]
                coll.upsert(pts)
        except DiskFullError as exc:
            print("full:", exc, coll.count())
    """
)


def test_a_full_disk_is_one_line_never_a_bus_error(small_disk):
    root = small_disk / "edge"
    tests = str(Path(__file__).parent)
    done = subprocess.run(
        [sys.executable, "-c", FILLER, str(root), tests], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("full: not enough free space"), done.stdout
    written = int(done.stdout.split()[-1])
    with open_store(StoreSpec(path=root)) as s:  # the collection opens afterwards, with what was written
        assert s.collection("c").count() == written


def test_server_path_keeps_the_count_too(tmp_path):
    from clamp2_engine.store import MEMORY

    with open_store(StoreSpec(url=MEMORY)) as s:
        coll = fill(s)
        assert coll.record.points == 6
        coll.delete([point_id("k:u0")])
        assert s.collection("c").record.points == 5
        assert verify(s, "c").ok
        assert np.isfinite(nearest(coll, unit_vec(0))[0][0].score)
