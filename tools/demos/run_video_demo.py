"""The VSE∞ video demo: a synthetic set in HGR's layout -> train GPO and average pooling on
the Runner -> both retrieval tables (HGR's protocol) and GPO's theta over frame positions.

Creates the data (``gpo_plugin.demo.ensure_video_demo_data``) if missing, trains
``configs/vse_gpo_video_demo.py`` and ``configs/vse_avgpool_video_demo.py``, tests both on
the ``tst`` split and writes ``theta_frames.png`` (GPO's weights over the sorted positions of
frame sets of a few sizes) into the work dir.

Usage:
    python tools/demos/run_video_demo.py [--work-dir work_dirs/vse_video_demo] [--data-dir data/demo/video]
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import time

os.environ.setdefault('OMP_NUM_THREADS', '1')

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from gpo_plugin.cli.runner_config import set_data_root  # noqa: E402
from gpo_plugin.datasets.text_tokenizers import set_pipeline_tokenizer  # noqa: E402
from gpo_plugin.demo import ensure_video_demo_data  # noqa: E402
from gpo_plugin.evaluation import format_video_table  # noqa: E402

torch.set_num_threads(int(os.environ['OMP_NUM_THREADS']))
CONFIGS = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs')
SET_SIZES = (8, 16, 24, 32)


def run(config: str, work_dir: str, data_dir: str) -> tuple[dict, torch.nn.Module]:
    cfg = Config.fromfile(osp.join(CONFIGS, config))
    cfg.work_dir = work_dir
    vocab = osp.join(data_dir, 'annotation/RET/word2int.json')
    cfg.model.txt_enc.vocab_file = vocab
    set_data_root(cfg, data_dir)
    set_pipeline_tokenizer(cfg, dict(type='VocabTokenizer', vocab_file=vocab))
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner.test(), runner.model


@torch.no_grad()
def frame_theta(pooler: torch.nn.Module, sizes: tuple[int, ...]) -> list[np.ndarray]:
    """GPO's weights over the sorted positions of frame sets of the given sizes."""
    table = pooler.pool_weights(torch.tensor(sizes)).float().cpu().numpy()
    return [row[:n] for row, n in zip(table, sizes, strict=True)]


def plot_theta(thetas: list[np.ndarray], path: str) -> None:
    import matplotlib

    matplotlib.use('Agg')
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    for theta in thetas:
        ax.plot(np.arange(len(theta)), theta, marker='o', markersize=3, label=f'T = {len(theta)}')
    ax.set_xlabel('position k among the sorted frame values (descending)')
    ax.set_ylabel('theta_k')
    ax.set_title('GPO over frames (video demo)')
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description='Train and compare the VSE∞ video demo.')
    parser.add_argument('--work-dir', default='work_dirs/vse_video_demo')
    parser.add_argument('--data-dir', default='data/demo/video')
    args = parser.parse_args()
    start = time.time()
    data_dir = str(ensure_video_demo_data(args.data_dir))
    results, models = {}, {}
    for name, config in (
        ('GPO', 'vse_gpo_video_demo.py'),
        ('AvgPooling', 'vse_avgpool_video_demo.py'),
    ):
        results[name], models[name] = run(config, osp.join(args.work_dir, name.lower()), data_dir)
    for name, metrics in results.items():
        print(f'\n== {name} over frames and words (BiGRU text), demo tst ==')
        print(format_video_table(metrics, prefix='retrieval/'))
    thetas = frame_theta(models['GPO'].img_enc.gpool, SET_SIZES)
    path = osp.join(args.work_dir, 'theta_frames.png')
    plot_theta(thetas, path)
    print('\nGPO theta over the sorted frame positions (0 = largest value):')
    for theta in thetas:
        peak, half = int(np.argmax(theta)), len(theta) // 2
        print(
            f'  T = {len(theta):2d}: peak at position {peak} (theta {theta[peak]:.2f}); '
            f'{100 * theta[half:].sum():.0f} % of the weight on the lower half'
        )
    print(f'\n[demo-video] done in {time.time() - start:.0f} s; theta plot: {path}')


if __name__ == '__main__':
    main()
