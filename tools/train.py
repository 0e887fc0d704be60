"""Train any gpo_plugin (or mmpretrain) config with mmengine's Runner.

Usage:
    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp [--amp-dtype T]]
        [--auto-scale-lr] [--tensorboard] [--data-root DIR] [--vocab FILE]
        [--cfg-options k=v ...] [--launcher pytorch]
--vocab: the BiGRU vocabulary (default: the config's `vocab_file`, following --data-root).
Multi-process (GPUs, or CPU processes with gloo when no GPU is visible):
    bash tools/dist_train.sh CONFIG N  (= torchrun --nproc_per_node N tools/train.py CONFIG --launcher pytorch)
--amp: float16 (or --amp-dtype bfloat16) with loss scaling on a GPU, bfloat16 autocast on the CPU.
"""

from gpo_plugin.cli.train import main

if __name__ == '__main__':
    main()
