"""Evaluate a checkpoint of any gpo_plugin (or mmpretrain) config with mmengine's Runner.

Usage:
    python tools/test.py CONFIG CHECKPOINT [--out results.json] [--work-dir DIR]
        [--data-root DIR] [--vocab FILE] [--cfg-options k=v ...] [--launcher pytorch]
Prints the metrics (for image–text retrieval, the table in the papers' layout).
"""

from gpo_plugin.apis.cli import test as main

if __name__ == '__main__':
    main()
