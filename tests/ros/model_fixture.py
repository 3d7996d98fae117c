"""A small real model package for the perception tests and benchmark, built in about 40-80 s.

H2a's SegNet (width 0.5) is trained for 40 iterations on simulator frames of the known tasks
sunny and overcast at 120x212, exported to ONNX and calibrated for unseen-task recognition on
held-out frames, as the cloud worker does, only much smaller. With it, the route's snow scores
far above the threshold and its sunny frames below it (``tests/core/test_replay.py`` checks the
margins first, so a weak package is named as such); tests use snow.

The recipe is sized for that separation, not for speed alone: with 20 iterations and 16 held-out
frames per task the route's snow scored around the threshold (0.06-1.26, median 0.68), on some
CPUs below it: the barely trained embedding hardly moved for snow (its pixel evidence is below
the known frames'). And 32 calibration frames for a 64-dimensional embedding leave the
within-task covariance's residual variance at its shrinkage floor (the fitted rank reaches the
frames' degrees of freedom), so known frames' distances are heavy-tailed (median 131 for D=64)
and the threshold, the second largest of 32, noisy. 64 held-out frames per task (inference only)
brought that median to about 47; the embedding now also holds the shallow features (D = 88 at
this width), so 96 are held out. 40 iterations on 48 frames per task give the separation.

Building needs torch (the cloud worker); using a built package does not. The robot-side suite
(``pytest --suite=robot``, venvs without torch) reads one that a venv with torch built into the
directory ``$ROBO_LIFELONG_TEST_MODEL_CACHE`` (``python -m tests.ros.model_fixture DIR`` or a
full-suite run with the variable set; ``make test-robot`` does the former). The package's
directory name carries a hash of the sources that make it (this file and the project modules it
imports, directly or not), so a stale one is never used.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from robo_lifelong.labels import KNOWN_CLASS_IDS
from robo_lifelong.models import package as mp
from robo_lifelong.sim.camera import CameraModel
from robo_lifelong.sim.world import CampusWorld

if TYPE_CHECKING:
    from robo_lifelong_cloud.data import Frame

HEIGHT, WIDTH = 120, 212
# A directory of prebuilt packages, shared across test runs and venvs (see the module docstring).
CACHE_ENV = 'ROBO_LIFELONG_TEST_MODEL_CACHE'
REPO = Path(__file__).resolve().parents[2]
# Where the project's top-level packages live (robo_lifelong, robo_lifelong_cloud).
PACKAGE_ROOTS = (REPO / 'ros2_ws' / 'src' / 'robo_lifelong', REPO / 'cloud')


@dataclass(frozen=True)
class FixtureConfig:
    train_per_task: int = 48
    held_per_task: int = 96  # more frames than embedding dimensions (88): see the docstring
    iterations: int = 40  # the route's snow then scores above the threshold with margin
    width_mult: float = 0.5
    seed: int = 0
    known_tasks: tuple[str, ...] = ('sunny', 'overcast')


def _frames(world: CampusWorld, task: str, start: int, n: int) -> list[Frame]:
    from robo_lifelong_cloud.data import Frame

    out = []
    for i in range(n):
        f = world.random_frame(task, start + i)
        out.append(Frame(f.rgb, None, f.labels, task))
    return out


def build_package(
    out: str | os.PathLike, config: FixtureConfig = FixtureConfig(), version: int = 1
) -> mp.ModelPackage:
    """Train, export and calibrate an RGB model package at ``out`` (needs torch)."""
    from robo_lifelong_cloud.calibration import fit_calibration
    from robo_lifelong_cloud.export import export_onnx
    from robo_lifelong_cloud.model import SegNetConfig, build_model, weights_bytes
    from robo_lifelong_cloud.train import package_manifest
    from robo_lifelong_cloud.train_loop import TrainConfig, embed_and_logits, train

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


def _module_file(name: str) -> Path | None:
    """The source file of project module ``name`` (``a.b`` -> a/b.py or a/b/__init__.py)."""
    for root in PACKAGE_ROOTS:
        base = root.joinpath(*name.split('.'))
        for path in (base.with_suffix('.py'), base / '__init__.py'):
            if path.is_file():
                return path
    return None


def source_files() -> list[Path]:
    """This file and every project module it imports, directly or not (read with ast, so no
    torch is needed), with the packages they are in and the cloud pins (torch's version)."""
    todo, seen = [Path(__file__).resolve()], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        package = path.parent if path.name == '__init__.py' else None
        if path.is_relative_to(REPO / 'tests'):
            parts = []
        else:
            root = next(r for r in PACKAGE_ROOTS if path.is_relative_to(r))
            parts = list(path.relative_to(root).with_suffix('').parts)
            if package is not None:
                parts = parts[:-1]  # the package itself
        names = []
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: from the module's package
                    keep = len(parts) - node.level + (package is not None)
                    base = '.'.join(parts[:keep] + ([node.module] if node.module else []))
                else:
                    base = node.module or ''
                names += [base] + [f'{base}.{alias.name}' for alias in node.names]
        for name in names:
            for n in range(1, name.count('.') + 2):  # the module and the packages above it
                found = _module_file('.'.join(name.split('.')[:n]))
                if found is not None:
                    todo.append(found.resolve())
    return sorted(seen) + [REPO / 'requirements' / 'cloud.txt']


def sources_hash() -> str:
    """sha256 (12 hex digits) of ``source_files()``."""
    digest = hashlib.sha256()
    for path in source_files():
        digest.update(str(path.relative_to(REPO)).encode() + b'\0' + path.read_bytes() + b'\0')
    return digest.hexdigest()[:12]


def can_build() -> bool:
    return all(importlib.util.find_spec(m) for m in ('torch', 'robo_lifelong_cloud'))


def cached_package(cache_dir: Path) -> mp.ModelPackage:
    """``build_package`` once per cache directory; ``$ROBO_LIFELONG_TEST_MODEL_CACHE``, if set,
    replaces ``cache_dir``. Without torch the package must be there already: a clear error, never
    a skip, says how to build it."""
    shared = os.environ.get(CACHE_ENV)
    root = Path(shared) if shared else cache_dir
    path = root / f'pkg-v1-{sources_hash()}'
    if (path / mp.MANIFEST_FILE).is_file():
        return mp.load_package(path)
    if not can_build():
        if not shared:
            where = f'{CACHE_ENV} is not set'
        else:
            others = sorted(p.name for p in root.glob('pkg-v1-*')) if root.is_dir() else []
            where = f'{CACHE_ENV}={shared} has ' + (
                f'only packages of other sources: {others}' if others else 'no package'
            )
        raise RuntimeError(
            f'no test model package at {path}, and this venv cannot build one: building needs '
            f'torch and robo_lifelong_cloud (the full venv). {where}. Build it with '
            f'`.venv/bin/python -m tests.ros.model_fixture DIR` and run with {CACHE_ENV}=DIR '
            '(`make test-robot` does both).'
        )
    package = build_package(path)
    if shared:  # packages of older sources would only pile up
        for old in root.glob('pkg-v1-*'):
            if old != path:
                shutil.rmtree(old, ignore_errors=True)
    return package


def main(argv: list[str]) -> int:
    """``python -m tests.ros.model_fixture DIR``: build the package into DIR unless it is there."""
    if len(argv) != 1:
        print('usage: python -m tests.ros.model_fixture DIR', file=sys.stderr)
        return 2
    os.environ[CACHE_ENV] = str(Path(argv[0]).resolve())
    print(cached_package(Path(argv[0])).path)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
