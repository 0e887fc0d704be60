"""The pooling-pattern experiment: true weight tables and a short GPO fit."""

import pytest
import torch

from gpo_plugin.models.necks import rank_weights

from pooling_patterns import fit_pattern, target_weight_table, weight_rmse


def test_target_tables_by_hand():
    sizes = [1, 3, 4]
    torch.testing.assert_close(
        target_weight_table('average', sizes),
        torch.tensor([[1, 0, 0, 0], [1 / 3, 1 / 3, 1 / 3, 0], [0.25, 0.25, 0.25, 0.25]]),
    )
    torch.testing.assert_close(
        target_weight_table('top-50% average', sizes),
        torch.tensor([[1, 0, 0, 0], [0.5, 0.5, 0, 0], [0.5, 0.5, 0, 0]]),
    )
    torch.testing.assert_close(
        target_weight_table('last (min)', sizes),
        torch.tensor([[1.0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]),
    )
    assert target_weight_table('top-10 average', [12])[0, :10].sum() == pytest.approx(1.0)


def test_rmse_counts_only_valid_positions():
    target = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    learned = torch.tensor([[1.0, 9.0], [0.6, 0.4]])  # 9.0 sits in padding (N=1)
    assert weight_rmse(learned, target, [1, 2]) == pytest.approx((0.02 / 3) ** 0.5)


@pytest.mark.parametrize('pattern', ['max', 'average'])
def test_short_fit_learns_the_pattern(pattern):
    result = fit_pattern(pattern, seen=[1, 2, 3, 5, 8], unseen=[4, 6], beyond=[10], steps=200)
    untrained = weight_rmse(
        rank_weights(result.gpo.__class__().eval(), [1, 2, 3, 5, 8]).detach(),
        target_weight_table(pattern, [1, 2, 3, 5, 8]),
        [1, 2, 3, 5, 8],
    )
    assert result.rmse_seen < 0.02 < untrained
    assert result.rmse_unseen < 0.05
