"""Use a trained VSE model: embed images and captions, retrieve one with the other."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import init_default_scope
from mmengine.runner.checkpoint import load_state_dict
from mmengine.utils import ProgressBar
from torch import Tensor

from gpo_plugin.apis.retrieval_index import EmbeddingIndex, chunked_topk
from gpo_plugin.datasets.vse_collate import vse_collate
from gpo_plugin.registry import MODELS
from gpo_plugin.utils.checkpoints import safe_torch_load
from gpo_plugin.utils.config_setup import set_vocab_file

# Transforms of a test pipeline that act on captions only (left out for images), and the
# ones a caption goes through (the test pipeline's, in its order).
_TEXT_TRANSFORMS = {'TokenizeCaption', 'RandomWordAugment', 'PackVSEInputs'}
_CAPTION_STEPS = {'TokenizeCaption', 'PackVSEInputs'}

ImagesLike = Tensor | np.ndarray | Sequence[str | os.PathLike | np.ndarray] | str | os.PathLike
TextsLike = Tensor | Sequence[str] | str


class VSEInferencer:
    """Embed images and captions with a trained :class:`VSERetriever`, and rank them.

    In the style of mmpretrain's inferencers: built from a config and a checkpoint,
    it runs the model in eval mode and takes inputs as users have them.

    Args:
        config: config file or ``Config`` of the model (the one it was trained with).
        checkpoint: mmengine checkpoint (``state_dict`` inside) or a plain state dict,
            loaded with ``torch.load(weights_only=True)``; None keeps the initial
            weights (pretrained parts only).
        device: e.g. ``'cpu'``, ``'cuda:0'``. Defaults to CUDA when available.
        batch_size: items per forward pass. Defaults to 128.
        show_progress: draw mmengine's progress bar (items/s) for more than one batch.
        vocab: vocabulary JSON of a BiGRU model (``--vocab`` of the tools); defaults to
            the config's top-level ``vocab_file``, which then applies everywhere.

    Example::

        inferencer = VSEInferencer('configs/vse_gpo_demo_grid.py', 'epoch_3.pth')
        img = inferencer.encode_images(['a.jpg', 'b.jpg'])           # (2, E) unit vectors
        hits = inferencer.retrieve('a cat on a sofa', img, topk=1)  # [[(index, score)]]
        index = inferencer.build_index(regions, 'image')  # (N, 36, D) sets, faiss if there
        index.save('gallery'); EmbeddingIndex.load('gallery').search(query_emb, k=5)
    """

    def __init__(
        self,
        config: str | os.PathLike | Config,
        checkpoint: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        batch_size: int = 128,
        show_progress: bool = True,
        vocab: str | os.PathLike | None = None,
    ) -> None:
        cfg = config if isinstance(config, Config) else Config.fromfile(str(config))
        # The vocabulary as the tools find it: --vocab, else the config's top-level one.
        set_vocab_file(cfg, None if vocab is None else str(vocab))
        init_default_scope(cfg.get('default_scope', 'gpo_plugin'))
        self.cfg = cfg
        self.device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
        self.batch_size = batch_size
        self.show_progress = show_progress
        self.model = MODELS.build(cfg.model)
        if checkpoint is None:
            self.model.init_weights()
        else:
            self.load_checkpoint(checkpoint)
        self.model.to(self.device).eval()
        self._image_pipeline = None
        self._text_pipeline = None

    # -- setup -------------------------------------------------------------------------------
    def load_checkpoint(self, checkpoint: str | os.PathLike) -> None:
        """Load weights with safe unpickling; a mismatch of keys is an error."""
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f'VSEInferencer: checkpoint {path} not found.')
        ckpt = safe_torch_load(path, map_location='cpu')  # names and describes a refused file
        state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
        if not isinstance(state, dict):
            raise ValueError(
                f'VSEInferencer: {path} holds no state dict (a dict with "state_dict", or a '
                'plain name -> tensor dict).'
            )
        state = {k.removeprefix('module.'): v for k, v in state.items()}
        load_state_dict(self.model, state, strict=True)

    def _test_dataset_cfg(self) -> dict:
        loader = self.cfg.get('test_dataloader') or self.cfg.get('val_dataloader')
        if not loader or 'dataset' not in loader:
            raise ValueError(
                'VSEInferencer: the config has no test_dataloader.dataset to take the '
                'caption and image pipelines from.'
            )
        return loader['dataset']

    @property
    def tokenizer(self):
        """The tokenizer of the test pipeline's ``TokenizeCaption``."""
        return self.text_pipeline.transforms[0].tokenizer

    @property
    def image_pipeline(self) -> Compose:
        if self._image_pipeline is None:
            steps = [
                t
                for t in self._test_dataset_cfg().get('pipeline', [])
                if t['type'] not in _TEXT_TRANSFORMS
            ]
            if not any('Load' in t['type'] for t in steps):
                raise ValueError(
                    "VSEInferencer: the config's test pipeline loads no image files (a "
                    'precomputed-feature model?); pass region sets: an (N, R, D) array such as '
                    "np.load('testall_ims.npy', mmap_mode='r'), or a list of (R_i, D) arrays "
                    '(tools/retrieve.py --ims FILE.npy).'
                )
            self._image_pipeline = Compose([*steps, dict(type='PackVSEInputs')])
        return self._image_pipeline

    @property
    def text_pipeline(self) -> Compose:
        """The caption steps of the test pipeline: ``TokenizeCaption`` ... ``PackVSEInputs``."""
        if self._text_pipeline is None:
            steps = [
                t
                for t in self._test_dataset_cfg().get('pipeline', [])
                if t['type'] in _CAPTION_STEPS
            ]
            if not steps or steps[0]['type'] != 'TokenizeCaption':
                raise ValueError(
                    "VSEInferencer: the config's test pipeline does not start the caption side "
                    "with dict(type='TokenizeCaption', tokenizer=...); add it to "
                    'test_dataloader.dataset.pipeline.'
                )
            if steps[-1]['type'] != 'PackVSEInputs':
                steps.append(dict(type='PackVSEInputs'))
            self._text_pipeline = Compose(steps)
        return self._text_pipeline

    @property
    def region_pipeline(self) -> Compose:
        """The test pipeline's image-side steps for region sets (no file loading)."""
        steps = [
            t
            for t in self._test_dataset_cfg().get('pipeline', [])
            if t['type'] not in _TEXT_TRANSFORMS and 'Load' not in t['type']
        ]
        return Compose([*steps, dict(type='PackVSEInputs')])

    # -- encoding ----------------------------------------------------------------------------
    @torch.inference_mode()
    def encode_images(
        self, images: ImagesLike, lengths: Tensor | Sequence[int] | None = None
    ) -> Tensor:
        """Unit-norm image embeddings (N, E) on the CPU.

        Args:
            images: region sets of a precomputed-feature model, as an (N, R, D) tensor or
                array (a memory-mapped ``{split}_ims.npy`` works: read batch by batch) or a
                list of (R_i, D) arrays (sets of different sizes); a batch of images
                (N, 3, H, W) in the loader's value range and channel order (normalised by
                the model's preprocessor); or image file paths (read with the config's
                test pipeline).
            lengths: (N,) set sizes for an (N, R, D) batch; None means all R are valid.
        """
        if isinstance(images, str | os.PathLike):
            images = [images]
        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = _LazyTensor(images)
        if isinstance(images, Tensor | _LazyTensor):
            if images.dim() == 3:
                if lengths is None:
                    lengths = torch.full((len(images),), images.shape[1], dtype=torch.long)
                lengths = torch.as_tensor(lengths, dtype=torch.long)
                return self._batched(
                    len(images), lambda s: self._embed_images(images[s], lengths[s])
                )
            if images.dim() == 4:
                return self._batched(len(images), lambda s: self._embed_images(images[s], None))
            raise ValueError(
                'VSEInferencer.encode_images: a tensor must be region sets (N, R, D) or '
                f'images (N, 3, H, W), got {tuple(images.shape)}.'
            )
        images = list(images)
        if images and all(isinstance(x, np.ndarray | Tensor) for x in images):
            pipeline = self.region_pipeline  # variable-size region sets

            def run_sets(s: slice) -> Tensor:
                batch = vse_collate(
                    [pipeline(dict(img=np.asarray(x, np.float32))) for x in images[s]]
                )
                return self._embed_images(batch['inputs']['img'], batch['inputs']['img_lengths'])

            return self._batched(len(images), run_sets)
        paths = [str(p) for p in images]

        def run(s: slice) -> Tensor:
            batch = vse_collate([self.image_pipeline(dict(img_path=p)) for p in paths[s]])
            return self._embed_images(batch['inputs']['img'], batch['inputs'].get('img_lengths'))

        return self._batched(len(paths), run)

    @torch.inference_mode()
    def encode_texts(
        self, texts: TextsLike, lengths: Tensor | Sequence[int] | None = None
    ) -> Tensor:
        """Unit-norm caption embeddings (N, E) on the CPU.

        Args:
            texts: captions (strings: through the caption steps of the config's test
                pipeline, ``TokenizeCaption`` to ``PackVSEInputs``, and ``vse_collate``, as
                in evaluation), or token ids (N, T) with ``lengths``.
            lengths: (N,) token counts for token ids; None means all T are valid.
        """
        if isinstance(texts, str):
            texts = [texts]
        if isinstance(texts, Tensor):
            if texts.dim() != 2 or texts.is_floating_point():
                raise ValueError(
                    'VSEInferencer.encode_texts: token ids must be an integer (N, T) tensor, '
                    f'got {texts.dtype} {tuple(texts.shape)}.'
                )
            if lengths is None:
                lengths = torch.full((len(texts),), texts.shape[1], dtype=torch.long)
            lengths = torch.as_tensor(lengths, dtype=torch.long)
            return self._batched(len(texts), lambda s: self._embed_texts(texts[s], lengths[s]))
        texts = list(texts)
        if not all(isinstance(t, str) for t in texts):
            raise TypeError('VSEInferencer.encode_texts: captions must be strings.')
        # Captions in order of length, so each batch pads to similar lengths.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        pipeline = self.text_pipeline

        def run(s: slice) -> Tensor:
            batch = vse_collate([pipeline(dict(caption=texts[i])) for i in order[s]])['inputs']
            return self._embed_texts(batch['txt'], batch['txt_lengths'])

        out = self._batched(len(texts), run)
        return out[torch.argsort(torch.tensor(order))]

    def _embed_images(self, img: Tensor, lengths: Tensor | None) -> Tensor:
        data = self.model.data_preprocessor(dict(inputs=dict(img=img)), False)['inputs']
        lengths = None if lengths is None else lengths.to(self.device)
        pooled = self.model.encode_image(data['img'], lengths)
        return self.model.head.embed_image(pooled).float().cpu()

    def _embed_texts(self, ids: Tensor, lengths: Tensor) -> Tensor:
        width = int(lengths.max())  # drop all-padding columns of this batch
        pooled = self.model.encode_text(ids[:, :width].to(self.device), lengths.to(self.device))
        return self.model.head.embed_text(pooled).float().cpu()

    def _batched(self, total: int, embed) -> Tensor:
        if total == 0:
            raise ValueError('VSEInferencer: nothing to encode (empty input).')
        bar = (
            ProgressBar(total, file=sys.stdout)
            if self.show_progress and total > self.batch_size
            else None
        )
        out = []
        for start in range(0, total, self.batch_size):
            s = slice(start, min(start + self.batch_size, total))
            out.append(embed(s))
            if bar is not None:
                bar.update(s.stop - s.start)
        if bar is not None:
            bar.file.write('\n')
        return torch.cat(out)

    # -- retrieval ---------------------------------------------------------------------------
    def embed(self, items, modality: str | None = None) -> Tensor:
        """Embeddings of anything :meth:`retrieve` takes.

        Args:
            items: (N, E) float embeddings (passed through), or inputs of
                :meth:`encode_images` / :meth:`encode_texts`.
            modality: ``'image'`` or ``'text'``: which encoder. None infers it only where
                the input says: float (N, E) embeddings, (N, R, D) / (N, 3, H, W) images,
                integer (N, T) token ids, ``pathlib.Path`` objects (images) and strings
                (captions; an image file name given as a string is a caption unless
                ``modality='image'``).
        """
        if modality not in (None, 'image', 'text'):
            raise ValueError(
                f"VSEInferencer: modality must be 'image' or 'text', not {modality!r}."
            )
        if modality == 'image':
            return self.encode_images(items)
        if modality == 'text':
            return self.encode_texts(items)
        if isinstance(items, np.ndarray):
            items = torch.from_numpy(items) if items.ndim == 2 else items
        if isinstance(items, str | os.PathLike):
            items = [items]
        if isinstance(items, Tensor):
            if items.dim() == 2 and items.is_floating_point():
                return items.float().cpu()
            if items.dim() == 2:
                return self.encode_texts(items)
            return self.encode_images(items)
        if isinstance(items, np.ndarray):
            return self.encode_images(items)
        items = list(items)
        if items and all(isinstance(x, os.PathLike) for x in items):
            return self.encode_images(items)
        if items and all(isinstance(x, str) for x in items):
            return self.encode_texts(items)
        return self.encode_images(items)

    def build_index(
        self,
        gallery,
        modality: str | None = None,
        ids: Sequence[str] | None = None,
        backend: str = 'auto',
    ) -> EmbeddingIndex:
        """Embed ``gallery`` batch by batch into an :class:`EmbeddingIndex` (faiss when
        installed); save it with ``index.save(path)``, reopen with ``EmbeddingIndex.load``."""
        index: EmbeddingIndex | None = None
        total = len(gallery)
        step = max(self.batch_size * 64, 1)
        for start in range(0, total, step):
            part = gallery[start : start + step]
            emb = self.embed(part, modality)
            if index is None:
                index = EmbeddingIndex(emb.shape[1], backend, ids)
            index.add(emb)
        if index is None:
            raise ValueError('VSEInferencer.build_index: the gallery is empty.')
        return index

    def retrieve(
        self,
        query,
        gallery,
        topk: int = 5,
        query_modality: str | None = None,
        gallery_modality: str | None = None,
        tie_rule: str = 'published',
        chunk_size: int = 65536,
    ) -> list[list[tuple[int, float]]]:
        """The ``topk`` gallery items (index, cosine score) for each query, best first.

        ``query`` and ``gallery`` are anything :meth:`embed` takes: captions to rank
        images (text-to-image), images to rank captions (image-to-text), embeddings
        computed before, or (gallery) an :class:`EmbeddingIndex`. The top-k is exact, in
        the order of the evaluation: the published float64 scores, equal ones ordered by
        ``tie_rule`` (``'published'``: ``np.argsort`` of the full row, see
        :func:`~gpo_plugin.evaluation.functional.topk_by_rule`); an embedding gallery is
        scanned ``chunk_size`` rows at a time with a progress bar, so memory stays bounded
        for galleries of millions.
        """
        q = self.embed(query, query_modality)
        if isinstance(gallery, EmbeddingIndex):
            scores, indices = gallery.search(
                q, topk, tie_rule, chunk_size, show_progress=self.show_progress
            )
        else:
            g = self.embed(gallery, gallery_modality)
            if q.shape[-1] != g.shape[-1]:
                raise ValueError(
                    f'VSEInferencer.retrieve: query embeddings are {q.shape[-1]}-d, gallery '
                    f'{g.shape[-1]}-d.'
                )
            scores, indices = chunked_topk(
                q, g, topk, tie_rule, chunk_size, show_progress=self.show_progress
            )
        return [
            [(int(i), float(v)) for i, v in zip(row_i, row_v, strict=True)]
            for row_i, row_v in zip(indices, scores, strict=True)
        ]


class _LazyTensor:
    """An (N, R, D) array (e.g. memory-mapped) read as float32 tensors slice by slice."""

    def __init__(self, array: np.ndarray) -> None:
        self.array, self.shape = array, array.shape

    def __len__(self) -> int:
        return len(self.array)

    def dim(self) -> int:
        return self.array.ndim

    def __getitem__(self, s: slice) -> Tensor:
        return torch.from_numpy(np.array(self.array[s], dtype=np.float32))  # a writable copy
