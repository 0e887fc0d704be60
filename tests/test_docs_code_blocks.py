"""Every ```python block of README.md and docs/*.md runs, and the registry table is current.

Convention: a block with the info string ``python`` must run on its own (small tensors, no
downloads, no datasets); it runs in a temporary folder with the repository root importable.
A block whose top level defines ``_base_`` is a config: it is also loaded with mmengine's
``Config.fromstring`` and its ``model`` is built. Top-level ``model``, ``neck`` or ``head``
dicts with a ``type`` are built with ``gpo_plugin.registry.MODELS``. Illustrative fragments
that cannot run alone use ``py``; shell commands use ``bash``; neither is executed.
"""

from __future__ import annotations

import importlib.util
import re
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / 'README.md', *sorted((ROOT / 'docs').glob('*.md'))]
FENCE = re.compile(r'^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$')
BUILT_NAMES = ('model', 'neck', 'head')


@dataclass(frozen=True)
class CodeBlock:
    path: Path
    line: int  # 1-based line of the first code line
    info: str
    code: str

    @property
    def where(self) -> str:
        path = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path.name
        return f'{path}:{self.line}'


def code_blocks(path: Path) -> list[CodeBlock]:
    """The fenced blocks of a markdown file (CommonMark fences, also indented in lists)."""
    lines = path.read_text(encoding='utf-8').split('\n')
    blocks, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = len(opening['indent']), opening['fence']
        info = opening['info'].strip().split(' ')[0]
        body, j = [], i + 1
        while j < len(lines) and not _closes(lines[j], fence):
            body.append(lines[j][indent:] if not lines[j][:indent].strip() else lines[j].lstrip())
            j += 1
        blocks.append(CodeBlock(path, i + 2, info, '\n'.join(body)))
        i = j + 1
    return blocks


def _closes(line: str, fence: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(fence) and set(stripped) == {fence[0]}


def run_block(block: CodeBlock) -> dict:
    """Execute a block as a script whose line numbers are those of the markdown file."""
    source = '\n' * (block.line - 1) + block.code
    namespace = {'__name__': '__doc_block__'}
    try:
        exec(compile(source, str(block.path), 'exec'), namespace)
        if '_base_' in namespace:
            _build_config(block.code)
        for name in BUILT_NAMES:
            if isinstance(namespace.get(name), dict) and 'type' in namespace[name]:
                from gpo_plugin.registry import MODELS

                MODELS.build(namespace[name])
    except Exception as error:  # noqa: BLE001  (any failure of the block is reported)
        trace = ''.join(traceback.format_exception(error)[-6:])
        pytest.fail(
            f'{block.where}: this ```python block fails ({type(error).__name__}: {error}). '
            'Fix the block; if it is an illustrative fragment that cannot run alone, mark it '
            f'```py instead.\n{trace}',
            pytrace=False,
        )
    return namespace


def _build_config(code: str) -> None:
    from mmengine.config import Config
    from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS

    cfg = Config.fromstring(code, '.py')
    if 'model' in cfg:
        MMPRETRAIN_MODELS.build(cfg.model)


PYTHON_BLOCKS = [block for path in DOCS for block in code_blocks(path) if block.info == 'python']


@pytest.fixture
def isolated_registries(monkeypatch):
    """A block may register a module (the new-pooler recipe does): it stays in this test."""
    from mmengine.registry import Registry

    from gpo_plugin import registry

    found = [r for r in vars(registry).values() if isinstance(r, Registry)]
    found += list(registry.PASS_THROUGH_REGISTRIES.values())
    seen = set()
    while found:
        reg = found.pop()
        if id(reg) not in seen:
            seen.add(id(reg))
            monkeypatch.setattr(reg, '_module_dict', dict(reg._module_dict))
            found += [reg.parent] if reg.parent is not None else []


@pytest.mark.parametrize('block', PYTHON_BLOCKS, ids=[block.where for block in PYTHON_BLOCKS])
def test_python_block_runs(block, tmp_path, monkeypatch, isolated_registries):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(ROOT))
    run_block(block)


def test_the_docs_have_runnable_blocks():
    """Guards the extraction itself: the pages hold runnable examples to check."""
    where = {block.path.name for block in PYTHON_BLOCKS}
    assert {'README.md', 'pooling.md', 'pml.md'} <= where, where


def test_extraction_and_failure_message_name_file_and_line(tmp_path):
    page = tmp_path / 'page.md'
    page.write_text(
        '# t\n\n```python\nx = 1\n```\n\n- item\n\n  ```python\n  y = 2\n  z = undefined\n  ```\n'
        '\n```py\nfragment(...)\n```\n\n````bash\nls\n````\n',
        encoding='utf-8',
    )
    blocks = code_blocks(page)
    assert [(b.line, b.info) for b in blocks] == [
        (4, 'python'),
        (10, 'python'),
        (15, 'py'),
        (19, 'bash'),
    ]
    assert blocks[1].code == 'y = 2\nz = undefined'
    assert run_block(blocks[0])['x'] == 1
    with pytest.raises(pytest.fail.Exception, match=r'page\.md:10: .*NameError'):
        run_block(blocks[1])
    assert 'line 11' in _failure_text(blocks[1])


def _failure_text(block: CodeBlock) -> str:
    try:
        run_block(block)
    except pytest.fail.Exception as failure:
        return str(failure)
    return ''


@pytest.fixture(scope='module')
def table_tool():
    """tools/misc/registry_table.py, loaded by path (tools are scripts, not a package)."""
    path = ROOT / 'tools' / 'misc' / 'registry_table.py'
    spec = importlib.util.spec_from_file_location('registry_table', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_architecture_registry_table_is_current(table_tool):
    text = table_tool.DOC.read_text(encoding='utf-8')
    assert table_tool.with_table(text, table_tool.registry_table()) == text, (
        'docs/architecture.md: the registry table differs from the registries; run '
        f'`{table_tool.COMMAND}` to regenerate it.'
    )


def test_registry_table_lists_every_registered_module(table_tool):
    """Independent of the formatting: each module registered by gpo_plugin appears."""
    from gpo_plugin import registry

    table = table_tool.registry_table()
    registries = [getattr(registry, name) for name in table_tool.REGISTRIES]
    registries += list(registry.PASS_THROUGH_REGISTRIES.values())
    names = {
        name
        for r in registries
        for name, obj in r.module_dict.items()
        if obj.__module__.startswith('gpo_plugin.')  # not the hooks tests register
    }
    assert {'GPO', 'PoolingWeightsHook', 'vse_collate', 'CPUBf16AmpOptimWrapper'} <= names
    assert [name for name in names if f'`{name}`' not in table] == []


def test_with_table_replaces_only_the_marked_part(table_tool):
    start, end = table_tool.START, table_tool.END
    text = f'a\n{start}\nold\n{end}\nb'
    assert table_tool.with_table(text, 'new') == f'a\n{start}\nnew\n{end}\nb'
    with pytest.raises(ValueError, match='registry-table'):
        table_tool.with_table('no markers', 'new')
