"""``tools/test.py`` as a function: the shared flags (:mod:`gpo_plugin.cli.runner_config`) plus
a checkpoint, ``--out`` (metrics with provenance), ``--non-strict`` and the image-text retrieval
outputs (``--tie-rule``, ``--save-sims``, ``--save-ranks``, ``--cxc-annots``;
:mod:`gpo_plugin.cli.evaluation_outputs`). Refuses a checkpoint of another model and refuses to run with
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` set.
"""

from __future__ import annotations

import argparse
import json
import os
import os.path as osp
from collections.abc import Sequence

from mmengine.runner import Runner

from gpo_plugin.cli import evaluation_outputs as outputs
from gpo_plugin.cli.runner_config import add_common_args, load_config, log_setup
from gpo_plugin.utils.checkpoints import check_state_dict_matches, refuse_unsafe_env


def test_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description='Test a checkpoint with mmengine.')
    add_common_args(parser)
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='write the metrics to this JSON file')
    parser.add_argument(
        '--non-strict',
        action='store_true',
        help="load a checkpoint whose keys or shapes differ from the config's model",
    )
    add_evaluation_output_args(parser)
    return parser


def add_evaluation_output_args(parser: argparse.ArgumentParser) -> None:
    from gpo_plugin.evaluation.functional import TIE_RULES

    group = parser.add_argument_group('image-text retrieval outputs')
    group.add_argument(
        '--tie-rule',
        choices=TIE_RULES,
        help="how ties with the ground truth rank (default: the config's, else 'published', "
        "the published evaluation's argsort order)",
    )
    group.add_argument(
        '--save-sims',
        metavar='FILE.npz',
        help='write the similarity matrix, the embeddings and the caption-to-image rows (npz)',
    )
    group.add_argument(
        '--save-ranks',
        metavar='FILE.npz',
        help='write the 0-based rank of every query both ways and its top-10 ids (npz)',
    )
    group.add_argument(
        '--cxc-annots',
        metavar='DIR',
        help='also report the CxC recalls (folder with testall_ids.txt, testall_capids.txt, '
        'cxc_it.json, cxc_i2i.json, cxc_t2t.json)',
    )


def main(argv: Sequence[str] | None = None) -> dict:
    """``tools/test.py``: evaluate a checkpoint, print the metrics (and write ``--out``)."""
    args = test_parser().parse_args(argv)
    refuse_unsafe_env('test.py')
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'test.py: checkpoint {args.checkpoint} not found.')
    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    runner = Runner.from_cfg(cfg)
    log_setup(runner, args.setup_notes)
    if not args.non_strict:
        check_state_dict_matches(runner.model, args.checkpoint)
    retrieval = outputs.prepare_retrieval_metrics(runner, args.tie_rule)
    metrics = runner.test()
    if runner.rank == 0:
        metrics = outputs.add_cxc(metrics, retrieval, args.cxc_annots)
        print_metrics(metrics, retrieval)
        outputs.save_arrays(retrieval, args.save_sims, args.save_ranks)
        if args.out:
            record = outputs.provenance(cfg, args, retrieval)
            os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
            with open(args.out, 'w') as f:
                json.dump(dict(metrics=metrics, provenance=record), f, indent=2)
            print(f'metrics and provenance written to {args.out}')
    return metrics


def print_metrics(metrics: dict, retrieval=None) -> None:
    """Image–text retrieval metrics as the papers' table, once (the metric's own log of it is
    turned off), with every fold, the tie rule and the protocols run; anything else one per
    line."""
    table, shown = outputs.retrieval_table(metrics, retrieval)
    if table:
        print(table)
    for key, value in metrics.items():
        if key not in shown:
            print(f'{key}: {value}')
