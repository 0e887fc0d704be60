"""The word vocabulary of the BiGRU text path (docs/vse.md#text-encoders).

A vocabulary is a JSON file ``{"words": [...]}`` whose first entries are the specials
``<pad> <start> <end> <unk> <mask>`` (ids 0..4), followed by the words seen at least
``threshold`` times (4 in VSE∞) in the training captions, in first-seen order. A
``{word: id}`` mapping (HGR's ``word2int.json``) also loads: our specials, then its words by id.
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


class VocabularyError(ValueError):
    """A vocabulary file that is not the JSON ``tools/misc/build_vocab.py`` writes."""


def split_words(caption: str) -> list[str]:
    """Lower-case a caption and split it into words and punctuation marks."""
    return _WORD_RE.findall(caption.lower())


def build_vocab(captions: Iterable[str], threshold: int = 4) -> list[str]:
    """Words seen at least ``threshold`` times, after the specials, in first-seen order."""
    counts = Counter(w for caption in captions for w in split_words(caption))
    return [*SPECIALS, *(w for w, c in counts.items() if c >= threshold)]


def save_vocab(words: list[str], path: str | os.PathLike) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'w', encoding='utf-8') as f:
        json.dump({'words': words}, f)


def read_vocab(path: str | os.PathLike) -> list[str]:
    """The word list of a vocabulary JSON, checked to start with :data:`SPECIALS`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f'vocabulary file {path} not found. Build it from the training captions with '
            f'`python tools/misc/build_vocab.py <train_caps.txt> --out {path}`.'
        )
    try:
        with open(path, encoding='utf-8') as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise VocabularyError(
            f'vocabulary file {path} is not JSON ({err}); give the file written by '
            f'`python tools/misc/build_vocab.py <train_caps.txt> --out {path}`.'
        ) from None
    if not isinstance(data, dict):
        raise VocabularyError(
            f'vocabulary file {path} holds a JSON {type(data).__name__}, not an object '
            '{"words": [...]} or a word2int map; rebuild it with tools/misc/build_vocab.py (a bare '
            'word list: wrap it as {"words": [...]}).'
        )
    words = words_from_word2int(data) if is_word2int(data) else data.get('words')
    if not isinstance(words, list) or tuple(words[: len(SPECIALS)]) != SPECIALS:
        raise VocabularyError(
            f'{path} must hold {{"words": [...]}} starting with the specials '
            f'{list(SPECIALS)}; rebuild it with tools/misc/build_vocab.py.'
        )
    return words


# Specials of other releases (HGR's word2int.json: <BOS> <EOS> <UNK>), replaced by ours.
_FOREIGN_SPECIALS = {'<BOS>', '<EOS>', '<UNK>', '<PAD>', '<MASK>', *SPECIALS}


def is_word2int(data) -> bool:
    """True for a ``{word: id}`` mapping such as HGR's ``word2int.json``."""
    return (
        isinstance(data, dict)
        and 'words' not in data
        and bool(data)
        and all(isinstance(i, int) for i in data.values())
    )


def words_from_word2int(word2int: dict[str, int]) -> list[str]:
    """Our word list for a ``{word: id}`` vocabulary: the specials, then its words by id."""
    ordered = sorted(word2int, key=word2int.__getitem__)
    return [*SPECIALS, *(w for w in ordered if w not in _FOREIGN_SPECIALS)]


def build_vocab_file(caption_files: list[str | os.PathLike], out: str, threshold: int = 4) -> int:
    """Write the vocabulary of ``caption_files`` (one caption a line) to ``out``; returns its size."""
    captions = []
    for path in caption_files:
        if not Path(path).is_file():
            raise FileNotFoundError(
                f'build_vocab: caption file {path} not found (one caption a '
                'line, e.g. <root>/precomp/train_caps.txt).'
            )
        captions += Path(path).read_text(encoding='utf-8').splitlines()
    words = build_vocab(captions, threshold)
    save_vocab(words, out)
    return len(words)
