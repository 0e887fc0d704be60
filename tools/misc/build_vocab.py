"""Build the BiGRU word vocabulary from training captions (docs/vse.md#text-encoders).

Words seen at least ``--threshold`` times (4 in VSE∞), after the specials
``<pad> <start> <end> <unk> <mask>``, saved as JSON ``{"words": [...]}``.

Usage:
    python tools/misc/build_vocab.py data/coco/precomp/train_caps.txt --out data/coco/vocab.json
"""

from __future__ import annotations

import argparse

from gpo_plugin.utils.vocab import build_vocab_file


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
