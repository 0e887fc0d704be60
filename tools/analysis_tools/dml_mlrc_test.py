"""MLRC evaluation: test the 4 fold models of one config on the test classes, each alone and
with their embeddings concatenated (4 x 128-d -> 512-d). Prints a markdown table.

    python tools/analysis_tools/dml_mlrc_test.py configs/dml_gsp_cub_mlrc.py \
        work_dirs/cub_fold0/best.pth work_dirs/cub_fold1/best.pth ... [--work-dir DIR] \
        [--data-root DIR] [--cfg-options k=v ...]

Query/gallery data (In-Shop: samples flagged ``is_query``) is evaluated queries against the
gallery, other data leave-one-out; the recall columns are the test evaluator's ``recall_ks``.

Checkpoints may be paths or any URL mmengine loads (http(s)://, torchvision://, ...); every one is
read with ``weights_only=True`` (gpo_plugin.utils.checkpoints).
"""

from __future__ import annotations

import argparse

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from gpo_plugin.cli.runner_config import set_data_root
from gpo_plugin.evaluation.metric_learning_metric import CUSTOMARY_RECALL_KS
from gpo_plugin.evaluation.mlrc import concatenated_metrics, extract_embeddings
from gpo_plugin.utils.checkpoints import refuse_unsafe_env

COLUMNS = (
    ('MAP@R', 'mean_average_precision_at_r'),
    ('P@1', 'precision_at_1'),
    ('R-Prec', 'r_precision'),
)


def recall_set(recall_ks) -> tuple[int, ...]:
    """K values of a ``recall_ks`` config entry (a benchmark's name or the values)."""
    return (
        tuple(CUSTOMARY_RECALL_KS.get(recall_ks, ()))
        if isinstance(recall_ks, str)
        else tuple(recall_ks)
    )


def main(argv=None) -> None:
    refuse_unsafe_env('dml_mlrc_test.py')
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoints', nargs='+', help='one checkpoint per fold')
    parser.add_argument('--work-dir', default='work_dirs/mlrc_test')
    parser.add_argument('--data-root', help='set `data_root` of the datasets in one go')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default=None)
    args = parser.parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.data_root:
        set_data_root(cfg, args.data_root)
    cfg.work_dir = args.work_dir
    runner = Runner.from_cfg(cfg)
    loader = runner.build_dataloader(cfg.test_dataloader)
    embeddings = []
    for checkpoint in args.checkpoints:
        runner.load_checkpoint(checkpoint)
        fold_embeddings, labels, is_query = extract_embeddings(
            runner.model, loader, with_is_query=True
        )
        embeddings.append(fold_embeddings)
    # The test evaluator's recall set; queries vs gallery where the samples are flagged (In-Shop).
    evaluator = cfg.get('test_evaluator')
    recall_ks = recall_set(evaluator.get('recall_ks', ()) if isinstance(evaluator, dict) else ())
    results = concatenated_metrics(embeddings, labels, is_query, recall_ks=recall_ks)
    columns = [*COLUMNS, *((f'R@{k}', f'recall_at_{k}') for k in recall_ks)]
    columns = [(c, k) for c, k in columns if k in results['concatenated']]
    print('| model | ' + ' | '.join(c for c, _ in columns) + ' |')
    print('|---|' + '---|' * len(columns))
    for name, metrics in results.items():
        print(f'| {name} | ' + ' | '.join(f'{100 * metrics[k]:.2f}' for _, k in columns) + ' |')


if __name__ == '__main__':
    main()
