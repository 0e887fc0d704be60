"""Write the VSE∞ demo set in the precomputed-feature layout (docs/vse.md#data).

What the set holds: ``gpo_plugin.demo.vse_data``.

Output (``--out``, default ``data/demo/vse/precomp``): ``{split}_ims.npy``
(N, 36, D) float32, ``{split}_caps.txt`` (5 lines per image), ``{split}_ids.txt`` for
split in train / dev / test / testall. Same seed, same files.

Usage:
    python tools/misc/make_demo_data.py [--out DIR] [--seed 0] [--feat-dim 128]
"""

from __future__ import annotations

import argparse

from gpo_plugin.demo.vse_data import SPLITS, make_demo_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default='data/demo/vse/precomp', help='output folder')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--feat-dim', type=int, default=128, help='region feature size D')
    args = parser.parse_args()
    out = make_demo_data(args.out, args.seed, args.feat_dim)
    print(f'wrote {", ".join(SPLITS)} splits to {out}')


if __name__ == '__main__':
    main()
