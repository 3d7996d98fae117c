"""The base model shipped in ``ros2_ws/src/robo_lifelong/models/`` (``make base-model``): the
package verifies, its manifest records the recipe, the model card's numbers are the manifest's,
and the package reproduces them on the validation frames regenerated from the recorded seeds."""

from __future__ import annotations

import re

import pytest

from robo_lifelong.models import package as mp
from robo_lifelong_cloud.base_model import (
    CARD_FILE,
    COMMAND,
    DEFAULT_OUT,
    config_of,
    measure,
    model_card,
    validation_frames,
)

TOLERANCE = 0.005  # 0.5 mIoU point: onnxruntime builds may round a few boundary pixels apart


@pytest.fixture(scope='module')
def package() -> mp.ModelPackage:
    return mp.load_package(DEFAULT_OUT)  # verifies both hashes


def test_manifest_records_the_recipe(package: mp.ModelPackage) -> None:
    recipe = package.manifest['training']['recipe']
    assert recipe['command'] == COMMAND
    assert recipe['seed'] == config_of(package).seed
    commit = recipe['source_commit']
    assert re.fullmatch('[0-9a-f]{40}', commit), commit  # made from a clean checkout
    assert package.manifest['unseen'] is not None
    assert package.known_tasks == config_of(package).tasks


def test_model_card_is_written_from_the_manifest(package: mp.ModelPackage) -> None:
    assert (DEFAULT_OUT.parent / CARD_FILE).read_text() == model_card(package)


def test_package_reproduces_the_recorded_validation_miou(package: mp.ModelPackage) -> None:
    recorded = package.manifest['metrics']
    report = measure(package, validation_frames(config_of(package)))
    assert set(report['per_task']) == set(recorded['per_task'])
    for task, r in report['per_task'].items():
        assert abs(r['miou'] - recorded['per_task'][task]['miou']) <= TOLERANCE, task
    assert abs(report['miou'] - recorded['miou']) <= TOLERANCE
