"""tools/train.py on the CPU: --amp (bfloat16 autocast, no GPU) and --launcher pytorch under
torchrun with gloo (2 processes)."""

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from gpo_plugin.cli import runner_config
from gpo_plugin.cli import train as train_cli
from gpo_plugin.engine import CPUBf16AmpOptimWrapper
from gpo_plugin.models.necks import rank_weights

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / 'configs' / 'vse_gpo_demo.py')


def options(root, vocab):
    opts = [
        f'model.txt_enc.vocab_file={vocab}',
        'train_cfg.max_epochs=1',
        'train_cfg.val_interval=1',
        'default_hooks.logger.interval=1',
        'train_dataloader.batch_size=32',
        'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'custom_hooks=[]',
    ]
    opts.append(f'vocab_file={vocab}')  # the tools copy it into every pipeline's tokenizer
    return ['--data-root', str(root), '--cfg-options', *opts]


def test_amp_on_cpu_trains_in_bfloat16_with_finite_losses(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)  # the CPU path, also on GPUs
    root, vocab = tiny_data
    runner = train_cli.main([CONFIG, '--amp', '--work-dir', str(tmp_path), *options(root, vocab)])
    assert isinstance(runner.optim_wrapper, CPUBf16AmpOptimWrapper)
    losses = runner.message_hub.get_scalar('train/loss').data[0]
    assert len(losses) == 7 and all(math.isfinite(x) for x in losses)  # 200 captions / 32
    model = runner.model
    regions = torch.randn(2, 5, 128)
    with runner.optim_wrapper.optim_context(model):
        assert model.img_enc.fc(regions).dtype == torch.bfloat16
        img, txt = model(
            dict(
                img=regions,
                img_lengths=torch.tensor([5, 3]),
                txt=torch.tensor([[1, 5, 6, 2], [1, 7, 2, 0]]),
                txt_lengths=torch.tensor([4, 3]),
            )
        )
        # GPO's weights and the l2-normalised embeddings, hence the loss, stay float32
        assert rank_weights(model.img_enc.gpool, [5, 3]).dtype == torch.float32
        assert img.dtype == txt.dtype == torch.float32


def test_amp_dtype_float16_on_cpu_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    cfg = Config(dict(optim_wrapper=dict(type='OptimWrapper')))
    with pytest.raises(SystemExit, match='CPU autocast supports bfloat16 only'):
        train_cli.set_amp(cfg, 'float16')
    train_cli.set_amp(cfg, None)
    assert cfg.optim_wrapper.type == 'gpo_plugin.CPUBf16AmpOptimWrapper'


def test_launcher_pytorch_without_torchrun_says_how(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.delenv('WORLD_SIZE', raising=False)
    args = train_cli.train_parser().parse_args([CONFIG, '--launcher', 'pytorch'])
    with pytest.raises(SystemExit, match='torchrun'):
        runner_config.load_config(args)


@pytest.mark.slow
def test_torchrun_two_cpu_processes_train_with_gloo(tiny_data, tmp_path):
    root, vocab = tiny_data
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(ROOT), CUDA_VISIBLE_DEVICES='')
    command = [
        sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2',
        '--master_port', str(port), str(ROOT / 'tools' / 'train.py'), CONFIG,
        '--launcher', 'pytorch', '--work-dir', str(tmp_path), *options(root, vocab),
        'train_dataloader.batch_size=16',
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = torch.load(tmp_path / 'epoch_1.pth', weights_only=True)
    # 200 captions, 2 ranks x 16 = global batch 32: 7 iterations, as one process at 32.
    assert ckpt['meta']['iter'] == 7
    log = next(tmp_path.glob('*/*.log')).read_text()
    assert 'Distributed training: True' in log and "'backend': 'gloo'" in log
    # tools/test.py on 2 processes (the model is DDP-wrapped there) gives the metrics of one.
    test_opts = ['--data-root', str(root), '--vocab', str(vocab)]
    test_opts += ['--cfg-options', 'test_dataloader.num_workers=0']
    outs = {}
    for nproc in (1, 2):
        out = tmp_path / f'test_{nproc}.json'
        command = [
            sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', str(nproc),
            '--master_port', str(port), str(ROOT / 'tools' / 'test.py'), CONFIG,
            str(tmp_path / 'epoch_1.pth'), '--launcher', 'pytorch',
            '--work-dir', str(tmp_path / f'test_{nproc}'), '--out', str(out), *test_opts,
        ]  # fmt: skip
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
        outs[nproc] = json.loads(out.read_text())['metrics']
    assert outs[2] == outs[1] and 'retrieval/rsum' in outs[1]
