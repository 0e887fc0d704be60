"""The CUDA paths against the CPU ones: poolers (GPO with both ``gru_impl``s, GSP, the
baselines), losses, retrieval ranks, k-NN, ``--amp`` float16 / bfloat16 training steps of
the VSE model, and two NCCL processes where two GPUs exist. Marked ``cuda``; they run only
where ``torch.cuda.is_available()`` (``tools/gpu_check.sh`` runs them with the benchmarks)."""

from __future__ import annotations

import copy
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from gpo_plugin.evaluation.functional import knn
from gpo_plugin.evaluation.functional.retrieval_ranks import retrieval_ranks
from gpo_plugin.models.losses import ContrastiveLoss, ZeroShotLoss
from gpo_plugin.registry import MODELS

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU'),
]
CUDA = torch.device('cuda')
POOLERS = {
    "GPO gru_impl='steps'": dict(type='GPO', gru_impl='steps'),
    "GPO gru_impl='packed'": dict(type='GPO', gru_impl='packed'),
    'AvgPooling': dict(type='AvgPooling'),
    'MaxPooling': dict(type='MaxPooling'),
    'KMaxPooling': dict(type='KMaxPooling', k=3),
    'GeMPooling': dict(type='GeMPooling'),
}


def outputs_and_grads(module, *inputs):
    """Output and the gradients of <output, fixed weights> w.r.t. the float inputs and every
    parameter, all on the CPU."""
    leaves = [x.detach().requires_grad_() if x.is_floating_point() else x for x in inputs]
    out = module(*leaves)
    out = out[0] if isinstance(out, tuple) else out
    upstream = torch.linspace(-1, 1, out.numel(), device=out.device).reshape(out.shape)
    wrt = [x for x in leaves if x.requires_grad] + [p for p in module.parameters()]
    grads = torch.autograd.grad((out * upstream).sum(), wrt, allow_unused=True)
    return out.detach().cpu(), [None if g is None else g.cpu() for g in grads]


def assert_same_on_cuda(module, *inputs, atol=1e-5, rtol=1e-4):
    ref = outputs_and_grads(module, *inputs)
    got = outputs_and_grads(copy.deepcopy(module).to(CUDA), *(x.to(CUDA) for x in inputs))
    torch.testing.assert_close(got[0], ref[0], atol=atol, rtol=rtol)
    for g, r in zip(got[1], ref[1], strict=True):
        if r is not None:
            torch.testing.assert_close(g, r, atol=atol, rtol=rtol)


@pytest.mark.parametrize('name', POOLERS)
def test_set_poolers_match_cpu(name):
    torch.manual_seed(0)
    pooler = MODELS.build(POOLERS[name]).train()
    features = torch.randn(6, 9, 16)
    lengths = torch.tensor([9, 1, 4, 4, 7, 2])
    assert_same_on_cuda(pooler, features, lengths)


@pytest.mark.parametrize('name', POOLERS)
def test_map_poolers_match_cpu(name):
    torch.manual_seed(1)
    pooler = MODELS.build(POOLERS[name]).train()
    assert_same_on_cuda(pooler, torch.randn(3, 16, 4, 5))


def test_gsp_matches_cpu():
    torch.manual_seed(2)
    gsp = MODELS.build(dict(type='GSP', in_channels=16, out_channels=8, num_prototypes=6))
    gsp.kcenter_init = False
    gsp.eval()
    assert_same_on_cuda(gsp, torch.randn(4, 16, 3, 3), atol=1e-4)


@pytest.mark.parametrize('max_violation', [False, True])
def test_contrastive_loss_matches_cpu(max_violation):
    torch.manual_seed(3)
    loss = ContrastiveLoss(margin=0.2, max_violation=max_violation)
    img = torch.nn.functional.normalize(torch.randn(16, 8), dim=1)
    txt = torch.nn.functional.normalize(torch.randn(16, 8), dim=1)
    assert_same_on_cuda(loss, img, txt)


def test_zero_shot_loss_matches_cpu():
    torch.manual_seed(4)
    loss = ZeroShotLoss(num_classes=4, embed_dim=6)
    attributes = torch.softmax(torch.randn(16, 6), dim=1)
    labels = torch.arange(4).repeat_interleave(4)
    assert_same_on_cuda(loss, attributes, labels)


def test_retrieval_ranks_match_cpu():
    torch.manual_seed(5)
    img = torch.nn.functional.normalize(torch.randn(300, 32), dim=1)
    txt = torch.nn.functional.normalize(torch.randn(1500, 32), dim=1)
    txt_img = torch.arange(300).repeat_interleave(5)
    ref = retrieval_ranks(img.double(), txt.double(), txt_img, chunk_size=64, fold_size=100)
    got = retrieval_ranks(*(t.to(CUDA) for t in (img.double(), txt.double(), txt_img)), 64, 100)
    for name, r in ref._asdict().items():
        assert torch.equal(getattr(got, name).cpu(), r), name


@pytest.mark.parametrize('reference', [False, True], ids=['leave-one-out', 'query-reference'])
def test_knn_matches_cpu(reference):
    torch.manual_seed(6)
    x = torch.randn(700, 16, dtype=torch.float64)
    ref_set = torch.randn(900, 16, dtype=torch.float64) if reference else None
    expected = knn(x, 7, reference=ref_set)
    got = knn(x.to(CUDA), 7, reference=None if ref_set is None else ref_set.to(CUDA))
    assert torch.equal(got.cpu(), expected)


@pytest.mark.parametrize('dtype', ['float16', 'bfloat16'])
def test_amp_train_step_of_the_vse_model(dtype):
    from mmengine.optim import AmpOptimWrapper

    if dtype == 'bfloat16' and not torch.cuda.is_bf16_supported():
        pytest.skip('this GPU has no bfloat16')  # hardware gating, as --amp-dtype refuses it
    torch.manual_seed(7)
    model = MODELS.build(
        dict(
            type='VSERetriever',
            img_enc=dict(type='PrecompRegionEncoder', in_channels=32, embed_dim=16),
            txt_enc=dict(type='BiGRUTextEncoder', vocab_size=50, word_dim=8, embed_dim=16),
            head=dict(type='VSEHead', loss=dict(type='ContrastiveLoss', margin=0.2)),
        )
    ).to(CUDA)
    before = copy.deepcopy(model.state_dict())
    wrapper = AmpOptimWrapper(
        optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3), dtype=dtype, loss_scale='dynamic'
    )
    inputs = dict(
        img=torch.randn(8, 6, 32),
        img_lengths=torch.tensor([6, 3, 5, 1, 6, 2, 4, 6]),
        txt=torch.randint(1, 50, (8, 7)),
        txt_lengths=torch.tensor([7, 2, 5, 3, 7, 1, 6, 4]),
    )
    samples = dict(img_idx=torch.arange(8), cap_idx=torch.arange(8))
    for _ in range(3):
        losses = model.train_step(dict(inputs=inputs, data_samples=samples), wrapper)
        assert torch.isfinite(losses['loss']).all(), losses
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert any('img_enc.fc' in k for k in changed) and any('txt_enc' in k for k in changed)


def _nccl_worker(rank: int, port: int, out_dir: str) -> None:
    from gpo_plugin.utils.dist import gather_with_grad

    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.cuda.set_device(rank)
    dist.init_process_group('nccl', rank=rank, world_size=2)
    rows = torch.arange(6.0, device='cuda').reshape(3, 2) + 10 * rank
    mine = rows.requires_grad_()
    gathered = gather_with_grad(mine)
    (gathered * gathered).sum().backward()
    summed = torch.tensor([float(rank + 1)], device='cuda')
    dist.all_reduce(summed)
    torch.save(
        dict(gathered=gathered.detach().cpu(), grad=mine.grad.cpu(), summed=summed.cpu()),
        os.path.join(out_dir, f'rank{rank}.pt'),
    )
    dist.destroy_process_group()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason='needs two GPUs')
def test_two_nccl_processes_gather_with_gradients(tmp_path):
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    mp.start_processes(_nccl_worker, args=(port, str(tmp_path)), nprocs=2, start_method='spawn')
    results = [torch.load(tmp_path / f'rank{r}.pt', weights_only=True) for r in range(2)]
    expected = torch.cat([torch.arange(6.0).reshape(3, 2) + 10 * r for r in range(2)])
    for rank, result in enumerate(results):
        assert torch.equal(result['gathered'], expected)
        assert float(result['summed']) == 3.0
        # d/dx sum(x^2) over the gathered rows, summed over both ranks' losses: 2 * 2x.
        assert torch.equal(result['grad'], 4 * (torch.arange(6.0).reshape(3, 2) + 10 * rank))
