"""Caption tokenisers for both VSE∞ text paths (docs/vse.md#text-encoders).

Both return the token ids of a caption together with the word each token belongs to,
so word-level augmentation can drop or mask all pieces of a word together. They are
registered in ``gpo_plugin.registry.TOKENIZERS``:

- :class:`VocabTokenizer`: a word vocabulary built from the training captions by
  ``tools/misc/build_vocab.py`` (JSON), for the BiGRU encoder.
- :class:`HFTokenizer`: any ``transformers`` tokenizer from a local path or cached
  name (offline), for BERT-family encoders.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from gpo_plugin.registry import TOKENIZERS
from gpo_plugin.utils.pretrained import load_pretrained_offline
from gpo_plugin.utils.vocab import SPECIALS, read_vocab, split_words


@TOKENIZERS.register_module()
class VocabTokenizer:
    """Word-level tokeniser over a vocabulary JSON (``{"words": [...]}``).

    Ids 0..4 are the specials ``<pad> <start> <end> <unk> <mask>``; a caption becomes
    ``<start> w1 .. wn <end>``, unknown words map to ``<unk>``.

    Args:
        vocab_file: JSON written by ``tools/misc/build_vocab.py``.
    """

    def __init__(self, vocab_file: str | os.PathLike) -> None:
        self.words = read_vocab(vocab_file)
        self.word2idx = {w: i for i, w in enumerate(self.words)}
        self.pad_id, self.start_id, self.end_id, self.unk_id, self.mask_id = range(len(SPECIALS))
        # Random replacement draws from the ordinary words only.
        self.random_low = len(SPECIALS)
        self.vocab_size = len(self.words)

    def encode(self, caption: str) -> tuple[list[int], list[int | None]]:
        """Return ``(token_ids, word_ids)``; word id None marks <start>/<end>."""
        ids = [self.word2idx.get(w, self.unk_id) for w in split_words(caption)]
        word_ids = [None, *range(len(ids)), None]
        return [self.start_id, *ids, self.end_id], word_ids


@TOKENIZERS.register_module()
class HFTokenizer:
    """A ``transformers`` tokenizer loaded offline from a local directory or cache.

    Args:
        path: directory with the tokenizer files, a name already in the local cache, or
            ``'pkg://PACKAGE/sub/dir'`` (see :func:`gpo_plugin.utils.pretrained.resolve_pretrained`).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = load_pretrained_offline(
            AutoTokenizer,
            path,
            'HFTokenizer',
            'Point the config field `tokenizer.path` (and the text encoder `pretrained`) at a '
            'local directory holding tokenizer.json/vocab.txt and config.json.',
        )
        tok = self.tokenizer
        if tok.mask_token_id is None:
            raise ValueError(
                f'HFTokenizer: the tokenizer at {path} has no mask token; word '
                'augmentation needs one (use a BERT-family tokenizer).'
            )
        self.pad_id = tok.pad_token_id or 0
        self.mask_id = tok.mask_token_id
        self.vocab_size = len(tok)
        # Random replacement avoids [PAD]/[unused*] at the start of BERT vocabularies.
        self.random_low = max(tok.all_special_ids) + 1 if tok.all_special_ids else 0

    def encode(self, caption: str) -> tuple[list[int], list[int | None]]:
        """Return ``(token_ids, word_ids)`` with [CLS]/[SEP]; word id None marks specials."""
        encoded = self.tokenizer(caption, add_special_tokens=True, truncation=True)
        return list(encoded['input_ids']), list(encoded.word_ids())


def build_caption_tokenizer(cfg: dict | VocabTokenizer | HFTokenizer):
    """Build a tokenizer from ``dict(type='VocabTokenizer' | 'HFTokenizer', ...)``; built
    tokenizers pass through."""
    if not isinstance(cfg, dict):
        return cfg
    # A child config's replacement tokenizer keeps mmengine's merge marker inside lists.
    cfg = {k: v for k, v in cfg.items() if k != '_delete_'}
    if cfg.get('type') not in TOKENIZERS.module_dict:
        raise ValueError(
            f'tokenizer: `type` must be one of {sorted(TOKENIZERS.module_dict)}, got '
            f'{cfg.get("type")!r}.'
        )
    return TOKENIZERS.build(cfg)


def set_pipeline_tokenizer(cfg, tokenizer: dict) -> int:
    """Give ``tokenizer`` to every transform of the loaders' pipelines that takes one
    (``TokenizeCaption``, ``RandomWordAugment``), in place; returns how many got it.

    Args:
        cfg: an mmengine ``Config`` (or dict) with ``*_dataloader.dataset.pipeline``.
        tokenizer: ``dict(type='VocabTokenizer' | 'HFTokenizer', ...)``.
    """
    count = 0
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(key) or {}
        for step in (loader.get('dataset') or {}).get('pipeline') or []:
            if 'tokenizer' in step:
                step['tokenizer'] = dict(tokenizer)
                count += 1
    return count


def warn_unknown_only(captions: list[str], tokenizer: VocabTokenizer, path: Path) -> list[int]:
    """Warn about (and return) the indices of captions none of whose words is in the
    vocabulary: they train on ``<unk>`` tokens only."""
    known = tokenizer.word2idx
    unknown = [n for n, c in enumerate(captions) if not any(w in known for w in split_words(c))]
    if unknown:
        shown = ', '.join(str(n) for n in unknown[:10]) + (', ...' if len(unknown) > 10 else '')
        warnings.warn(
            f'PrecompCaptionDataset: {path}: {len(unknown)} caption(s) have no word in the '
            f'vocabulary and become <unk> tokens only (caption indices {shown}; line = index '
            '+ 1). Build the vocabulary from these captions (tools/misc/build_vocab.py) if that '
            'is not intended.',
            stacklevel=2,
        )
    return unknown
