"""The training loop: a plain loop over shuffled batches, AdamW, warmup + cosine learning rate.

Class-balanced cross-entropy (ignore 255) on the logits upsampled to the label size; validation
loss and mIoU under ``no_grad`` at epoch ends (about ``VALIDATIONS`` per run), labels predicted
the way the robot does (logits upsampled bilinearly to the label size, then the argmax).
``history`` is a list of dicts for ``plots.training_curve``. Incremental updates rehearse
old-task frames (``mix_rehearsal``) and distil the parent model's outputs on the old classes
(``distillation_loss``) so the old tasks are not forgotten. Every run pastes made-up things into
some training frames and trains a flat class distribution on them (outlier exposure,
``outliers.py``), so the robot's pixel evidence rises on things no task taught.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from robo_lifelong.labels import IGNORE_ID
from robo_lifelong_cloud.data import Frame, SegmentationDataset
from robo_lifelong_cloud.metrics import confusion, iou_report
from robo_lifelong_cloud.model import SegNet
from robo_lifelong_cloud.outliers import OUTLIER_ID, OutlierConfig, outlier_loss

log = logging.getLogger(__name__)

T = TypeVar('T')

MAX_CLASS_WEIGHT = 10.0
VALIDATIONS = 10


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 5
    batch_size: int = 8
    lr: float = 4e-3
    min_lr_ratio: float = 0.05
    warmup_iters: int = 20
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 2
    min_iters: int = 0  # a small incremental batch still gets this many optimizer steps
    max_iters: int | None = None  # stop early (quick runs); None: epochs * batches per epoch
    augment: bool = True
    # rare classes (a few cones in a frame) weigh (median frequency / frequency) ** balance in
    # the loss, clipped to MAX_CLASS_WEIGHT; 0 is plain cross-entropy
    class_balance: float = 0.5
    # incremental updates: weight of the distillation loss towards the parent model's outputs
    # on the old classes (learning without forgetting), and its softmax temperature
    distill: float = 1.0
    distill_temperature: float = 2.0
    # incremental updates keep the parent's batch-norm statistics: batches of night frames
    # would otherwise shift them away from the old tasks' images
    freeze_norm_in_updates: bool = True
    # outlier exposure (with ``augment``): weight of its loss (0 turns it off) and the share of
    # training frames that get made-up things pasted in
    outlier_weight: float = 0.5
    outlier_share: float = 0.5


@dataclass
class TrainResult:
    model: SegNet
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    iterations: int = 0


def learning_rate(it: int, total: int, cfg: TrainConfig) -> float:
    """Linear warmup for ``warmup_iters`` then cosine decay to ``min_lr_ratio * lr``."""
    warmup = min(cfg.warmup_iters, max(1, total // 10))
    if it < warmup:
        return cfg.lr * (it + 1) / warmup
    progress = min(1.0, (it - warmup) / max(1, total - warmup))
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def segmentation_loss(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    up = F.interpolate(logits, size=target.shape[-2:], mode='bilinear', align_corners=False)
    return F.cross_entropy(up, target, weight=weight, ignore_index=IGNORE_ID)


def distillation_loss(
    student: torch.Tensor, teacher: torch.Tensor, target: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Per-pixel KL divergence from the teacher's softened class distribution to the student's,
    at logit resolution. The teacher gives no mass to the classes it does not have (the rows
    past its ``teacher.shape[1]``): the student's softmax runs over all its classes, so a new
    class it paints where the teacher saw an old one costs. (Over the old rows alone, new rows
    went free: an update learning barriers painted 2.5 % of sunny frames' pixels as barrier,
    cars mostly, and sunny lost 9 mIoU points on fresh frames.) Pixels labelled with a class the
    teacher does not have are left out: there the teacher is wrong."""
    t, old = temperature, teacher.shape[1]
    log_p = F.log_softmax(student / t, dim=1)[:, :old]
    q = F.softmax(teacher / t, dim=1)
    kl = F.kl_div(log_p, q, reduction='none').sum(dim=1)
    low = F.interpolate(target[:, None].float(), size=kl.shape[-2:], mode='nearest')[:, 0]
    keep = ((low < old) | (low == IGNORE_ID)).float()
    return (kl * keep).sum() / keep.sum().clamp(min=1.0) * t * t


def class_weights(frames: Sequence[Frame], num_classes: int, power: float) -> torch.Tensor:
    """Per-class loss weights ``(median frequency / frequency) ** power`` over the classes
    present in ``frames`` (absent classes weigh 1), clipped to ``1 / MAX_CLASS_WEIGHT ..
    MAX_CLASS_WEIGHT``."""
    counts = np.zeros(num_classes)
    for f in frames:
        counts += np.bincount(f.labels.ravel(), minlength=256)[:num_classes]
    weights = np.ones(num_classes)
    present = counts > 0
    if power > 0 and present.any():
        freq = counts[present] / counts[present].sum()
        balanced = (np.median(freq) / freq) ** power
        weights[present] = np.clip(balanced, 1.0 / MAX_CLASS_WEIGHT, MAX_CLASS_WEIGHT)
    return torch.tensor(weights, dtype=torch.float32)


def predict_labels(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, h, w) labels at ``size`` as the exported graph's label head computes them: logits
    upsampled bilinearly, then the argmax."""
    up = F.interpolate(logits, size=size, mode='bilinear', align_corners=False)
    return up.argmax(dim=1)


@torch.no_grad()
def evaluate(model: SegNet, frames: Sequence[Frame], batch_size: int = 8) -> dict:
    """Mean loss and ``metrics.iou_report`` of ``model`` on ``frames`` (no augmentation)."""
    model.eval()
    k = model.config.num_classes
    data = SegmentationDataset(frames, model.config.in_channels, k)
    loader = DataLoader(data, batch_size=batch_size, shuffle=False)
    confusions: dict[str, np.ndarray] = {}
    losses, start = [], 0
    for x, y in loader:
        logits, _ = model(x)
        losses.append(float(segmentation_loss(logits, y)) * len(x))
        pred = predict_labels(logits, y.shape[-2:]).numpy()
        for i in range(len(x)):
            task = frames[start + i].task
            c = confusion(pred[i], y[i].numpy(), k)
            confusions[task] = confusions.get(task, 0) + c
        start += len(x)
    report = iou_report(confusions)
    report['loss'] = sum(losses) / max(1, len(frames))
    return report


@torch.no_grad()
def embed_and_logits(
    model: SegNet, frames: Sequence[Frame]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Embeddings (N, D) and low-resolution logits [(C, h, w)] for unseen calibration."""
    model.eval()
    data = SegmentationDataset(frames, model.config.in_channels, model.config.num_classes)
    embeddings, logits_list = [], []
    for x, _ in DataLoader(data, batch_size=8, shuffle=False):
        logits, emb = model(x)
        embeddings.append(emb.numpy())
        logits_list.extend(lg for lg in logits.numpy())
    return np.concatenate(embeddings), logits_list


def mix_rehearsal(
    new: Sequence[T], old: Sequence[T], ratio: float = 0.5, seed: int = 0
) -> list[T]:
    """``new`` plus items of ``old`` (old-task samples or frames) drawn without replacement so
    that they make up about ``ratio`` of the result (all of ``old`` if there are fewer)."""
    if not old or ratio <= 0:
        return list(new)
    want = int(round(len(new) * ratio / (1.0 - ratio))) if ratio < 1 else len(old)
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(old), size=min(want, len(old)), replace=False)
    return list(new) + [old[i] for i in sorted(picked)]


def train(
    model: SegNet,
    train_frames: Sequence[Frame],
    val_frames: Sequence[Frame],
    cfg: TrainConfig,
    teacher: SegNet | None = None,
) -> TrainResult:
    """Train ``model`` in place; with a ``teacher`` (the parent of an incremental update) its
    outputs on the old classes are distilled into the model alongside the labels."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    k = model.config.num_classes
    outliers = OutlierConfig(probability=cfg.outlier_share) if cfg.outlier_weight > 0 else None
    data = SegmentationDataset(
        train_frames, model.config.in_channels, k, cfg.augment, cfg.seed, outliers
    )
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(
        data,
        batch_size=min(cfg.batch_size, len(data)),
        shuffle=True,
        drop_last=True,
        generator=generator,
    )
    total = max(cfg.epochs * len(loader), cfg.min_iters)
    if cfg.max_iters is not None:
        total = min(total, cfg.max_iters)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [
            {'params': decay, 'weight_decay': cfg.weight_decay},
            {'params': no_decay, 'weight_decay': 0.0},
        ],
        lr=cfg.lr,
    )
    weight = class_weights(train_frames, k, cfg.class_balance)
    # channels-last convolutions train ~20 % faster on CPU; the model goes back at the end
    model.to(memory_format=torch.channels_last)
    if teacher is not None:
        teacher.to(memory_format=torch.channels_last).eval()
    result = TrainResult(model)
    start = time.perf_counter()
    it = 0
    progress = tqdm(total=total, desc='train', unit='it', disable=None)
    epoch = 0
    # validation at epoch ends, about VALIDATIONS times per run (small sets have tiny epochs)
    val_every, next_val = max(1, total // VALIDATIONS), 0
    while it < total:
        epoch += 1
        model.train()
        if teacher is not None and cfg.freeze_norm_in_updates:
            for m in model.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        for x, y in loader:
            lr = learning_rate(it, total, cfg)
            for group in optimizer.param_groups:
                group['lr'] = lr
            x = x.contiguous(memory_format=torch.channels_last)
            logits, _ = model(x)
            loss = segmentation_loss(logits, y.masked_fill(y == OUTLIER_ID, IGNORE_ID), weight)
            if outliers is not None:
                loss = loss + cfg.outlier_weight * outlier_loss(logits, y)
            if teacher is not None and cfg.distill > 0:
                with torch.no_grad():
                    old_logits, _ = teacher(x)
                kd = distillation_loss(logits, old_logits, y, cfg.distill_temperature)
                loss = loss + cfg.distill * kd
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            it += 1
            result.history.append({'iteration': it, 'epoch': epoch, 'loss': loss.item(), 'lr': lr})
            progress.update(1)
            progress.set_postfix(loss=f'{loss.item():.3f}')
            if it >= total:
                break
        if val_frames and (it >= next_val or it >= total):
            next_val = it + val_every
            report = evaluate(model, val_frames, cfg.batch_size)
            result.history[-1].update(val_loss=report['loss'], val_miou=report['miou'])
            log.info(
                'epoch %d it %d: loss %.3f val mIoU %.3f', epoch, it, loss.item(), report['miou']
            )
    progress.close()
    result.seconds = time.perf_counter() - start
    result.iterations = it
    model.to(memory_format=torch.contiguous_format).eval()
    return result
