"""gpo_plugin.visualization: the pooling-weight pictures both hooks and the tools draw."""

import numpy as np
import pytest
import torch

from gpo_plugin.engine import PoolingWeightsHook
from gpo_plugin.models.necks import GPO, GSP
from gpo_plugin.pml import PoolingWeightsPMLHook
from gpo_plugin.visualization import (
    RankWeightPanel,
    draw_position_weights,
    draw_rank_weights,
    rank_weight_curves,
    save_png,
)


def test_rank_weight_curves_are_gpo_weights_per_size():
    gpo = GPO(d_pe=4, d_hidden=4)
    curves = rank_weight_curves(gpo, [2, 5])
    assert [len(c) for c in curves] == [2, 5]
    pooled = gpo.pool(torch.zeros(2, 5, 1), torch.tensor([2, 5])).weights
    np.testing.assert_allclose(curves[1], pooled[1].detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(curves[0], pooled[0, :2].detach().numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match='not over ranks'):
        rank_weight_curves(GSP(4, 4, num_prototypes=3), [2])


def test_drawings_are_rgb_pictures_and_panels_sit_side_by_side(tmp_path):
    curves = [np.full(n, 1.0 / n) for n in (3, 6)]
    one = draw_rank_weights([RankWeightPanel('a', curves)])
    two = draw_rank_weights(
        [RankWeightPanel('a', curves), RankWeightPanel('b', curves, curves)], 'title'
    )
    for picture in (one, two):
        assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3
    assert two.shape[1] > 1.5 * one.shape[1]
    maps = draw_position_weights(np.zeros((2, 8, 8)), np.random.rand(2, 4, 4), ['x', 'y'], 't')
    assert maps.dtype == np.uint8 and maps.shape[2] == 3
    path = tmp_path / 'sub' / 'maps.png'
    save_png(maps, str(path))
    import matplotlib.image as mpimg

    assert mpimg.imread(path).shape[:2] == maps.shape[:2]


@pytest.mark.parametrize('sizes', [(), (0, 3)])
def test_both_hooks_refuse_set_sizes_below_one(sizes):
    with pytest.raises(ValueError, match='PoolingWeightsHook: set_sizes must be positive'):
        PoolingWeightsHook(set_sizes=sizes)
    with pytest.raises(ValueError, match='PoolingWeightsPMLHook: set_sizes must be positive'):
        PoolingWeightsPMLHook('unused', set_sizes=sizes)
