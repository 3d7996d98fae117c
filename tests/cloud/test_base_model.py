"""The base model shipped in ``ros2_ws/src/robo_lifelong/models/`` (``make base-model``): the
package verifies, its manifest records the recipe, the model card's numbers are the manifest's,
and the package reproduces them on the validation frames regenerated from the recorded seeds."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from robo_lifelong.models import package as mp
from robo_lifelong.sim.camera import CameraModel
from robo_lifelong.sim.route import Route
from robo_lifelong.sim.world import CampusWorld
from robo_lifelong_cloud.base_model import (
    CALIBRATION_START,
    CARD_FILE,
    COMMAND,
    DEFAULT_OUT,
    ROUTE_CALIBRATION_START_S,
    BaseModelConfig,
    config_of,
    measure,
    model_card,
    recipe_frames,
    render,
    render_route,
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


def test_the_recipes_frame_sets_come_from_worlds_of_their_own_and_half_walk_the_route() -> None:
    recipe = BaseModelConfig()
    train, calibration = set(recipe.train_worlds), set(recipe.calibration_worlds)
    assert not train & calibration and recipe.validation_seed not in train | calibration
    small = dataclasses.replace(
        recipe,
        height=60,
        width=106,
        train_worlds=(3,),
        calibration_worlds=(21,),
        train_per_world=2,
        calibration_per_world=2,
    )
    train_frames, calibration_frames = recipe_frames(small)
    route = Route(((small.tasks[0], 1.0),), 3, CameraModel(106, 60))
    other = Route(((small.tasks[0], 1.0),), 21, CameraModel(106, 60))
    for k, task in enumerate(small.tasks):
        # per task: one frame from a random pose, one from a pose along the route
        random_pose, on_route = train_frames[2 * k : 2 * k + 2]
        assert {random_pose.task, on_route.task} == {task}
        np.testing.assert_array_equal(random_pose.rgb, render(route.world, task, 0, 1)[0].rgb)
        np.testing.assert_array_equal(on_route.rgb, render_route(route, task, 0.0, 1)[0].rgb)
        held = calibration_frames[2 * k : 2 * k + 2]
        expected = [
            render(CampusWorld(21, CameraModel(106, 60)), task, CALIBRATION_START, 1)[0],
            render_route(other, task, ROUTE_CALIBRATION_START_S, 1)[0],
        ]
        for got, want in zip(held, expected, strict=True):
            np.testing.assert_array_equal(got.rgb, want.rgb)
