"""The symmetric block k-NN: the exhaustive search's neighbours, each pair computed once."""

import importlib

import pytest
import torch
from torch.overrides import TorchFunctionMode

from gpo_plugin.evaluation.functional import knn, knn_search, symmetric_knn

# The submodule (the package attribute of the same name is the function).
module = importlib.import_module('gpo_plugin.evaluation.functional.symmetric_knn')


def _exhaustive(x: torch.Tensor, k: int) -> torch.Tensor:
    """Reference in float64: full distance matrix, self excluded, stable sort."""
    distances = torch.cdist(x.double(), x.double())
    distances.fill_diagonal_(float('inf'))
    return distances.argsort(dim=1, stable=True)[:, :k]


@pytest.mark.parametrize(
    ('num', 'dim', 'k', 'block'),
    [
        (500, 16, 12, 64),  # 8 blocks, every pair of blocks visited once
        (333, 8, 5, 32),  # 333 rows: the last block is padded to 32
        (70, 4, 40, 32),  # k larger than a block: lists filled across blocks
        (1000, 32, 1, 100),  # block rounded up to 128
        (50, 3, 49, 2048),  # one block, every other row a neighbour
        (1300, 8, 5, 256),  # lists start from the diagonal blocks' group-minimum bound
    ],
)
def test_equals_exhaustive_search(num, dim, k, block):
    x = torch.randn(num, dim, generator=torch.Generator().manual_seed(num))
    assert torch.equal(symmetric_knn(x, k, block=block), _exhaustive(x, k))


def test_unnormalised_scales_and_clusters():
    generator = torch.Generator().manual_seed(7)
    centers = 10 * torch.randn(20, 6, generator=generator)
    x = centers.repeat_interleave(15, 0) * torch.rand(300, 1, generator=generator) * 3
    x += 0.01 * torch.randn(300, 6, generator=generator)
    assert torch.equal(symmetric_knn(x, 9, block=64), _exhaustive(x, 9))


class _CountingProducts(TorchFunctionMode):
    """Records the (rows, columns) of every matrix product made inside the block."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if getattr(func, '__name__', '') in ('__matmul__', 'matmul', 'mm', 'addmm'):
            self.shapes.append(tuple(out.shape))
        return out


def test_each_pair_of_blocks_is_computed_once():
    with _CountingProducts() as counter:
        symmetric_knn(torch.randn(256, 8), 4, block=64)
    products = counter.shapes
    # 4 blocks of 64: 4 diagonal blocks + 6 off-diagonal pairs, never (j, i) after (i, j).
    assert len(products) == 10
    assert all(shape == (64, 64) for shape in products)


def test_auto_backend_picks_symmetric_for_leave_one_out_on_cpu(monkeypatch):
    calls = []

    def recording(x, k, block, with_distances=False):
        calls.append(block)
        return module.symmetric_knn(x, k, block, with_distances)

    monkeypatch.setattr(knn_search, 'symmetric_knn', recording)
    x = torch.randn(120, 5)
    found = knn(x, 3, max_memory_bytes=16 * 48**2)
    assert calls == [48]  # a block of 48^2 scores is a quarter of the budget
    assert torch.equal(found, _exhaustive(x, 3))
    knn(x[:10], 3, reference=x)  # separate references: not symmetric
    assert calls == [48]


def test_bad_requests_are_named():
    x = torch.randn(10, 3)
    with pytest.raises(ValueError, match='only 9 others'):
        symmetric_knn(x, 10)
    with pytest.raises(ValueError, match='reference=None'):
        knn(x, 2, reference=x, backend='symmetric')
    with pytest.raises(ValueError, match='backend must be one of'):
        knn(x, 2, backend='annoy')
