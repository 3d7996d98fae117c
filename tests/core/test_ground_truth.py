"""sim.ground_truth: store, exact and nearest lookup, bounded count, atomic files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from robo_lifelong.errors import ConfigError, DatasetError, ObjectMissing
from robo_lifelong.sim.ground_truth import GroundTruthStore

MS = 1_000_000


def _labels(seed: int, shape: tuple[int, int] = (6, 9)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 24, size=shape, dtype=np.uint8)


def test_put_then_get_round_trips_labels_and_task(tmp_path: Path) -> None:
    store = GroundTruthStore(tmp_path / 'gt', max_frames=10)
    stamp = 1_700_000_000_123_456_789
    store.put(stamp, _labels(1), 'night')
    labels, task = store.get(stamp)
    np.testing.assert_array_equal(labels, _labels(1))
    assert task == 'night'
    assert sorted(p.name for p in (tmp_path / 'gt').iterdir()) == [f'{stamp}.json', f'{stamp}.png']


def test_missing_stamp_raises(tmp_path: Path) -> None:
    store = GroundTruthStore(tmp_path, max_frames=10)
    store.put(5 * MS, _labels(0), 'sunny')
    with pytest.raises(ObjectMissing):
        store.get(6 * MS)


def test_nearest_within_tolerance(tmp_path: Path) -> None:
    store = GroundTruthStore(tmp_path, max_frames=10)
    for i, task in enumerate(['sunny', 'night', 'snow']):
        store.put((100 + 66 * i) * MS, _labels(i), task)  # 100, 166, 232 ms
    stamp, labels, task = store.nearest(170 * MS, tolerance_ns=10 * MS)
    assert (stamp, task) == (166 * MS, 'night')
    np.testing.assert_array_equal(labels, _labels(1))
    assert store.nearest(228 * MS, 5 * MS)[0] == 232 * MS
    assert store.nearest(90 * MS, 10 * MS)[0] == 100 * MS
    assert store.nearest(199 * MS, 20 * MS) is None  # 33 ms from both neighbours
    assert store.nearest(300 * MS, 50 * MS) is None


def test_oldest_frames_are_evicted_beyond_max_frames(tmp_path: Path) -> None:
    store = GroundTruthStore(tmp_path, max_frames=3)
    for i in range(5):
        store.put(i * MS, _labels(i), 'sunny')
    assert store.stamps() == [2 * MS, 3 * MS, 4 * MS]
    assert len(list(tmp_path.iterdir())) == 6
    with pytest.raises(ObjectMissing):
        store.get(1 * MS)
    store.put(1 * MS, _labels(9), 'sunny')  # late and oldest: evicted at once
    assert store.stamps() == [2 * MS, 3 * MS, 4 * MS]


def test_reopened_store_sees_and_bounds_earlier_frames(tmp_path: Path) -> None:
    first = GroundTruthStore(tmp_path, max_frames=10)
    for i in range(4):
        first.put(i * MS, _labels(i), 'overcast')
    reader = GroundTruthStore(tmp_path, max_frames=10)
    assert reader.get(3 * MS)[1] == 'overcast'
    smaller = GroundTruthStore(tmp_path, max_frames=2)
    assert len(smaller.stamps()) == 4  # opening deletes nothing: readers open stores too
    smaller.put(4 * MS, _labels(4), 'overcast')  # its first write bounds the earlier frames
    assert smaller.stamps() == [3 * MS, 4 * MS]


def test_png_without_json_is_not_a_frame_and_no_temp_files_remain(tmp_path: Path) -> None:
    store = GroundTruthStore(tmp_path, max_frames=10)
    store.put(7 * MS, _labels(7), 'curbs')
    (tmp_path / f'{8 * MS}.png').write_bytes(b'half-written frame of a crashed writer')
    assert store.stamps() == [7 * MS]
    assert not [p for p in tmp_path.iterdir() if p.suffix not in ('.png', '.json')]


def test_corrupt_files_raise_dataset_error(tmp_path: Path) -> None:
    store = GroundTruthStore(tmp_path, max_frames=10)
    store.put(1 * MS, _labels(1), 'sunny')
    store.put(2 * MS, _labels(2), 'sunny')
    (tmp_path / f'{1 * MS}.json').write_text('{not json')
    (tmp_path / f'{2 * MS}.png').write_bytes(b'not a png')
    with pytest.raises(DatasetError, match=f'{1 * MS}.json'):
        store.get(1 * MS)
    with pytest.raises(DatasetError, match=f'{2 * MS}.png'):
        store.get(2 * MS)


@pytest.mark.parametrize(
    'labels, message',
    [
        (np.zeros((4, 4), np.uint16), "'uint16'"),
        (np.zeros((4, 4, 3), np.uint8), r'\(4, 4, 3\)'),
        ([[0, 1]], "'list'"),
    ],
)
def test_bad_labels_raise(tmp_path: Path, labels, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        GroundTruthStore(tmp_path).put(1, labels, 'sunny')


def test_max_frames_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match='0'):
        GroundTruthStore(tmp_path, max_frames=0)
