"""MLRC evaluation: test the 4 fold models of one config on the test classes, each alone and
with their embeddings concatenated (4 x 128-d -> 512-d). Prints a markdown table.

    python tools/analysis_tools/dml_mlrc_test.py configs/dml_gsp_cub_mlrc.py \
        work_dirs/cub_fold0/best.pth work_dirs/cub_fold1/best.pth ... [--work-dir DIR]

Checkpoints may be paths or any URL mmengine loads (http(s)://, torchvision://, ...); every one is
read with ``weights_only=True`` (gpo_plugin.utils.checkpoints).
"""

from __future__ import annotations

import argparse

from mmengine.config import Config
from mmengine.runner import Runner

from gpo_plugin.evaluation.mlrc import concatenated_metrics, extract_embeddings
from gpo_plugin.utils.checkpoints import refuse_unsafe_env

COLUMNS = (
    ('MAP@R', 'mean_average_precision_at_r'),
    ('P@1', 'precision_at_1'),
    ('R-Prec', 'r_precision'),
)


def main(argv=None) -> None:
    refuse_unsafe_env('dml_mlrc_test.py')
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoints', nargs='+', help='one checkpoint per fold')
    parser.add_argument('--work-dir', default='work_dirs/mlrc_test')
    args = parser.parse_args(argv)
    cfg = Config.fromfile(args.config)
    cfg.work_dir = args.work_dir
    runner = Runner.from_cfg(cfg)
    loader = runner.build_dataloader(cfg.test_dataloader)
    embeddings = []
    for checkpoint in args.checkpoints:
        runner.load_checkpoint(checkpoint)
        fold_embeddings, labels = extract_embeddings(runner.model, loader)
        embeddings.append(fold_embeddings)
    results = concatenated_metrics(embeddings, labels)
    print('| model | ' + ' | '.join(c for c, _ in COLUMNS) + ' |')
    print('|---|' + '---|' * len(COLUMNS))
    for name, metrics in results.items():
        print(f'| {name} | ' + ' | '.join(f'{100 * metrics[k]:.2f}' for _, k in COLUMNS) + ' |')


if __name__ == '__main__':
    main()
