"""The frame-input boundary through ``Pipeline.process`` and ``FrameRunner``: every issue kind is
found once, with its kind; a refused frame is counted as rejected, a frame with a depth issue as
processed. The model is the hand-built one of tests/core/test_runtime.py without a calibration,
so no cloud code is needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from robo_lifelong.models import package as mp
from robo_lifelong.models.watch import ModelSlot, load_model
from robo_lifelong.perception.frame_input import Issue
from robo_lifelong.perception.pipeline import Pipeline, PipelineConfig
from robo_lifelong.perception.runner import FrameRunner
from tests.core.test_image_conversion import PlainImage
from tests.core.test_runtime import manifest, tiny_onnx

H, W = 48, 64
CONFIG = PipelineConfig(robot_id='dog1', max_pixels=200 * 200)
REJECTING = {Issue.COLOR_ENCODING, Issue.COLOR_MESSAGE, Issue.SIZE, Issue.ORDER}


def image(pixels: np.ndarray, encoding: str = 'rgb8') -> PlainImage:
    """A message of ``pixels`` (native byte order, rows unpadded), as a camera sends it."""
    h, w = pixels.shape[:2]
    return PlainImage(h, w, encoding, 0, pixels.nbytes // h, pixels.tobytes())


def colour(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), np.uint8)


DEPTH = image(np.full((H, W), 1500, np.uint16), '16UC1')


@pytest.fixture(scope='module')
def slot(tmp_path_factory: pytest.TempPathFactory) -> ModelSlot:
    package = mp.write_package(tmp_path_factory.mktemp('plain') / 'p', tiny_onnx(), manifest())
    s = ModelSlot()
    s.swap(load_model(package.path, threads=1))
    return s


def test_every_issue_kind_is_one_of_the_two_sorts() -> None:
    assert {k for k in Issue if k.rejects} == REJECTING
    assert {k.value for k in Issue} == {
        'color_encoding', 'color_message', 'size', 'order',
        'depth_encoding', 'depth_message', 'depth_size', 'depth_values',
    }  # fmt: skip


def _short(msg: PlainImage) -> PlainImage:
    msg.data = msg.data[: len(msg.data) // 2]
    return msg


REFUSED = {
    'mono8 colour': (lambda: image(colour()[..., 0], 'mono8'), Issue.COLOR_ENCODING, "'mono8'"),
    'rgba8 colour': (
        lambda: image(np.zeros((H, W, 4), np.uint8), 'rgba8'),
        Issue.COLOR_ENCODING,
        "'rgba8'",
    ),
    'data too short': (lambda: _short(image(colour())), Issue.COLOR_MESSAGE, 'image data has'),
    'empty': (lambda: PlainImage(0, 0, 'rgb8', 0, 0, b''), Issue.COLOR_MESSAGE, 'empty image'),
    'step too small': (
        lambda: PlainImage(H, W, 'rgb8', 0, W, colour().tobytes()),
        Issue.COLOR_MESSAGE,
        'step',
    ),
    # checked on the fields before the data is read: the bound is on memory
    'too many pixels': (
        lambda: PlainImage(300, 300, 'rgb8', 0, 900, b''),
        Issue.SIZE,
        'max_pixels=40000',
    ),
}


@pytest.mark.parametrize('case', sorted(REFUSED))
def test_a_refused_frame_gives_one_issue_and_counts_as_rejected(slot, case: str) -> None:
    build, kind, text = REFUSED[case]
    runner = FrameRunner(Pipeline(CONFIG, slot))
    out = runner.frame(build(), DEPTH, stamp=1.0)
    assert out.result is None and out.rejected and out.alarm is None
    (issue,) = out.issues
    assert issue.kind == kind and issue.rejects and text in issue.message
    c = runner.counts
    assert (c.processed, c.rejected, c.issues, c.first) == (0, 1, {kind: 1}, {kind: issue.message})
    # the next good frame runs: a refusal leaves no state behind
    assert runner.frame(image(colour()), DEPTH, stamp=2.0).result is not None
    assert (c.processed, c.rejected, c.issues) == (1, 1, {kind: 1})


def test_a_stamp_not_newer_is_refused_as_out_of_order(slot) -> None:
    runner = FrameRunner(Pipeline(CONFIG, slot))
    assert runner.frame(image(colour()), DEPTH, stamp=10.0).issues == ()
    for stamp in (10.0, 9.5):
        (issue,) = runner.frame(image(colour()), DEPTH, stamp=stamp).issues
        assert issue.kind == Issue.ORDER and 'not newer' in issue.message
    assert runner.counts.rejected == 2 and runner.counts.issues == {Issue.ORDER: 2}


def _short_depth() -> PlainImage:
    return _short(image(np.full((H, W), 1500, np.uint16), '16UC1'))


DEGRADED = {
    'mono8 depth': (
        lambda: image(np.zeros((H, W), np.uint8), 'mono8'),
        Issue.DEPTH_ENCODING,
        "'mono8' refused",
        False,
    ),
    'depth data too short': (_short_depth, Issue.DEPTH_MESSAGE, 'image data has', False),
    'depth of another size': (
        lambda: image(np.zeros((H + 1, W), np.uint16), '16UC1'),
        Issue.DEPTH_SIZE,
        'does not match rgb',
        False,
    ),
    'NaN metres': (
        lambda: image(np.full((H, W), np.nan, np.float32), '32FC1'),
        Issue.DEPTH_VALUES,
        f'{H * W} NaN',
        True,
    ),
}


@pytest.mark.parametrize('case', sorted(DEGRADED))
def test_a_depth_issue_never_stops_the_frame_and_counts_as_processed(slot, case: str) -> None:
    build, kind, text, with_depth = DEGRADED[case]
    runner = FrameRunner(Pipeline(CONFIG, slot))
    out = runner.frame(image(colour()), build(), stamp=1.0)
    assert out.result is not None and not out.rejected
    assert out.result.with_depth is with_depth
    (issue,) = out.issues
    assert issue.kind == kind and not issue.rejects and text in issue.message
    if not with_depth:
        assert issue.message.endswith('frame processed without depth')
    c = runner.counts
    assert (c.processed, c.rejected, c.issues) == (1, 0, {kind: 1})
    assert c.without_depth == (0 if with_depth else 1)


def test_depth_in_metres_gives_the_same_frame_as_in_millimetres(slot) -> None:
    pipe = Pipeline(CONFIG, slot)
    mm = pipe.process(image(colour()), DEPTH, stamp=1.0)
    metres = image(np.full((H, W), 1.5, np.float32), '32FC1')
    m = pipe.process(image(colour()), metres, stamp=2.0)
    assert mm.issues == m.issues == ()
    np.testing.assert_array_equal(mm.result.labels, m.result.labels)


def test_bgr8_is_read_as_the_same_rgb_frame(slot) -> None:
    pipe = Pipeline(CONFIG, slot)
    rgb = colour(3)
    as_rgb = pipe.process(image(rgb), None, stamp=1.0).result
    as_bgr = pipe.process(image(np.ascontiguousarray(rgb[..., ::-1]), 'bgr8'), None, stamp=2.0)
    assert as_bgr.issues == ()
    np.testing.assert_array_equal(as_bgr.result.rgb, rgb)
    np.testing.assert_array_equal(as_bgr.result.labels, as_rgb.labels)
    assert not as_rgb.with_depth


def test_padded_rows_are_read_through_step(slot) -> None:
    rgb = colour(4)
    padded = np.zeros((H, W * 3 + 8), np.uint8)
    padded[:, : W * 3] = rgb.reshape(H, W * 3)
    msg = PlainImage(H, W, 'rgb8', 0, W * 3 + 8, padded.tobytes())
    out = Pipeline(CONFIG, slot).process(msg, None, stamp=1.0)
    assert out.issues == ()
    np.testing.assert_array_equal(out.result.rgb, rgb)


def test_without_a_model_nothing_is_counted_but_a_refusal(tmp_path: Path) -> None:
    runner = FrameRunner(Pipeline(CONFIG, ModelSlot()))
    out = runner.frame(image(colour()), DEPTH, stamp=1.0)
    assert out.result is None and out.issues == () and not out.rejected
    # the colour checks come first: a bad frame is refused whether a model is loaded or not
    (issue,) = runner.frame(image(colour()[..., 0], 'mono8'), None, stamp=2.0).issues
    assert issue.kind == Issue.COLOR_ENCODING
    c = runner.counts
    assert (c.processed, c.rejected, c.issues) == (0, 1, {Issue.COLOR_ENCODING: 1})


def test_issue_summary_lists_every_kind_seen(slot) -> None:
    runner = FrameRunner(Pipeline(CONFIG, slot))
    bad_depth = image(np.zeros((H + 1, W), np.uint16), '16UC1')
    runner.frame(image(colour()), bad_depth, stamp=1.0)
    runner.frame(image(colour()), bad_depth, stamp=2.0)
    runner.frame(image(colour()), None, stamp=2.0)
    assert runner.counts.issue_summary() == 'depth_size=2, order=1'
