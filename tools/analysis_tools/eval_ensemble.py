"""Evaluate an ensemble: average two or more models' similarity matrices and rank.

Usage:
    python tools/analysis_tools/eval_ensemble.py SIMS SIMS [SIMS ...] [--fold5] [--tie-rule RULE] [--out FILE]
SIMS: ``tools/test.py --save-sims`` files (.npz), .npy matrices, or the published evaluation's
``np.save(path, {'npts': n, 'sims': sims})`` files (read without unpickling code).
Prints the full-set table and, with --fold5, each of 5 folds and their mean and std.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from gpo_plugin.evaluation import format_retrieval_table
from gpo_plugin.evaluation.ensemble import (
    SimilarityFileError,
    average_similarities,
    evaluate_similarities,
    load_similarity_file,
)
from gpo_plugin.evaluation.functional import TIE_RULES


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('sims', nargs='+', help='similarity files, two or more')
    parser.add_argument('--fold5', action='store_true', help='also the 5-fold protocol (COCO 1K)')
    parser.add_argument('--tie-rule', choices=TIE_RULES, default='published')
    parser.add_argument('--out', help='write the metrics to this JSON file')
    args = parser.parse_args(argv)
    loaded = [load_similarity_file(path) for path in args.sims]
    sims = average_similarities([s for s, _ in loaded], args.sims)
    rows = [t for _, t in loaded if t is not None]
    if any(not np.array_equal(rows[0], t) for t in rows[1:]):
        raise SimilarityFileError('the files map captions to images differently (txt_img).')
    metrics = evaluate_similarities(sims, rows[0] if rows else None, args.fold5, args.tie_rule)
    fold_size = sims.shape[0] // 5 if args.fold5 else None
    print(f'ensemble of {len(args.sims)} models')
    print(format_retrieval_table(metrics, sims.shape[0], sims.shape[1], fold_size))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(metrics=metrics, files=args.sims), f, indent=2)
    return metrics


if __name__ == '__main__':
    main()
