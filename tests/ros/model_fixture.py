"""A small real model package for the perception tests and benchmark, built in about 20-40 s.

H2a's SegNet (width 0.5) is trained for 20 iterations on simulator frames of the known tasks
sunny and overcast at 120x212, exported to ONNX and calibrated for unseen-task recognition on
held-out frames, as the cloud worker does, only much smaller. With it, snow and curbs score far
above the threshold; night does not (its frames score like sunny ones), so tests use snow.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from robo_lifelong import model_package as mp
from robo_lifelong.labels import KNOWN_CLASS_IDS
from robo_lifelong.sim.camera import CameraModel
from robo_lifelong.sim.world import CampusWorld
from robo_lifelong.unseen import fit_calibration
from robo_lifelong_cloud.data import Frame
from robo_lifelong_cloud.export import export_onnx
from robo_lifelong_cloud.model import SegNetConfig, build_model, weights_bytes
from robo_lifelong_cloud.train import package_manifest
from robo_lifelong_cloud.train_loop import TrainConfig, embed_and_logits, train

HEIGHT, WIDTH = 120, 212


@dataclass(frozen=True)
class FixtureConfig:
    train_per_task: int = 24
    held_per_task: int = 16
    iterations: int = 20  # enough for snow (and curbs) to score far above the threshold
    width_mult: float = 0.5
    seed: int = 0
    known_tasks: tuple[str, ...] = ('sunny', 'overcast')


def _frames(world: CampusWorld, task: str, start: int, n: int) -> list[Frame]:
    out = []
    for i in range(n):
        f = world.random_frame(task, start + i)
        out.append(Frame(f.rgb, None, f.labels, task))
    return out


def build_package(
    out: str | os.PathLike, config: FixtureConfig = FixtureConfig(), version: int = 1
) -> mp.ModelPackage:
    """Train, export and calibrate an RGB model package at ``out``."""
    world = CampusWorld(seed=config.seed, camera=CameraModel(WIDTH, HEIGHT))
    train_frames, held = [], []
    for task in config.known_tasks:
        train_frames += _frames(world, task, 0, config.train_per_task)
        held += _frames(world, task, 50_000, config.held_per_task)
    k = len(KNOWN_CLASS_IDS)
    model = build_model(
        SegNetConfig(num_classes=k, in_channels=3, width=config.width_mult), seed=0
    )
    cfg = TrainConfig(epochs=1000, max_iters=config.iterations, seed=config.seed, augment=False)
    train(model, train_frames, [], cfg)
    onnx_bytes = export_onnx(model, HEIGHT, WIDTH)
    embeddings, logits = embed_and_logits(model, held)
    calibration = fit_calibration(embeddings, [f.task for f in held], logits)
    weights, architecture = weights_bytes(model)
    training = {
        'samples_per_task': {t: config.train_per_task for t in config.known_tasks},
        'epochs': 1,
    }
    manifest = package_manifest(
        model,
        HEIGHT,
        WIDTH,
        None,
        list(config.known_tasks),
        calibration.to_json(),
        training,
        {},
        weights={'architecture': architecture},
    )
    manifest['version'] = version
    return mp.write_package(out, onnx_bytes, manifest, weights)


def with_version(
    package: mp.ModelPackage, out: str | os.PathLike, version: int
) -> mp.ModelPackage:
    """The same model re-sealed as another version (a different content hash) at ``out``."""
    manifest = dict(package.manifest, version=version, parent_version=package.version)
    weights = None if package.weights_path is None else package.weights_path.read_bytes()
    return mp.write_package(out, package.model_path.read_bytes(), manifest, weights)


def cached_package(cache_dir: Path) -> mp.ModelPackage:
    """``build_package`` once per cache directory."""
    path = cache_dir / 'pkg-v1'
    if (path / mp.MANIFEST_FILE).is_file():
        return mp.load_package(path)
    return build_package(path)
