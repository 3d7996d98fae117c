"""Annotation hand-off: ground truth and human masks become data.txt lines exactly once."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from robo_lifelong.errors import DatasetError
from robo_lifelong.io.dataset import load_sample, read_index
from robo_lifelong.labels import CLASSES, IGNORE_ID, colorize
from robo_lifelong.offline import annotation
from robo_lifelong.offline.annotation import annotate_pending, ground_truth_source, read_unlabeled
from robo_lifelong.sim.ground_truth import GroundTruthStore
from robo_lifelong.transfer.spool import Spool, make_sample_id
from robo_lifelong.transfer.storage import LocalStorage, S3Config, join, open_storage
from robo_lifelong.transfer.uploader import UploadConfig, Uploader

H, W = 12, 16
T0 = 1_795_000_000.0


def png(image: np.ndarray) -> bytes:
    return cv2.imencode('.png', image)[1].tobytes()


def labels_of(i: int) -> np.ndarray:
    labels = np.full((H, W), i % 20, np.uint8)
    labels[0, :] = IGNORE_ID
    labels[-1, :] = 22  # barrier: a class only unseen tasks have
    return labels


def uploaded(tmp_path, store, n: int) -> list[str]:
    """``n`` uploaded samples (stamps T0 + i) in ``store``; their ids, oldest first."""
    spool = Spool(tmp_path / 'spool', 10**12, 100)
    ids = []
    rng = np.random.default_rng(0)
    for i in range(n):
        sid = make_sample_id('dog-1', T0 + i)
        files = {
            'rgb.png': png(rng.integers(0, 256, (H, W, 3), np.uint8)),
            'depth.png': png(rng.integers(0, 5000, (H, W), np.uint16)),
        }
        spool.put(sid, files, {'stamp': T0 + i, 'robot_id': 'dog-1', 'height': H, 'width': W})
        ids.append(sid)
    Uploader(spool, store, UploadConfig('dog-1')).drain()
    return ids


def test_ground_truth_labels_are_appended_once(tmp_path):
    store = LocalStorage(tmp_path / 'store')
    ids = uploaded(tmp_path, store, 4)
    truth = GroundTruthStore(tmp_path / 'truth')
    for i in range(3):  # the 4th frame has no ground truth
        truth.put(int((T0 + i) * 1e9) + 200_000, labels_of(i), 'construction')
    source = ground_truth_source(tmp_path / 'truth', tolerance_ns=1_000_000)
    report = annotate_pending(store, source)
    assert report.annotated == ids[:3] and report.no_label == [ids[3]] and not report.rejected
    samples = read_index(tmp_path / 'store' / 'data.txt')
    assert [s.rgb for s in samples] == [f'construction/rgb/{sid}.png' for sid in ids[:3]]
    for i, sample in enumerate(samples):
        assert sample.task == 'construction'
        loaded = load_sample(tmp_path / 'store', sample)
        np.testing.assert_array_equal(loaded.labels, labels_of(i))
        raw = cv2.imread(str(tmp_path / 'store' / read_unlabeled(store)[i].key / 'rgb.png'))
        np.testing.assert_array_equal(loaded.rgb, cv2.cvtColor(raw, cv2.COLOR_BGR2RGB))
    again = annotate_pending(store, source)
    assert again.annotated == [] and again.already == ids[:3]
    assert len((tmp_path / 'store' / 'data.txt').read_text().splitlines()) == 3


def test_a_batch_is_appended_in_stratified_task_order(tmp_path):
    # the route meets night then construction; the LC evaluates the batch's last 20 %, which
    # must hold both tasks
    store = LocalStorage(tmp_path / 'store')
    uploaded(tmp_path, store, 10)
    truth = GroundTruthStore(tmp_path / 'truth')
    for i in range(10):
        truth.put(int((T0 + i) * 1e9), labels_of(i), 'night' if i < 6 else 'construction')
    annotate_pending(store, ground_truth_source(tmp_path / 'truth', tolerance_ns=1_000_000))
    tasks = [s.task for s in read_index(tmp_path / 'store' / 'data.txt')]
    assert sorted(tasks) == ['construction'] * 4 + ['night'] * 6
    assert set(tasks[-2:]) == {'night', 'construction'}, tasks
    assert set(tasks[:5]) == {'night', 'construction'}, tasks


def test_concurrent_annotators_do_not_duplicate_lines(tmp_path):
    store = LocalStorage(tmp_path / 'store')
    ids = uploaded(tmp_path, store, 6)
    source = lambda sample, meta: (labels_of(0), 'night')  # noqa: E731
    threads = [
        threading.Thread(target=annotate_pending, args=(LocalStorage(store.root), source))
        for _ in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = (tmp_path / 'store' / 'data.txt').read_text().splitlines()
    assert sorted(lines) == sorted(
        f'night/rgb/{s}.png night/depth/{s}.png night/label/{s}.png' for s in ids
    )


def test_masks_cli_imports_ids_and_colours_and_rejects_bad_masks(tmp_path, capsys):
    store = LocalStorage(tmp_path / 'store')
    ids = uploaded(tmp_path, store, 5)
    masks = tmp_path / 'masks'
    masks.mkdir()
    cv2.imwrite(str(masks / f'{ids[0]}.png'), labels_of(3))  # class ids
    colour = cv2.cvtColor(colorize(labels_of(5)), cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(masks / f'{ids[1]}.png'), colour)  # palette colours (ignore = black)
    bad_ids = labels_of(1)
    bad_ids[3, 3] = len(CLASSES)  # not in the label map
    cv2.imwrite(str(masks / f'{ids[2]}.png'), bad_ids)
    cv2.imwrite(str(masks / f'{ids[3]}.png'), np.zeros((H + 1, W), np.uint8))  # wrong size
    cv2.imwrite(str(masks / 'stranger.png'), labels_of(0))
    code = annotation.main([str(tmp_path / 'store'), '--masks', str(masks), '--task', 'snow'])
    out = capsys.readouterr().out
    assert code == 1
    assert 'annotated 2' in out and 'rejected 2' in out and 'without labels 1' in out
    assert f'rejected {ids[2]}: ' in out and '[24]' in out
    assert f'rejected {ids[3]}: ' in out and 'size' in out
    assert 'ignored stranger.png' in out
    samples = read_index(tmp_path / 'store' / 'data.txt')
    assert [s.rgb for s in samples] == [f'snow/rgb/{ids[0]}.png', f'snow/rgb/{ids[1]}.png']
    for sample, expected in zip(samples, (labels_of(3), labels_of(5)), strict=True):
        np.testing.assert_array_equal(load_sample(tmp_path / 'store', sample).labels, expected)


def test_masks_need_a_safe_task_name(tmp_path):
    with pytest.raises(DatasetError):
        annotation.mask_folder_source(tmp_path, '../x')
    with pytest.raises(SystemExit):
        annotation.main([str(tmp_path), '--masks', str(tmp_path)])


def test_unknown_colour_is_rejected():
    image = np.zeros((2, 2, 3), np.uint8)
    image[0, 0] = (1, 2, 3)
    with pytest.raises(DatasetError, match='palette'):
        annotation.colours_to_ids(image, 'mask.png')


@pytest.mark.s3
def test_annotation_on_s3(s3_server, s3_bucket, tmp_path):
    store = open_storage(join(s3_bucket, 'ds'), S3Config.from_environ(s3_server.env))
    ids = uploaded(tmp_path, store, 2)
    report = annotate_pending(store, lambda sample, meta: (labels_of(1), 'night'))
    assert report.annotated == ids
    assert store.read_bytes('data.txt').decode().count('\n') == 2
    assert set(store.list('night/')) == {
        f'night/{kind}/{s}.png' for s in ids for kind in ('rgb', 'depth', 'label')
    }
