"""Convert a published VSE∞ checkpoint to an mmengine checkpoint and its config
(docs/vse.md#published-vse-checkpoints).

Usage:
    python tools/model_converters/convert_vse_infty.py SRC DST [--vocab VOCAB_JSON]
        [--pretrained BERT_DIR] [--base-config CONFIG] [--allow-unmapped]

Writes DST (mmengine checkpoint), DST.py (a config that builds the matching model, with the
loaders and evaluator of --base-config, by default this checkout's
configs/vse_gpo_{coco,f30k}[_bigru].py) and, with --vocab, DST.vocab.json.
Then: python tools/test.py DST.py DST --data-root /data/coco/precomp (docs/vse.md).

A published checkpoint is ``{'epoch', 'model': [image_state, text_state], 'best_rsum', 'opt',
'Eiters'}`` with ``opt`` a pickled ``argparse.Namespace``. It is read with
``torch.load(weights_only=True)`` and only ``argparse.Namespace`` allowed beyond torch's
defaults. Every key is mapped to this package's model by prefix rules; keys the published
forward pass never reads are skipped with their reason, and any other key is reported (and
stops the conversion unless ``allow_unmapped``). Sizes come from the weights; ``opt`` only
names the dataset and the loss settings.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from mmengine.config import Config
from torch import Tensor

from gpo_plugin.datasets.text_tokenizers import set_pipeline_tokenizer
from gpo_plugin.utils.checkpoints import safe_torch_load
from gpo_plugin.utils.vocab import SPECIALS, save_vocab

# (published prefix, our prefix) per encoder kind, tried in order.
PREFIX_RULES: dict[str, list[tuple[str, str]]] = {
    'precomp': [
        ('fc.', 'img_enc.fc.'),
        ('mlp.layers.0.', 'img_enc.mlp.layers.0.'),
        ('mlp.layers.1.', 'img_enc.mlp.layers.1.'),
        ('mlp.bns.0.', 'img_enc.mlp.bns.0.'),
        ('gpool.', 'img_enc.gpool.'),
    ],
    'grid': [
        ('backbone.base.0.', 'img_enc.backbone.conv1.'),
        ('backbone.base.1.', 'img_enc.backbone.bn1.'),
        ('backbone.base.4.', 'img_enc.backbone.layer1.'),
        ('backbone.base.5.', 'img_enc.backbone.layer2.'),
        ('backbone.base.6.', 'img_enc.backbone.layer3.'),
        ('backbone.top.0.', 'img_enc.backbone.layer4.'),
        ('image_encoder.fc.', 'img_enc.fc.'),
        ('image_encoder.gpool.', 'img_enc.gpool.'),
    ],
    'bigru': [('embed.', 'txt_enc.embed.'), ('rnn.', 'txt_enc.rnn.'), ('gpool.', 'txt_enc.gpool.')],
    'bert': [
        ('bert.', 'txt_enc.bert.'),
        ('linear.', 'txt_enc.linear.'),
        ('gpool.', 'txt_enc.gpool.'),
    ],
}

# Keys the published forward pass never reads: skipped, and reported with the reason.
UNUSED_KEYS: dict[str, list[tuple[str, str]]] = {
    'precomp': [('mlp.bns.1.', 'BatchNorm after the last MLP layer, never called by its forward')],
    'grid': [],
    'bigru': [],
    'bert': [
        (
            f'bert.embeddings.{name}',
            'a constant buffer some transformers versions saved; current ones rebuild it',
        )
        for name in ('position_ids', 'token_type_ids')
    ],
}

# The configs of the checkout this script lives in (tools/ and configs/ are not installed).
CONFIGS = Path(__file__).resolve().parents[2] / 'configs'


@dataclass
class Conversion:
    """The result of :func:`convert_state`: our state dict and model config, what was left out."""

    state_dict: dict[str, Tensor]
    model: dict
    image_kind: str
    text_kind: str
    skipped: dict[str, str] = field(default_factory=dict)
    unmapped: list[str] = field(default_factory=list)
    vocab_words: list[str] | None = None

    def report(self) -> str:
        lines = [
            f'image encoder: {self.image_kind}, text encoder: {self.text_kind}; '
            f'{len(self.state_dict)} tensors mapped',
            f'  img_enc = {self.model["img_enc"]}',
            f'  txt_enc = {self.model["txt_enc"]}',
        ]
        if self.text_kind == 'bigru' and self.vocab_words is None:
            lines.append(
                '  note: no --vocab: the model takes the published token ids; the tokenizer '
                "in DST.py is the base config's and does not match them"
            )
        if self.image_kind == 'grid':
            lines.append(
                '  note: grid model: give --base-config a raw-image config for its loaders'
            )
        reasons: dict[str, list[str]] = {}
        for key, why in self.skipped.items():
            reasons.setdefault(why, []).append(key)
        lines += [f'  skipped ({why}): {", ".join(keys)}' for why, keys in reasons.items()]
        lines += [f'  NOT MAPPED {key}' for key in self.unmapped]
        return '\n'.join(lines)


def load_published(path: str | os.PathLike) -> dict:
    """Read a published checkpoint safely (``weights_only=True``, ``argparse.Namespace``
    allowed) and check its layout."""
    if not Path(path).is_file():
        raise FileNotFoundError(f'convert_vse_infty: checkpoint {path} not found.')
    ckpt = safe_torch_load(path, map_location='cpu', extra_globals=[argparse.Namespace])
    model = ckpt.get('model') if isinstance(ckpt, dict) else None
    if not (isinstance(model, list | tuple) and len(model) == 2):
        raise ValueError(
            f'{path} is not a published VSE∞ checkpoint: expected a dict whose "model" is '
            '[image_encoder_state, text_encoder_state]'
            + (f', got keys {sorted(ckpt)}' if isinstance(ckpt, dict) else '')
            + '. mmengine checkpoints of this package load directly with tools/test.py.'
        )
    return ckpt


def map_keys(
    state: dict[str, Tensor], kind: str
) -> tuple[dict[str, Tensor], dict[str, str], list[str]]:
    """Apply :data:`PREFIX_RULES` of ``kind``: (mapped state, skipped key -> why, unmapped keys)."""
    mapped, skipped, unmapped = {}, {}, []
    for key, value in state.items():
        why = next((w for p, w in UNUSED_KEYS[kind] if key.startswith(p)), None)
        target = next(
            (ours + key[len(p) :] for p, ours in PREFIX_RULES[kind] if key.startswith(p)), None
        )
        if why is not None:
            skipped[key] = why
        elif target is not None:
            mapped[target] = value
        else:
            unmapped.append(key)
    return mapped, skipped, unmapped


def image_kind(state: dict[str, Tensor]) -> str:
    if 'fc.weight' in state:
        return 'precomp'
    if 'image_encoder.fc.weight' in state and any(k.startswith('backbone.base.') for k in state):
        return 'grid'
    raise ValueError(
        'unknown published image encoder: expected fc.* (precomputed regions) or '
        f'backbone.base.* + image_encoder.* (grid); got keys {sorted(state)[:8]} ...'
    )


def text_kind(state: dict[str, Tensor]) -> str:
    if 'embed.weight' in state:
        return 'bigru'
    if 'linear.weight' in state and any(k.startswith('bert.') for k in state):
        return 'bert'
    raise ValueError(
        'unknown published text encoder: expected embed.* + rnn.* (BiGRU) or bert.* + linear.* '
        f'(BERT); got keys {sorted(state)[:8]} ...'
    )


def gpo_config(state: dict[str, Tensor], prefix: str) -> dict:
    """GPO with the sizes of ``{prefix}gru.weight_ih_l0`` (3 d_hidden, d_pe)."""
    weight = state[f'{prefix}gru.weight_ih_l0']
    return dict(type='GPO', d_pe=weight.shape[1], d_hidden=weight.shape[0] // 3)


def precomp_image_config(state: dict[str, Tensor]) -> dict:
    embed_dim, in_channels = state['fc.weight'].shape
    hidden = state['mlp.layers.0.weight'].shape[0] if 'mlp.layers.0.weight' in state else 0
    return dict(
        type='PrecompRegionEncoder',
        in_channels=in_channels,
        embed_dim=embed_dim,
        mlp_hidden=hidden,
        pooling=gpo_config(state, 'gpool.'),
    )


def resnet_config(state: dict[str, Tensor]) -> dict:
    """mmpretrain ResNet / ResNeXt of the published grid backbone: depth from the block counts
    of layer1..4 (keys ``backbone.base.{4,5,6}.N.`` and ``backbone.top.0.N.``)."""
    prefixes = ['backbone.base.4.', 'backbone.base.5.', 'backbone.base.6.', 'backbone.top.0.']
    blocks = tuple(
        len({k[len(p) :].split('.')[0] for k in state if k.startswith(p)}) for p in prefixes
    )
    depths = {(2, 2, 2, 2): 18, (3, 4, 6, 3): 34, (3, 4, 23, 3): 101, (3, 8, 36, 3): 152}
    bottleneck = 'backbone.base.4.0.conv3.weight' in state
    depth = 50 if blocks == (3, 4, 6, 3) and bottleneck else depths.get(blocks)
    if depth is None:
        raise ValueError(f'grid backbone: blocks per stage {blocks} match no ResNet depth.')
    conv2 = state['backbone.base.4.0.conv2.weight'] if bottleneck else None
    if conv2 is not None and conv2.shape[1] != conv2.shape[0]:  # grouped 3x3 convs: ResNeXt
        groups = conv2.shape[0] // conv2.shape[1]
        width = conv2.shape[1]
        return dict(
            type='ResNeXt', depth=depth, groups=groups, width_per_group=width, out_indices=(3,)
        )
    return dict(type='ResNet', depth=depth, out_indices=(3,))


def grid_image_config(state: dict[str, Tensor]) -> dict:
    embed_dim, in_channels = state['image_encoder.fc.weight'].shape
    return dict(
        type='BackboneGridEncoder',
        backbone=resnet_config(state),
        in_channels=in_channels,
        embed_dim=embed_dim,
        pooling=gpo_config(state, 'image_encoder.gpool.'),
    )


def bigru_text_config(state: dict[str, Tensor]) -> dict:
    if 'rnn.weight_ih_l0_reverse' not in state:
        raise ValueError(
            'published text encoder has a one-directional GRU (use_bi_gru=False); '
            'BiGRUTextEncoder is bidirectional only.'
        )
    vocab_size, word_dim = state['embed.weight'].shape
    num_layers = sum(1 for k in state if k.startswith('rnn.weight_ih_l') and 'reverse' not in k)
    return dict(
        type='BiGRUTextEncoder',
        vocab_size=vocab_size,
        word_dim=word_dim,
        embed_dim=state['rnn.weight_hh_l0'].shape[1],
        num_layers=num_layers,
        pooling=gpo_config(state, 'gpool.'),
    )


def bert_text_config(state: dict[str, Tensor], pretrained: str | None) -> dict:
    if pretrained is None:
        raise ValueError(
            'a BERT checkpoint needs --pretrained DIR: a local copy of the BERT it was trained '
            'from (bert-base-uncased: config.json, tokenizer files); its weights are replaced '
            'by the checkpoint, its config and tokenizer are used.'
        )
    return dict(
        type='BertTextEncoder',
        pretrained=str(pretrained),
        embed_dim=state['linear.weight'].shape[0],
        pooling=gpo_config(state, 'gpool.'),
    )


def read_published_vocab(path: str | os.PathLike, vocab_size: int) -> dict[str, int]:
    """word -> published id, from the published ``{"word2idx": ...}`` JSON (or ours,
    ``{"words": [...]}``). The published training script appends ``<mask>`` after loading the
    file, so a file one word short of the embedding gets ``<mask>`` as the last id."""
    with open(path, encoding='utf-8') as f:
        data = json.load(f)
    if 'word2idx' in data:
        word2idx = {w: int(i) for w, i in data['word2idx'].items()}
    elif 'words' in data:
        word2idx = {w: i for i, w in enumerate(data['words'])}
    else:
        raise ValueError(f'{path}: expected a vocabulary JSON with "word2idx" or "words".')
    if '<mask>' not in word2idx and len(word2idx) + 1 == vocab_size:
        word2idx['<mask>'] = len(word2idx)
    missing = [s for s in SPECIALS if s not in word2idx]
    if sorted(word2idx.values()) != list(range(vocab_size)) or missing:
        raise ValueError(
            f'{path}: {len(word2idx)} words (ids {min(word2idx.values())}..'
            f'{max(word2idx.values())}, missing specials {missing}) do not index the '
            f"checkpoint's {vocab_size} word embeddings; give the vocabulary the model was "
            'trained with.'
        )
    return word2idx


def reorder_vocab(word2idx: dict[str, int]) -> tuple[list[str], Tensor]:
    """Our vocabulary order (specials first, then the published order) and, for each of our
    ids, the published id: ``embed.weight[rows]`` is the embedding in our order."""
    published_order = sorted(word2idx, key=word2idx.__getitem__)
    words = [*SPECIALS, *(w for w in published_order if w not in SPECIALS)]
    return words, torch.tensor([word2idx[w] for w in words])


def convert_state(
    ckpt: dict,
    vocab: str | os.PathLike | None = None,
    pretrained: str | None = None,
    allow_unmapped: bool = False,
) -> Conversion:
    """Map a loaded published checkpoint to our ``VSERetriever`` (state dict + model config)."""
    img_state, txt_state = ckpt['model']
    kinds = image_kind(img_state), text_kind(txt_state)
    state, skipped, unmapped = {}, {}, []
    for index, (kind, part) in enumerate(zip(kinds, (img_state, txt_state), strict=True)):
        mapped, skip, rest = map_keys(part, kind)
        state.update(mapped)
        skipped.update({f'model[{index}].{k}': why for k, why in skip.items()})
        unmapped += [f'model[{index}].{k}' for k in rest]
    img_cfg = (
        precomp_image_config(img_state) if kinds[0] == 'precomp' else grid_image_config(img_state)
    )
    if kinds[1] == 'bigru':
        txt_cfg = bigru_text_config(txt_state)
    else:
        txt_cfg = bert_text_config(txt_state, pretrained)
    opt = vars(ckpt.get('opt') or argparse.Namespace())
    loss = dict(
        type='VSEContrastiveLoss',
        margin=float(opt.get('margin', 0.2)),
        max_violation=bool(opt.get('max_violation', True)),
    )
    model = dict(
        type='VSERetriever', img_enc=img_cfg, txt_enc=txt_cfg, head=dict(type='VSEHead', loss=loss)
    )
    conversion = Conversion(state, model, *kinds, skipped=skipped, unmapped=unmapped)
    if unmapped and not allow_unmapped:
        raise ValueError(
            "convert_vse_infty: keys with no counterpart in this package's model:\n"
            + conversion.report()
            + '\nCheck that the checkpoint is a VSE∞ one; pass --allow-unmapped to drop them.'
        )
    if kinds[1] == 'bigru' and vocab is not None:
        word2idx = read_published_vocab(vocab, txt_cfg['vocab_size'])
        conversion.vocab_words, rows = reorder_vocab(word2idx)
        state['txt_enc.embed.weight'] = state['txt_enc.embed.weight'][rows]
    return conversion


def check_loads(model_cfg: dict, state: dict[str, Tensor]) -> None:
    """Build the model and load ``state`` strictly: every key and shape must match."""
    from gpo_plugin.registry import MODELS

    model = MODELS.build(model_cfg)
    model.load_state_dict(state, strict=True)


def base_config(conversion: Conversion, data_name: str) -> Path:
    """The config of this package for the same data and text encoder, for the loaders,
    evaluator and runtime of the written config."""
    data = 'f30k' if 'f30k' in data_name else 'coco'
    suffix = '_bigru' if conversion.text_kind == 'bigru' else ''
    path = CONFIGS / f'vse_gpo_{data}{suffix}.py'
    if not path.is_file():
        raise FileNotFoundError(
            f'{path} not found (configs/ of the checkout next to tools/); give the config to '
            'build on with --base-config.'
        )
    return path


def write_config(
    conversion: Conversion, path: str | os.PathLike, base: str | os.PathLike, vocab_file: str | None
) -> Config:
    """``base`` with the converted model, and the tokenizer that matches it in every loader."""
    cfg = Config.fromfile(str(base))
    cfg.model = conversion.model
    if conversion.text_kind == 'bert':
        tokenizer = dict(type='HFTokenizer', path=conversion.model['txt_enc']['pretrained'])
    elif vocab_file is not None:
        tokenizer = dict(type='VocabTokenizer', vocab_file=vocab_file)
        cfg.vocab_file = vocab_file  # the tools copy the top-level one everywhere
    else:
        tokenizer = None  # ids only: no vocabulary was given
    if tokenizer is not None:
        set_pipeline_tokenizer(cfg, tokenizer)
    in_channels = conversion.model['img_enc']['in_channels']
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = cfg[loader].dataset if loader in cfg else {}
        if 'feat_dim' in dataset:  # precomputed features: the size the model takes
            dataset.feat_dim = in_channels
    cfg.dump(str(path))
    return cfg


def convert_vse_infty(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    vocab: str | os.PathLike | None = None,
    pretrained: str | None = None,
    base: str | os.PathLike | None = None,
    allow_unmapped: bool = False,
    check: bool = True,
) -> Conversion:
    """Convert ``src`` (published layout) to ``dst`` (mmengine checkpoint) and ``dst + '.py'``
    (a config building the matching model; with ``vocab``, also ``dst + '.vocab.json'``).

    Args:
        src: published checkpoint (``model_best.pth``).
        dst: output checkpoint path.
        vocab: the published vocabulary JSON of a BiGRU checkpoint. With it, the embedding rows
            are reordered to this package's vocabulary (specials first) and the tokenizer of
            the config reads ``dst + '.vocab.json'``; without it, the model takes the published
            token ids and cannot encode strings.
        pretrained: local BERT folder (config + tokenizer) for a BERT checkpoint.
        base: config whose loaders/evaluator/runtime to use; defaults to this package's
            ``configs/vse_gpo_{coco,f30k}[_bigru].py`` after ``opt.data_name``.
        allow_unmapped: drop keys that have no counterpart instead of stopping.
        check: build the model and load the state dict strictly before writing.
    """
    ckpt = load_published(src)
    conversion = convert_state(ckpt, vocab, pretrained, allow_unmapped)
    if check:
        check_loads(conversion.model, conversion.state_dict)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    vocab_file = None
    if conversion.vocab_words is not None:
        vocab_file = str(dst.with_name(dst.name + '.vocab.json').resolve())
        save_vocab(conversion.vocab_words, vocab_file)
    opt = vars(ckpt.get('opt') or argparse.Namespace())
    meta = dict(
        converted_from=str(src),
        epoch=ckpt.get('epoch'),
        best_rsum=float(ckpt['best_rsum']) if ckpt.get('best_rsum') is not None else None,
        Eiters=ckpt.get('Eiters'),
        # Plain values only, so the checkpoint loads with weights_only=True.
        vse_infty_opt={k: v for k, v in opt.items() if isinstance(v, str | int | float | bool)},
    )
    torch.save(dict(meta=meta, state_dict=conversion.state_dict), dst)
    if base is None:
        base = base_config(conversion, str(opt.get('data_name', 'coco_precomp')))
    write_config(conversion, str(dst) + '.py', base, vocab_file)
    return conversion


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Convert a published VSE∞ checkpoint.')
    parser.add_argument('src', help='published checkpoint, e.g. model_best.pth')
    parser.add_argument('dst', help='output mmengine checkpoint (DST.py is written next to it)')
    parser.add_argument(
        '--vocab',
        help='published vocabulary JSON of a BiGRU checkpoint (e.g. coco_precomp_vocab.json); '
        'without it the model takes the published token ids and cannot encode strings',
    )
    parser.add_argument(
        '--pretrained',
        help='local BERT folder (config.json + tokenizer files, bert-base-uncased) for a BERT '
        "checkpoint; also accepts 'pkg://PACKAGE/dir'",
    )
    parser.add_argument(
        '--base-config',
        help='config whose loaders, evaluator and runtime DST.py keeps (default: '
        'configs/vse_gpo_{coco,f30k}[_bigru].py after opt.data_name and the text encoder)',
    )
    parser.add_argument(
        '--allow-unmapped',
        action='store_true',
        help='drop keys with no counterpart instead of stopping (they are listed either way)',
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    conversion = convert_vse_infty(
        args.src,
        args.dst,
        vocab=args.vocab,
        pretrained=args.pretrained,
        base=args.base_config,
        allow_unmapped=args.allow_unmapped,
    )
    print(conversion.report())
    print(f'wrote {args.dst} and {args.dst}.py')
    if conversion.vocab_words is not None:
        print(f'wrote {args.dst}.vocab.json ({len(conversion.vocab_words)} words)')


if __name__ == '__main__':
    main()
