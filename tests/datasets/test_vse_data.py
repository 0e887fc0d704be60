"""Precomputed caption dataset, tokenisers, augmentation and collation (docs/vse.md#data)."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import PRECOMP_SIZES, copy_split, precomp_dataset
from mmengine.registry import DefaultScope

from gpo_plugin.datasets import (
    PackVSEInputs,
    RandomRegionDrop,
    RandomWordAugment,
    TokenizeCaption,
    VocabTokenizer,
    build_caption_tokenizer,
    vse_collate,
)
from gpo_plugin.demo import make_demo_data
from gpo_plugin.utils.vocab import SPECIALS, build_vocab, save_vocab, split_words


def test_demo_data_is_deterministic_and_in_the_precomp_layout(precomp_demo, tmp_path):
    again = make_demo_data(tmp_path, seed=0, feat_dim=16, sizes=PRECOMP_SIZES)
    for split, n in PRECOMP_SIZES.items():
        ims = np.load(precomp_demo / f'{split}_ims.npy')
        assert ims.shape == (n, 36, 16) and ims.dtype == np.float32
        assert np.array_equal(ims, np.load(again / f'{split}_ims.npy'))
        caps = (precomp_demo / f'{split}_caps.txt').read_text().splitlines()
        assert len(caps) == 5 * n
        assert caps == (again / f'{split}_caps.txt').read_text().splitlines()


def test_dataset_reads_samples_memory_mapped(precomp_demo):
    ds = precomp_dataset(precomp_demo)
    assert len(ds) == 60 and ds.metainfo['captions_per_image'] == 5
    assert isinstance(ds.images, np.memmap)
    caps = (precomp_demo / 'train_caps.txt').read_text().splitlines()
    ims = np.load(precomp_demo / 'train_ims.npy')
    for idx in (0, 7, 59):
        info = ds.get_data_info(idx)
        assert info['img_idx'] == idx // 5 and info['cap_idx'] == idx
        assert np.array_equal(info['img'], ims[idx // 5])
        assert info['caption'] == caps[idx]
        # A pure reader: no tokens and no tokenizer constants in the sample.
        assert not {'txt', 'word_ids', 'mask_id', 'vocab_size', 'random_low'} & set(info)


def test_tokenize_caption_heads_the_pipeline(precomp_demo):
    tokenizer = dict(type='VocabTokenizer', vocab_file=str(precomp_demo / 'vocab.json'))
    pipeline = [dict(type='TokenizeCaption', tokenizer=tokenizer), dict(type='PackVSEInputs')]
    with DefaultScope.overwrite_default_scope('gpo_plugin'):
        ds = precomp_dataset(precomp_demo, pipeline=pipeline)
    tok = VocabTokenizer(precomp_demo / 'vocab.json')
    caps = (precomp_demo / 'train_caps.txt').read_text().splitlines()
    sample = ds[7]
    assert sample['inputs']['txt'].tolist() == tok.encode(caps[7])[0]
    assert sample['inputs']['txt'][0] == SPECIALS.index('<start>')
    assert sample['data_samples'] == dict(img_idx=1, cap_idx=7)
    out = TokenizeCaption(tok)(dict(caption=caps[7]))
    assert (out['txt'], out['word_ids']) == tok.encode(caps[7])


def test_dataset_max_images_and_ids(precomp_demo):
    ds = precomp_dataset(precomp_demo, split='testall', max_images=4)
    assert len(ds) == 20 and ds.metainfo['image_ids'][:2] == ['20', '21']


def test_dataset_pickles_without_the_memory_map(precomp_demo):
    import pickle

    ds = precomp_dataset(precomp_demo)
    _ = ds.images
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._ims is None
    assert np.array_equal(clone.get_data_info(3)['img'], ds.get_data_info(3)['img'])


@pytest.mark.parametrize('missing', ['ims.npy', 'caps.txt'])
def test_missing_file_names_the_file(precomp_demo, tmp_path, missing):
    root = copy_split(precomp_demo, tmp_path / 'd')
    (root / f'train_{missing}').unlink()
    with pytest.raises(FileNotFoundError, match=f'train_{missing}.*data_root'):
        precomp_dataset(root)


def test_caption_count_not_a_multiple(precomp_demo, tmp_path):
    root = copy_split(precomp_demo, tmp_path / 'd')
    caps = (root / 'train_caps.txt').read_text().splitlines()
    (root / 'train_caps.txt').write_text('\n'.join(caps[:-1]) + '\n')
    with pytest.raises(ValueError, match=r'train_caps.txt has 59 captions for 12 images'):
        precomp_dataset(root)


def test_captions_per_image_disagrees(precomp_demo):
    with pytest.raises(ValueError, match=r'5 captions per image.*captions_per_image=3'):
        precomp_dataset(precomp_demo, captions_per_image=3)


def test_feature_dimension_disagrees(precomp_demo):
    with pytest.raises(ValueError, match=r'train_ims.npy has feature dimension 16.*feat_dim=2048'):
        precomp_dataset(precomp_demo, feat_dim=2048)


def test_features_not_three_dimensional(precomp_demo, tmp_path):
    root = copy_split(precomp_demo, tmp_path / 'd')
    np.save(root / 'train_ims.npy', np.zeros((12, 16), np.float32))
    with pytest.raises(ValueError, match=r'train_ims.npy must hold an \(N, R, D\) array'):
        precomp_dataset(root)


def test_ids_count_wrong(precomp_demo, tmp_path):
    root = copy_split(precomp_demo, tmp_path / 'd')
    (root / 'train_ids.txt').write_text('1\n2\n3\n')
    with pytest.raises(ValueError, match=r'train_ids.txt has 3 ids'):
        precomp_dataset(root)


def test_vocab_threshold_specials_and_errors(tmp_path):
    words = build_vocab(['A dog.', 'a dog runs', 'a cat'], threshold=2)
    assert words == [*SPECIALS, 'a', 'dog']
    assert split_words("The dog's ball, red.") == ['the', "dog's", 'ball', ',', 'red', '.']
    save_vocab(words, tmp_path / 'v.json')
    tok = VocabTokenizer(tmp_path / 'v.json')
    ids, word_ids = tok.encode('a dog chases a cat')
    assert ids == [1, 5, 6, 3, 5, 3, 2] and word_ids == [None, 0, 1, 2, 3, 4, None]
    with pytest.raises(FileNotFoundError, match='build_vocab.py'):
        VocabTokenizer(tmp_path / 'nope.json')
    (tmp_path / 'bad.json').write_text(json.dumps({'words': ['x']}))
    with pytest.raises(ValueError, match='specials'):
        VocabTokenizer(tmp_path / 'bad.json')
    with pytest.raises(ValueError, match='must be one of'):
        build_caption_tokenizer(dict(type='Nope'))


def test_region_drop_rate_and_at_least_one_kept():
    np.random.seed(0)
    drop = RandomRegionDrop(0.2)
    kept = [len(drop.transform({'img': np.zeros((36, 2))})['img']) for _ in range(2000)]
    assert abs(1 - np.mean(kept) / 36 - 0.2) < 0.01
    single = [len(drop.transform({'img': np.zeros((1, 2))})['img']) for _ in range(200)]
    assert min(single) == 1
    always = RandomRegionDrop(0.999)
    assert all(
        len(always.transform({'img': np.arange(10.0)[:, None]})['img']) == 1 for _ in range(50)
    )


def test_word_augment_rates_and_word_pieces_together():
    np.random.seed(0)
    tokenizer = SimpleNamespace(mask_id=103, vocab_size=30000, random_low=2000)
    aug = RandomWordAugment(tokenizer, prob=0.2)
    n_words, trials = 20, 3000
    # Each word has two pieces (ids 1000 + 2w, 1001 + 2w); ids 101/102 are specials.
    ids = [101] + [1000 + t for t in range(2 * n_words)] + [102]
    word_ids = [None] + [t // 2 for t in range(2 * n_words)] + [None]
    counts = dict(mask=0, random=0, deleted=0)
    for _ in range(trials):
        out = aug.transform(dict(txt=list(ids), word_ids=list(word_ids)))
        assert out['txt'][0] == 101 and out['txt'][-1] == 102
        pieces = {}
        for token, word in zip(out['txt'], out['word_ids'], strict=True):
            if word is not None:
                pieces.setdefault(word, []).append(token)
        counts['deleted'] += n_words - len(pieces)
        for word, toks in pieces.items():
            assert len(toks) == 2
            original = [1000 + 2 * word, 1001 + 2 * word]
            if toks == [103, 103]:
                counts['mask'] += 1
            elif toks != original:
                assert all(2000 <= t < 30000 for t in toks)
                counts['random'] += 1
    total = n_words * trials
    assert abs(counts['mask'] / total - 0.10) < 0.01
    assert abs(counts['random'] / total - 0.02) < 0.005
    assert abs(counts['deleted'] / total - 0.08) < 0.01


def test_pack_and_collate_pad_with_lengths():
    samples = [
        PackVSEInputs().transform(
            dict(
                img=np.ones((n, 3), np.float32) * n,
                txt=list(range(1, t + 1)),
                img_idx=i,
                cap_idx=10 + i,
            )
        )
        for i, (n, t) in enumerate([(2, 4), (5, 2), (3, 3)])
    ]
    batch = vse_collate(samples)
    inputs = batch['inputs']
    assert inputs['img'].shape == (3, 5, 3)
    assert inputs['img_lengths'].tolist() == [2, 5, 3]
    assert inputs['txt'].tolist() == [[1, 2, 3, 4], [1, 2, 0, 0], [1, 2, 3, 0]]
    assert inputs['txt_lengths'].tolist() == [4, 2, 3]
    assert torch.equal(inputs['img'][0, 2:], torch.zeros(3, 3))
    assert batch['data_samples']['img_idx'].tolist() == [0, 1, 2]
    assert batch['data_samples']['cap_idx'].tolist() == [10, 11, 12]
    with pytest.raises(ValueError, match='PackVSEInputs'):
        vse_collate([{'inputs': torch.zeros(3)}])
