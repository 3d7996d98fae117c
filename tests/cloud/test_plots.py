"""Training-curve and metrics PNGs are written and show what they claim."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pytest

from robo_lifelong_cloud.plots import metrics_chart, training_curve

REPORT = {
    'miou': 0.6,
    'pixel_accuracy': 0.9,
    'per_class': {'road': 0.9, 'sidewalk': 0.7, 'curb': 0.2},
    'per_task': {
        'sunny': {'miou': 0.7, 'pixel_accuracy': 0.9, 'per_class': {}},
        'night': {'miou': 0.5, 'pixel_accuracy': 0.8, 'per_class': {}},
    },
}


def _png(path) -> np.ndarray:
    assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    return mpimg.imread(path)


def test_training_curve_png(tmp_path):
    history = [
        {'iteration': i, 'loss': 2.0 / (i + 1), 'val_miou': 0.1 * i if i % 2 else None}
        for i in range(10)
    ]
    img = _png(training_curve(history, tmp_path / 'sub' / 'curve.png'))
    assert img.shape[0] > 200 and img.shape[1] > 500
    assert img[..., :3].std() > 0.05  # something is drawn


def test_training_curve_rejects_empty_history(tmp_path):
    with pytest.raises(ValueError, match='empty'):
        training_curve([], tmp_path / 'curve.png')


def test_metrics_chart_candidate_vs_deployed(tmp_path):
    alone = _png(metrics_chart(REPORT, tmp_path / 'alone.png'))
    deployed = {
        **REPORT,
        'per_class': {'road': 0.8, 'sidewalk': 0.6, 'building': 0.5},
        'per_task': {'sunny': REPORT['per_task']['sunny']},
    }
    both = _png(metrics_chart(REPORT, tmp_path / 'both.png', deployed=deployed))
    assert both.shape[1] > alone.shape[1]  # one more class (building) widens the chart

    def grey(img: np.ndarray) -> int:  # pixels of the deployed bars' colour
        return int(np.all(np.abs(img[..., :3] - 0xBB / 255) < 0.01, axis=-1).sum())

    # bars are thousands of pixels; antialiased edges give a few grey ones anyway
    assert grey(both) > 5000 > 500 > grey(alone)
