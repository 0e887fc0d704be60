"""build_metric_loss's ZeroShotLossWrapper with an explicit gather (MetricLoss(gather=True):
PML's DistributedLossWrapper around the metric loss only): 2 gloo processes on CPU give the
losses and (averaged) gradients of one process over the concatenated batch."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pytorch_metric_learning import losses

from gpo_plugin.models.losses import ZeroShotLoss
from gpo_plugin.pml import build_metric_loss

WORLD, BATCH, DIM, PROTOS, CLASSES = 2, 8, 6, 5, 8


def _inputs():
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(WORLD * BATCH, DIM, generator=generator, dtype=torch.float64)
    attributes = torch.randn(WORLD * BATCH, PROTOS, generator=generator, dtype=torch.float64)
    # Per process: two class-disjoint halves of 2 classes x 2 images.
    labels = torch.tensor([[0, 0, 1, 1, 2, 2, 3, 3], [4, 4, 0, 0, 5, 5, 6, 6]]).reshape(-1)
    return embeddings, attributes.softmax(1), labels


def _wrapper(gather=False):
    torch.manual_seed(0)  # same class embeddings in every process
    zero_shot = ZeroShotLoss(CLASSES, embed_dim=4)
    return build_metric_loss(losses.ContrastiveLoss(), zero_shot=zero_shot, gather=gather).double()


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group('gloo', rank=rank, world_size=WORLD)
    embeddings, attributes, labels = _inputs()
    part = slice(rank * BATCH, (rank + 1) * BATCH)
    emb = embeddings[part].clone().requires_grad_()
    attr = attributes[part].clone().requires_grad_()
    wrapper = _wrapper(gather=True)
    loss = wrapper(emb, labels[part], attr)
    loss.backward()
    class_grad = wrapper.zero_shot.class_embeddings.grad.clone()
    dist.all_reduce(class_grad)  # what DDP does to parameter gradients (then / world)
    torch.save(
        dict(loss=loss.detach(), emb=emb.grad, attr=attr.grad, cls=class_grad / WORLD),
        f'{out}/rank{rank}.pt',
    )
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.mark.slow  # two spawned processes import the package (~25 s)
def test_distributed_loss_wrapper_equals_one_process(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f'rank{r}.pt', weights_only=True) for r in range(WORLD)]

    # One process: the metric loss on the concatenated batch, the zero-shot term per
    # process batch (its class-disjoint halves), averaged.
    embeddings, attributes, labels = _inputs()
    embeddings.requires_grad_()
    attributes.requires_grad_()
    wrapper = _wrapper()
    metric = losses.ContrastiveLoss()(embeddings, labels)
    parts = [slice(r * BATCH, (r + 1) * BATCH) for r in range(WORLD)]
    zero_shot = [wrapper.zero_shot(attributes[p], labels[p]) for p in parts]
    total = 0.9 * metric + torch.stack(zero_shot).mean()
    total.backward()

    for rank, result in enumerate(ranks):
        # PML's gather multiplies the metric loss by the world size; DDP averages gradients.
        torch.testing.assert_close(result['loss'], WORLD * 0.9 * metric + zero_shot[rank])
        torch.testing.assert_close(result['emb'] / WORLD, embeddings.grad[parts[rank]])
        torch.testing.assert_close(result['attr'] / WORLD, attributes.grad[parts[rank]])
        torch.testing.assert_close(result['cls'], wrapper.zero_shot.class_embeddings.grad)
