"""Alias of ``tools/analysis_tools/dml_mlrc_test.py`` (the tools are grouped as mmpretrain's; this name is kept
because earlier docs and issues call the tool by it). Same arguments."""

import runpy
from pathlib import Path

if __name__ == '__main__':
    runpy.run_path(
        str(Path(__file__).parent / 'analysis_tools' / 'dml_mlrc_test.py'), run_name='__main__'
    )
