"""VSEInferencer: checkpoint round trip, encoders' inputs, retrieval both ways."""

import json

import pytest
import torch
from mmengine.config import Config

from gpo_plugin.apis import VSEInferencer
from gpo_plugin.models import VSERetriever

WORDS = [f'w{i}' for i in range(8)]


def tiny_config(vocab_file: str) -> Config:
    model = dict(
        type='VSERetriever',
        img_enc=dict(type='PrecompRegionEncoder', in_channels=8, embed_dim=16, mlp_hidden=0),
        txt_enc=dict(type='BiGRUTextEncoder', vocab_file=vocab_file, word_dim=8, embed_dim=16),
    )
    tokenizer = dict(type='VocabTokenizer', vocab_file=vocab_file)
    return Config(
        dict(
            default_scope='gpo_plugin',
            model=model,
            test_dataloader=dict(
                dataset=dict(
                    type='PrecompCaptionDataset',
                    pipeline=[
                        dict(type='TokenizeCaption', tokenizer=tokenizer),
                        dict(type='PackVSEInputs'),
                    ],
                )
            ),
        )
    )


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A tiny model trained until image i (one-hot regions of i) matches caption 'w{i}'."""
    root = tmp_path_factory.mktemp('inf')
    vocab = root / 'vocab.json'
    vocab.write_text(
        json.dumps({'words': ['<pad>', '<start>', '<end>', '<unk>', '<mask>', *WORDS]})
    )
    cfg = tiny_config(str(vocab))
    torch.manual_seed(0)
    model = VSERetriever(**{k: v for k, v in cfg.model.items() if k != 'type'})
    regions = torch.eye(8).unsqueeze(1).repeat(1, 3, 1) + 0.05 * torch.randn(8, 3, 8)
    tokens = torch.stack([torch.tensor([1, 5 + i, 2]) for i in range(8)])
    inputs = dict(
        img=regions, img_lengths=torch.full((8,), 3), txt=tokens, txt_lengths=torch.full((8,), 3)
    )
    optim = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        optim.zero_grad()
        model(inputs, mode='loss')['loss'].backward()
        optim.step()
    model.eval()
    ckpt = root / 'epoch_1.pth'
    torch.save(dict(meta=dict(epoch=1), state_dict=model.state_dict()), ckpt)
    return cfg, ckpt, model, inputs


def test_round_trip_matches_the_model_and_retrieves_the_pairs(trained):
    cfg, ckpt, model, inputs = trained
    inf = VSEInferencer(cfg, ckpt, device='cpu', batch_size=3)
    for key, value in model.state_dict().items():
        assert torch.equal(inf.model.state_dict()[key], value)
    with torch.no_grad():
        img_ref, txt_ref = model(inputs)
    img = inf.encode_images(inputs['img'], inputs['img_lengths'])
    torch.testing.assert_close(img, img_ref)
    torch.testing.assert_close(inf.encode_texts(inputs['txt'], inputs['txt_lengths']), txt_ref)
    # Strings go through the config's tokenizer: 'w3' -> <start> w3 <end>.
    torch.testing.assert_close(inf.encode_texts([f'w{i}' for i in range(8)]), txt_ref)
    t2i = inf.retrieve([f'w{i}' for i in range(8)], img, topk=2)
    assert [hits[0][0] for hits in t2i] == list(range(8))
    assert all(hits[0][1] > hits[1][1] for hits in t2i)
    i2t = inf.retrieve(img, inf.encode_texts([f'w{i}' for i in range(8)]), topk=1)
    assert [hits[0][0] for hits in i2t] == list(range(8))


def test_bad_inputs_and_checkpoints_are_named(trained, tmp_path):
    cfg, ckpt, _, inputs = trained
    inf = VSEInferencer(cfg, ckpt, device='cpu')
    with pytest.raises(ValueError, match=r'\(N, 3, H, W\)'):
        inf.encode_images(torch.zeros(8))
    with pytest.raises(ValueError, match='integer'):
        inf.encode_texts(torch.zeros(2, 3))
    with pytest.raises(ValueError, match='loads no image files'):
        inf.encode_images(['a.jpg'])
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        VSEInferencer(cfg, tmp_path / 'nope.pth', device='cpu')
    # A checkpoint with pickled objects beyond the allow-list is refused (safe loading).
    evil = tmp_path / 'evil.pth'
    torch.save(dict(state_dict={}, extra=Config(dict(a=1))), evil)
    with pytest.raises(Exception, match='(?i)weights_only|unsupported global'):
        VSEInferencer(cfg, evil, device='cpu')


def test_retrieve_tool_on_image_files(trained, tmp_path, capsys):
    import cv2
    from retrieve import main

    _, _, _, _ = trained
    vocab = tmp_path / 'vocab.json'
    vocab.write_text(
        json.dumps({'words': ['<pad>', '<start>', '<end>', '<unk>', '<mask>', *WORDS]})
    )
    cfg = Config(
        dict(
            default_scope='gpo_plugin',
            model=dict(
                type='VSERetriever',
                data_preprocessor=dict(type='VSEDataPreprocessor', mean=[128] * 3, std=[64] * 3),
                img_enc=dict(
                    type='BackboneGridEncoder',
                    backbone=dict(type='ResNet', depth=18, out_indices=(3,), base_channels=8),
                    in_channels=64,
                    embed_dim=16,
                ),
                txt_enc=dict(
                    type='BiGRUTextEncoder', vocab_file=str(vocab), word_dim=8, embed_dim=16
                ),
            ),
            test_dataloader=dict(
                dataset=dict(
                    pipeline=[
                        dict(
                            type='TokenizeCaption',
                            tokenizer=dict(type='VocabTokenizer', vocab_file=str(vocab)),
                        ),
                        dict(type='LoadVSEImage'),
                        dict(type='Resize', scale=(64, 64), keep_ratio=False),
                        dict(type='PackVSEInputs'),
                    ],
                )
            ),
        )
    )
    config = tmp_path / 'grid.py'
    cfg.dump(str(config))
    torch.manual_seed(0)
    model = VSERetriever(**{k: v for k, v in cfg.model.items() if k != 'type'})
    ckpt = tmp_path / 'grid.pth'
    torch.save(dict(state_dict=model.state_dict()), ckpt)
    images = tmp_path / 'gallery'
    images.mkdir()
    for i in range(3):
        cv2.imwrite(str(images / f'im{i}.png'), (torch.rand(40, 50, 3) * 255).byte().numpy())
    captions = tmp_path / 'caps.txt'
    captions.write_text('w1 w2\nw3\nw4 w5 w6\n')
    for out in ('hits.png', 'hits.html'):
        main(
            [
                str(config),
                str(ckpt),
                '--images',
                str(images),
                '--captions',
                str(captions),
                '--query',
                'w1 w2',
                '--topk',
                '3',
                '--out',
                str(tmp_path / out),
                '--device',
                'cpu',
            ]
        )
        assert (tmp_path / out).stat().st_size > 500
    text = capsys.readouterr().out
    scores = [float(line.split()[1]) for line in text.splitlines() if line.startswith('  ')][:3]
    assert scores == sorted(scores, reverse=True) and text.count('im') >= 3
    # The printed scores are the cosine similarities of the inferencer's embeddings.
    from gpo_plugin.apis import VSEInferencer

    inf = VSEInferencer(str(config), ckpt, device='cpu')
    sims = inf.encode_texts('w1 w2') @ inf.encode_images(sorted(images.glob('*.png'))).t()
    assert scores == pytest.approx(sorted(sims[0].tolist(), reverse=True), abs=1e-3)
    assert '<img src="data:image/png;base64,' in (tmp_path / 'hits.html').read_text()


def test_captions_need_the_tokenizer_at_the_head_of_the_test_pipeline(trained):
    cfg, ckpt, _, inputs = trained
    bare = Config(cfg.to_dict())
    bare.test_dataloader.dataset.pipeline = [dict(type='PackVSEInputs')]
    inf = VSEInferencer(bare, ckpt, device='cpu')
    with pytest.raises(ValueError, match=r"dict\(type='TokenizeCaption', tokenizer=...\)"):
        inf.encode_texts(['w1'])
    # Token ids and images need no tokenizer.
    assert inf.encode_texts(inputs['txt'], inputs['txt_lengths']).shape == (8, 16)
    assert inf.encode_images(inputs['img'], inputs['img_lengths']).shape == (8, 16)
