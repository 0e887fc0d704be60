"""Write the table of gpo_plugin's registries into docs/architecture.md (or check it).

The table sits between ``<!-- registry-table:start -->`` and ``<!-- registry-table:end -->``
and is generated from the registries themselves, so it cannot drift:

    python tools/misc/registry_table.py            # rewrite the table in the doc
    python tools/misc/registry_table.py --check    # exit 1 if the doc's table is stale
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

from mmengine import registry as mmengine_registry
from mmengine.registry import Registry
from mmpretrain import registry as mmpretrain_registry

import gpo_plugin  # noqa: F401  (registers every module)
from gpo_plugin import registry as ours

DOC = Path(__file__).resolve().parents[2] / 'docs' / 'architecture.md'
START, END = '<!-- registry-table:start -->', '<!-- registry-table:end -->'
COMMAND = 'python tools/misc/registry_table.py'
REGISTRIES = (
    'MODELS',
    'DATASETS',
    'DATA_SAMPLERS',
    'TRANSFORMS',
    'METRICS',
    'HOOKS',
    'FUNCTIONS',
    'TOKENIZERS',
)


def our_registries() -> list[tuple[str, Registry]]:
    """(name, registry) of every gpo_plugin registry that holds modules, in table order."""
    named = [(name, getattr(ours, name)) for name in REGISTRIES]
    named += [
        (f"PASS_THROUGH_REGISTRIES['{name}']", registry)
        for name, registry in ours.PASS_THROUGH_REGISTRIES.items()
    ]
    return [(name, registry) for name, registry in named if registry.module_dict]


def parent_name(registry: Registry) -> str:
    """'mmpretrain `MODELS`': the framework and variable name of the parent registry."""
    parent = registry.parent
    for module in (mmpretrain_registry, mmengine_registry):
        for name, value in vars(module).items():
            if value is parent and name.isupper():
                return f'{module.__name__.split(".")[0]} `{name}`'
    return f'`{parent.name}` ({parent.scope})'


def holdings(registry: Registry) -> str:
    """The registered names, grouped by the sub-package that defines them."""
    groups: dict[str, list[str]] = {}
    for name, obj in registry.module_dict.items():
        module = inspect.getmodule(obj).__name__.split('.')
        if module[0] != 'gpo_plugin':
            continue  # registered by a test or a user script, not by the package
        group = module[2] if len(module) > 3 and module[1] == 'models' else module[1]
        groups.setdefault(group, []).append(f'`{name}`')
    if len(groups) == 1:
        return ', '.join(sorted(next(iter(groups.values()))))
    return '; '.join(f'{g}: {", ".join(sorted(names))}' for g, names in sorted(groups.items()))


def registry_table() -> str:
    """The markdown table of every registry, its parent and what gpo_plugin registers in it."""
    rows = ['| registry | parent | holds (grouped by sub-package) |', '|---|---|---|']
    for name, registry in our_registries():
        rows.append(f'| `{name}` | {parent_name(registry)} | {holdings(registry)} |')
    return '\n'.join(rows)


def with_table(text: str, table: str) -> str:
    """``text`` with the part between the markers replaced by ``table``."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ValueError(f'{DOC}: expected one {START} ... {END} pair around the table.')
    head, rest = text.split(START)
    _, tail = rest.split(END)
    return f'{head}{START}\n{table}\n{END}{tail}'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--check', action='store_true', help='only check; exit 1 when stale')
    args = parser.parse_args(argv)
    text = DOC.read_text(encoding='utf-8')
    updated = with_table(text, registry_table())
    if args.check:
        if updated != text:
            print(f'{DOC} has a stale registry table; run `{COMMAND}`.', file=sys.stderr)
            return 1
        return 0
    DOC.write_text(updated, encoding='utf-8')
    return 0


if __name__ == '__main__':
    sys.exit(main())
