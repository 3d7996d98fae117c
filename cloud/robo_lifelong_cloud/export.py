"""ONNX export of the segmentation net and a torch-vs-onnxruntime parity check.

The graph has a dynamic batch axis and a fixed input size (the package's ``input`` size): the
robot resizes every frame to it. The TorchScript-based exporter (``dynamo=False``) is used
because it exports this small conv net in under a second (the dynamo exporter takes ~10 s here and
gives the same graph up to parity); its deprecation warning is silenced for that reason.
"""

from __future__ import annotations

import io
import logging
import os
import warnings

import numpy as np
import onnxruntime as ort
import torch

from robo_lifelong_cloud.model import SegNet

log = logging.getLogger(__name__)

OPSET = 17
INPUT_NAME = 'image'
OUTPUT_NAMES = ('logits', 'embedding')


class ParityError(AssertionError):
    """The ONNX graph's outputs differ from the torch model's beyond the tolerance."""


def export_onnx(model: SegNet, height: int, width: int) -> bytes:
    """Serialized ONNX model (opset 17, dynamic batch) of ``model`` in eval mode."""
    model = model.eval()
    dummy = torch.zeros(1, model.config.in_channels, height, width)
    buffer = io.BytesIO()
    batch = {0: 'batch'}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        torch.onnx.export(
            model,
            (dummy,),
            buffer,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={name: batch for name in (INPUT_NAME, *OUTPUT_NAMES)},
            opset_version=OPSET,
            dynamo=False,
        )
    return buffer.getvalue()


def check_parity(
    model: SegNet,
    onnx_model: str | os.PathLike | bytes,
    atol: float = 1e-3,
    batch: int = 2,
    seed: int = 0,
) -> float:
    """Run torch and onnxruntime on the same random input; return the largest absolute
    difference, or raise ParityError naming the output that differs by more than ``atol``."""
    source = onnx_model if isinstance(onnx_model, bytes) else os.fspath(onnx_model)
    session = ort.InferenceSession(source, providers=['CPUExecutionProvider'])
    shape = session.get_inputs()[0].shape
    height, width = int(shape[2]), int(shape[3])
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, model.config.in_channels, height, width)).astype(np.float32)
    with torch.no_grad():
        expected = [t.numpy() for t in model.eval()(torch.from_numpy(x))]
    actual = session.run(list(OUTPUT_NAMES), {INPUT_NAME: x})
    worst = 0.0
    for name, e, a in zip(OUTPUT_NAMES, expected, actual, strict=True):
        if e.shape != a.shape:
            raise ParityError(f'{name}: torch shape {e.shape} != onnx shape {a.shape}')
        diff = float(np.max(np.abs(e - a)))
        if diff > atol:
            raise ParityError(f'{name}: max |torch - onnx| = {diff:.3g} > atol {atol:g}')
        worst = max(worst, diff)
    log.info('ONNX parity ok: max abs difference %.3g', worst)
    return worst
