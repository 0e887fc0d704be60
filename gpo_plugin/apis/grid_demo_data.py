"""The bundled grid-feature demo set: scikit-image's sample photographs, captioned, in the
Karpathy JSON layout (docs/vse.md#raw-images-and-grid-features), so the real reader
(``RawImageCaptionDataset``) serves it.

Each photo of ``skimage/data`` gets five captions written for what it shows. Training
images are two fixed crops of each photo (side ratio 0.55-0.8, top-left and top-right,
saved as extra files; the training pipeline crops them again at random); the test images
are the whole photos, which no training image shows completely, and a harder ``val``
split (``dev``) holds a small bottom-centre part of each photo (side ratio 0.45), most of
which no training crop covers. So the demo measures how well a model aligns real pixels
with real captions of the same scenes, not generalisation to unseen scenes (there are only
23 of them). Same seed, same files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# file in skimage/data -> five captions of what the photo shows.
PHOTOS: dict[str, tuple[str, ...]] = {
    'astronaut.png': (
        'a smiling astronaut in a white space suit in front of an american flag',
        'portrait of a woman astronaut holding a helmet',
        'an astronaut with short hair poses beside a flag',
        'a female astronaut in her orange and white suit smiles at the camera',
        'official portrait of an astronaut with a space shuttle model',
    ),
    'brick.png': (
        'a grey brick wall seen straight on',
        'rows of bricks with mortar between them',
        'close up of an old brick wall in black and white',
        'a texture of stacked bricks',
        'a weathered wall built from rectangular bricks',
    ),
    'camera.png': (
        'a man in a coat looks through a camera on a tripod',
        'black and white photo of a cameraman on a lawn',
        'a photographer standing behind his tripod camera',
        'a man filming outdoors with buildings in the background',
        'a person operating a camera in a grassy field',
    ),
    'cell.png': (
        'a single round cell under a microscope on a grey background',
        'a bright round cell on the right of a dark grey image',
        'microscope image of one cell with faint streaks',
        'a small glowing blob in a noisy grey microscopy picture',
        'grey micrograph showing a lone cell',
    ),
    'chelsea.png': (
        'a tabby cat looking to the side',
        'close up of a ginger striped cat',
        'a cat with green eyes sitting indoors',
        'the face of an orange and brown cat',
        'a domestic cat with long whiskers',
    ),
    'chessboard_RGB.png': (
        'a black and white chessboard pattern',
        'a checkerboard of alternating squares',
        'a grid of black and white squares',
        'squares in a checkered pattern',
        'an eight by eight board of light and dark squares',
    ),
    'clock_motion.png': (
        'a blurred clock face in black and white',
        'a round wall clock smeared by motion blur',
        'a grey image of a clock that is out of focus',
        'motion blurred photo of a clock',
        'a blurry round clock on a plain background',
    ),
    'coffee.png': (
        'a cup of coffee on a red saucer with a spoon',
        'an espresso in a white cup on a wooden table',
        'a coffee cup and saucer seen from above',
        'a small cup of coffee with crema and a teaspoon',
        'a red and white coffee cup on a table',
    ),
    'coins.png': (
        'old coins laid out on a dark background',
        'rows of ancient greek coins',
        'black and white photo of many coins',
        'a collection of round metal coins',
        'coins arranged in a grid on a table',
    ),
    'color.png': (
        'a colour wheel on a black background',
        'a disc with all the colours of the rainbow',
        'a circle of hues fading to white in the centre',
        'a round colour spectrum',
        'a rainbow coloured disc',
    ),
    'grass.png': (
        'a close up of grass blades',
        'a texture of long grass in black and white',
        'a patch of dense grass',
        'grey picture of grass leaves',
        'a lawn seen from very close',
    ),
    'gravel.png': (
        'a close up of grey gravel',
        'small stones covering the ground',
        'a texture of pebbles and gravel',
        'black and white photo of gravel',
        'a bed of small rocks',
    ),
    'horse.png': (
        'a black silhouette of a horse on white',
        'the outline of a standing horse',
        'a horse drawn in solid black',
        'a side view silhouette of a horse',
        'a dark shape of a horse against a white background',
    ),
    'hubble_deep_field.jpg': (
        'a field of distant galaxies in deep space',
        'hubble telescope image of many galaxies',
        'stars and galaxies on a black sky',
        'a deep space photo full of tiny galaxies',
        'colourful galaxies scattered across dark space',
    ),
    'ihc.png': (
        'stained tissue under a microscope with brown and blue cells',
        'a histology slide of brown stained glands',
        'microscope image of tissue with brown cell membranes',
        'immunohistochemistry staining of a tissue sample',
        'brown and purple cells in a tissue section',
    ),
    'logo.png': (
        'a green and orange logo with a snake',
        'the scikit image logo',
        'a round logo with a drawn snake on orange and green',
        'a logo split into green and orange halves',
        'an emblem with the outline of a snake',
    ),
    'moon.png': (
        'the surface of the moon with craters',
        'a grey photo of lunar craters',
        'close up of the cratered moon',
        'black and white image of the moon surface',
        'craters and plains on the moon',
    ),
    'motorcycle_left.png': (
        'a motorcycle parked in a room',
        'a red motorbike seen from the side',
        'a motorcycle with a helmet in front of shelves',
        'a parked motorbike indoors',
        'a sports motorcycle standing in a garage',
    ),
    'page.png': (
        'a page of printed text about region based segmentation',
        'a scanned page of a book with a heading',
        'a photo of a printed page with lines of text',
        'text on paper photographed at an angle',
        'a document page with a title and paragraphs',
    ),
    'phantom.png': (
        'a grey oval phantom used to test medical imaging',
        'an oval head phantom with dark ellipses inside',
        'a synthetic brain scan image with a white outline',
        'the shepp logan phantom',
        'a white ellipse containing grey and black shapes',
    ),
    'retina.jpg': (
        'a photo of the back of a human eye',
        'a retina with blood vessels on an orange background',
        'the fundus of an eye with red vessels',
        'an orange retinal image with the optic disc',
        'a medical image of the retina',
    ),
    'rocket.jpg': (
        'a rocket on a launch pad at dusk',
        'a white rocket standing between towers at night',
        'a rocket ready for launch under a blue sky',
        'a launch site with a rocket and lights',
        'a tall rocket on the pad before lift off',
    ),
    'text.png': (
        'handwritten maths on lined paper',
        'equations written by hand in black and white',
        'a close up of handwritten formulas',
        'notes with handwritten symbols at an angle',
        'grey photo of handwriting with integrals',
    ),
}

# Corners of the training crops: (top, left) as fractions of the free margin.
_CROP_PLACES = ((0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0), (0.5, 0.5), (0.5, 0.0))


def _skimage_data_dir() -> Path:
    try:
        import skimage
    except ImportError:
        raise ImportError(
            "The grid demo needs scikit-image's sample photos: pip install 'gpo-plugin[vision]'."
        ) from None
    return Path(skimage.__file__).parent / 'data'


def _read_rgb(path: Path) -> np.ndarray:
    from skimage import io

    image = io.imread(path)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    image = image[..., :3]
    # The demo trains at 224 px: keep files small (the longer side at most 400 px).
    step = int(np.ceil(max(image.shape[:2]) / 400))
    if step > 1:
        from skimage.transform import downscale_local_mean

        image = downscale_local_mean(image, (step, step, 1))
    return np.ascontiguousarray(image).round().astype(np.uint8)


def make_grid_demo_data(root: str | Path, seed: int = 0, crops_per_photo: int = 2) -> Path:
    """Write ``images/`` and ``dataset_demo.json`` (Karpathy format) under ``root``."""
    from skimage import io

    root = Path(root)
    rng = np.random.default_rng(seed)
    source = _skimage_data_dir()
    entries = []
    for sub in ('train', 'test', 'val'):
        (root / 'images' / sub).mkdir(parents=True, exist_ok=True)
    for name, captions in PHOTOS.items():
        stem = Path(name).stem
        image = _read_rgb(source / name)
        sentences = [dict(raw=c) for c in captions]
        io.imsave(root / 'images' / 'test' / f'{stem}.png', image, check_contrast=False)
        entries.append(
            dict(filepath='test', filename=f'{stem}.png', split='test', sentences=sentences)
        )
        h, w = image.shape[:2]
        # The harder view: a bottom-centre part (no draw from rng: the crops stay the same).
        ph, pw = int(h * 0.45), int(w * 0.45)
        part = image[h - ph :, (w - pw) // 2 : (w - pw) // 2 + pw]
        io.imsave(root / 'images' / 'val' / f'{stem}.png', part, check_contrast=False)
        entries.append(
            dict(filepath='val', filename=f'{stem}.png', split='val', sentences=sentences)
        )
        for i in range(crops_per_photo):
            ratio = rng.uniform(0.55, 0.8)
            ch, cw = int(h * ratio), int(w * ratio)
            ty, tx = _CROP_PLACES[i % len(_CROP_PLACES)]
            y0, x0 = int(ty * (h - ch)), int(tx * (w - cw))
            crop = image[y0 : y0 + ch, x0 : x0 + cw]
            filename = f'{stem}_crop{i}.png'
            io.imsave(root / 'images' / 'train' / filename, crop, check_contrast=False)
            entries.append(
                dict(filepath='train', filename=filename, split='train', sentences=sentences)
            )
    with open(root / 'dataset_demo.json', 'w', encoding='utf-8') as f:
        json.dump(dict(images=entries, dataset='skimage_demo'), f, indent=1)
    return root / 'dataset_demo.json'


def ensure_grid_demo_data(root: str | Path = 'data/demo/grid') -> Path:
    """Create the demo set under ``root`` if missing; return the Karpathy JSON path."""
    root = Path(root)
    ann = root / 'dataset_demo.json'
    if not ann.is_file():
        make_grid_demo_data(root)
    return ann
