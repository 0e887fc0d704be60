"""Config set-up shared by the tools and the inferencer: one vocabulary variable, checked ``--cfg-options``
keys and loader defaults that fit the machine (docs/vse.md#set-up).

Pure functions on an mmengine ``Config``; each returns the lines worth logging (the
Runner's logger does not exist yet when they run).
"""

from __future__ import annotations

import difflib
import inspect
import os
import os.path as osp
import warnings
from collections.abc import Iterator

from mmengine.config import Config

LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


class ConfigOptionError(KeyError):
    """A ``--cfg-options`` key that no part of the config or the Runner reads."""

    def __str__(self) -> str:  # KeyError quotes its message; print it plainly.
        return str(self.args[0])


def runner_keys() -> set[str]:
    """Top-level config keys mmengine's Runner reads even when a config does not set them."""
    from mmengine.runner import Runner

    params = set(inspect.signature(Runner.__init__).parameters) - {'self', 'cfg'}
    return params | {
        'model_wrapper_cfg',
        'find_unused_parameters',
        'compile',
        'strategy',
        'activation_checkpointing',
        'efficient_conv_bn_eval',
        'resource_limit',
        'custom_imports',
    }


def _close(word: str, choices) -> str:
    matches = difflib.get_close_matches(word, [str(c) for c in choices], n=3, cutoff=0.6)
    return f' Did you mean {", ".join(matches)}?' if matches else ''


def check_cfg_options(cfg: Config, options: dict) -> list[str]:
    """Refuse top-level ``--cfg-options`` keys that nothing reads; warn about nested ones.

    A top-level key unknown to the config and to the Runner would be silently ignored:
    :class:`ConfigOptionError` naming the key and the close matches. A nested key the
    config does not have yet (``train_cfg.max_epoch``) may be a new argument of the
    module it configures, so it is a warning with the close matches.

    Returns:
        The warnings given, one line each.
    """
    notes = []
    known = set(cfg.keys()) | runner_keys()
    for key in options:
        parts = key.split('.')
        if parts[0] not in known:
            raise ConfigOptionError(
                f'--cfg-options {key}: the config has no `{parts[0]}` and nothing reads it.'
                + _close(parts[0], known)
            )
        node = cfg[parts[0]] if parts[0] in cfg else None
        for depth, part in enumerate(parts[1:], 1):
            if isinstance(node, list | tuple) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
                continue
            if not isinstance(node, dict) or part in node:
                node = node.get(part) if isinstance(node, dict) else None
                continue
            where = '.'.join(parts[:depth])
            notes.append(
                f'--cfg-options {key}: `{where}` has no `{part}` in this config; it is added '
                'as a new argument.' + _close(part, node.keys())
            )
            warnings.warn(notes[-1], stacklevel=2)
            break
    return notes


def _vocab_slots(node, path: str = '') -> Iterator[tuple[dict, str]]:
    """Every dict of ``node`` (recursively) that has a ``vocab_file`` key, with its path."""
    if isinstance(node, dict):
        if 'vocab_file' in node and path:
            yield node, path
        for key, value in node.items():
            yield from _vocab_slots(value, f'{path}.{key}' if path else str(key))
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            yield from _vocab_slots(value, f'{path}.{i}')


def dataset_root(cfg: Config) -> str | None:
    """``data_root`` of the first loader's dataset that has one."""
    for key in LOADERS:
        dataset = (cfg.get(key) or {}).get('dataset') or {}
        if dataset.get('data_root'):
            return dataset['data_root']
    return None


def follow_data_root(vocab: str, old_root: str | None, new_root: str) -> str:
    """Where ``vocab`` goes when the data moves from ``old_root`` to ``new_root``.

    The vocabulary keeps its place relative to the data root (``data/coco/vocab.json``
    beside ``data/coco/precomp`` becomes ``<new_root>/../vocab.json``); when no file is
    there but ``<new_root>/vocab.json`` exists, that one. An absolute vocabulary path, or
    a config without a data root, stays where it is.
    """
    if osp.isabs(vocab) or not old_root:
        return vocab
    moved = osp.normpath(osp.join(new_root, osp.relpath(vocab, old_root)))
    inside = osp.join(new_root, 'vocab.json')
    return inside if not osp.isfile(moved) and osp.isfile(inside) else moved


def set_vocab_file(
    cfg: Config,
    vocab: str | None = None,
    data_root: str | None = None,
    options: dict | None = None,
) -> list[str]:
    """Make the top-level ``vocab_file`` the one vocabulary every part of ``cfg`` reads.

    Args:
        cfg: the config; its top-level ``vocab_file`` (if any) is the default.
        vocab: ``--vocab``: overrides everything.
        data_root: ``--data-root`` (call before moving the loaders): the default vocabulary
            follows it (:func:`follow_data_root`) unless ``--vocab`` or
            ``--cfg-options vocab_file=`` named one.
        options: the ``--cfg-options``: a ``vocab_file`` among them (top-level, or nested
            such as ``model.txt_enc.vocab_file``) wins over the config and ``--data-root``.

    Returns:
        A line saying which vocabulary is used, or nothing for configs without one.
    """
    slots = list(_vocab_slots(cfg._cfg_dict.to_dict()))
    current = cfg.get('vocab_file') or next((s['vocab_file'] for s, _ in slots), None)
    if vocab is None and current is None:
        return []
    if vocab is not None and not slots:
        raise ConfigOptionError(
            f'--vocab {vocab}: {cfg.filename} reads no vocabulary (its text encoder is not '
            'the BiGRU); drop --vocab.'
        )
    if vocab is not None:
        chosen, why = vocab, '--vocab'
    elif option_vocab(options):
        chosen, why = option_vocab(options), '--cfg-options'
    elif data_root is not None:
        chosen, why = follow_data_root(current, dataset_root(cfg), data_root), '--data-root'
    else:
        chosen, why = current, 'the config'
    cfg.vocab_file = chosen
    notes = [f'vocabulary: {chosen} (from {why})']
    for slot, path in slots:
        if why == 'the config' and slot['vocab_file'] != chosen:
            notes.append(
                f'{path}.vocab_file={slot["vocab_file"]} replaced by the top-level '
                f'vocab_file={chosen} (set that one, or pass --vocab).'
            )
            warnings.warn(notes[-1], stacklevel=2)
        _set_path(cfg, path, chosen)
    return notes


def option_vocab(options: dict | None) -> str | None:
    """The vocabulary named in ``--cfg-options`` (``vocab_file`` or ``*.vocab_file``)."""
    options = options or {}
    if 'vocab_file' in options:
        return options['vocab_file']
    return next((v for k, v in options.items() if k.endswith('.vocab_file')), None)


def _set_path(cfg: Config, path: str, value: str) -> None:
    node = cfg
    for part in path.split('.'):
        node = node[int(part)] if isinstance(node, list | tuple) else node[part]
    node['vocab_file'] = value


def usable_cores() -> int:
    """CPU cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def fit_loaders(cfg: Config, cores: int | None = None) -> list[str]:
    """Loader defaults that fit the machine.

    ``num_workers`` above the usable cores is lowered to them (torch warns and the extra
    processes only compete for the same cores); ``num_workers=0`` drops
    ``persistent_workers`` (torch refuses the pair with a ``ValueError``).

    Returns:
        One line per change.
    """
    cores = cores or usable_cores()
    notes = []
    for key in LOADERS:
        loader = cfg.get(key)
        if not loader:
            continue
        workers = loader.get('num_workers', 0)
        if workers > cores:
            notes.append(
                f'{key}.num_workers lowered from {workers} to {cores}, the CPU cores this '
                'process may use.'
            )
            loader['num_workers'] = workers = cores
        if workers == 0 and loader.get('persistent_workers'):
            loader['persistent_workers'] = False
            notes.append(f'{key}: num_workers=0, so persistent_workers=False.')
    return notes
