"""Retrieve with a trained VSE model, both ways: captions -> images and images -> captions.

The gallery of images is a folder of image files (``--images DIR``, models on raw images)
or precomputed region features (``--ims FILE.npy``: the published ``{split}_ims.npy``,
(N, R, D) region sets, e.g. (N, 36, 2048) BUTD features, read batch by batch), with
``--ids`` (the published ``{split}_ids.txt``: one id per image, or per caption) to name
the images. Captions come from ``--captions FILE`` (one a line, e.g. ``{split}_caps.txt``).

Text-to-image: the query is ``--query TEXT`` or caption number ``--query-caption N`` of the
file; image-to-text: image ``--query-image N``, or the best image of the text query. With
``--ids`` the captions of image i are taken to be lines k*i .. k*i+k-1 (k = captions per
image, the published layout) and ground-truth hits are marked with ``*``.

With ``--out`` (image files only) it writes a picture of the query and its top-k images
with their scores (``.png``, or ``.html`` for a small page).

Usage:
    python tools/retrieve.py CONFIG CKPT --images DIR --captions FILE --query "a cat"
    python tools/retrieve.py CONFIG CKPT --ims data/coco/precomp/testall_ims.npy \
        --ids data/coco/precomp/testall_ids.txt --captions data/coco/precomp/testall_caps.txt \
        --query-caption 10 [--query-image 3] [--topk 5] [--vocab FILE] [--device cpu]
"""

from __future__ import annotations

import argparse
import base64
import html
import os
from pathlib import Path

os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('HF_HUB_OFFLINE', '1')

IMAGE_SUFFIXES = {'.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff'}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Text-to-image and image-to-text retrieval.')
    parser.add_argument('config', help='config the model was trained with')
    parser.add_argument('checkpoint', help='checkpoint (.pth)')
    gallery = parser.add_mutually_exclusive_group(required=True)
    gallery.add_argument('--images', help='folder of image files (the gallery)')
    gallery.add_argument('--ims', help='region features (N, R, D) .npy (the gallery)')
    parser.add_argument('--ids', help='image ids, one a line ({split}_ids.txt), with --ims')
    parser.add_argument('--captions', required=True, help='text file, one caption a line')
    query = parser.add_mutually_exclusive_group()
    query.add_argument('--query', help='the caption to search images for')
    query.add_argument('--query-caption', type=int, help='search with caption N of --captions')
    parser.add_argument(
        '--query-image', type=int, help='image N to search captions for (default: the best hit)'
    )
    parser.add_argument('--topk', type=int, default=5)
    parser.add_argument('--vocab', help='vocabulary JSON (BiGRU models), as in train.py')
    parser.add_argument('--out', help='write the query and top-k images (.png or .html)')
    parser.add_argument('--device', default=None, help="e.g. 'cpu' or 'cuda:0'")
    return parser.parse_args(argv)


def list_images(folder: str) -> list[Path]:
    paths = sorted(p for p in Path(folder).rglob('*') if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise SystemExit(
            f'retrieve.py: no images ({", ".join(sorted(IMAGE_SUFFIXES))}) in {folder}.'
        )
    return paths


def read_ims(path: str):
    """The (N, R, D) region sets of a ``{split}_ims.npy``, memory-mapped."""
    import numpy as np

    if not Path(path).is_file():
        raise SystemExit(f'retrieve.py: --ims {path} not found.')
    try:
        ims = np.load(path, mmap_mode='r', allow_pickle=False)
    except ValueError as err:
        raise SystemExit(f'retrieve.py: --ims {path} is not a .npy array ({err}).') from None
    if ims.ndim != 3:
        raise SystemExit(
            f'retrieve.py: --ims {path} has shape {ims.shape}; expected region sets (N, R, D).'
        )
    return ims


def read_ids(path: str, num_images: int) -> list[str]:
    """One id per image; a per-caption file (each id on k consecutive lines) is reduced."""
    lines = [line.strip() for line in Path(path).read_text(encoding='utf-8').splitlines()]
    lines = [line for line in lines if line]
    if len(lines) != num_images and len(lines) % num_images == 0:
        lines = lines[:: len(lines) // num_images]
    if len(lines) != num_images:
        raise SystemExit(
            f'retrieve.py: --ids {path} has {len(lines)} ids for {num_images} images; give '
            'one per image or one per caption.'
        )
    return lines


def read_captions(path: str) -> list[str]:
    with open(path, encoding='utf-8') as f:
        captions = [line.strip() for line in f if line.strip()]
    if not captions:
        raise SystemExit(f'retrieve.py: {path} holds no captions (one a line).')
    return captions


def write_png(out: Path, query: str, hits: list[tuple[Path, float]]) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.image as mpimg
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(1, len(hits), figsize=(3 * len(hits), 3.4), squeeze=False)
    for ax, (path, score) in zip(axes[0], hits, strict=True):
        ax.imshow(mpimg.imread(str(path)), cmap='gray')
        ax.set_title(f'{path.name}\n{score:.3f}', fontsize=8)
        ax.axis('off')
    fig.suptitle(f'query: "{query}"', fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def write_html(
    out: Path, query: str, hits: list[tuple[Path, float]], captions: list[tuple[str, float]]
) -> None:
    cells = []
    for path, score in hits:
        data = base64.b64encode(path.read_bytes()).decode()
        mime = 'jpeg' if path.suffix.lower() in {'.jpg', '.jpeg'} else path.suffix.lower()[1:]
        cells.append(
            f'<figure><img src="data:image/{mime};base64,{data}" height="200">'
            f'<figcaption>{html.escape(path.name)}<br>{score:.3f}</figcaption></figure>'
        )
    rows = ''.join(f'<li>{score:.3f} {html.escape(c)}</li>' for c, score in captions)
    out.write_text(
        '<!doctype html><meta charset="utf-8"><title>VSE retrieval</title>'
        '<style>figure{display:inline-block;margin:4px;text-align:center}</style>'
        f'<h3>query: {html.escape(query)}</h3>{"".join(cells)}'
        f'<h4>captions of the best image</h4><ol>{rows}</ol>',
        encoding='utf-8',
    )


def main(argv=None) -> None:
    args = parse_args(argv)
    from gpo_plugin.apis import VSEInferencer

    if args.ids and not args.ims:
        raise SystemExit('retrieve.py: --ids names the images of --ims.')
    if args.out and not args.images:
        raise SystemExit('retrieve.py: --out draws image files; use it with --images.')
    captions = read_captions(args.captions)
    if args.query_caption is not None and not 0 <= args.query_caption < len(captions):
        raise SystemExit(f'retrieve.py: --query-caption must be in 0..{len(captions) - 1}.')
    inferencer = VSEInferencer(args.config, args.checkpoint, device=args.device, vocab=args.vocab)
    if args.ims:
        ims = read_ims(args.ims)
        names = read_ids(args.ids, len(ims)) if args.ids else [str(i) for i in range(len(ims))]
        gallery = inferencer.encode_images(ims)
    else:
        paths = list_images(args.images)
        names = [str(p) for p in paths]
        gallery = inferencer.encode_images(paths)
    # Ground truth from the published layout: captions k*i .. k*i+k-1 describe image i.
    k = len(captions) // len(gallery) if args.ids and len(captions) % len(gallery) == 0 else 0
    query = captions[args.query_caption] if args.query_caption is not None else args.query
    hits = []
    if query is not None:
        t2i = inferencer.retrieve(query, gallery, topk=args.topk, query_modality='text')[0]
        truth = args.query_caption // k if k and args.query_caption is not None else None
        print(f'text-to-image, query "{query}":')
        for rank, (i, score) in enumerate(t2i, 1):
            print(f'  {rank}. {score:.3f}  {names[i]}{" *" if i == truth else ""}')
        hits = [(Path(names[i]), score) for i, score in t2i]
    image = args.query_image if args.query_image is not None else (t2i[0][0] if hits else 0)
    if not 0 <= image < len(gallery):
        raise SystemExit(f'retrieve.py: --query-image must be in 0..{len(gallery) - 1}.')
    i2t = inferencer.retrieve(
        gallery[image : image + 1], inferencer.encode_texts(captions), topk=args.topk
    )[0]
    top_captions = [(captions[c], score) for c, score in i2t]
    print(f'image-to-text, image {names[image]}:')
    for rank, (c, score) in enumerate(i2t, 1):
        mark = ' *' if k and c // k == image else ''
        print(f'  {rank}. {score:.3f}  [{c}] {captions[c]}{mark}')
    if args.out and hits:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == '.html':
            write_html(out, query, hits, top_captions)
        else:
            write_png(out, query, hits)
        print(f'wrote {out}')


if __name__ == '__main__':
    main()
