"""Train any gpo_plugin (or mmpretrain) config with mmengine's Runner.

Usage:
    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--auto-scale-lr] [--data-root DIR] [--cfg-options k=v ...] [--launcher pytorch]
Multi-GPU: torchrun --nproc_per_node=N tools/train.py CONFIG --launcher pytorch
"""

from gpo_plugin.apis.cli import train as main

if __name__ == '__main__':
    main()
