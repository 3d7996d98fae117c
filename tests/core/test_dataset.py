"""Sedna txt dataset writer and reader."""

import json

import cv2
import numpy as np
import pytest

from robo_lifelong.errors import DatasetError
from robo_lifelong.io.dataset import DatasetWriter, Sample, load_sample, read_index, stratified
from robo_lifelong.sim.camera import CameraModel
from robo_lifelong.sim.cli import main as sim_main
from robo_lifelong.sim.world import CampusWorld


@pytest.fixture
def frames():
    world = CampusWorld(seed=0, camera=CameraModel(64, 48))
    return [world.random_frame(t, i) for t in ('sunny', 'night') for i in range(3)]


def test_round_trip(tmp_path, frames):
    with DatasetWriter(tmp_path) as w:
        written = [w.write(f.rgb, f.depth_mm, f.labels, f.task) for f in frames]
    samples = read_index(tmp_path / 'data.txt')
    assert samples == written
    for f, s in zip(frames, samples, strict=True):
        loaded = load_sample(tmp_path, s)
        np.testing.assert_array_equal(loaded.rgb, f.rgb)
        np.testing.assert_array_equal(loaded.depth_mm, f.depth_mm)
        np.testing.assert_array_equal(loaded.labels, f.labels)
        assert s.task == f.task


def test_paths_relative_and_file_counts_match_lines(tmp_path):
    assert (
        sim_main(
            [
                'dataset',
                '--out',
                str(tmp_path),
                '--tasks',
                'sunny,snow',
                '--frames',
                '3',
                '--width',
                '64',
                '--height',
                '48',
            ]
        )
        == 0
    )
    lines = (tmp_path / 'data.txt').read_text().splitlines()
    assert len(lines) == 6
    for line in lines:
        tokens = line.split(' ')
        assert len(tokens) == 3 and all(not t.startswith('/') for t in tokens)
        assert all((tmp_path / t).is_file() for t in tokens)
    assert len(list(tmp_path.rglob('*.png'))) == 3 * len(lines)
    tasks = json.loads((tmp_path / 'tasks.json').read_text())['samples']
    assert sorted(set(tasks.values())) == ['snow', 'sunny']
    # stratified: the LC's positional split gives both tasks to training and to evaluation
    assert [line.split('/')[0] for line in lines] == ['sunny', 'snow'] * 3


@pytest.mark.parametrize(
    'tasks',
    [
        ['a'] * 8 + ['b'] * 2,
        ['a'] * 3 + ['b'] * 3 + ['c'] * 3,
        ['b', 'a', 'a', 'a', 'a', 'a', 'b', 'b', 'b', 'c'],
        [],
    ],
)
def test_stratified_spreads_every_task_over_the_batch(tasks):
    items = list(enumerate(tasks))
    out = stratified(items, lambda item: item[1])
    assert sorted(out) == items
    for task in set(tasks):
        mine = [i for i, t in out if t == task]
        assert mine == sorted(mine)  # a task's own order is kept
    for share in (0.2, 0.5, 0.8):
        k = round(share * len(out))
        for task in set(tasks):
            n = tasks.count(task)
            head = sum(1 for _, t in out[:k] if t == task)
            assert abs(head - share * n) <= 1, (share, task, out)


def test_appending_continues_numbering_with_new_frames(tmp_path):
    args = [
        'dataset',
        '--out',
        str(tmp_path),
        '--tasks',
        'sunny',
        '--frames',
        '2',
        '--width',
        '64',
        '--height',
        '48',
    ]
    sim_main(args)
    sim_main(args)
    samples = read_index(tmp_path / 'data.txt')
    assert [s.rgb for s in samples] == [f'sunny/rgb/{i:06d}.png' for i in range(4)]
    first, third = (load_sample(tmp_path, samples[i]).rgb for i in (0, 2))
    assert not np.array_equal(first, third)


def test_task_from_path_without_sidecar(tmp_path, frames):
    with DatasetWriter(tmp_path) as w:
        w.write(frames[0].rgb, None, frames[0].labels, 'sunny')
    (tmp_path / 'tasks.json').unlink()
    assert read_index(tmp_path / 'data.txt') == [
        Sample('sunny/rgb/000000.png', None, 'sunny/label/000000.png', 'sunny')
    ]


def test_blank_lines_skipped_and_bad_lines_named(tmp_path):
    (tmp_path / 'data.txt').write_text('a.png b.png\n\n a.png b.png c.png d.png\n')
    with pytest.raises(DatasetError, match=r'data.txt:3'):
        read_index(tmp_path / 'data.txt')
    with pytest.raises(DatasetError, match='cannot read dataset index'):
        read_index(tmp_path / 'missing.txt')


@pytest.fixture
def one_sample(tmp_path, frames):
    with DatasetWriter(tmp_path) as w:
        s = w.write(frames[0].rgb, frames[0].depth_mm, frames[0].labels, 'sunny')
    return tmp_path, s


def test_missing_and_corrupt_files_are_named(one_sample):
    root, s = one_sample
    (root / s.depth).unlink()
    with pytest.raises(DatasetError, match='missing file .*depth'):
        load_sample(root, s)
    (root / s.rgb).write_bytes(b'\x89PNG\r\n\x1a\n garbage')
    with pytest.raises(DatasetError, match='cannot decode .*rgb'):
        load_sample(root, s)


def test_label_ids_outside_the_map(one_sample):
    root, s = one_sample
    labels = np.full((48, 64), 77, np.uint8)
    cv2.imwrite(str(root / s.label), labels)
    with pytest.raises(DatasetError, match=r'label ids \[77\]'):
        load_sample(root, s)


def test_mismatched_sizes(one_sample):
    root, s = one_sample
    cv2.imwrite(str(root / s.label), np.zeros((10, 10), np.uint8))
    with pytest.raises(DatasetError, match='label size'):
        load_sample(root, s)
