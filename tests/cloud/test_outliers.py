"""Outlier exposure pastes made-up things into known frames, never an unseen task's classes,
looks or frame-wide conditions."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from robo_lifelong.labels import CLASSES, IGNORE_ID, KNOWN_CLASS_IDS
from robo_lifelong.sim.tasks import KNOWN_TASKS, UNSEEN_TASKS
from robo_lifelong_cloud.base_model import BaseModelConfig, recipe_frames
from robo_lifelong_cloud.data import SegmentationDataset
from robo_lifelong_cloud.outliers import (
    AVOID_RADIUS,
    OUTLIER_ID,
    UNSEEN_LOOKS,
    OutlierConfig,
    outlier_loss,
    paste_outliers,
)
from robo_lifelong_cloud.train_loop import TrainConfig

SMALL = dataclasses.replace(
    BaseModelConfig(),
    height=120,
    width=212,
    train_worlds=(0,),
    train_per_world=6,
    calibration_per_world=2,
)


def test_the_recipes_training_data_holds_known_tasks_known_classes_and_pasted_things_only():
    train_frames, calibration = recipe_frames(SMALL)
    assert {f.task for f in train_frames + calibration} == set(KNOWN_TASKS)
    assert not {f.task for f in train_frames} & set(UNSEEN_TASKS)
    unseen_ids = {c.id for c in CLASSES if c.id not in KNOWN_CLASS_IDS}
    assert unseen_ids, 'the label map has classes only unseen tasks show'
    # every frame gets things pasted in, as an augmented training item would
    data = SegmentationDataset(
        train_frames, 4, len(KNOWN_CLASS_IDS), augment=True, seed=1, outliers=OutlierConfig(1.0)
    )
    seen: set[int] = set()
    for _ in range(3):  # three epochs of draws
        for i in range(len(data)):
            seen |= set(np.unique(data[i][1].numpy()).tolist())
    assert OUTLIER_ID in seen
    assert seen <= set(KNOWN_CLASS_IDS) | {IGNORE_ID, OUTLIER_ID}
    assert not seen & unseen_ids


def test_pasted_pixels_keep_away_from_the_unseen_tasks_looks_and_stand_closer():
    frames, _ = recipe_frames(SMALL)
    rng = np.random.default_rng(0)
    pasted_pixels = 0
    for frame in frames:
        target = frame.labels.astype(np.int64)
        rgb, depth, out = paste_outliers(
            frame.rgb, frame.depth_mm, target, rng, OutlierConfig(TrainConfig().outlier_share)
        )
        mask = out == OUTLIER_ID
        assert mask.any()
        colours = rgb[mask].astype(np.float64) / 255.0
        distance = np.linalg.norm(colours[:, None] - UNSEEN_LOOKS[None], axis=-1).min()
        assert distance >= AVOID_RADIUS - 0.07  # less the bounded per-pixel noise
        assert np.array_equal(rgb[~mask], frame.rgb[~mask])  # nothing else changes
        assert np.array_equal(out[~mask], target[~mask])
        measured = mask & (frame.depth_mm > 0)  # no depth return (sky): any depth is closer
        assert np.all(depth[measured] <= frame.depth_mm[measured])
        assert np.all(depth[mask] > 0)
        assert mask.mean() < 0.5  # things in a frame, not a frame-wide condition
        pasted_pixels += int(mask.sum())
    assert pasted_pixels > 0.005 * len(frames) * SMALL.height * SMALL.width


def test_the_outlier_loss_is_zero_only_for_a_flat_distribution_on_pasted_pixels():
    target = torch.zeros(1, 16, 16, dtype=torch.int64)
    target[:, :8] = OUTLIER_ID
    flat = torch.zeros(1, 5, 2, 2)
    confident = flat.clone()
    confident[:, 0] = 10.0
    assert float(outlier_loss(flat, target)) == pytest.approx(np.log(5.0))  # the minimum: log C
    assert float(outlier_loss(confident, target)) > float(outlier_loss(flat, target)) + 1.0
    none = torch.zeros(1, 16, 16, dtype=torch.int64)
    assert float(outlier_loss(confident, none)) == 0.0


def test_training_runs_outlier_exposure_by_default():
    cfg = TrainConfig()
    assert cfg.outlier_weight > 0 and cfg.outlier_share > 0 and cfg.augment
