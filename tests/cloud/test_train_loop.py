"""Training-loop pieces: the learning-rate schedule, rehearsal mixing, dataset items."""

from __future__ import annotations

import numpy as np
import pytest

from robo_lifelong_cloud.data import Frame, SegmentationDataset
from robo_lifelong_cloud.train_loop import TrainConfig, learning_rate, mix_rehearsal


def test_learning_rate_warms_up_then_decays_to_the_floor() -> None:
    cfg = TrainConfig(lr=1e-2, min_lr_ratio=0.1, warmup_iters=10)
    total = 200
    lrs = [learning_rate(i, total, cfg) for i in range(total + 1)]
    assert lrs[0] == pytest.approx(1e-3)  # first of 10 warmup steps
    assert lrs[9] == pytest.approx(1e-2)
    assert all(a >= b - 1e-12 for a, b in zip(lrs[9:], lrs[10:], strict=False))
    assert lrs[-1] == pytest.approx(1e-3)  # min_lr_ratio * lr


def _frames(task: str, n: int) -> list[Frame]:
    z = np.zeros((8, 8), np.uint8)
    return [Frame(np.zeros((8, 8, 3), np.uint8), None, z, task) for _ in range(n)]


def test_rehearsal_mix_keeps_new_frames_and_draws_old_ones_once() -> None:
    new, old = _frames('construction', 10), _frames('sunny', 30)
    mixed = mix_rehearsal(new, old, ratio=0.5, seed=1)
    assert mixed[:10] == new
    rehearsed = mixed[10:]
    assert len(rehearsed) == 10 and all(f.task == 'sunny' for f in rehearsed)
    assert len({id(f) for f in rehearsed}) == 10  # without replacement
    assert len(mix_rehearsal(new, old[:3], ratio=0.5)) == 13  # all old frames if too few
    assert mix_rehearsal(new, [], ratio=0.5) == new


def test_items_map_unknown_ids_to_ignore_and_augment_consistently() -> None:
    rgb = np.zeros((32, 48, 3), np.uint8)
    labels = np.zeros((32, 48), np.uint8)
    rgb[:, :16, 0] = 255  # the left third is red and labelled 1
    labels[:, :16] = 1
    labels[0, 40] = 23  # outside a 22-class model: ignored
    labels[1, 40] = 255
    depth = np.full((32, 48), 5000, np.uint16)
    frame = Frame(rgb, depth, labels, 'sunny')
    x, y = SegmentationDataset([frame], 4, 22)[0]
    assert tuple(x.shape) == (4, 32, 48) and tuple(y.shape) == (32, 48)
    assert int(y[0, 40]) == 255 and int(y[1, 40]) == 255
    aug = SegmentationDataset([frame] * 20, 4, 22, augment=True, seed=3)
    for i in range(20):
        x, y = aug[i]
        red = x[0].numpy()
        # image and labels moved together: red where label 1, dark elsewhere
        assert red[y.numpy() == 1].mean() > red[y.numpy() == 0].mean() + 1.0
