"""PML hooks: pooling-weight pictures per epoch, GSP's prototype initialisation, chaining."""

import os.path as osp
from types import SimpleNamespace

import torch

from gpo_plugin.models.utils.partial_transport import greedy_k_center, unit_ball
from gpo_plugin.pml import (
    GSPPrototypeInit,
    PoolingEmbedder,
    PoolingWeightsPMLHook,
    chain_hooks,
    init_gsp_prototypes,
)


class _Writer:
    def __init__(self):
        self.images = []

    def add_image(self, tag, image, step, dataformats):
        self.images.append((tag, image.shape, step, dataformats))


def _trainer(pooler, epoch=2):
    trunk = torch.nn.Conv2d(3, 6, 3, padding=1)
    embedder = PoolingEmbedder(pooler, in_channels=6, embed_dim=4)
    return SimpleNamespace(epoch=epoch, models={'trunk': trunk, 'embedder': embedder})


def test_pooling_weights_hook_draws_gpo_and_gsp(tmp_path):
    writer = _Writer()
    keeper = SimpleNamespace(tensorboard_writer=writer)
    images = torch.randn(3, 3, 5, 5)
    for pooler in (dict(type='GPO', d_pe=4, d_hidden=4), dict(type='GSP', num_prototypes=3)):
        hook = PoolingWeightsPMLHook(str(tmp_path), images, ['a', 'b', 'c'], keeper)
        hook(_trainer(pooler))
        assert hook.saved == [osp.join(str(tmp_path), 'epoch_2_pooler.png')]
        assert osp.getsize(hook.saved[0]) > 1000
    assert [(tag, step, fmt) for tag, _, step, fmt in writer.images] == [
        ('pooling_weights/pooler', 2, 'HWC'),
        ('pooling_weights/pooler', 2, 'HWC'),
    ]


def test_hook_interval_and_chaining_stop():
    hook = PoolingWeightsPMLHook('unused', interval=2)
    calls = []
    chained = chain_hooks(hook, None, lambda t: calls.append(t.epoch), lambda t: False)
    assert chained(_trainer(dict(type='AvgPooling'), epoch=3)) is False
    assert calls == [3] and hook.saved == []


def test_prototype_init_is_k_center_of_the_first_pooled_batch():
    trainer = _trainer(dict(type='GSP', num_prototypes=4))
    gsp = trainer.models['embedder'].pooler
    images = torch.randn(5, 3, 4, 4)
    trainer.dataloader = [(images, torch.arange(5))]
    trainer.data_device = torch.device('cpu')
    assert not bool(gsp.prototypes_initialised)
    GSPPrototypeInit()(trainer)
    assert bool(gsp.prototypes_initialised)
    with torch.no_grad():
        maps = trainer.models['trunk'].eval()(images)
        pooled = unit_ball(gsp.proj(maps.flatten(2).transpose(1, 2)).mean(1))
    torch.testing.assert_close(gsp.prototypes.data, pooled[greedy_k_center(pooled, 4)])
    # Already initialised: nothing more is read.
    assert init_gsp_prototypes(trainer.models['trunk'], trainer.models['embedder'], []) == 0
