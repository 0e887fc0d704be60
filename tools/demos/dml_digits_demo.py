"""Deep-metric-learning demo on real bundled images: GSP vs average pooling on scikit-learn's
handwritten digits (train on digits 0-4, retrieve among the unseen digits 5-9).

Two settings: ``clean`` (the digit fills a 32x32 image) and ``clutter`` (a 20x20 digit at a
random spot of a 48x48 canvas with random strokes around it). Trains GSP and average pooling
in each with mmengine's Runner, prints the retrieval table, and saves pictures of GSP's
pooling weights over test images.

    python tools/demos/dml_digits_demo.py [--work-dir outputs/dml_digits] [--settings clean clutter]
        [--epochs 12] [--seeds 0 1 2]

With several seeds the table shows mean +- standard deviation over the seeds.
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import time

import torch
from mmengine.config import Config

CONFIGS = {
    'clean': (('GSP', 'configs/dml_gsp_digits.py'), ('avg pooling', 'configs/dml_avg_digits.py')),
    'clutter': (
        ('GSP', 'configs/dml_gsp_digits_clutter.py'),
        ('avg pooling', 'configs/dml_avg_digits_clutter.py'),
    ),
}
COLUMNS = (
    ('MAP@R', 'mean_average_precision_at_r'),
    ('P@1', 'precision_at_1'),
    ('R-Prec', 'r_precision'),
    ('R@2', 'recall_at_2'),
    ('R@4', 'recall_at_4'),
    ('R@8', 'recall_at_8'),
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default='outputs/dml_digits')
    parser.add_argument('--epochs', type=int, default=None, help='override max_epochs')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0])
    parser.add_argument(
        '--settings', nargs='+', choices=tuple(CONFIGS), default=list(CONFIGS), help='which data'
    )
    return parser.parse_args()


def train_and_test(name: str, config: str, work_dir: str, epochs: int | None, seed: int):
    from mmengine.runner import Runner

    cfg = Config.fromfile(config)
    cfg.work_dir = osp.join(work_dir, name.replace(' ', '_'))
    cfg.experiment_name = f'{name.replace(" ", "_")}_{int(time.time() * 1000)}'
    cfg.randomness = dict(seed=seed, deterministic=False)
    if epochs is not None:
        cfg.train_cfg.max_epochs = cfg.train_cfg.val_interval = epochs
        cfg.param_scheduler[0]['T_max'] = epochs
        cfg.default_hooks.checkpoint.interval = epochs
    runner = Runner.from_cfg(cfg)
    start = time.time()
    runner.train()
    seconds = time.time() - start
    metrics = runner.test()
    return runner.model, {k.split('/')[-1]: v for k, v in metrics.items()}, seconds


def format_table(rows: dict[tuple[str, str], list[tuple[dict, float]]]) -> str:
    """One line per pooling: each metric in %, mean +- std over the seeds when several."""
    header = '| digits | pooling | ' + ' | '.join(c for c, _ in COLUMNS) + ' | train time (s) |'
    lines = [header, '|' + '---|' * (len(COLUMNS) + 3)]
    for name, runs in rows.items():
        cells = []
        for _, key in COLUMNS:
            values = torch.tensor([100 * metrics[key] for metrics, _ in runs])
            spread = f' ± {values.std().item():.1f}' if len(runs) > 1 else ''
            cells.append(f'{values.mean().item():.1f}{spread}')
        seconds = sum(s for _, s in runs) / len(runs)
        setting, pooling = name
        lines.append(f'| {setting} | {pooling} | {" | ".join(cells)} | {seconds:.0f} |')
    return '\n'.join(lines)


@torch.no_grad()
def save_pooling_weights(model, dataset_cfg: dict, path: str, per_class: int = 3) -> None:
    """Test images (top) and GSP's pooling weights over the feature grid (bottom)."""
    from gpo_plugin.registry import DATASETS
    from gpo_plugin.visualization import draw_position_weights, save_png

    dataset = DATASETS.build(dict(dataset_cfg, pipeline=[]))
    labels = dataset.get_gt_labels()
    chosen = [i for c in range(5) for i in (labels == c).nonzero()[0][:per_class].tolist()]
    images = torch.stack([torch.from_numpy(dataset.get_data_info(i)['img']) for i in chosen])
    model.eval()
    batch = model.data_preprocessor({'inputs': list(images.permute(0, 3, 1, 2))}, False)
    weights = model.neck.pool_map(model.backbone(batch['inputs'])[-1]).weights
    titles = [dataset.metainfo['classes'][labels[index]] for index in chosen]
    grid = 'x'.join(map(str, weights.shape[1:]))
    title = f'GSP pooling weights w ({grid} grid, mean 1) over unseen digits'
    save_png(draw_position_weights(images[..., 0], weights, titles, title), path)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', '1')))
    os.makedirs(args.work_dir, exist_ok=True)
    rows, pictures = {}, []
    for setting in args.settings:
        for seed in args.seeds:
            for name, config in CONFIGS[setting]:
                work_dir = osp.join(args.work_dir, setting, f'seed{seed}')
                model, metrics, seconds = train_and_test(name, config, work_dir, args.epochs, seed)
                rows.setdefault((setting, name), []).append((metrics, seconds))
                if name == 'GSP':
                    gsp_model = model
        # The last seed's GSP model, on the same test data it was evaluated on.
        pictures.append(osp.join(args.work_dir, f'gsp_pooling_weights_{setting}.png'))
        dataset_cfg = Config.fromfile(CONFIGS[setting][0][1]).test_dataloader.dataset
        save_pooling_weights(gsp_model, dataset_cfg, pictures[-1])
    table = format_table(rows)
    with open(osp.join(args.work_dir, 'results.md'), 'w') as handle:
        handle.write(table + '\n')
    seeds = ', '.join(map(str, args.seeds))
    print(f'\nDigits 5-9 (unseen classes), leave-one-out retrieval, %, seeds {seeds}:\n{table}')
    print('\nGSP pooling weights: ' + ', '.join(pictures))


if __name__ == '__main__':
    main()
