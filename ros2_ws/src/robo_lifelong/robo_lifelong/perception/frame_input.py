"""The frame-input boundary: a camera frame's messages -> the arrays the pipeline runs on, with
every problem found on the way as a typed ``FrameIssue`` (no ROS).

The messages are ``sensor_msgs/Image`` or anything with its fields (``ImageLike``: rosbags
messages, test stand-ins). A colour message is refused, and the frame skipped, for an encoding
other than ``RGB_ENCODINGS``, more pixels than the memory bound, or fields that do not describe
its data. Depth never stops a frame: a depth message of another encoding, with inconsistent
fields or of another size than the colour one is left out and the frame runs without depth; NaN
or negative metres count as no return. The stamp order is the pipeline's check, since only it
knows the last frame it processed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import cv2
import numpy as np

from robo_lifelong.errors import FrameError, ImageConversionError
from robo_lifelong.io.image_conversion import ImageLike, depth_to_mm, image_to_numpy

RGB_ENCODINGS = ('rgb8', 'bgr8')
DEPTH_ENCODINGS = ('16UC1', '32FC1')
_WITHOUT_DEPTH = 'frame processed without depth'


class Issue(str, Enum):
    """What was wrong with a frame's input. The first four refuse the frame (``rejects``); the
    depth ones let it through, without depth or with the bad values as no return."""

    COLOR_ENCODING = 'color_encoding'  # not one of RGB_ENCODINGS
    COLOR_MESSAGE = 'color_message'  # height, width, step and data do not fit together
    SIZE = 'size'  # more pixels than max_pixels
    ORDER = 'order'  # stamp not newer than the last processed frame's
    DEPTH_ENCODING = 'depth_encoding'  # not one of DEPTH_ENCODINGS: depth left out
    DEPTH_MESSAGE = 'depth_message'  # inconsistent fields: depth left out
    DEPTH_SIZE = 'depth_size'  # not the colour frame's size: depth left out
    DEPTH_VALUES = 'depth_values'  # NaN or negative metres, treated as no return

    @property
    def rejects(self) -> bool:
        return self in _REJECTING


_REJECTING = frozenset({Issue.COLOR_ENCODING, Issue.COLOR_MESSAGE, Issue.SIZE, Issue.ORDER})


@dataclass(frozen=True)
class FrameIssue:
    kind: Issue
    message: str

    @property
    def rejects(self) -> bool:
        return self.kind.rejects


class FrameRejected(FrameError):
    """Raised inside the boundary when the frame must be skipped; ``Pipeline.process`` returns
    its ``issue``."""

    def __init__(self, kind: Issue, message: str) -> None:
        super().__init__(message)
        self.issue = FrameIssue(kind, message)


def read_color(color: ImageLike, max_pixels: int) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of ``color`` (a view of its data for rgb8). FrameRejected
    (COLOR_ENCODING, SIZE, COLOR_MESSAGE) when the frame must be skipped."""
    if color.encoding not in RGB_ENCODINGS:
        raise FrameRejected(
            Issue.COLOR_ENCODING,
            f'colour frame with encoding {color.encoding!r} refused; '
            f'expected one of {RGB_ENCODINGS}',
        )
    # from the fields, before the data is touched: the bound is on memory
    pixels = color.height * color.width
    if pixels > max_pixels:
        raise FrameRejected(
            Issue.SIZE,
            f'frame {color.width}x{color.height} has {pixels} pixels, '
            f'more than max_pixels={max_pixels}',
        )
    try:
        rgb = image_to_numpy(color)
    except ImageConversionError as e:
        raise FrameRejected(Issue.COLOR_MESSAGE, f'colour frame refused: {e}') from e
    if color.encoding == 'bgr8':
        rgb = cv2.cvtColor(rgb, cv2.COLOR_BGR2RGB)
    return rgb


def read_depth(
    depth: ImageLike | None, size: tuple[int, int]
) -> tuple[np.ndarray | None, list[FrameIssue]]:
    """(H, W) uint16 mm of ``depth`` aligned to a colour frame of ``size`` (H, W), or None when
    there is none or it was left out, and the issues found; never refuses the frame."""
    if depth is None:
        return None, []
    if depth.encoding not in DEPTH_ENCODINGS:
        return None, [
            FrameIssue(
                Issue.DEPTH_ENCODING,
                f'depth encoding {depth.encoding!r} refused; expected one of {DEPTH_ENCODINGS}: '
                f'{_WITHOUT_DEPTH}',
            )
        ]
    try:
        pixels = image_to_numpy(depth)
    except ImageConversionError as e:
        return None, [FrameIssue(Issue.DEPTH_MESSAGE, f'depth refused: {e}: {_WITHOUT_DEPTH}')]
    if pixels.shape[:2] != size:
        return None, [
            FrameIssue(
                Issue.DEPTH_SIZE,
                f'depth {pixels.shape[1]}x{pixels.shape[0]} does not match rgb '
                f'{size[1]}x{size[0]}: {_WITHOUT_DEPTH}',
            )
        ]
    depth_mm, bad = depth_to_mm(pixels)
    if bad:
        message = f'depth has {bad} NaN/negative values: treated as no return'
        return depth_mm, [FrameIssue(Issue.DEPTH_VALUES, message)]
    return depth_mm, []
