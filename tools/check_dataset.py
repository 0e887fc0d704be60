"""Alias of ``tools/analysis_tools/check_dataset.py`` (the tools are grouped as mmpretrain's; this name is kept
because earlier docs and issues call the tool by it). Same arguments."""

import runpy
from pathlib import Path

if __name__ == '__main__':
    runpy.run_path(
        str(Path(__file__).parent / 'analysis_tools' / 'check_dataset.py'), run_name='__main__'
    )
