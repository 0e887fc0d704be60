"""Set-up in one flag: --vocab and its default, checked --cfg-options, loader defaults,
--tensorboard, the resume and global-batch log lines, vocabulary errors, dist scripts'
interpreter, plain progress lines in non-interactive logs, the log interval."""

import io
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config

from gpo_plugin.cli import runner_config
from gpo_plugin.cli import train as train_cli
from gpo_plugin.engine import EmbeddingProgressHook, EpochFractionLoggerHook
from gpo_plugin.utils.config_setup import ConfigOptionError, fit_loaders
from gpo_plugin.utils.vocab import VocabularyError, read_vocab

ROOT = Path(__file__).resolve().parents[2]
DEMO = str(ROOT / 'configs' / 'vse_gpo_demo.py')
COCO = str(ROOT / 'configs' / 'vse_gpo_coco_bigru.py')


def vocab_values(cfg) -> list[str]:
    """Every vocab_file of a config, found independently of config_setup's walker."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            found.extend(v for k, v in node.items() if k == 'vocab_file')
            for v in node.values():
                walk(v)
        elif isinstance(node, list | tuple):
            for v in node:
                walk(v)

    walk(cfg.to_dict())
    return found


def load(argv):
    return runner_config.load_config(train_cli.train_parser().parse_args(argv))


def test_vocab_flag_sets_every_vocab_file():
    cfg = load([COCO, '--vocab', '/v/words.json'])
    values = vocab_values(cfg)
    assert len(values) >= 5 and set(values) == {'/v/words.json'}


def test_vocab_follows_data_root(tmp_path):
    cfg = load([COCO, '--data-root', str(tmp_path / 'coco' / 'precomp')])
    assert set(vocab_values(cfg)) == {str(tmp_path / 'coco' / 'vocab.json')}
    # No vocab beside the data root, one inside it: that one.
    (tmp_path / 'flat').mkdir()
    (tmp_path / 'flat' / 'vocab.json').write_text('{}')
    cfg = load([COCO, '--data-root', str(tmp_path / 'flat')])
    assert set(vocab_values(cfg)) == {str(tmp_path / 'flat' / 'vocab.json')}


@pytest.mark.parametrize('key', ['vocab_file', 'model.txt_enc.vocab_file'])
def test_vocab_in_cfg_options_wins_over_data_root(key):
    cfg = load([COCO, '--data-root', '/data/precomp', '--cfg-options', f'{key}=/o/v.json'])
    assert set(vocab_values(cfg)) == {'/o/v.json'}


def test_vocab_flag_on_a_config_without_vocabulary_is_an_error():
    with pytest.raises(ConfigOptionError, match='reads no vocabulary'):
        load([str(ROOT / 'configs' / 'vse_gpo_coco.py'), '--vocab', 'v.json'])


def test_unknown_top_level_option_is_an_error_with_close_matches():
    with pytest.raises(ConfigOptionError, match=r'vocab_fil\b.*Did you mean vocab_file'):
        load([COCO, '--cfg-options', 'vocab_fil=x'])
    load([COCO, '--cfg-options', 'find_unused_parameters=True'])  # read by the Runner


def test_unknown_nested_option_warns_with_close_matches():
    with pytest.warns(UserWarning, match=r'train_cfg.*max_epoch.*Did you mean max_epochs'):
        load([COCO, '--cfg-options', 'train_cfg.max_epoch=3'])


def test_fit_loaders_clamps_workers_and_drops_persistent_workers():
    cfg = Config.fromfile(COCO)
    cfg.val_dataloader.num_workers = 0
    cfg.val_dataloader.persistent_workers = True
    notes = fit_loaders(cfg, cores=2)
    assert cfg.train_dataloader.num_workers == 2  # the config asks for 4
    assert cfg.val_dataloader.persistent_workers is False
    assert any('lowered from 4 to 2' in n for n in notes)


@pytest.mark.parametrize(
    'text, match', [('not json {', 'is not JSON'), ('["<pad>", "a"]', 'JSON list')]
)
def test_bad_vocabulary_files_get_named_errors(tmp_path, text, match):
    path = tmp_path / 'vocab.json'
    path.write_text(text)
    with pytest.raises(VocabularyError, match=match) as err:
        read_vocab(path)
    assert str(path) in str(err.value)


def test_progress_hook_prints_plain_lines_when_not_a_terminal(monkeypatch):
    out = io.StringIO()  # isatty() is False, as for a log file
    monkeypatch.setattr(sys, 'stdout', out)
    hook = EmbeddingProgressHook(step=10)
    runner = SimpleNamespace(rank=0, test_dataloader=SimpleNamespace(dataset=range(1000)))
    hook.before_test_epoch(runner)
    for _ in range(100):
        hook.after_test_iter(runner, 0, dict(inputs=dict(img=torch.zeros(10, 1))))
    hook.after_test_epoch(runner)
    lines = out.getvalue().splitlines()
    assert '\r' not in out.getvalue()
    assert len(lines) == 10 and lines[-1].startswith('embedded 1000/1000 (100%)')


@pytest.mark.parametrize('iters, expected', [(10, 2), (7, 1), (3, 1), (1000, 50)])
def test_log_interval_fits_short_epochs(iters, expected):
    hook = EpochFractionLoggerHook(interval=50, lines_per_epoch=4)
    hook.before_train(SimpleNamespace(train_dataloader=range(iters)))
    assert hook.interval == expected


@pytest.mark.parametrize('script', ['dist_train.sh', 'dist_test.sh'])
def test_dist_scripts_use_the_repository_venv(tmp_path, script):
    (tmp_path / 'tools').mkdir()
    (tmp_path / 'tools' / script).write_text((ROOT / 'tools' / script).read_text())
    fake = tmp_path / '.venv' / 'bin' / 'python'
    fake.parent.mkdir(parents=True)
    fake.write_text('#!/bin/sh\necho "venv python $@"\n')
    fake.chmod(0o755)
    env = {'PATH': '/usr/bin:/bin'}  # no activated environment
    args = ['cfg.py', '2'] if script == 'dist_train.sh' else ['cfg.py', 'ck.pth', '2']
    run = subprocess.run(
        ['bash', str(tmp_path / 'tools' / script), *args],
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith('venv python -m torch.distributed.run')
    env['PYTHON'] = str(fake.with_name('other'))
    fake.with_name('other').write_text('#!/bin/sh\necho "chosen $@"\n')
    fake.with_name('other').chmod(0o755)
    run = subprocess.run(
        ['bash', str(tmp_path / 'tools' / script), *args], env=env, capture_output=True, text=True
    )
    assert run.stdout.startswith('chosen -m torch.distributed.run')


def run_tool(*argv, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS='1')
    return subprocess.run(
        [sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_train_cli_unknown_option_fails_naming_the_key():
    run = run_tool('tools/train.py', COCO, '--cfg-options', 'vocab_fil=x')
    assert run.returncode != 0
    assert 'vocab_fil' in run.stderr and 'Did you mean vocab_file' in run.stderr
    assert 'Traceback' not in run.stderr.splitlines()[-1]


@pytest.mark.slow
def test_train_cli_set_up_flags_end_to_end(tiny_data, tmp_path):
    root, vocab = tiny_data
    words = tmp_path / 'words.json'
    words.write_text(vocab.read_text())
    run = run_tool(
        'tools/train.py',
        DEMO,
        '--data-root',
        str(root),
        '--vocab',
        str(words),
        '--work-dir',
        str(tmp_path / 'w'),
        '--resume',
        '--tensorboard',
        '--cfg-options',
        'train_cfg.max_epochs=1',
        'train_cfg.val_interval=1',
        'train_dataloader.num_workers=0',  # persistent_workers=True stays in the config
        'custom_hooks=[]',
    )
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-3000:]
    assert f'vocabulary: {words} (from --vocab)' in log
    assert 'training starts from scratch' in log
    assert 'Auto resumed from the latest checkpoint None' not in log
    assert 'global batch: 1 process(es) x batch_size 128 = 128' in log
    assert 'persistent_workers=False' in log
    # 200 captions / 128 = 2 iterations: a line every iteration, not only at the epoch end.
    assert 'Epoch(train) [1][1/2]' in log
    assert list((tmp_path / 'w').rglob('events.out.tfevents*'))


@pytest.mark.parametrize(
    'world, gathers, tail',
    [
        (2, True, '= 128; the loss sees all 128 (embeddings gathered across ranks)'),
        (2, False, "= 128; the loss sees each rank's 64 (head.global_batch=False)"),
        (1, True, '= 64; the loss sees all 64'),
    ],
)
def test_global_batch_line_says_what_the_loss_sees(world, gathers, tail):
    runner = SimpleNamespace(
        cfg=Config(dict(train_dataloader=dict(batch_size=64))),
        world_size=world,
        model=SimpleNamespace(head=SimpleNamespace(global_batch=gathers)),
    )
    line = train_cli.global_batch_line(runner)
    assert line == f'global batch: {world} process(es) x batch_size 64 {tail}'
