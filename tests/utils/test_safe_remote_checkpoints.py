"""Every scheme of mmengine's CheckpointLoader and the torch hub cache load with
weights_only=True (docs/fault_tolerance.md): a poisoned checkpoint served over HTTP, or already
in the hub cache, is refused with UnsafeCheckpointError and never runs; a benign mmengine
checkpoint loads. Refused files are named and described (one classifier: safe_torch_load)."""

import http.server
import io
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModule
from mmengine.runner import load_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader, _load_checkpoint
from torch import nn

from gpo_plugin.utils.checkpoints import (
    UNSAFE_ENV,
    CheckpointError,
    UnsafeCheckpointError,
    hub_checkpoint_path,
    safe_torch_load,
)


class _RunsCode:
    """Unpickling this touches ``marker``: what a poisoned checkpoint would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """A threaded HTTP server on 127.0.0.1 serving ``tmp_path/www``; it stops at the end of
    the test, or by itself after 60 s whatever happens."""
    root = tmp_path / 'www'
    root.mkdir()

    def handler(*args, **kwargs):
        return _QuietHandler(*args, directory=str(root), **kwargs)

    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    timer = threading.Timer(60, httpd.shutdown)
    timer.start()
    yield root, f'http://127.0.0.1:{httpd.server_address[1]}'
    timer.cancel()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    return tmp_path / 'torch_home'


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def _benign(path):
    """An mmengine-style checkpoint: state_dict, meta, message hub with a HistoryBuffer."""
    buffer = HistoryBuffer()
    buffer.update(1.5)
    torch.save(
        {
            'state_dict': _model().state_dict(),
            'meta': {'epoch': 3, 'seed': np.int64(0)},
            'message_hub': {'log_scalars': {'train/loss': buffer}},
        },
        path,
    )


def _evil(path, marker):
    torch.save({'state_dict': {}, 'payload': _RunsCode(marker)}, path, pickle_module=pickle)


def test_poisoned_checkpoint_over_http_is_refused(server, torch_home, tmp_path, monkeypatch):
    root, base = server
    marker = tmp_path / 'pwned'
    _evil(root / 'evil.pth', marker)
    monkeypatch.setenv(UNSAFE_ENV, '1')  # must not matter
    url = f'{base}/evil.pth'
    with pytest.raises(UnsafeCheckpointError, match=r'evil.pth .*GLOBAL pathlib') as error:
        _load_checkpoint(url)  # what load_from and Runner.load_checkpoint call
    assert 'weights_only=False' not in str(error.value)
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(_model(), url)  # mmengine.runner.load_checkpoint
    module = BaseModule(init_cfg=dict(type='Pretrained', checkpoint=url))
    module.fc = nn.Linear(2, 2)
    with pytest.raises(UnsafeCheckpointError):
        module.init_weights()  # init_cfg=dict(type='Pretrained', checkpoint=URL)
    assert not marker.exists()
    # The control: torch's own hub loader would have run it.
    torch.hub.load_state_dict_from_url(url, weights_only=False)
    assert marker.exists()


def test_benign_mmengine_checkpoint_over_http_loads(server, torch_home):
    root, base = server
    _benign(root / 'good.pth')
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    load_checkpoint(model, f'{base}/good.pth', map_location='cpu')
    for name, value in _model().state_dict().items():
        assert torch.equal(model.state_dict()[name], value)
    assert Path(hub_checkpoint_path(f'{base}/good.pth')).is_file()  # cached where torch does


def test_poisoned_file_already_in_the_hub_cache_is_refused(server, torch_home, tmp_path):
    _, base = server
    url = f'{base}/resnet-cached.pth'  # the server does not have it: the cache must answer
    cached = Path(hub_checkpoint_path(url))
    assert str(cached).startswith(str(torch_home))
    cached.parent.mkdir(parents=True)
    marker = tmp_path / 'pwned'
    _evil(cached, marker)
    with pytest.raises(UnsafeCheckpointError, match='resnet-cached.pth'):
        CheckpointLoader.load_checkpoint(url, map_location='cpu')
    assert not marker.exists()


def test_every_mmengine_scheme_is_ours():
    from gpo_plugin.utils import checkpoints

    ours = set(checkpoints.SAFE_SCHEMES.values())
    for prefix in CheckpointLoader._schemes:
        assert CheckpointLoader._schemes[prefix] in ours, prefix
    for name in ('x.pth', 'http://h/x.pth', 'https://h/x', 'torchvision://r', 'open-mmlab://r'):
        assert CheckpointLoader._get_checkpoint_loader(name) in ours, name
    for name in ('mmcls://r', 'pavi://r', 's3://b/x.pth', 'petrel://b/x.pth', 'a:s3://b/x'):
        assert CheckpointLoader._get_checkpoint_loader(name) in ours, name


def test_ceph_scheme_refuses_poisoned_bytes(tmp_path, monkeypatch):
    from gpo_plugin.utils import checkpoints

    marker = tmp_path / 'pwned'
    data = io.BytesIO()
    torch.save({'x': _RunsCode(marker)}, data, pickle_module=pickle)

    class _Backend:
        def get(self, filename):
            return data.getvalue()

    monkeypatch.setattr(checkpoints, 'get_file_backend', lambda *a, **k: _Backend())
    with pytest.raises(UnsafeCheckpointError, match='s3://bucket/evil.pth'):
        _load_checkpoint('s3://bucket/evil.pth')
    assert not marker.exists()


# -- what a refused file is: one classifier ----------------------------------------------------


def _torch_zip(path):
    torch.save({'w': torch.ones(3)}, path)


@pytest.mark.parametrize(
    'make, expected',
    [
        (lambda p: p.write_bytes(b''), r'is empty \(0 bytes\)'),
        (lambda p: p.write_text('epoch 3 loss 0.5\n'), "a text file, .*'epoch 3 loss"),
        (lambda p: p.write_text('<!DOCTYPE html><html>403</html>'), 'an HTML page'),
        (lambda p: np.save(open(p, 'wb'), np.ones(3)), r'a NumPy array \(.npy'),
        (lambda p: np.savez(open(p, 'wb'), a=np.ones(3)), r'a NumPy archive \(.npz'),
        (lambda p: p.write_bytes(bytes(range(7, 40))), 'not a torch checkpoint .*07 08'),
    ],
)
def test_foreign_files_are_named_and_described(tmp_path, make, expected):
    path = tmp_path / 'model.pth'
    make(path)
    with pytest.raises(CheckpointError, match=expected) as error:
        safe_torch_load(path)
    assert 'model.pth' in str(error.value) and 'truncated' not in str(error.value)


def test_truncated_zip_says_truncated_only_when_it_is(tmp_path):
    path = tmp_path / 'cut.pth'
    _torch_zip(path)
    data = path.read_bytes()
    for size in (10, len(data) // 2, len(data) - 3):
        path.write_bytes(data[:size])
        with pytest.raises(CheckpointError, match=r'cut.pth .*probably truncated'):
            safe_torch_load(path)
    path.write_bytes(data)
    assert torch.equal(safe_torch_load(path)['w'], torch.ones(3))


def test_inferencer_and_mlrc_tool_refuse_with_the_named_error(tmp_path, monkeypatch):
    import sys

    from gpo_plugin.apis.inferencer import VSEInferencer

    marker = tmp_path / 'pwned'
    _evil(tmp_path / 'evil.pth', marker)
    with pytest.raises(UnsafeCheckpointError, match='evil.pth') as error:
        VSEInferencer.load_checkpoint(None, tmp_path / 'evil.pth')  # what retrieve.py calls
    assert 'weights_only=False' not in str(error.value)
    (tmp_path / 'notes.pth').write_text('not a model')
    with pytest.raises(CheckpointError, match='notes.pth .*a text file'):
        VSEInferencer.load_checkpoint(None, tmp_path / 'notes.pth')
    assert not marker.exists()
    monkeypatch.syspath_prepend(
        str(Path(__file__).resolve().parents[2] / 'tools' / 'analysis_tools')
    )
    monkeypatch.setenv(UNSAFE_ENV, '1')
    import dml_mlrc_test

    with pytest.raises(SystemExit, match=UNSAFE_ENV):
        dml_mlrc_test.main(['config.py', str(tmp_path / 'evil.pth')])
    sys.modules.pop('dml_mlrc_test')
