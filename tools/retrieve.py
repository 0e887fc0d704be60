"""Retrieve with a trained VSE model: a caption query against a folder of images, both ways.

Prints the top-k images for the query (text-to-image) and, for the best image, its top-k
captions from ``--captions`` (image-to-text). With ``--out`` it writes a picture of the
query and its top-k images with their scores (``.png``, or ``.html`` for a small page).

Usage:
    python tools/retrieve.py CONFIG CKPT --images DIR --captions FILE --query "a cat"
        [--topk 5] [--out result.png] [--device cpu]
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
    parser.add_argument('--images', required=True, help='folder of images (the gallery)')
    parser.add_argument('--captions', required=True, help='text file, one caption a line')
    parser.add_argument('--query', required=True, help='the caption to search images for')
    parser.add_argument('--topk', type=int, default=5)
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

    paths, captions = list_images(args.images), read_captions(args.captions)
    inferencer = VSEInferencer(args.config, args.checkpoint, device=args.device)
    gallery = inferencer.encode_images(paths)
    t2i = inferencer.retrieve(args.query, gallery, topk=args.topk)[0]
    hits = [(paths[i], score) for i, score in t2i]
    print(f'text-to-image, query "{args.query}":')
    for rank, (path, score) in enumerate(hits, 1):
        print(f'  {rank}. {score:.3f}  {path}')
    best = gallery[t2i[0][0]].unsqueeze(0)
    i2t = inferencer.retrieve(best, inferencer.encode_texts(captions), topk=args.topk)[0]
    top_captions = [(captions[i], score) for i, score in i2t]
    print(f'image-to-text, best image {hits[0][0].name}:')
    for rank, (caption, score) in enumerate(top_captions, 1):
        print(f'  {rank}. {score:.3f}  {caption}')
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == '.html':
            write_html(out, args.query, hits, top_captions)
        else:
            write_png(out, args.query, hits)
        print(f'wrote {out}')


if __name__ == '__main__':
    main()
