"""packed_positions / pack_rows / pad_packed_rows against PyTorch's pack_padded_sequence and
pad_packed_sequence, and the BiGRU text encoder and GPO's nn.GRU path built on them."""

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from gpo_plugin.models.encoders import BiGRUTextEncoder
from gpo_plugin.models.necks import GPO
from gpo_plugin.ops.packing import pack_rows, packed_positions, pad_packed_rows

LENGTHS = {
    'unsorted with ties': [3, 7, 1, 7, 4],
    'one caption': [5],
    'all length 1': [1, 1, 1],
    'sorted': [6, 4, 2],
}


def padded_tokens(lengths: list[int], steps: int, seed: int = 0) -> torch.Tensor:
    tokens = torch.randint(
        1, 50, (len(lengths), steps), generator=torch.Generator().manual_seed(seed)
    )
    for row, length in enumerate(lengths):
        tokens[row, length:] = 0
    return tokens


@pytest.mark.parametrize('pattern', LENGTHS)
def test_pack_rows_equals_pack_padded_sequence_with_gradient(pattern):
    lengths = torch.tensor(LENGTHS[pattern])
    batch, steps = len(lengths), int(lengths.max()) + 2  # padded past every caption
    padded = torch.randn(batch, steps, 3, dtype=torch.float64, requires_grad=True)
    ref = pack_padded_sequence(padded, lengths, batch_first=True, enforce_sorted=False)
    ours = pack_rows(padded, packed_positions(lengths, batch, steps))
    torch.testing.assert_close(ours.data, ref.data, rtol=0, atol=0)
    for field in ('batch_sizes', 'sorted_indices', 'unsorted_indices'):
        torch.testing.assert_close(getattr(ours, field), getattr(ref, field), rtol=0, atol=0)
    upstream = torch.randn_like(ref.data)
    (ref_grad,) = torch.autograd.grad((ref.data * upstream).sum(), padded)
    (grad,) = torch.autograd.grad((ours.data * upstream).sum(), padded)
    torch.testing.assert_close(grad, ref_grad, rtol=0, atol=0)
    padding = torch.arange(steps) >= lengths[:, None]
    assert grad[padding].abs().max() == 0 and grad[~padding].abs().min() > 0


@pytest.mark.parametrize('pattern', LENGTHS)
def test_pad_packed_rows_equals_pad_packed_sequence_with_gradient(pattern):
    lengths = torch.tensor(LENGTHS[pattern])
    batch, steps = len(lengths), int(lengths.max()) + 2  # total length past every caption
    order = packed_positions(lengths, batch, steps)
    rows = torch.randn(order.data.shape[0], 3, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(batch, steps, 3, dtype=torch.float64)
    ref = pad_packed_sequence(order._replace(data=rows), batch_first=True, total_length=steps)[0]
    ours = pad_packed_rows(rows, order.data, batch, steps)
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    (ref_grad,) = torch.autograd.grad((ref * upstream).sum(), rows)
    (grad,) = torch.autograd.grad((ours * upstream).sum(), rows)
    torch.testing.assert_close(grad, ref_grad, rtol=0, atol=0)


def pad_packed_formulation(encoder: BiGRUTextEncoder, tokens, lengths):
    """The text encoder's states as the published code computes them: embed the padded
    batch, pack_padded_sequence, GRU, pad_packed_sequence, average the directions."""
    packed = pack_padded_sequence(
        encoder.embed(tokens), lengths, batch_first=True, enforce_sorted=False
    )
    hidden = pad_packed_sequence(
        encoder.run_gru(packed), batch_first=True, total_length=tokens.shape[1]
    )[0]
    forward_dir, backward_dir = hidden.split(encoder.embed_dim, dim=-1)
    return (forward_dir + backward_dir) / 2


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('gru_impl', ['steps', 'packed'])
def test_text_encoder_equals_pad_packed_formulation_bit_for_bit(gru_impl, dtype):
    """Packing and padding only move numbers: states and every gradient are identical."""
    torch.manual_seed(0)
    encoder = BiGRUTextEncoder(vocab_size=50, word_dim=5, embed_dim=6, gru_impl=gru_impl)
    encoder.to(dtype)
    lengths = torch.tensor(LENGTHS['unsorted with ties'])
    tokens = padded_tokens(LENGTHS['unsorted with ties'], steps=9)
    upstream = torch.randn(len(lengths), 9, 6, dtype=dtype)
    params = [encoder.embed.weight, *encoder.rnn.parameters()]
    results = []
    for run in (pad_packed_formulation, BiGRUTextEncoder.embed_tokens):
        states = run(encoder, tokens, lengths)
        results.append((states, torch.autograd.grad((states * upstream).sum(), params)))
    (ref, ref_grads), (ours, grads) = results
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    assert ours[2, 1:].abs().max() == 0  # zero past the length-1 caption
    assert ref_grads[0][0].abs().max() == 0  # the padding id gets no gradient in either
    for grad, ref_grad in zip(grads, ref_grads, strict=True):
        assert ref_grad.abs().max() > 0
        torch.testing.assert_close(grad, ref_grad, rtol=0, atol=0)


def autograd_node_names(tensor: torch.Tensor) -> set[str]:
    seen, stack, names = set(), [tensor.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return names


def test_text_encoder_backward_has_no_per_run_slice_copies():
    """pad_packed_sequence's backward is one CopySlices node per run of equal batch sizes,
    each copying the whole padded gradient; the encoder must not record any."""
    encoder = BiGRUTextEncoder(vocab_size=50, word_dim=5, embed_dim=6)
    tokens = padded_tokens(LENGTHS['unsorted with ties'], steps=9)
    lengths = torch.tensor(LENGTHS['unsorted with ties'])
    names = autograd_node_names(encoder.embed_tokens(tokens, lengths))
    assert 'IndexCopyBackward0' in names
    assert not any('CopySlices' in name for name in names), names
    assert 'CopySlices' in autograd_node_names(pad_packed_formulation(encoder, tokens, lengths))


def test_gpo_packed_gru_path_has_no_per_run_slice_copies():
    """GPO's nn.GRU path (gru_impl='packed', the CUDA default) packs and pads the same way."""
    gpo = GPO(gru_impl='packed')
    names = autograd_node_names(gpo.pool_weights(torch.tensor([1, 4, 9, 9, 2])))
    assert 'IndexCopyBackward0' in names
    assert not any('CopySlices' in name for name in names), names
