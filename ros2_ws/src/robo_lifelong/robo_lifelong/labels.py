"""The label map: the single source of class ids, names and colours.

Ids 0-18 are the Cityscapes train ids (same names, same colours), so that models and metrics line
up with Cityscapes tooling. 19 curb and 21 ramp are the ids Sedna's robot example uses for its
terrain skill; 20 is stairs. 22 and up are classes that unseen tasks introduce: known models never
saw them, and a lifelong update adds them without changing the meaning of older ids.
The model manifest, the overlay colours, the dataset writer and the docs legend read this table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE_ID = 255  # label value for pixels excluded from training and metrics


@dataclass(frozen=True)
class LabelClass:
    id: int
    name: str
    color: tuple[int, int, int]  # RGB
    origin: str  # 'cityscapes', 'robot' (terrain classes) or 'unseen' (introduced by unseen tasks)


CLASSES: tuple[LabelClass, ...] = (
    LabelClass(0, 'road', (128, 64, 128), 'cityscapes'),
    LabelClass(1, 'sidewalk', (244, 35, 232), 'cityscapes'),
    LabelClass(2, 'building', (70, 70, 70), 'cityscapes'),
    LabelClass(3, 'wall', (102, 102, 156), 'cityscapes'),
    LabelClass(4, 'fence', (190, 153, 153), 'cityscapes'),
    LabelClass(5, 'pole', (153, 153, 153), 'cityscapes'),
    LabelClass(6, 'traffic_light', (250, 170, 30), 'cityscapes'),
    LabelClass(7, 'traffic_sign', (220, 220, 0), 'cityscapes'),
    LabelClass(8, 'vegetation', (107, 142, 35), 'cityscapes'),
    LabelClass(9, 'terrain', (152, 251, 152), 'cityscapes'),
    LabelClass(10, 'sky', (70, 130, 180), 'cityscapes'),
    LabelClass(11, 'person', (220, 20, 60), 'cityscapes'),
    LabelClass(12, 'rider', (255, 0, 0), 'cityscapes'),
    LabelClass(13, 'car', (0, 0, 142), 'cityscapes'),
    LabelClass(14, 'truck', (0, 0, 70), 'cityscapes'),
    LabelClass(15, 'bus', (0, 60, 100), 'cityscapes'),
    LabelClass(16, 'train', (0, 80, 100), 'cityscapes'),
    LabelClass(17, 'motorcycle', (0, 0, 230), 'cityscapes'),
    LabelClass(18, 'bicycle', (119, 11, 32), 'cityscapes'),
    LabelClass(19, 'curb', (255, 128, 0), 'robot'),
    LabelClass(20, 'stairs', (0, 255, 255), 'robot'),
    LabelClass(21, 'ramp', (255, 255, 255), 'robot'),
    LabelClass(22, 'barrier', (255, 220, 120), 'unseen'),
    LabelClass(23, 'traffic_cone', (255, 90, 200), 'unseen'),
)

BY_NAME: dict[str, LabelClass] = {c.name: c for c in CLASSES}
NUM_CLASSES = len(CLASSES)
KNOWN_CLASS_IDS = tuple(c.id for c in CLASSES if c.origin != 'unseen')


def class_id(name: str) -> int:
    """Id of the class called ``name``; raises KeyError naming the valid names otherwise."""
    try:
        return BY_NAME[name].id
    except KeyError:
        raise KeyError(f'unknown class {name!r}; known: {", ".join(BY_NAME)}') from None


def palette() -> np.ndarray:
    """(256, 3) uint8 RGB lookup table: class id -> colour; unknown ids and IGNORE_ID are black."""
    lut = np.zeros((256, 3), np.uint8)
    for c in CLASSES:
        lut[c.id] = c.color
    return lut


def colorize(labels: np.ndarray) -> np.ndarray:
    """(H, W) uint8 class ids -> (H, W, 3) uint8 RGB colours from the label map."""
    return palette()[labels]
