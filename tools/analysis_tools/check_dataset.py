"""Scan every sample of the datasets of a config before training (docs/fault_tolerance.md).

Usage:
    python tools/analysis_tools/check_dataset.py CONFIG [--loaders train_dataloader ...] [--data-root DIR]
        [--cfg-options k=v ...]
Annotation files, image files (empty, undecodable, truncated) and precomputed features
(dtype, NaN/inf) are checked; every problem is printed with its file. Exit code 1 if any.
"""

import sys

from gpo_plugin.cli.check_dataset import main

if __name__ == '__main__':
    sys.exit(main())
