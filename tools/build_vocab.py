"""Build the BiGRU word vocabulary from training captions (DESIGN §4).

Words seen at least ``--threshold`` times (4 in VSE∞), after the specials
``<pad> <start> <end> <unk> <mask>``, saved as JSON ``{"words": [...]}``.

Usage:
    python tools/build_vocab.py data/coco/precomp/train_caps.txt --out data/coco/vocab.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpo_plugin.datasets.text_tokenizers import build_vocab, save_vocab  # noqa: E402


def build_vocab_file(caption_files: list[str], out: str, threshold: int = 4) -> int:
    """Write the vocabulary of ``caption_files`` to ``out``; returns its size."""
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


def main() -> None:
    parser = argparse.ArgumentParser(description='Build a word vocabulary JSON from captions.')
    parser.add_argument('captions', nargs='+', help='caption files, one caption a line')
    parser.add_argument('--out', required=True, help='output JSON path')
    parser.add_argument('--threshold', type=int, default=4, help='minimum word count')
    args = parser.parse_args()
    size = build_vocab_file(args.captions, args.out, args.threshold)
    print(f'vocabulary of {size} words written to {args.out}')


if __name__ == '__main__':
    main()
