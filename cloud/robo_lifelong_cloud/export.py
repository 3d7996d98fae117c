"""ONNX export of the segmentation net and a torch-vs-onnxruntime parity check.

The graph has a dynamic batch axis and a fixed input size (the package's ``input`` size): the
robot resizes every frame to it. Besides the stride-8 ``logits`` and the ``embedding`` it outputs
``labels`` at any size the caller asks for (input ``labels_size`` = (H, W), the frame's size): the
logits upsampled bilinearly (half-pixel centres, as torch's ``align_corners=False``) and arg-maxed
inside the graph, so the robot publishes full-resolution labels, not 8x8 blocks of the stride-8
argmax. ``label_head.py`` builds that head so that it interpolates every class only where more
than two classes compete.

The TorchScript-based exporter (``dynamo=False``) is used
because it exports this small conv net in under a second (the dynamo exporter takes ~10 s here and
gives the same graph up to parity); its deprecation warning is silenced for that reason.
"""

from __future__ import annotations

import io
import logging
import os
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F

from robo_lifelong_cloud.label_head import add_label_head
from robo_lifelong_cloud.model import SegNet

log = logging.getLogger(__name__)

OPSET = 17
INPUT_NAME = 'image'
LABELS_SIZE_NAME = 'labels_size'
OUTPUT_NAMES = ('logits', 'embedding')
LABELS_NAME = 'labels'
# The manifest's ``outputs`` section of every package this module exports.
MANIFEST_OUTPUTS = {
    'logits': OUTPUT_NAMES[0],
    'embedding': OUTPUT_NAMES[1],
    'labels': {'name': LABELS_NAME, 'size_input': LABELS_SIZE_NAME},
}


class ParityError(AssertionError):
    """The ONNX graph's outputs differ from the torch model's beyond the tolerance."""


def _add_label_head(graph: onnx.GraphProto) -> None:
    """Append ``labels`` (N, H, W) uint8 = argmax over classes of the logits resized bilinearly
    to the input ``labels_size`` = (H, W) (``label_head.py`` says how)."""
    add_label_head(graph, OUTPUT_NAMES[0], LABELS_SIZE_NAME, LABELS_NAME)
    int64 = onnx.TensorProto.INT64
    graph.input.append(onnx.helper.make_tensor_value_info(LABELS_SIZE_NAME, int64, [2]))
    graph.output.append(
        onnx.helper.make_tensor_value_info(
            LABELS_NAME, onnx.TensorProto.UINT8, ['batch', 'label_height', 'label_width']
        )
    )


def export_onnx(model: SegNet, height: int, width: int) -> bytes:
    """Serialized ONNX model (opset 17, dynamic batch) of ``model`` in eval mode, with the
    full-resolution label head."""
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
    graph = onnx.load_from_string(buffer.getvalue())
    _add_label_head(graph.graph)
    onnx.checker.check_model(graph)
    return graph.SerializeToString()


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
    size = np.array([height, width], np.int64)
    *actual, labels = session.run(
        [*OUTPUT_NAMES, LABELS_NAME], {INPUT_NAME: x, LABELS_SIZE_NAME: size}
    )
    worst = 0.0
    for name, e, a in zip(OUTPUT_NAMES, expected, actual, strict=True):
        if e.shape != a.shape:
            raise ParityError(f'{name}: torch shape {e.shape} != onnx shape {a.shape}')
        diff = float(np.max(np.abs(e - a)))
        if diff > atol:
            raise ParityError(f'{name}: max |torch - onnx| = {diff:.3g} > atol {atol:g}')
        worst = max(worst, diff)
    upsampled = F.interpolate(
        torch.from_numpy(actual[0]), size=(height, width), mode='bilinear', align_corners=False
    )
    top2 = upsampled.topk(2, dim=1).values
    clear = (top2[:, 0] - top2[:, 1] > atol).numpy()  # pixels whose argmax no rounding can flip
    want = upsampled.argmax(dim=1).numpy()
    if labels.shape != want.shape:
        raise ParityError(f'{LABELS_NAME}: onnx shape {labels.shape} != {want.shape}')
    wrong = int(np.count_nonzero((labels != want) & clear))
    if wrong:
        raise ParityError(f'{LABELS_NAME}: {wrong} pixels differ from argmax(bilinear(logits))')
    log.info('ONNX parity ok: max abs difference %.3g', worst)
    return worst
