"""The package's layers import downward only (docs/architecture.md#layout), and only tests and
tools touch ``sys.path``."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / 'gpo_plugin'
# Lower layers never import higher ones; peers of one layer never import each other.
LAYERS = {
    'utils': 0,
    'ops': 1,
    'registry': 1,
    'models': 2,
    'datasets': 2,
    'evaluation': 2,
    'visualization': 3,
    'engine': 4,
    'demo': 5,
    'apis': 5,
    'pml': 5,
    'cli': 6,
}


def part_of(module: str) -> str | None:
    """``'gpo_plugin.models.necks.gpo'`` -> ``'models'``; None for the package root."""
    parts = module.split('.')
    return parts[1] if len(parts) > 1 else None


def imported_modules(path: Path) -> set[str]:
    """Absolute names of the gpo_plugin modules imported by ``path`` (relative ones resolved)."""
    module = '.'.join(path.relative_to(ROOT).with_suffix('').parts)
    package = module if path.name == '__init__.py' else module.rsplit('.', 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split('.')[: len(package.split('.')) - node.level + 1]
                name = '.'.join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ''
            found.add(name)
    return {name for name in found if name == 'gpo_plugin' or name.startswith('gpo_plugin.')}


def upward_imports() -> list[str]:
    problems = []
    for path in sorted(PACKAGE.rglob('*.py')):
        own = part_of('.'.join(path.relative_to(ROOT).with_suffix('').parts))
        if own is None or own == '__init__':
            continue  # the package root imports everything to register it
        for target in imported_modules(path):
            other = part_of(target)
            if other is None or other == own:
                continue
            if LAYERS[other] > LAYERS[own] or (LAYERS[other] == LAYERS[own]):
                problems.append(f'{path.relative_to(ROOT)} ({own}) imports {target} ({other})')
    return problems


def test_every_subpackage_has_a_layer():
    modules = {p.stem for p in PACKAGE.glob('*.py')} - {'__init__'}
    packages = {p.parent.name for p in PACKAGE.glob('*/__init__.py')}
    parts = modules | packages
    assert parts <= set(LAYERS), f'give {sorted(parts - set(LAYERS))} a layer in LAYERS'


def test_layers_import_downward_only():
    assert upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    """The checker itself: a models file importing datasets is reported."""
    fake = tmp_path / 'gpo_plugin' / 'models'
    fake.mkdir(parents=True)
    (fake / 'bad.py').write_text('from gpo_plugin.datasets import vse_collate\n')
    (fake / 'good.py').write_text(
        'from ..utils import vocab\nfrom gpo_plugin.registry import MODELS\n'
    )
    monkeypatch.setattr(__import__(__name__), 'ROOT', tmp_path)
    monkeypatch.setattr(__import__(__name__), 'PACKAGE', tmp_path / 'gpo_plugin')
    assert upward_imports() == [
        'gpo_plugin/models/bad.py (models) imports gpo_plugin.datasets (datasets)'
    ]


@pytest.mark.parametrize('folder', ['gpo_plugin', 'benchmarks', 'configs', 'tools'])
def test_no_sys_path_edits_outside_tests(folder):
    edits = [
        str(path.relative_to(ROOT))
        for path in (ROOT / folder).rglob('*.py')
        if 'sys.path' in path.read_text(encoding='utf-8')
    ]
    assert edits == []


def imported_test_modules(path: Path) -> list[str]:
    """The ``test_*`` modules ``path`` imports (at any depth: lazy imports count too)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding='utf-8'))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return sorted(name for name in names if name.split('.')[0].startswith('test_'))


def test_test_modules_do_not_import_each_other():
    """Shared test helpers live in tests/conftest.py; a test module imported by another runs
    its tests twice and breaks when either moves."""
    tests = ROOT / 'tests'
    found = [
        f'{path.relative_to(ROOT)} imports {", ".join(names)}'
        for path in sorted(tests.rglob('test_*.py'))
        if (names := imported_test_modules(path))
    ]
    assert found == []


def test_test_import_check_sees_lazy_and_plain_imports(tmp_path):
    module = tmp_path / 'test_x.py'
    module.write_text(
        'import test_a\n\ndef f():\n    from test_b import g\n\nfrom conftest import h\n'
    )
    assert imported_test_modules(module) == ['test_a', 'test_b']
