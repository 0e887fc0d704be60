"""Multi-process training: 2 gloo processes on CPU (DDP) give the loss and the gradients of one
process over the concatenated batch, for the VSE loss (global hardest negatives) and the DML
head (PML's distributed wrappers, cross-batch memory)."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mmpretrain.structures import DataSample
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from gpo_plugin.models.heads import MetricLearningHead, VSEHead
from gpo_plugin.models.losses import VSEContrastiveLoss
from gpo_plugin.utils.dist import gather_with_grad

WORLD, LOCAL = 2, 4
DML_LABELS = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])  # positives only across the two ranks


class VSEToy(nn.Module):
    def __init__(self, max_violation: bool) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.img, self.txt = nn.Linear(5, 4), nn.Linear(6, 4)
        self.head = VSEHead(loss=dict(type='VSEContrastiveLoss', max_violation=max_violation))

    def forward(self, img, txt):
        return self.head.loss(*self.head(self.img(img), self.txt(txt)))['loss']


class DMLToy(nn.Module):
    def __init__(self, memory: bool) -> None:
        super().__init__()
        torch.manual_seed(2)
        extra = dict(cross_batch_memory=dict(memory_size=16)) if memory else {}
        miner = None if memory else dict(type='MultiSimilarityMiner', epsilon=0.5)
        self.head = MetricLearningHead(
            loss=dict(type='ContrastiveLoss', pos_margin=0.0, neg_margin=1.0),
            miner=miner,
            in_channels=5,
            out_channels=4,
            **extra,
        )

    def forward(self, x, labels):
        samples = [DataSample().set_gt_label(int(label)) for label in labels]
        return self.head.loss((x,), samples)['loss_metric']


def vse_data():
    g = torch.Generator().manual_seed(3)
    return torch.randn(WORLD * LOCAL, 5, generator=g), torch.randn(WORLD * LOCAL, 6, generator=g)


def dml_data(step):
    return torch.randn(WORLD * LOCAL, 5, generator=torch.Generator().manual_seed(10 + step))


def loss_and_grads(model, *inputs):
    model.zero_grad()
    loss = model(*inputs)
    loss.backward()
    grads = {n.removeprefix('module.'): p.grad.clone() for n, p in model.named_parameters()}
    return loss.detach(), grads


def sorted_rows(x):
    return x[x[:, 0].argsort()]


def worker(rank, port, out_dir):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=WORLD)
    torch.set_num_threads(1)
    shard = slice(rank * LOCAL, (rank + 1) * LOCAL)
    results = {}
    for max_violation in (False, True):
        model = DistributedDataParallel(VSEToy(max_violation), broadcast_buffers=False)
        img, txt = vse_data()
        results[f'vse_{max_violation}'] = loss_and_grads(model, img[shard], txt[shard])
    for memory in (False, True):
        model = DistributedDataParallel(DMLToy(memory), broadcast_buffers=False)
        for step in range(2):
            x = dml_data(step)
            results[f'dml_{memory}_{step}'] = loss_and_grads(model, x[shard], DML_LABELS[shard])
        if memory:
            results['memory'] = sorted_rows(model.module.head.metric_loss.embedding_memory)
    # Unequal row counts: rank 0 has 3 rows, rank 1 has 1.
    rows = torch.arange(4.0).unsqueeze(1).requires_grad_()
    mine = rows[:3] if rank == 0 else rows[3:]
    gathered = gather_with_grad(mine.detach().requires_grad_())
    results['gathered'] = gathered.detach()
    torch.save(results, os.path.join(out_dir, f'rank{rank}.pt'))
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp('ddp')
    mp.start_processes(worker, args=(free_port(), str(out)), nprocs=WORLD, start_method='fork')
    return [torch.load(out / f'rank{r}.pt', weights_only=True) for r in range(WORLD)]


@pytest.mark.parametrize('max_violation', [False, True])
def test_vse_loss_and_grads_equal_one_process_on_the_global_batch(two_ranks, max_violation):
    img, txt = vse_data()
    loss, grads = loss_and_grads(VSEToy(max_violation), img, txt)
    for rank in two_ranks:
        rank_loss, rank_grads = rank[f'vse_{max_violation}']
        # Every rank reports the global-batch loss itself (no world-size factor) ...
        torch.testing.assert_close(rank_loss, loss)
        # ... and DDP's average of the ranks' gradients is the one-process gradient.
        for name, grad in grads.items():
            torch.testing.assert_close(rank_grads[name], grad, msg=name)
    # The global batch matters: the two shards' own losses do not add up to it.
    shards = [slice(0, LOCAL), slice(LOCAL, 2 * LOCAL)]
    local = sum(float(VSEToy(max_violation)(img[s], txt[s])) for s in shards)
    assert abs(local - float(loss)) > 1e-3


@pytest.mark.parametrize('memory', [False, True])
def test_dml_head_through_pml_wrappers_equals_one_process(two_ranks, memory):
    model = DMLToy(memory)
    for step in range(2):
        loss, grads = loss_and_grads(model, dml_data(step), DML_LABELS)
        assert float(loss) > 0
        for rank in two_ranks:
            rank_loss, rank_grads = rank[f'dml_{memory}_{step}']
            # PML's DistributedLossWrapper returns world size x the global-batch loss.
            torch.testing.assert_close(rank_loss, WORLD * loss)
            for name, grad in grads.items():
                torch.testing.assert_close(rank_grads[name], grad, msg=name)
    if memory:  # every rank holds the global batches of both steps, like one process
        expected = sorted_rows(model.head.metric_loss.embedding_memory)
        for rank in two_ranks:
            torch.testing.assert_close(rank['memory'], expected)


def test_gather_with_grad_handles_unequal_rows(two_ranks):
    for rank in two_ranks:
        torch.testing.assert_close(rank['gathered'], torch.arange(4.0).unsqueeze(1))


def test_contrastive_loss_stays_float32_under_bf16_autocast():
    im = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    s = torch.nn.functional.normalize(torch.randn(6, 8), dim=1)
    loss = VSEContrastiveLoss(max_violation=True)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        mixed = loss(im.bfloat16(), s.bfloat16())
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, loss(im.bfloat16().float(), s.bfloat16().float()))


@pytest.mark.parametrize('text', ['bigru', 'bert'])
def test_every_trainable_parameter_gets_a_gradient(text):
    """DistributedDataParallel fails at the next step on a trainable parameter without a
    gradient (BERT's pooler head, which the last hidden layer never reaches)."""
    from gpo_plugin.models.encoders import MINILM
    from gpo_plugin.registry import MODELS

    txt_enc = (
        dict(type='BiGRUTextEncoder', vocab_size=50, word_dim=8, embed_dim=8)
        if text == 'bigru'
        else dict(type='BertTextEncoder', pretrained=MINILM, embed_dim=8)
    )
    model = MODELS.build(
        dict(
            type='VSERetriever',
            img_enc=dict(type='PrecompRegionEncoder', in_channels=6, embed_dim=8),
            txt_enc=txt_enc,
        )
    )
    inputs = dict(
        img=torch.randn(3, 4, 6),
        img_lengths=torch.tensor([4, 2, 3]),
        txt=torch.tensor([[101, 7592, 2088, 102], [101, 2088, 102, 0], [101, 7592, 102, 0]]),
        txt_lengths=torch.tensor([4, 3, 3]),
    )
    if text == 'bigru':
        inputs['txt'] = inputs['txt'] % 50
    model(inputs, mode='loss')['loss'].backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
