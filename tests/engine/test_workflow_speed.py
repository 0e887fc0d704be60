"""Evaluation speed-ups keep the numbers: each image encoded once per batch in predict
mode, evaluation loops under inference_mode, the end-to-end benchmark's published flow."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gpo_plugin.engine import InferenceTestLoop
from gpo_plugin.registry import MODELS


def small_model():
    model = MODELS.build(
        dict(
            type='VSERetriever',
            img_enc=dict(type='PrecompRegionEncoder', in_channels=12, embed_dim=8),
            txt_enc=dict(type='BiGRUTextEncoder', vocab_size=30, word_dim=6, embed_dim=8),
        )
    )
    return model.eval()


MODEL = small_model()


@settings(max_examples=30, deadline=None)
@given(img_idx=st.lists(st.integers(0, 4), min_size=1, max_size=12), seed=st.integers(0, 99))
def test_predict_encodes_each_image_once_with_the_same_embeddings(img_idx, seed):
    gen = torch.Generator().manual_seed(seed)
    n = len(img_idx)
    regions = torch.randn(5, 7, 12, generator=gen)
    region_lengths = torch.randint(1, 8, (5,), generator=gen)
    idx = torch.tensor(img_idx)
    inputs = dict(
        img=regions[idx],
        img_lengths=region_lengths[idx],
        txt=torch.randint(1, 30, (n, 6), generator=gen),
        txt_lengths=torch.randint(1, 7, (n,), generator=gen),
    )
    seen = []
    hook = MODEL.img_enc.register_forward_hook(lambda m, args, out: seen.append(len(args[0])))
    try:
        with torch.no_grad():
            out = MODEL(inputs, dict(img_idx=idx, cap_idx=torch.arange(n)), mode='predict')
    finally:
        hook.remove()
    assert seen == [len(set(img_idx))]
    # Independent formulation: every pair through the plain forward.
    with torch.no_grad():
        img_emb, txt_emb = MODEL(inputs, mode='tensor')
    for row, sample in enumerate(out):
        assert sample['img_idx'] == img_idx[row] and sample['cap_idx'] == row
        torch.testing.assert_close(sample['img_emb'], img_emb[row], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(sample['txt_emb'], txt_emb[row], atol=1e-6, rtol=1e-5)


def test_inference_test_loop_runs_iterations_in_inference_mode():
    modes = []
    loop = InferenceTestLoop.__new__(InferenceTestLoop)

    class Runner:
        def call_hook(self, *args, **kwargs):
            pass

    class Model:
        def test_step(self, batch):
            modes.append(torch.is_inference_mode_enabled())
            return [dict(x=1)]

    class Evaluator:
        def process(self, **kwargs):
            pass

    loop._runner, loop.evaluator = Runner(), Evaluator()
    loop.runner.model = Model()
    loop.test_loss, loop.fp16 = {}, False
    loop.run_iter(0, {})
    assert modes == [True] and not torch.is_inference_mode_enabled()
