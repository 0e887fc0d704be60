"""PoolingEmbedder and feature_map_trunk: PML's embedder / trunk built from our poolers and
from torchvision / mmpretrain models."""

import pytest
import torch
import torchvision

from gpo_plugin.pml import PoolingEmbedder, feature_map_trunk
from gpo_plugin.registry import MODELS


def test_torchvision_resnet_loses_pooling_and_fc():
    model = torchvision.models.resnet18(weights=None).eval()
    trunk = feature_map_trunk(model).eval()
    images = torch.randn(2, 3, 64, 64)
    maps = trunk(images)
    assert maps.shape == (2, 512, 2, 2)
    # The classifier is exactly fc(avgpool(maps)).
    torch.testing.assert_close(model.fc(maps.mean((2, 3))), model(images))


def test_mmpretrain_backbone_gives_its_last_map():
    backbone = MODELS.build(
        dict(type='ResNet_CIFAR', depth=18, base_channels=8, stem_channels=8, out_indices=(1, 3))
    )
    maps = feature_map_trunk(backbone)(torch.randn(2, 3, 16, 16))
    assert maps.shape == (2, 64, 2, 2)


def test_gsp_embedder_from_config_gives_embeddings_and_attributes():
    embedder = PoolingEmbedder(dict(type='GSP', num_prototypes=5), in_channels=6, embed_dim=4)
    assert embedder.pooler.in_channels == 6 and embedder.pooler.out_channels == 4
    assert embedder.projection is None  # GSP projects itself
    maps = torch.randn(3, 6, 4, 4)
    embeddings, attributes = embedder(maps, return_attributes=True)
    assert embeddings.shape == (3, 4) and attributes.shape == (3, 5)
    torch.testing.assert_close(attributes.sum(1), torch.ones(3))
    # Training: the loss gets GSP's output as it is (its distance normalises); eval (PML's
    # testers): unit vectors, the same rule as MetricLearningHead.predict.
    assert not torch.allclose(embeddings.norm(dim=1), torch.ones(3))
    embedder.eval()
    torch.testing.assert_close(embedder(maps), torch.nn.functional.normalize(embeddings, dim=1))


def test_average_pooling_on_padded_sets_with_lengths():
    embedder = PoolingEmbedder(dict(type='AvgPooling'), in_channels=3, embed_dim=2, normalize=False)
    features, lengths = torch.randn(2, 5, 3), torch.tensor([5, 2])
    expected = torch.stack([features[0].mean(0), features[1, :2].mean(0)])
    torch.testing.assert_close(embedder((features, lengths)), embedder.projection(expected))
    torch.testing.assert_close(
        embedder({'features': features, 'lengths': lengths}), embedder.projection(expected)
    )
    _, attributes = embedder((features, lengths), return_attributes=True)
    assert attributes is None


def test_not_a_pooler_is_named():
    with pytest.raises(TypeError, match='pooler'):
        PoolingEmbedder(torch.nn.Linear(2, 2), in_channels=2, embed_dim=2)
