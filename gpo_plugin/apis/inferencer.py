"""Use a trained VSE model: embed images and captions, retrieve one with the other."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import init_default_scope
from mmengine.runner.checkpoint import load_state_dict
from mmengine.utils import ProgressBar
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from gpo_plugin.datasets.text_tokenizers import build_caption_tokenizer
from gpo_plugin.datasets.vse_collate import vse_collate
from gpo_plugin.evaluation.functional.retrieval_ranks import topk_by_rule
from gpo_plugin.registry import MODELS

# Transforms of a test pipeline that act on captions only (left out for images).
_TEXT_TRANSFORMS = {'RandomWordAugment', 'PackVSEInputs'}

ImagesLike = Tensor | Sequence[str | os.PathLike] | str | os.PathLike
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
        batch_size: items per forward pass. Defaults to 32.
        show_progress: draw mmengine's progress bar (items/s) for more than one batch.

    Example::

        inferencer = VSEInferencer('configs/vse_gpo_demo_grid.py', 'epoch_3.pth')
        img = inferencer.encode_images(['a.jpg', 'b.jpg'])           # (2, E) unit vectors
        hits = inferencer.retrieve('a cat on a sofa', img, topk=1)  # [[(index, score)]]
    """

    def __init__(
        self,
        config: str | os.PathLike | Config,
        checkpoint: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        batch_size: int = 32,
        show_progress: bool = True,
    ) -> None:
        cfg = config if isinstance(config, Config) else Config.fromfile(str(config))
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
        self._tokenizer = None
        self._image_pipeline = None

    # -- setup -------------------------------------------------------------------------------
    def load_checkpoint(self, checkpoint: str | os.PathLike) -> None:
        """Load weights with safe unpickling; a mismatch of keys is an error."""
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f'VSEInferencer: checkpoint {path} not found.')
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
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
                'tokenizer and image pipeline from.'
            )
        return loader['dataset']

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = build_caption_tokenizer(self._test_dataset_cfg()['tokenizer'])
        return self._tokenizer

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
                    'precomputed-feature model?); pass region sets (B, N, D) with lengths.'
                )
            self._image_pipeline = Compose([*steps, dict(type='PackVSEInputs')])
        return self._image_pipeline

    # -- encoding ----------------------------------------------------------------------------
    @torch.no_grad()
    def encode_images(
        self, images: ImagesLike, lengths: Tensor | Sequence[int] | None = None
    ) -> Tensor:
        """Unit-norm image embeddings (N, E) on the CPU.

        Args:
            images: region sets (N, R, D) (precomputed-feature models), a batch of
                images (N, 3, H, W) in the loader's value range and channel order
                (normalised by the model's preprocessor), or image file paths (read
                with the config's test pipeline).
            lengths: (N,) set sizes for region sets; None means all R are valid.
        """
        if isinstance(images, str | os.PathLike):
            images = [images]
        if isinstance(images, Tensor):
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
        paths = [str(p) for p in images]

        def run(s: slice) -> Tensor:
            batch = vse_collate([self.image_pipeline(dict(img_path=p)) for p in paths[s]])
            return self._embed_images(batch['inputs']['img'], batch['inputs'].get('img_lengths'))

        return self._batched(len(paths), run)

    @torch.no_grad()
    def encode_texts(
        self, texts: TextsLike, lengths: Tensor | Sequence[int] | None = None
    ) -> Tensor:
        """Unit-norm caption embeddings (N, E) on the CPU.

        Args:
            texts: captions (strings, tokenised with the tokenizer of the config's test
                dataset, vocabulary or HF), or token ids (N, T) with ``lengths``.
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
            ids, lengths = texts, torch.as_tensor(lengths, dtype=torch.long)
        else:
            encoded = [torch.tensor(self.tokenizer.encode(t)[0], dtype=torch.long) for t in texts]
            ids = pad_sequence(encoded, batch_first=True, padding_value=0)
            lengths = torch.tensor([len(e) for e in encoded], dtype=torch.long)
        return self._batched(len(ids), lambda s: self._embed_texts(ids[s], lengths[s]))

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
    def embed(self, items) -> Tensor:
        """Embeddings of anything :meth:`retrieve` takes: (N, E) float embeddings pass
        through; other tensors and lists of paths go to :meth:`encode_images`, token ids
        and strings that are not existing files to :meth:`encode_texts`."""
        if isinstance(items, str | os.PathLike):
            items = [items]
        if isinstance(items, Tensor):
            if items.dim() == 2 and items.is_floating_point():
                return items.float().cpu()
            if items.dim() == 2:
                return self.encode_texts(items)
            return self.encode_images(items)
        items = list(items)
        if items and all(isinstance(x, os.PathLike) or os.path.isfile(str(x)) for x in items):
            return self.encode_images(items)
        return self.encode_texts([str(x) for x in items])

    def retrieve(self, query, gallery, topk: int = 5) -> list[list[tuple[int, float]]]:
        """The ``topk`` gallery items (index, cosine score) for each query, best first.

        ``query`` and ``gallery`` are anything :meth:`embed` takes: captions to rank
        images (text-to-image), image paths to rank captions (image-to-text), or
        embeddings computed before (e.g. a gallery encoded once).
        """
        q, g = self.embed(query), self.embed(gallery)
        if q.shape[-1] != g.shape[-1]:
            raise ValueError(
                f'VSEInferencer.retrieve: query embeddings are {q.shape[-1]}-d, gallery '
                f'{g.shape[-1]}-d.'
            )
        # Equal scores in the order of the published evaluation's argsort (tie_rule).
        scores, indices = topk_by_rule(q @ g.t(), topk)
        return [
            [(int(i), float(v)) for i, v in zip(row_i, row_v, strict=True)]
            for row_i, row_v in zip(indices, scores, strict=True)
        ]
