"""The VSE∞ demo: bundled synthetic data -> train BiGRU + GPO on the Runner -> retrieval table.

Creates the data and the vocabulary (``gpo_plugin.demo.ensure_vse_demo_data``) if missing, trains ``configs/vse_gpo_demo.py``, evaluates on ``testall`` (500 images: the
full set and the 5-fold average) and prints the table; then trains the average-pooling
baseline (``configs/vse_avgpool_demo.py``, skip with ``--no-compare``) and prints both rSums.

Usage:
    python tools/demos/run_demo.py [--no-compare] [--work-dir work_dirs/vse_demo] [--data-dir data/demo/vse]
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import time

os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('HF_HUB_OFFLINE', '1')

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

from gpo_plugin.cli.runner_config import set_data_root  # noqa: E402
from gpo_plugin.datasets.text_tokenizers import set_pipeline_tokenizer  # noqa: E402
from gpo_plugin.demo import ensure_vse_demo_data  # noqa: E402

torch.set_num_threads(int(os.environ['OMP_NUM_THREADS']))
CONFIGS = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs')


def run(config: str, work_dir: str, precomp: str, vocab: str) -> dict:
    cfg = Config.fromfile(osp.join(CONFIGS, config))
    cfg.work_dir = work_dir
    tokenizer = dict(type='VocabTokenizer', vocab_file=str(vocab))
    cfg.model.txt_enc.vocab_file = str(vocab)
    set_data_root(cfg, str(precomp))
    set_pipeline_tokenizer(cfg, tokenizer)
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner.test()


def main() -> None:
    parser = argparse.ArgumentParser(description='Train and evaluate the VSE∞ demo.')
    parser.add_argument('--work-dir', default='work_dirs/vse_demo')
    parser.add_argument('--data-dir', default='data/demo/vse')
    parser.add_argument(
        '--no-compare',
        dest='compare',
        action='store_false',
        help='skip the average-pooling baseline (trained by default)',
    )
    args = parser.parse_args()
    from gpo_plugin.evaluation import format_retrieval_table

    start = time.time()
    precomp, vocab = ensure_vse_demo_data(args.data_dir)
    runs = [('GPO', 'vse_gpo_demo.py')]
    if args.compare:
        runs.append(('AvgPooling', 'vse_avgpool_demo.py'))
    results = {}
    for name, config in runs:
        results[name] = run(config, osp.join(args.work_dir, name.lower()), precomp, vocab)
    for name, metrics in results.items():
        print(f'\n== {name} (BiGRU text, precomputed regions), demo testall ==')
        print(format_retrieval_table(metrics, fold_size=100, prefix='retrieval/'))
    if args.compare:
        print('\nrSum on testall (500 images / 5-fold 100):')
        for name, metrics in results.items():
            print(
                f'  {name:<11} {metrics["retrieval/rsum"]:6.1f} / '
                f'{metrics["retrieval/fold100_rsum"]:6.1f}'
            )
    print(
        f'\n[demo] done in {time.time() - start:.0f} s; checkpoints and theta plots '
        f'(pooling_weights/) under {args.work_dir}'
    )


if __name__ == '__main__':
    main()
