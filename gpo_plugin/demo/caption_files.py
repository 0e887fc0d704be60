"""The demo sets' words as package data (``gpo_plugin/demo/captions/``), read with
``importlib.resources`` so a wheel install has them as well as a checkout."""

from __future__ import annotations

import json
from importlib import resources


def _read(name: str) -> str:
    return resources.files(__package__).joinpath('captions', name).read_text(encoding='utf-8')


def read_words(name: str) -> tuple[str, ...]:
    """One word (or phrase) a line, in file order."""
    return tuple(line for line in _read(name).splitlines() if line)


def read_templates(name: str) -> dict[int, tuple[str, ...]]:
    """``{"count": [template, ...]}`` -> ``{count: (template, ...)}``: caption templates by how
    many names they take (``{0}``, ``{1}``, ...)."""
    return {int(count): tuple(texts) for count, texts in json.loads(_read(name)).items()}


def read_captions(name: str) -> dict[str, tuple[str, ...]]:
    """``{file name: [caption, ...]}`` in file order."""
    return {key: tuple(texts) for key, texts in json.loads(_read(name)).items()}
