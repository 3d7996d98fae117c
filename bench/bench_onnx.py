"""Segmentation model latency in onnxruntime at 240x424 (target: median <= 5 ms on 2 threads).

``session``: the ONNX graph alone (RGB-D input, 24 classes). ``runtime``: the robot's full
``SegmentationRuntime.infer`` on a 240x424 frame (preprocess, run with the full-resolution label
head), and on a 480x640 frame (resized to the model input first). The network's latency does not
depend on the weights, so an untrained model is used there. The label head's does: it interpolates
every class only where three classes compete (``label_head.py``), so ``label_head_480x640`` times
the shipped base model's ``infer`` at 480x640 (2 threads) on a simulator frame and on random
8-pixel colour blocks, the worst input found (nearly every column has three contenders).
"""

from __future__ import annotations

import os
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

from robo_lifelong.labels import NUM_CLASSES
from robo_lifelong.models import package as mp
from robo_lifelong.models.runtime import SegmentationRuntime
from robo_lifelong.sim.camera import CameraModel
from robo_lifelong.sim.world import CampusWorld
from robo_lifelong_cloud.base_model import DEFAULT_OUT as BASE_MODEL
from robo_lifelong_cloud.data import input_spec
from robo_lifelong_cloud.export import MANIFEST_OUTPUTS, export_onnx
from robo_lifelong_cloud.model import OUTPUT_STRIDE, SegNetConfig, build_model, num_parameters

HEIGHT, WIDTH = 240, 424
TARGET_MEDIAN_MS = 5.0


def _stats(fn, repeats: int) -> dict:
    for _ in range(max(3, repeats // 10)):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return {
        'median_ms': round(float(np.median(times)), 3),
        'p95_ms': round(float(np.percentile(times, 95)), 3),
    }


def _package(directory: Path) -> tuple[mp.ModelPackage, int]:
    model = build_model(SegNetConfig(num_classes=NUM_CLASSES, in_channels=4), seed=0)
    manifest = {
        'schema_version': mp.SCHEMA_VERSION,
        'version': 1,
        'parent_version': None,
        'created': '1970-01-01T00:00:00+00:00',
        'classes': [{'id': i, 'name': f'c{i}', 'color': [0, 0, 0]} for i in range(NUM_CLASSES)],
        'input': input_spec(HEIGHT, WIDTH, 4),
        'outputs': MANIFEST_OUTPUTS,
        'output_stride': OUTPUT_STRIDE,
        'embedding_dim': model.config.embedding_dim,
        'known_tasks': [],
        'unseen': None,
        'training': {'samples_per_task': {}, 'epochs': 0},
        'metrics': {},
        'weights': None,
    }
    package = mp.write_package(directory, export_onnx(model, HEIGHT, WIDTH), manifest)
    return package, num_parameters(model)


def _label_head_inputs(repeats: int) -> dict:
    runtime = SegmentationRuntime(mp.load_package(BASE_MODEL), threads=2)
    frame = CampusWorld(seed=3, camera=CameraModel(640, 480)).random_frame('construction', 1)
    blocks = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    blocks = np.repeat(np.repeat(blocks, 8, axis=0), 8, axis=1)
    out = {
        'simulator_frame': _stats(partial(runtime.infer, frame.rgb, frame.depth_mm), repeats),
        'colour_blocks_8px': _stats(partial(runtime.infer, blocks, None), repeats),
    }
    out['worst_to_frame'] = round(
        out['colour_blocks_8px']['median_ms'] / out['simulator_frame']['median_ms'], 2
    )
    return out


def run(quick: bool = False) -> dict:
    repeats = 30 if quick else 300
    rng = np.random.default_rng(0)
    result: dict = {'input': f'{HEIGHT}x{WIDTH} RGB-D, {NUM_CLASSES} classes', 'threads': {}}
    with tempfile.TemporaryDirectory() as tmp:
        package, params = _package(Path(tmp) / 'pkg')
        result['parameters'] = params
        result['onnx_bytes'] = package.model_path.stat().st_size
        frames = {
            f'{h}x{w}': (
                rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
                rng.integers(0, 10000, (h, w), dtype=np.uint16),
            )
            for h, w in ((HEIGHT, WIDTH), (480, 640))
        }
        for threads in (1, 2):
            runtime = SegmentationRuntime(package, threads=threads)
            x = {
                'image': rng.standard_normal((1, 4, HEIGHT, WIDTH)).astype(np.float32),
                'labels_size': np.array([HEIGHT, WIDTH], np.int64),
            }
            entry = {'session': _stats(partial(runtime.session.run, None, x), repeats)}
            for size, (rgb, depth) in frames.items():
                entry[f'runtime_{size}'] = _stats(partial(runtime.infer, rgb, depth), repeats)
            result['threads'][str(threads)] = entry
    result['label_head_480x640'] = _label_head_inputs(repeats)
    result['load_average_1min'] = round(os.getloadavg()[0], 2)  # other jobs on the cores
    median = result['threads']['2']['session']['median_ms']
    result['target_median_ms_2_threads'] = TARGET_MEDIAN_MS
    result['target_met'] = median <= TARGET_MEDIAN_MS
    return result
