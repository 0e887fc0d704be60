"""Convert a published VSE∞ checkpoint to an mmengine checkpoint and its config.

Usage:
    python tools/convert_vse_infty.py SRC DST [--vocab VOCAB_JSON] [--pretrained BERT_DIR]
        [--base-config CONFIG] [--allow-unmapped]

Writes DST (mmengine checkpoint), DST.py (a config that builds the matching model, with the
loaders and evaluator of configs/vse_gpo_{coco,f30k}[_bigru].py) and, with --vocab, DST.vocab.json.
Then: python tools/test.py DST.py DST --data-root /data/coco/precomp (docs/vse.md).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from gpo_plugin.apis.vse_infty import convert_vse_infty


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
