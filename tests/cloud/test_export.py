"""ONNX export: opset, dynamic batch, the label head's inputs and outputs, torch-vs-onnxruntime
parity (labels included) and its failure. The labels' values on real frames:
``tests/core/test_runtime.py``."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from robo_lifelong_cloud.export import OPSET, ParityError, check_parity, export_onnx
from robo_lifelong_cloud.model import SegNetConfig, build_model


@pytest.fixture(scope='module')
def exported() -> tuple[torch.nn.Module, bytes]:
    model = build_model(SegNetConfig(num_classes=5, in_channels=4), seed=3).eval()
    with torch.no_grad():  # make BatchNorm non-trivial so the exported fold is exercised
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.3, 0.3)
                m.running_var.uniform_(0.5, 1.5)
    return model, export_onnx(model, 48, 80)


def test_graph_has_named_io_opset_and_dynamic_batch(exported) -> None:
    model, data = exported
    graph = onnx.load_from_string(data)
    assert max(op.version for op in graph.opset_import if op.domain in ('', 'ai.onnx')) >= OPSET
    assert [i.name for i in graph.graph.input] == ['image', 'labels_size']
    assert [o.name for o in graph.graph.output] == ['logits', 'embedding', 'labels']
    session = ort.InferenceSession(data, providers=['CPUExecutionProvider'])
    feed = {'image': np.zeros((3, 4, 48, 80), np.float32), 'labels_size': np.array([50, 70])}
    logits, embedding, labels = session.run(None, feed)
    assert logits.shape == (3, 5, 6, 10)
    assert embedding.shape == (3, model.config.embedding_dim)
    assert labels.shape == (3, 50, 70) and labels.dtype == np.uint8


def test_parity_between_torch_and_onnxruntime(exported, tmp_path) -> None:
    model, data = exported
    assert check_parity(model, data, atol=1e-4) <= 1e-4
    path = tmp_path / 'model.onnx'
    path.write_bytes(data)
    assert check_parity(model, path, atol=1e-4) <= 1e-4


def test_parity_check_catches_a_different_model(exported) -> None:
    model, data = exported
    other = build_model(model.config, seed=4).eval()
    with pytest.raises(ParityError, match='logits'):
        check_parity(other, data)
