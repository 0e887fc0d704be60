"""Evaluate a checkpoint of any gpo_plugin (or mmpretrain) config with mmengine's Runner.

Usage:
    python tools/test.py CONFIG CHECKPOINT [--out results.json] [--work-dir DIR]
        [--data-root DIR] [--vocab FILE] [--cfg-options k=v ...] [--launcher pytorch]
        [--tie-rule published|optimistic|pessimistic] [--save-sims FILE.npz]
        [--save-ranks FILE.npz] [--cxc-annots DIR]
Prints the metrics (for image–text retrieval, the table in the papers' layout: the full set,
every fold, the fold mean and std, the tie rule and the protocols run); --out adds the
provenance (config, checkpoint sha256, data, protocol, versions, date). docs/vse.md#evaluation-outputs
"""

from gpo_plugin.cli.test import main

if __name__ == '__main__':
    main()
