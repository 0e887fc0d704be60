"""Bad input that used to get through silently or with a bare error (issue 20): named errors
and warnings for the precomputed features, ids and captions, the dataset check tool, the
class-disjoint sampler, the non-finite loss stop and GSP on all-zero feature maps."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import copy_split, make_cub, precomp_dataset

from gpo_plugin.datasets import TokenizeCaption
from gpo_plugin.utils.vocab import split_words

# -- precomputed features, ids and captions --------------------------------------------------


def tokenized(root, **kwargs):
    """The precomputed dataset with the pipeline's first step, TokenizeCaption (word vocabulary)."""
    step = TokenizeCaption(dict(type='VocabTokenizer', vocab_file=str(root / 'vocab.json')))
    return precomp_dataset(root, pipeline=[step], **kwargs)


def test_zero_byte_features_file_is_named(precomp_demo, tmp_path):
    root = copy_split(precomp_demo, tmp_path)
    (root / 'train_ims.npy').write_bytes(b'')  # was: EOFError: No data left in file
    with pytest.raises(ValueError, match=r'train_ims.npy is empty \(0 bytes\)'):
        precomp_dataset(root)


def test_truncated_features_file_is_named(precomp_demo, tmp_path):
    root = copy_split(precomp_demo, tmp_path)
    data = (root / 'train_ims.npy').read_bytes()
    (root / 'train_ims.npy').write_bytes(data[:40])  # inside the header
    with pytest.raises(ValueError, match=r'train_ims.npy is not a readable .npy array'):
        precomp_dataset(root)


@pytest.mark.parametrize('shape', [(0, 36, 16), (12, 0, 16)])
def test_features_without_images_or_regions_are_named(precomp_demo, tmp_path, shape):
    root = copy_split(precomp_demo, tmp_path)
    np.save(root / 'train_ims.npy', np.zeros(shape, np.float32))
    # (0, 36, D) was: "expected a positive multiple of 0".
    with pytest.raises(ValueError, match=r'train_ims.npy holds no features \(shape'):
        precomp_dataset(root, feat_dim=None)


@pytest.mark.parametrize(('per_caption', 'line'), [(False, 7), (True, 31)])
def test_non_integer_image_id_names_file_and_line(precomp_demo, tmp_path, per_caption, line):
    root = copy_split(precomp_demo, tmp_path)
    ids = [str(100 + i) for i in range(12)]
    ids[6] = '106a'
    if per_caption:
        ids = [i for i in ids for _ in range(5)]
    (root / 'train_ids.txt').write_text('\n'.join(ids) + '\n')
    with pytest.raises(ValueError, match=rf"train_ids.txt:{line}: id '106a' is not an integer"):
        precomp_dataset(root)


def test_integer_ids_are_still_accepted(precomp_demo, tmp_path):
    root = copy_split(precomp_demo, tmp_path)
    (root / 'train_ids.txt').write_text('\n'.join(str(7 * i) for i in range(12)) + '\n')
    assert precomp_dataset(root).metainfo['image_ids'][:3] == ['0', '7', '14']


def test_caption_of_unknown_words_only_is_named(precomp_demo, tmp_path):
    root = copy_split(precomp_demo, tmp_path)
    lines = (root / 'train_caps.txt').read_text().splitlines()
    lines[7] = 'zyxxy qwoph blorft'
    (root / 'train_caps.txt').write_text('\n'.join(lines) + '\n')
    with pytest.warns(UserWarning, match=r'1 caption\(s\) have no word .*\(caption indices 7;'):
        data = tokenized(root)
    unk = data.pipeline.transforms[0].tokenizer.unk_id
    assert data[7]['txt'][1:-1] == [unk] * 3  # kept, as documented


def test_overlong_caption_is_cut_to_max_words_with_one_warning(precomp_demo, tmp_path):
    root = copy_split(precomp_demo, tmp_path)
    lines = (root / 'train_caps.txt').read_text().splitlines()
    known = [w for w in split_words(' '.join(lines[:5])) if w.isalpha()]
    lines[3] = ' '.join(known[i % len(known)] for i in range(5000))
    lines[9] = ' '.join(known[i % len(known)] for i in range(150))
    (root / 'train_caps.txt').write_text('\n'.join(lines) + '\n')
    with pytest.warns(UserWarning) as caught:
        data = tokenized(root)
    messages = [str(w.message) for w in caught if 'max_words' in str(w.message)]
    assert len(messages) == 1, messages
    assert '2 caption(s) longer than max_words=100' in messages[0]
    assert 'caption 3 on line 4, has 5000' in messages[0]
    assert len(data[3]['txt']) == 100 + 2  # <start> + 100 words + <end>
    assert len(data[9]['txt']) == 102
    assert data[4]['caption'] == lines[4]  # ordinary captions untouched
    unlimited = tokenized(root, max_words=None)
    assert len(unlimited[3]['txt']) == 5002


def test_overlong_caption_no_longer_slows_its_batch(precomp_demo, tmp_path):
    """The issue's symptom: one 5,000-token caption made its batch about 50x slower."""
    import torch

    from gpo_plugin.models.encoders import BiGRUTextEncoder

    root = copy_split(precomp_demo, tmp_path)
    lines = (root / 'train_caps.txt').read_text().splitlines()
    lines[0] = ' '.join(['a'] * 5000)
    (root / 'train_caps.txt').write_text('\n'.join(lines) + '\n')
    with pytest.warns(UserWarning, match='max_words'):
        data = tokenized(root)
    vocab_size = data.pipeline.transforms[0].tokenizer.vocab_size
    enc = BiGRUTextEncoder(vocab_size=vocab_size, word_dim=8, embed_dim=8)

    def encode_seconds(indices) -> float:
        captions = [data[i]['txt'] for i in indices]
        lengths = torch.tensor([len(c) for c in captions])
        tokens = torch.zeros(len(captions), int(lengths.max()), dtype=torch.long)
        for row, caption in enumerate(captions):
            tokens[row, : len(caption)] = torch.tensor(caption)
        start = time.perf_counter()
        enc(tokens, lengths).sum().backward()
        return time.perf_counter() - start

    assert int(max(len(data[i]['txt']) for i in range(16))) <= 102
    encode_seconds(range(16, 32))  # warm-up
    normal = min(encode_seconds(range(16, 32)) for _ in range(3))
    with_long = min(encode_seconds(range(16)) for _ in range(3))
    assert with_long < 10 * normal, (with_long, normal)


# -- tools/analysis_tools/check_dataset.py ---------------------------------------------------


def _cub_config():
    from pathlib import Path

    return str(Path(__file__).resolve().parents[2] / 'configs' / 'dml_avg_cub.py')


def test_check_dataset_lists_every_construction_problem_and_names_symlink_loops(tmp_path, capsys):
    from gpo_plugin.cli.check_dataset import main as check_dataset

    cub = make_cub(tmp_path)
    train_gone = [cub / 'images' / '002.Bird_2' / 'img_0.jpg', cub / 'images/003.Bird_3/img_1.jpg']
    for path in train_gone:
        path.unlink()
    loop = cub / 'images' / '101.Bird_101' / 'img_1.jpg'  # a test-split class
    loop.unlink()
    loop.symlink_to(loop.name)  # points at itself
    code = check_dataset([_cub_config(), '--data-root', str(cub)])
    out = capsys.readouterr().out
    assert code == 1
    problems = [line.strip() for line in out.splitlines() if 'PROBLEM:' in line]
    # Both loaders are reported (the tool used to stop at the first with a traceback).
    assert f'PROBLEM: {train_gone[0]} is missing' in problems
    assert f'PROBLEM: {train_gone[1]} is missing' in problems
    assert f'PROBLEM: {loop} is a symlink loop' in problems
    assert len(problems) == 3 and 'Traceback' not in out
    assert '3 problem(s) found' in out


def test_check_dataset_reports_an_unbuildable_dataset_and_goes_on(tmp_path, capsys):
    from gpo_plugin.cli.check_dataset import main as check_dataset

    cub = make_cub(tmp_path)
    (cub / 'image_class_labels.txt').unlink()
    code = check_dataset([_cub_config(), '--data-root', str(cub)])
    out = capsys.readouterr().out
    assert code == 1
    problems = [line for line in out.splitlines() if 'PROBLEM:' in line]
    assert problems and all('cannot be built: FileNotFoundError' in line for line in problems)
    assert all('image_class_labels.txt' in line for line in problems)
    assert 'train_dataloader:' in out and 'val_dataloader:' in out  # went on after the first


def test_check_image_file_names_a_symlink_loop(tmp_path):
    from gpo_plugin.cli.check_dataset import check_image_file

    link = tmp_path / 'a.jpg'
    link.symlink_to('a.jpg')
    assert check_image_file(str(link)).startswith('is a symlink loop')


# -- class-disjoint sampler ----------------------------------------------------------------------


class _Labels:
    def __init__(self, labels):
        self.labels = labels

    def get_gt_labels(self):
        return self.labels

    def __len__(self):
        return len(self.labels)


def test_sampler_warns_naming_classes_too_small_for_num_per_class():
    from gpo_plugin.datasets.samplers import ClassDisjointSampler

    labels = [0] * 8 + [1] * 8 + [2] + [3] * 8 + [4] * 3 + [5] * 8
    with pytest.warns(UserWarning, match=r'2 class\(es\) .* num_per_class=4 .* 2 \(1\), 4 \(3\)\.'):
        sampler = ClassDisjointSampler(_Labels(labels), batch_size=8, num_per_class=4, seed=0)
    # The single image of class 2 really is drawn num_per_class times when its class is picked.
    drawn = []
    for epoch in range(20):
        sampler.set_epoch(epoch)
        drawn += list(sampler)
    counts = {i: drawn.count(i) for i in set(drawn)}
    assert counts.get(16, 0) % 4 == 0 and counts.get(16, 0) > 0


def test_sampler_is_silent_when_every_class_is_large_enough(recwarn):
    from gpo_plugin.datasets.samplers import ClassDisjointSampler

    ClassDisjointSampler(_Labels([0] * 4 + [1] * 4 + [2] * 5), batch_size=4, num_per_class=2)
    assert not [w for w in recwarn if 'ClassDisjointSampler' in str(w.message)]


# -- non-finite loss -----------------------------------------------------------------------------


def test_non_finite_loss_names_the_culprit_beyond_the_64th_sample():
    import math

    import torch

    from gpo_plugin.engine.non_finite_loss_hook import NonFiniteLossError, NonFiniteLossHook

    class Runner:
        iter, epoch = 9, 0

    img = torch.randn(128, 36, 8)
    img[69, 3, 5] = math.nan  # the 70th sample, which the first 64 ids never showed
    cap_idx = torch.arange(1000, 1128)
    batch = dict(inputs=dict(img=img), data_samples=dict(img_idx=cap_idx // 5, cap_idx=cap_idx))
    with pytest.raises(NonFiniteLossError) as error:
        NonFiniteLossHook().after_train_iter(Runner, 9, batch, dict(loss=torch.tensor(math.nan)))
    message = str(error.value)
    assert 'non-finite inputs (1 of 128, batch positions [69]): img_idx=[213], cap_idx=[1069]' in (
        message
    )
    assert 'Sample ids of the batch (all 128)' in message and '1127' in message


# -- GSP on all-zero feature maps ----------------------------------------------------------------


def test_gsp_warns_when_all_zero_maps_collapse_the_prototypes(recwarn):
    import torch

    from gpo_plugin.models.necks import GSP

    gsp = GSP(8, 5, num_prototypes=4).train()
    gsp.pool_map(torch.zeros(6, 8, 3, 3))
    collapsed = [w for w in recwarn if 'distinct prototype' in str(w.message)]
    assert len(collapsed) == 1 and 'only 1 distinct prototype(s) of 4' in str(collapsed[0].message)
    assert torch.unique(gsp.prototypes.detach(), dim=0).shape[0] == 1  # what it warns about

    recwarn.clear()
    healthy = GSP(8, 5, num_prototypes=4).train()
    healthy.pool_map(torch.randn(6, 8, 3, 3))
    assert bool(healthy.prototypes_initialised)
    assert not [w for w in recwarn if 'distinct prototype' in str(w.message)]
