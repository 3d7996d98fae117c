"""The segmentation net: output shapes, class growth for incremental updates, weight round trip."""

from __future__ import annotations

import pytest
import torch

from robo_lifelong.errors import ConfigError
from robo_lifelong_cloud.model import (
    OUTPUT_STRIDE,
    SegNetConfig,
    build_model,
    grow_classes,
    model_from_weights,
    weights_bytes,
)


@pytest.mark.parametrize('channels', [3, 4])
def test_outputs_are_low_resolution_logits_and_pooled_embedding(channels: int) -> None:
    config = SegNetConfig(num_classes=7, in_channels=channels)
    model = build_model(config, seed=0).eval()
    with torch.no_grad():
        logits, embedding = model(torch.randn(2, channels, 64, 112))
    assert logits.shape == (2, 7, 64 // OUTPUT_STRIDE, 112 // OUTPUT_STRIDE)
    assert embedding.shape == (2, config.embedding_dim)


def test_embedding_holds_the_pooled_deep_and_shallow_features() -> None:
    """The shallow half is what keeps a learned condition from hiding a similar unseen one
    (model module doc); the base model's weights load unchanged."""
    config = SegNetConfig(num_classes=7)
    model = build_model(config, seed=0).eval()
    x = torch.randn(1, 3, 64, 112)
    with torch.no_grad():
        shallow = model.downsample(x)
        deep = model.deep(shallow)
        _, embedding = model(x)
    assert config.embedding_dim == config.deep_dim + config.shallow_dim
    torch.testing.assert_close(embedding[0, : config.deep_dim], deep.mean(dim=(2, 3))[0])
    torch.testing.assert_close(embedding[0, config.deep_dim :], shallow.mean(dim=(2, 3))[0])


def test_odd_input_sizes_round_up() -> None:
    model = build_model(SegNetConfig(num_classes=3), seed=0).eval()
    with torch.no_grad():
        logits, _ = model(torch.randn(1, 3, 60, 106))
    assert logits.shape[2:] == (8, 14)  # ceil(60/8), ceil(106/8)


@pytest.mark.parametrize(
    'kwargs',
    [{'num_classes': 1}, {'num_classes': 5, 'in_channels': 2}, {'num_classes': 5, 'width': 9}],
)
def test_bad_config_is_rejected(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        SegNetConfig(**kwargs)


def test_grow_classes_keeps_old_rows_and_adds_new_ones() -> None:
    model = build_model(SegNetConfig(num_classes=22, in_channels=4), seed=1).eval()
    with torch.no_grad():  # non-trivial BN statistics, so copying them matters
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    grown = grow_classes(model, 24).eval()
    assert grown.config.num_classes == 24
    old, new = model.state_dict(), grown.state_dict()
    for name, tensor in old.items():
        if name.startswith('classifier.'):
            assert torch.equal(new[name][:22], tensor), name
        else:
            assert torch.equal(new[name], tensor), name
    x = torch.randn(2, 4, 64, 112)
    with torch.no_grad():
        (lo, eo), (ln, en) = model(x), grown(x)
    assert ln.shape[1] == 24
    assert torch.allclose(ln[:, :22], lo, atol=1e-6)  # old ids keep their meaning
    assert torch.equal(en, eo)
    # the new classes start out below the old ones: predictions are unchanged at first
    assert torch.equal(ln.argmax(1), lo.argmax(1))


def test_grow_classes_refuses_to_shrink() -> None:
    model = build_model(SegNetConfig(num_classes=5), seed=0)
    with pytest.raises(ConfigError, match='shrink'):
        grow_classes(model, 4)


def test_weights_round_trip_through_safetensors() -> None:
    model = build_model(SegNetConfig(num_classes=6, width=0.5), seed=2).eval()
    data, architecture = weights_bytes(model)
    assert architecture == {'num_classes': 6, 'in_channels': 3, 'width': 0.5}
    restored = model_from_weights(data, architecture)
    x = torch.randn(1, 3, 32, 48)
    with torch.no_grad():
        assert torch.equal(restored(x)[0], model(x)[0])
    with pytest.raises(ConfigError, match='do not match'):
        model_from_weights(data, {**architecture, 'num_classes': 7})
