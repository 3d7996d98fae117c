"""Segmentation inference on the robot: onnxruntime + numpy + cv2 (no torch).

``infer`` resizes the frame to the package's input size, normalises it and runs the model, asking
its label head for labels at the frame's own size: the graph upsamples the logits bilinearly and
takes the argmax there (see the cloud's ``export.py``), so labels follow boundaries at full
resolution. Unseen-task scoring uses the stride-8 logits and the package's calibration when it has
one.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import cv2
import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as _ort_errors

from robo_lifelong.errors import ImageConversionError, ModelPackageError
from robo_lifelong.models.package import ModelPackage
from robo_lifelong.models.unseen import UnseenResult, score_frame

log = logging.getLogger(__name__)

# onnxruntime's load errors derive from Exception directly, not from RuntimeError
_ORT_LOAD_ERRORS = (
    RuntimeError,
    ValueError,
    _ort_errors.Fail,
    _ort_errors.InvalidArgument,
    _ort_errors.InvalidGraph,
    _ort_errors.InvalidProtobuf,
    _ort_errors.NoSuchFile,
    _ort_errors.NotImplemented,
)


@dataclass(frozen=True)
class Inference:
    labels: np.ndarray  # (H, W) uint8 class ids at the input frame's resolution
    logits: np.ndarray  # (C, h, w) float32 at the model's output stride
    embedding: np.ndarray  # (D,) float32
    unseen: UnseenResult | None
    model_s: float  # wall time of the network alone (session.run), without pre/post-processing


def preprocess(rgb: np.ndarray, depth_mm: np.ndarray | None, input_spec: dict) -> np.ndarray:
    """(1, C, h, w) float32 network input from an RGB frame (and depth in mm when C == 4)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageConversionError(
            f'expected an (H, W, 3) uint8 RGB frame, got {rgb.shape} {rgb.dtype}'
        )
    height, width, channels = input_spec['height'], input_spec['width'], input_spec['channels']
    size, frame_size = (width, height), rgb.shape[:2]
    if frame_size != (height, width):
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    planes = list(cv2.split(rgb))  # contiguous planes: the per-channel maths below stays fast
    scale = [1.0 / 255.0] * 3
    if channels == 4:
        if depth_mm is None:
            depth = np.zeros((height, width), np.uint16)  # no depth: as if no return anywhere
        elif depth_mm.shape != frame_size:
            raise ImageConversionError(f'depth size {depth_mm.shape} != rgb size {frame_size}')
        elif frame_size != (height, width):
            depth = cv2.resize(depth_mm, size, interpolation=cv2.INTER_NEAREST)
        else:
            depth = depth_mm
        planes.append(depth)
        scale.append(input_spec['depth_scale'])
    out = np.empty((1, channels, height, width), np.float32)
    for c in range(channels):
        std = input_spec['std'][c]
        # (v * scale - mean) / std as one multiply and one add into the output buffer
        np.multiply(planes[c], scale[c] / std, out=out[0, c], casting='unsafe')
        out[0, c] -= input_spec['mean'][c] / std
    return out


class SegmentationRuntime:
    def __init__(self, package: ModelPackage, threads: int = 2) -> None:
        self.package = package
        self.input_spec = package.manifest['input']
        self.calibration = package.unseen_calibration()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # Between camera frames the pool would otherwise busy-wait: measured 35 % -> 14 % CPU of
        # 2 cores at 240x424 with the same latency (bench_perception).
        options.add_session_config_entry('session.intra_op.allow_spinning', '0')
        try:
            self.session = ort.InferenceSession(
                str(package.model_path), options, providers=['CPUExecutionProvider']
            )
        except _ORT_LOAD_ERRORS as e:
            raise ModelPackageError(
                f'{package.model_path}: onnxruntime cannot load it: {e}'
            ) from e
        outputs = package.manifest['outputs']
        self._output_names = [outputs['logits'], outputs['embedding'], outputs['labels']['name']]
        self._size_input = outputs['labels']['size_input']

    def infer(self, rgb: np.ndarray, depth_mm: np.ndarray | None = None) -> Inference:
        x = preprocess(rgb, depth_mm, self.input_spec)
        size = np.array(rgb.shape[:2], np.int64)
        started = time.perf_counter()
        logits, embedding, labels = self.session.run(
            self._output_names, {self.input_spec['name']: x, self._size_input: size}
        )
        model_s = time.perf_counter() - started
        logits, embedding, labels = logits[0], embedding[0], labels[0]
        unseen = None
        if self.calibration is not None:
            unseen = score_frame(self.calibration, embedding, logits)
        return Inference(labels, logits, embedding, unseen, model_s)
