"""The demo sets stay the same numbers after their words moved into package data.

The digests below are of the data written by the generators *before* the move (commit 17251d4,
``gpo_plugin/apis/{demo_data,video_demo_data}.py`` with the words as Python literals; arrays
hashed by dtype, shape and bytes, so numpy/HDF5 file-format versions do not matter). They pin
the demo's inputs: if one moves, every demo number in the docs moves with it. The other tests
re-derive what the files must hold from the word files alone.
"""

import hashlib
import json
import re
from fnmatch import fnmatch
from pathlib import Path

import numpy as np
import pytest
import tomllib

from gpo_plugin.demo import make_demo_data, make_video_demo_data, video_data, vse_data

ROOT = Path(__file__).resolve().parents[2]
CAPTIONS = ROOT / 'gpo_plugin' / 'demo' / 'captions'

VSE_DIGESTS = {
    'dev_caps.txt': '3fc187c8e74db5b6e918530ccccc872f259e29f00a3abc71ba3a6967ba46e360',
    'dev_ids.txt': '0975edd94af85ddc36b52b93bed74db6d95a2da94982436fb731ef77f488e682',
    'dev_ims.npy': '916981bb87bd32ed8ed37dd4d4e63caa5d62128a218de528fcdcff2fcec1b7ba',
    'test_caps.txt': '963fdc020bd268d312653af56622bd1e6c521577b7a7169e73480c16ace49226',
    'test_ids.txt': '2755b8278b2957cf91c55ada22460997553464109705f3ed3f73ef9377c4ef4e',
    'test_ims.npy': '6835158cd5cf253189a2a147442615fe897989e89350898e21d83a2feda045e6',
    'testall_caps.txt': '1b35992f3e2adcc3c57642c7c49f2152e09fa2d984f3e1faf49c7ae6f9ca69e6',
    'testall_ids.txt': '5a7df9ea32c49c3214df50a89ee8a25a4a5fb265ff6404630da9c32321b25522',
    'testall_ims.npy': '5f8f5335c3706c38340a2f60e397a85be4aa80758a57c929f9ec557d68c62f7f',
    'train_caps.txt': '14f1b40a1935ca3c6ed3574bd52725df637fb712af3f1edb765a46a7b544e4a5',
    'train_ids.txt': '60ca767d880385d16bd409800190b12f8eb69cff0a3117a3fa106ed751d2b386',
    'train_ims.npy': '6c210970b02b98b00605142aaeee54dfab1fbbe60f32eb96415535326829ece4',
}
VIDEO_DIGESTS = {
    'annotation/RET/ref_captions.json': 'afb5061ac895ae1e2fa52d2a12ea5691e006cb1d77b4cedeabb77ec107c5d7b2',
    'annotation/RET/word2int.json': '3ce3bbb66f90707de65c836068c78dfe5505176f9d16c6ef8e1cd2d42d13cead',
    'ordered_feature/SA/appearance/trn_ft.hdf5': '84dbd662684b49f06727c76b049a8a196b8d5aab82c59ab2146d0e971ec069f0',
    'ordered_feature/SA/appearance/tst_ft.hdf5': '48f89e2d2f1cfd96482e0f471f82df9dc7efc0842cf55479825095a66447a5fe',
    'ordered_feature/SA/appearance/val_ft.hdf5': 'c44bac36a4bb132efb8aa9105fafcc6e79f27c4d4148b825a6a03424e82a9fff',
    'ordered_feature/SA/motion/trn_ft.hdf5': '623d5b3602008c12bbeccbf5eea1794167bfac7a8288867e00bc87165a1ec51b',
    'ordered_feature/SA/motion/tst_ft.hdf5': '0890a3d7139c4fe30f1dab1bb70150cbcc34feb132559c2f9d3de3053fa8e208',
    'ordered_feature/SA/motion/val_ft.hdf5': '0069d0945228d79d98f60af4fbb0d9d26f0da2bce2112e658936422e32045288',
    'public_split/trn_names.npy': '40c59752356774d2c4c7a32cd201896f938af9e17ce5d52c6338d4e07c53b244',
    'public_split/tst_names.npy': '9092f33a3d044c1f8522aeecdfb4a5c9aab7d06f583b4d0c088f4695f9dd7806',
    'public_split/val_names.npy': '864e1d4a26f2f9da8c23324c43904970991390414edb3d9d0c12f49ed0ee47c6',
}


def digest(path: Path) -> str:
    """SHA-256 of a file's content: arrays by dtype, shape and bytes; text as is."""
    h = hashlib.sha256()
    if path.suffix == '.npy':
        arrays = {'': np.load(path)}
    elif path.suffix == '.hdf5':
        import h5py

        with h5py.File(path, 'r') as f:
            arrays = {name: f[name][()] for name in sorted(f)}
    else:
        h.update(path.read_bytes())
        return h.hexdigest()
    for name, a in arrays.items():
        h.update(f'{name}{a.dtype.str}{a.shape}'.encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): digest(p) for p in sorted(root.rglob('*')) if p.is_file()}


def test_vse_demo_set_is_the_one_written_before_the_move(tmp_path):
    assert digests(make_demo_data(tmp_path / 'precomp')) == VSE_DIGESTS


def test_video_demo_set_is_the_one_written_before_the_move(tmp_path):
    pytest.importorskip('h5py')
    assert digests(make_video_demo_data(tmp_path / 'video')) == VIDEO_DIGESTS


def caption_pattern(templates: dict[int, tuple[str, ...]], words: tuple[str, ...]) -> re.Pattern:
    """Any template filled with distinct words of ``words`` (checked after the match)."""
    word = '(' + '|'.join(map(re.escape, words)) + ')'
    filled = [
        re.escape(t).replace(r'\{0\}', word).replace(r'\{1\}', word).replace(r'\{2\}', word)
        for ts in templates.values()
        for t in ts
    ]
    return re.compile('^(?:' + '|'.join(f'(?:{f})' for f in filled) + ')$')


def test_vse_captions_come_from_the_word_files(tmp_path):
    objects = tuple((CAPTIONS / 'vse_objects.txt').read_text().split())
    templates = json.loads((CAPTIONS / 'vse_templates.json').read_text())
    assert vse_data.OBJECTS == objects and len(set(objects)) == len(objects) == 64
    assert {str(k): list(v) for k, v in vse_data.TEMPLATES.items()} == templates
    root = make_demo_data(tmp_path, seed=5, feat_dim=8, sizes={'train': 30})
    captions = (root / 'train_caps.txt').read_text().splitlines()
    pattern = caption_pattern(vse_data.TEMPLATES, objects)
    assert len(captions) == 150
    for caption in captions:
        match = pattern.match(caption)
        assert match, caption
        named = [g for g in match.groups() if g is not None]
        assert 2 <= len(named) == len(set(named)) <= 3, caption  # 2-3 distinct objects


def test_video_captions_come_from_the_word_files(tmp_path):
    pytest.importorskip('h5py')
    actions = tuple((CAPTIONS / 'video_actions.txt').read_text().split())
    assert video_data.ACTIONS == actions
    out = make_video_demo_data(tmp_path, seed=2, sizes={'trn': 6, 'val': 2, 'tst': 2})
    refs = json.loads((out / 'annotation/RET/ref_captions.json').read_text())
    pattern = caption_pattern(video_data.TEMPLATES, actions)
    assert all(pattern.match(c) for captions in refs.values() for c in captions)


def test_word_files_are_package_data():
    """Every file the generators read is declared in pyproject.toml, so a wheel has it."""
    config = tomllib.loads((ROOT / 'pyproject.toml').read_text())
    globs = config['tool']['setuptools']['package-data']['gpo_plugin.demo']
    files = sorted(p.relative_to(CAPTIONS.parent).as_posix() for p in CAPTIONS.iterdir())
    assert files and all(any(fnmatch(f, g) for g in globs) for f in files), (files, globs)
