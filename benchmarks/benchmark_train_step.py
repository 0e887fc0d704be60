"""One VSE∞ training iteration (BiGRU text, precomputed regions, GPO on both branches):
gpo_plugin's step against a faithful re-implementation of the published step.

Both steps start from the same weights and batches and include everything an iteration
does after the dataset has produced its samples: collation, the image branch (fc + MLP),
the text branch (embedding + BiGRU over packed captions), two GPOs, the summed hinge loss, backward,
gradient-norm clipping (2.0) and an AdamW step. Ours is ``VSERetriever.train_step`` with
``vse_collate`` and mmengine's ``OptimWrapper``, as the Runner calls it, timed with the
text GRU the encoder picks by default (``gru_impl='auto'``: the stepped GRU on CPU) and
with ``nn.GRU`` (``gru_impl='packed'``, the CUDA default). A second table breaks our step
down by part, each part's forward + backward timed on its own.

    python benchmarks/benchmark_train_step.py [--device cuda] [--feat-dim 2048] [--repeats 5]
"""

from __future__ import annotations

import argparse
import copy

import torch
from harness import add_common_args, describe_run, setup, time_interleaved
from mmengine.optim import OptimWrapper

import gpo_plugin  # noqa: F401  (registers the modules)
from gpo_plugin.datasets.vse_collate import vse_collate
from gpo_plugin.registry import MODELS

from references.vse_step import published_train_step


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch', type=int, default=128)
    parser.add_argument('--regions', type=int, default=36)
    parser.add_argument('--feat-dim', type=int, default=2048)
    parser.add_argument('--embed-dim', type=int, default=1024)
    parser.add_argument('--word-dim', type=int, default=300)
    parser.add_argument('--vocab', type=int, default=10000)
    parser.add_argument('--max-words', type=int, default=32)
    add_common_args(parser)
    return parser.parse_args()


def build_model(args: argparse.Namespace, gru_impl: str = 'auto') -> torch.nn.Module:
    """The model of configs/_base_/models/vse_region_bigru.py at the given sizes."""
    return MODELS.build(
        dict(
            type='VSERetriever',
            img_enc=dict(
                type='PrecompRegionEncoder', in_channels=args.feat_dim, embed_dim=args.embed_dim
            ),
            txt_enc=dict(
                type='BiGRUTextEncoder',
                vocab_size=args.vocab,
                word_dim=args.word_dim,
                embed_dim=args.embed_dim,
                gru_impl=gru_impl,
            ),
        )
    )


def make_samples(args: argparse.Namespace, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One batch of (regions, tokens): 20 % region dropout, caption lengths 8..max_words."""
    gen = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(args.batch):
        kept = torch.rand(args.regions, generator=gen) >= 0.2
        kept[0] = True
        regions = torch.randn(args.regions, args.feat_dim, generator=gen)[kept]
        length = int(torch.randint(8, args.max_words + 1, (1,), generator=gen))
        samples.append((regions, torch.randint(1, args.vocab, (length,), generator=gen)))
    return samples


def as_packed(samples) -> list[dict]:
    """The same samples as PackVSEInputs produces them for vse_collate."""
    return [
        dict(inputs=dict(img=r, txt=t), data_samples=dict(img_idx=i, cap_idx=i))
        for i, (r, t) in enumerate(samples)
    ]


def breakdown(model, optim_wrapper, packed: list[dict], args) -> dict[str, float]:
    """Median seconds of each part of our step run on its own, forward + backward.

    Every part gets the inputs it sees inside the step and an upstream gradient of
    ones, so the parts add up to roughly the whole step.
    """
    data = model.data_preprocessor(vse_collate(packed), True)['inputs']
    img, txt = model.img_enc, model.txt_enc
    with torch.no_grad():
        regions = img.embed_regions(data['img'], data['img_lengths'])
        words = txt.embed_tokens(data['txt'], data['txt_lengths'])
        img_emb, txt_emb = model.extract_feat(data)

    def backward_of(fn):
        def run():
            out = fn()
            out = out[0] if isinstance(out, tuple) else out
            out.backward(torch.ones_like(out))

        return run

    def leaf(t):
        return t.detach().requires_grad_(True)

    def whole_step():
        model.train_step(vse_collate(packed), optim_wrapper)

    parts = {
        'collation (vse_collate)': lambda: vse_collate(packed),
        'image branch: fc + MLP (valid regions)': backward_of(
            lambda: img.embed_regions(data['img'], data['img_lengths'])
        ),
        'image branch: GPO': backward_of(
            lambda: img.gpool.pool(leaf(regions), data['img_lengths']).pooled
        ),
        f'text branch: embedding + BiGRU (gru_impl={txt.gru_impl!r})': backward_of(
            lambda: txt.embed_tokens(data['txt'], data['txt_lengths'])
        ),
        'text branch: GPO': backward_of(
            lambda: txt.gpool.pool(leaf(words), data['txt_lengths']).pooled
        ),
        'head: l2-norm + hinge loss': backward_of(
            lambda: model.head.loss(*model.head(leaf(img_emb), leaf(txt_emb)))['loss']
        ),
        'gradient clipping': optim_wrapper._clip_grad,
        'AdamW step': optim_wrapper.step,
        'whole step (for comparison)': whole_step,
    }
    timings = time_interleaved(parts, 3, 1, next(model.parameters()).device)
    optim_wrapper.zero_grad()
    return {name: timing.median for name, timing in timings.items()}


def adamw_wrapper(model: torch.nn.Module) -> OptimWrapper:
    """The recipe's optimizer as the Runner wraps it: AdamW, gradient norm clipped at 2."""
    return OptimWrapper(
        torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=1e-4),
        clip_grad=dict(max_norm=2.0),
    )


def main() -> None:
    args = parse_args()
    device = setup(args)
    torch.manual_seed(0)
    ours = build_model(args).to(device).train()
    theirs = copy.deepcopy(ours)
    # Our step with the text GRU as nn.GRU (what 'auto' picks on CUDA), same weights.
    ours_nn = build_model(args, gru_impl='packed').to(device).train()
    ours_nn.load_state_dict(ours.state_dict())
    optim_wrapper = adamw_wrapper(ours)
    their_optimizer = torch.optim.AdamW(theirs.parameters(), lr=5e-4, weight_decay=1e-4)
    batches = [make_samples(args, seed) for seed in range(args.warmup + args.repeats)]

    published_batches = iter(batches)

    def run_published():
        return published_train_step(theirs, their_optimizer, next(published_batches), device)

    def our_step(model, optim_wrapper: OptimWrapper):
        """A zero-argument training step of ``model`` on the next batch."""
        step = iter(batches)

        def run():
            data = vse_collate(as_packed(next(step)))
            return model.train_step(data, optim_wrapper)['loss'].item()

        return run

    methods = {
        'published VSE∞ step (re-implementation)': run_published,
        f'gpo_plugin VSERetriever.train_step (text GRU: {ours.txt_enc.gru_impl!r})': our_step(
            ours, optim_wrapper
        ),
        "gpo_plugin VSERetriever.train_step (text GRU: 'packed', nn.GRU)": our_step(
            ours_nn, adamw_wrapper(ours_nn)
        ),
    }
    # Both start from the same weights: the first losses must agree up to BatchNorm over
    # padding (published) versus valid regions only (ours).
    results = time_interleaved(methods, args.repeats, args.warmup, device)
    shapes = (
        f'batch {args.batch}; regions {args.regions} x {args.feat_dim} (20 % dropped); '
        f'captions 8..{args.max_words} words of a {args.vocab}-word vocabulary; word dim '
        f'{args.word_dim}; joint dim {args.embed_dim}'
    )
    describe_run('VSE∞ training iteration (BiGRU, precomputed regions)', device, args, shapes)
    baseline = results['published VSE∞ step (re-implementation)']
    print('| step | time (ms) | speed-up vs published | last loss |\n|---|---|---|---|')
    for name, timing in results.items():
        print(
            f'| {name} | {timing.cell()} | {baseline.median / timing.median:.2f}x | '
            f'{timing.output:.3f} |'
        )
    parts = breakdown(ours, optim_wrapper, as_packed(batches[0]), args)
    total = parts.pop('whole step (for comparison)')
    print(
        f'\nBreakdown of the gpo_plugin step, each part forward + backward on its own '
        f'(median of 3; the whole step took {1e3 * total:.0f} ms in the same rounds):\n'
    )
    print('| part | ms | share of the whole step |\n|---|---|---|')
    for part, seconds in parts.items():
        print(f'| {part} | {1e3 * seconds:.1f} | {100 * seconds / total:.0f} % |')


if __name__ == '__main__':
    main()
