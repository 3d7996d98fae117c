"""Training-loop pieces: the learning-rate schedule, rehearsal mixing, dataset items, class
balancing, distillation from the parent, the minimum step count."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robo_lifelong.labels import IGNORE_ID
from robo_lifelong_cloud.data import Frame, SegmentationDataset
from robo_lifelong_cloud.model import SegNetConfig, build_model, grow_classes
from robo_lifelong_cloud.train_loop import (
    MAX_CLASS_WEIGHT,
    TrainConfig,
    class_weights,
    distillation_loss,
    learning_rate,
    mix_rehearsal,
    train,
)


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


def _labelled(counts: dict[int, int], task: str = 'sunny') -> Frame:
    labels = np.repeat(np.array(list(counts), np.uint8), list(counts.values()))[None]
    return Frame(np.zeros((*labels.shape, 3), np.uint8), None, labels, task)


def test_class_weights_favour_rare_classes_within_the_clip() -> None:
    # class 0 is 100x as class 3 and 10^4 x as class 5
    frame = _labelled({0: 10_000, 1: 1000, 2: 1000, 3: 100, 5: 1, IGNORE_ID: 500})
    w = class_weights([frame], 6, power=0.5).numpy()
    assert w[4] == 1.0  # absent: neutral
    assert w[0] < w[1] < w[3] < w[5] and w[1] == pytest.approx(w[2])
    assert w[3] / w[0] == pytest.approx(10.0)  # sqrt of the 100x frequency ratio
    assert w[5] == MAX_CLASS_WEIGHT
    assert np.all(class_weights([frame], 6, power=0.0).numpy() == 1.0)


def test_distillation_is_zero_for_the_teacher_itself_and_skips_new_class_pixels() -> None:
    torch.manual_seed(0)
    teacher = torch.randn(2, 5, 4, 6)
    target = torch.zeros(2, 32, 48, dtype=torch.long)
    silent = torch.full((2, 2, 4, 6), -60.0)  # two new rows the student never picks
    student = torch.cat([teacher, silent], dim=1)
    assert float(distillation_loss(student, teacher, target, 2.0)) == pytest.approx(0, abs=1e-6)
    # the same old rows, but a new class taking the pixels the teacher gave to old ones: costs
    painted = torch.cat([teacher, teacher.amax(dim=1, keepdim=True).expand(2, 2, 4, 6) + 2], dim=1)
    assert float(distillation_loss(painted, teacher, target, 2.0)) > 1.0
    other = torch.cat([torch.randn(2, 5, 4, 6), torch.zeros(2, 2, 4, 6)], dim=1)
    assert float(distillation_loss(other, teacher, target, 2.0)) > 0.1
    # every pixel labelled with a new class (id 6 >= 5 teacher classes): nothing to distil
    assert float(distillation_loss(other, teacher, target + 6, 2.0)) == 0.0
    ignored = torch.full_like(target, IGNORE_ID)  # unlabelled pixels keep the teacher's view
    assert float(distillation_loss(other, teacher, ignored, 2.0)) > 0.1


def _tiny_frames(n: int) -> list[Frame]:
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(n):
        labels = np.zeros((32, 48), np.uint8)
        labels[:, 24:] = 1
        labels[10:20, 5:15] = 22  # a new class
        rgb = rng.integers(0, 255, (32, 48, 3), np.uint8)
        frames.append(Frame(rgb, None, labels, 'construction'))
    return frames


def test_min_iters_and_a_teacher_that_stays_untouched() -> None:
    parent = build_model(SegNetConfig(num_classes=22), seed=0).eval()
    before = {k: v.clone() for k, v in parent.state_dict().items()}
    model = grow_classes(parent, 24)
    cfg = TrainConfig(epochs=1, batch_size=4, min_iters=7, augment=False, threads=1)
    result = train(model, _tiny_frames(8), [], cfg, teacher=parent)
    assert result.iterations == 7  # one epoch would be 2 steps
    for k, v in parent.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not torch.equal(model.classifier.weight[:22], before['classifier.weight'])
    # the update kept the parent's batch-norm statistics; a fresh model's move
    for k, v in model.state_dict().items():
        if k.endswith(('running_mean', 'running_var')):
            assert torch.equal(v, before[k]), k
    fresh = build_model(SegNetConfig(num_classes=24), seed=0)
    fresh_before = fresh.state_dict()['downsample.0.1.running_mean'].clone()
    train(fresh, _tiny_frames(8), [], cfg)
    assert not torch.equal(fresh.state_dict()['downsample.0.1.running_mean'], fresh_before)
