"""``tools/train.py`` that SIGKILLs itself after iteration ``$KILL_AT_ITER`` (tests only).

The resume tests register the hook and train in a forked child process: it dies as a user's
job dies under ``kill -9``, with no chance to clean up, after the optimizer step of that
iteration. Run as a script (``KILL_AT_ITER=11 python tests/cli/train_until_killed.py CONFIG ...
--cfg-options default_hooks.kill.type=KillAtIterHook``) to do the same by hand.
"""

import os
import signal
import sys

from mmengine.hooks import Hook

from gpo_plugin.cli import train as train_cli
from gpo_plugin.registry import HOOKS


@HOOKS.register_module(force=True)
class KillAtIterHook(Hook):
    """SIGKILL this process after training iteration ``$KILL_AT_ITER`` (1-based; 0: never)."""

    priority = 'LOWEST'

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if runner.iter + 1 == int(os.environ.get('KILL_AT_ITER', '0')):
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == '__main__':
    train_cli.main(sys.argv[1:])
