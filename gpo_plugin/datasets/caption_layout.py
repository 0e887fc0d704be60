"""The caption/id layout of the VSE datasets (docs/vse.md#data), read and checked once.

``{split}_caps.txt`` holds one caption a line, k consecutive lines per image;
``{split}_ids.txt`` one integer image id a line, for each image or for each caption (the
id then repeats on the k lines of its image). The precomputed-feature and the raw-image
datasets both read it through :func:`read_caption_layout`; every problem is a
:class:`CaptionLayoutError` naming the file (and the line where there is one).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from gpo_plugin.utils.vocab import split_words

# Words kept of a caption by default (cap_caption_words); COCO and Flickr30K captions have
# about 10.
DEFAULT_MAX_WORDS = 100


class CaptionLayoutError(ValueError):
    """A caption or id file that does not fit the layout; the message names file and line."""


@dataclass
class CaptionLayout:
    """What the two files say.

    Attributes:
        captions: every caption of the split, image after image (N * k strings).
        captions_per_image: k.
        image_ids: one id per image (N strings); ``'0'..'N-1'`` without an ids file.
    """

    captions: list[str]
    captions_per_image: int
    image_ids: list[str]

    @property
    def num_images(self) -> int:
        return len(self.image_ids)


def read_caption_layout(
    caps_path: Path,
    ids_path: Path,
    num_images: int | None = None,
    expected_k: int | None = None,
    owner: str = 'caption layout',
) -> CaptionLayout:
    """Read and check a split's captions and ids.

    Args:
        caps_path: ``{split}_caps.txt``.
        ids_path: ``{split}_ids.txt``; optional when ``num_images`` is known.
        num_images: N when another file gives it (the rows of ``{split}_ims.npy``); None
            takes it from the ids file (per image, or per caption when it has as many
            lines as captions and ``expected_k`` > 1).
        expected_k: captions per image the config expects; None takes k from the files.
        owner: the dataset class, first word of every message.
    """
    captions = read_captions(caps_path, owner)
    numbered = _read_numbered(ids_path) if ids_path.is_file() else None
    if num_images is None:
        if numbered is None:
            raise FileNotFoundError(
                f'{owner}: {ids_path} not found; it gives the image of every k consecutive '
                'captions (one integer id a line, per image or per caption).'
            )
        num_images = len(numbered)
        if len(numbered) == len(captions) and expected_k and expected_k > 1:
            num_images = len(numbered) // expected_k  # one id per caption
    if num_images == 0 or not captions or len(captions) % num_images:
        raise CaptionLayoutError(
            f'{owner}: {caps_path} has {len(captions)} captions for {num_images} images; '
            f'expected a positive multiple of {num_images} (k consecutive captions per image).'
        )
    k = len(captions) // num_images
    if expected_k is not None and k != expected_k:
        raise CaptionLayoutError(
            f'{owner}: {caps_path} has {k} captions per image, the config expects '
            f'captions_per_image={expected_k}.'
        )
    if numbered is None:
        ids = [str(i) for i in range(num_images)]
    else:
        ids = _image_ids(numbered, ids_path, num_images, k, owner)
    return CaptionLayout(captions, k, ids)


def read_lines(path: Path) -> list[str]:
    """Stripped lines of a UTF-8 text file; a byte that is not UTF-8 names file and line."""
    lines = []
    with open(path, 'rb') as f:
        for n, raw in enumerate(f, 1):
            try:
                lines.append(raw.decode('utf-8').strip())
            except UnicodeDecodeError as error:
                raise CaptionLayoutError(
                    f'{path}:{n}: not UTF-8 ({error.reason} at byte {error.start} of the line: '
                    f'{raw[max(0, error.start - 10) : error.start + 10]!r}); re-encode the file '
                    'as UTF-8, e.g. `iconv -f latin1 -t utf-8`.'
                ) from None
    return lines


def read_captions(path: Path, owner: str = 'caption layout') -> list[str]:
    """Captions of a ``{split}_caps.txt``, one a line; empty captions name file and line."""
    captions = read_lines(path)
    while captions and not captions[-1]:  # a trailing blank line is not a caption
        captions.pop()
    for n, caption in enumerate(captions, 1):
        if not caption:
            raise CaptionLayoutError(
                f'{owner}: {path}:{n}: empty (or whitespace-only) caption; every line must '
                'hold a caption, k consecutive lines per image.'
            )
    return captions


def _read_numbered(path: Path) -> list[tuple[int, str]]:
    return [(n, line) for n, line in enumerate(read_lines(path), 1) if line]


def _image_ids(
    numbered: list[tuple[int, str]], path: Path, num_images: int, k: int, owner: str
) -> list[str]:
    """One id per image from per-image or per-caption lines; repeats, duplicates and
    non-integers name file and line."""
    if len(numbered) == num_images * k and k > 1:
        for i, (n, image_id) in enumerate(numbered):
            first_n, first = numbered[i // k * k]
            if image_id != first:
                raise CaptionLayoutError(
                    f'{owner}: {path}:{n}: id {image_id!r} differs from {first!r} on line '
                    f'{first_n}; per-caption ids must repeat the id of their image on all '
                    f'k = {k} consecutive lines.'
                )
        numbered = numbered[::k]
    if len(numbered) != num_images:
        raise CaptionLayoutError(
            f'{owner}: {path} has {len(numbered)} ids; expected one per image ({num_images}) '
            f'or per caption ({num_images * k}).'
        )
    seen: dict[str, int] = {}
    for n, image_id in numbered:
        if not _is_integer(image_id):
            raise CaptionLayoutError(
                f'{owner}: {path}:{n}: id {image_id!r} is not an integer; the file holds one '
                'integer image id a line (e.g. COCO ids). Fix that line or remove the file '
                '(ids then default to 0..N-1).'
            )
        if image_id in seen:
            raise CaptionLayoutError(
                f'{owner}: {path}:{n}: image id {image_id!r} already given on line '
                f'{seen[image_id]}; every image needs its own id.'
            )
        seen[image_id] = n
    return [image_id for _, image_id in numbered]


def _is_integer(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def cap_caption_words(captions: list[str], max_words: int | None, path: Path) -> list[str]:
    """``captions`` with each cut to its first ``max_words`` words; one warning names how
    many were cut and the longest."""
    if max_words is None:
        return captions
    if max_words < 1:
        raise ValueError(f'PrecompCaptionDataset: max_words must be >= 1 or None, got {max_words}.')
    long = [(n, words) for n, c in enumerate(captions) if len(words := split_words(c)) > max_words]
    if not long:
        return captions
    captions = list(captions)
    for n, words in long:
        captions[n] = ' '.join(words[:max_words])
    longest, words = max(long, key=lambda item: len(item[1]))
    warnings.warn(
        f'PrecompCaptionDataset: {path}: {len(long)} caption(s) longer than max_words='
        f'{max_words} were cut to {max_words} words (the longest, caption {longest} on line '
        f'{longest + 1}, has {len(words)}); raise `max_words` in the dataset config to keep more.',
        stacklevel=2,
    )
    return captions
