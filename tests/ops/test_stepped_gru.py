"""stepped_gru against nn.GRU over packed sequences, and BiGRUTextEncoder's gru_impl switch."""

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from gpo_plugin.models.encoders import BiGRUTextEncoder
from gpo_plugin.ops.stepped_gru import stepped_gru

LENGTH_PATTERNS = {
    'unsorted, repeated and length-1 sets': [3, 1, 6, 6, 2, 1],
    'all length 1': [1, 1, 1],
    'one sequence': [5],
    'sorted, all different': [7, 5, 4, 2],
    'all full length': [4, 4, 4],
}


def gru_outputs_and_grads(run, gru, inputs, lengths, upstream):
    """Padded outputs of ``run(packed)`` and gradients of <outputs, upstream> with respect
    to the inputs and every GRU parameter."""
    x = inputs.detach().requires_grad_(True)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out = pad_packed_sequence(run(packed), batch_first=True, total_length=inputs.shape[1])[0]
    grads = torch.autograd.grad((out * upstream).sum(), [x, *gru.parameters()])
    return out, grads


@pytest.mark.parametrize('pattern', LENGTH_PATTERNS)
@pytest.mark.parametrize(('layers', 'bidirectional'), [(1, True), (2, True), (1, False)])
def test_stepped_gru_equals_packed_nn_gru_float64(pattern, layers, bidirectional):
    torch.manual_seed(0)
    lengths = torch.tensor(LENGTH_PATTERNS[pattern])
    gru = nn.GRU(5, 7, layers, batch_first=True, bidirectional=bidirectional).double()
    inputs = torch.randn(len(lengths), int(lengths.max()), 5, dtype=torch.float64)
    upstream = torch.randn(len(lengths), int(lengths.max()), 7 * (1 + bidirectional)).double()
    ref, ref_grads = gru_outputs_and_grads(lambda p: gru(p)[0], gru, inputs, lengths, upstream)
    out, grads = gru_outputs_and_grads(
        lambda p: stepped_gru(gru, p), gru, inputs, lengths, upstream
    )
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-13)
    names = ['inputs'] + [name for name, _ in gru.named_parameters()]
    for name, grad, ref_grad in zip(names, grads, ref_grads, strict=True):
        # Every gradient is exercised (W_hh meets only zero states when all sets have size 1).
        if int(lengths.max()) > 1 or 'weight_hh' not in name:
            assert ref_grad.abs().max() > 0, name
        torch.testing.assert_close(grad, ref_grad, rtol=0, atol=1e-12, msg=name)


def test_stepped_gru_matches_float32_at_a_larger_size():
    torch.manual_seed(1)
    gru = nn.GRU(12, 64, batch_first=True, bidirectional=True)
    lengths = torch.randint(1, 10, (16,))
    inputs = torch.randn(16, int(lengths.max()), 12)
    upstream = torch.randn(16, int(lengths.max()), 128)
    ref, ref_grads = gru_outputs_and_grads(lambda p: gru(p)[0], gru, inputs, lengths, upstream)
    out, grads = gru_outputs_and_grads(
        lambda p: stepped_gru(gru, p), gru, inputs, lengths, upstream
    )
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    for grad, ref_grad in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('layers', [1, 2])
def test_stepped_gru_projects_distinct_rows_once(layers):
    """With ``row_index``, packed.data holds distinct rows: the same outputs and gradients
    as the full rows (repeats included), in float64."""
    torch.manual_seed(3)
    gru = nn.GRU(4, 5, layers, bidirectional=True).double()
    lengths = torch.tensor([5, 2, 5, 1, 3])
    ids = torch.randint(0, 4, (len(lengths), 5))  # 4 distinct rows: most repeat
    table = torch.randn(4, 4, dtype=torch.float64, requires_grad=True)
    full = pack_padded_sequence(table[ids], lengths, batch_first=True, enforce_sorted=False)
    positions = pack_padded_sequence(ids, lengths, batch_first=True, enforce_sorted=False)
    distinct = PackedSequence(table, *positions[1:])
    upstream = torch.randn(int(lengths.sum()), 10, dtype=torch.float64)
    results = []
    for out in (stepped_gru(gru, full), stepped_gru(gru, distinct, positions.data)):
        grads = torch.autograd.grad((out.data * upstream).sum(), [table, *gru.parameters()])
        results.append((out.data, grads))
    (ref, ref_grads), (ours, grads) = results
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-13)
    for grad, ref_grad in zip(grads, ref_grads, strict=True):
        assert ref_grad.abs().max() > 0
        torch.testing.assert_close(grad, ref_grad, rtol=0, atol=1e-12)


def test_stepped_gru_rejects_what_it_does_not_implement():
    with pytest.raises(ValueError, match='biases'):
        stepped_gru(nn.GRU(3, 4, bias=False), None)
    with pytest.raises(ValueError, match='dropout'):
        stepped_gru(nn.GRU(3, 4, num_layers=2, dropout=0.5), None)
    with pytest.raises(TypeError, match='nn.GRU'):
        stepped_gru(nn.LSTM(3, 4), None)


def encoder_pair():
    torch.manual_seed(2)
    steps = BiGRUTextEncoder(vocab_size=30, word_dim=6, embed_dim=8, gru_impl='steps')
    packed = BiGRUTextEncoder(vocab_size=30, word_dim=6, embed_dim=8, gru_impl='packed')
    packed.load_state_dict(steps.state_dict())
    return steps.double(), packed.double()


def test_text_encoder_gru_impls_are_the_same_function_float64():
    steps, packed = encoder_pair()
    assert list(steps.state_dict()) == list(packed.state_dict())
    assert any(key.startswith('rnn.weight_hh_l0_reverse') for key in steps.state_dict())
    tokens = torch.randint(1, 30, (5, 7))
    lengths = torch.tensor([4, 7, 1, 7, 2])
    outputs, grads = [], []
    for encoder in (steps, packed):
        out = encoder(tokens, lengths)
        outputs.append(out)
        grads.append(torch.autograd.grad(out.pow(2).sum(), list(encoder.parameters())))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=1e-13)
    for grad, ref_grad in zip(*grads, strict=True):
        torch.testing.assert_close(grad, ref_grad, rtol=0, atol=1e-12)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_text_encoder_inference_projects_each_word_once(monkeypatch, dtype):
    """Without autograd the encoder embeds and projects each distinct word of the batch
    once: the same states as the training path, which keeps one row per token."""
    steps, _ = encoder_pair()
    steps.to(dtype)
    tokens = torch.randint(1, 6, (6, 7))  # 5 words over 6 captions: most repeat
    lengths = torch.tensor([4, 7, 1, 7, 2, 5])
    calls = []
    import gpo_plugin.models.encoders.bigru_text_encoder as module

    def record(gru, packed, row_index=None):
        calls.append((len(packed.data), row_index))
        return stepped_gru(gru, packed, row_index)

    monkeypatch.setattr(module, 'stepped_gru', record)
    training_path = steps.embed_tokens(tokens, lengths)
    with torch.inference_mode():
        inference_path = steps.embed_tokens(tokens, lengths)
    (full_rows, no_index), (distinct_rows, row_index) = calls
    assert no_index is None and full_rows == int(lengths.sum())
    assert distinct_rows <= 5 and len(row_index) == full_rows
    atol = {torch.float32: 1e-6, torch.float64: 1e-13}[dtype]
    torch.testing.assert_close(inference_path, training_path.detach(), rtol=0, atol=atol)


def test_text_encoder_auto_picks_steps_on_cpu(monkeypatch):
    steps, _ = encoder_pair()
    auto = BiGRUTextEncoder(vocab_size=30, word_dim=6, embed_dim=8)
    assert auto.gru_impl == 'auto'
    calls = []
    import gpo_plugin.models.encoders.bigru_text_encoder as module

    def record(gru, packed, row_index=None):
        calls.append(packed)
        return stepped_gru(gru, packed, row_index)

    monkeypatch.setattr(module, 'stepped_gru', record)
    auto(torch.randint(1, 30, (2, 3)), torch.tensor([3, 2]))
    assert len(calls) == 1
    with torch.autocast('cpu', dtype=torch.bfloat16):  # autocast: nn.GRU, as before
        auto(torch.randint(1, 30, (2, 3)), torch.tensor([3, 2]))
    assert len(calls) == 1
    with pytest.raises(ValueError, match='gru_impl'):
        BiGRUTextEncoder(vocab_size=30, gru_impl='cudnn')
