"""Video–caption pairs over frame features, HGR's release layout or one ``.npy`` per video
(docs/vse.md#video-text-retrieval)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from mmengine.dataset import BaseDataset

from gpo_plugin.registry import DATASETS

from .video_frames import (
    FeatureDimensionError,
    HDF5Frames,
    MissingVideoError,
    NpyFrames,
    select_frames,
)


class EmptyCaptionsError(ValueError):
    """A video of the split has no caption (or an empty one) in the caption file."""


@DATASETS.register_module()
class VideoCaptionDataset(BaseDataset):
    """One sample per (video, caption) pair, with the video's frame set.

    Files under ``data_root`` (HGR's release; every path may also be absolute):

    - ``name_file``: the split's video names, a ``.npy`` string array
      (``public_split/{split}_names.npy``, split ``trn``, ``val`` or ``tst``);
    - ``caption_file``: JSON ``{name: [sentence, ...]}`` (``annotation/RET/ref_captions.json``);
    - frames: ``ft_files`` (HDF5 files keyed by name, concatenated along the feature axis)
      or ``frame_dir`` (one ``<name>.npy`` of shape (T, D) per video).

    ``{split}`` in any path is replaced by ``split``. Videos with more than ``max_frames``
    frames keep ``max_frames`` of them, spread evenly (HGR's ``max_attn_len`` with
    ``trim_type='select'``); shorter videos keep all, so T varies and batches carry
    lengths, as region sets do. A sample holds ``img`` (T', D) float32 (the frame set,
    under the key region sets have, read by :class:`RandomRegionDrop` and
    :class:`PackVSEInputs`), the ``caption`` string (tokenised by the pipeline's
    :class:`TokenizeCaption`; HGR's ``word2int.json`` loads as a ``VocabTokenizer``
    vocabulary), ``img_idx`` (video index in the split) and ``cap_idx``: the index of the
    caption's text among the split's distinct texts (first-seen order), so a text shared
    by several videos has one id and every one of them as ground truth (HGR's protocol).

    Args:
        data_root: root of the release.
        split: split name used in the paths (``'trn'``, ``'val'``, ``'tst'``).
        ft_files: HDF5 feature files (HGR layout).
        frame_dir: folder of per-video ``.npy`` files (plain layout); give this or
            ``ft_files``.
        name_file: the split list. Defaults to ``'public_split/{split}_names.npy'``.
        caption_file: the captions. Defaults to ``'annotation/RET/ref_captions.json'``.
        max_frames: frame cap (HGR: 20 for MSR-VTT); None keeps every frame.
        feat_dim: expected total feature dimension D; None skips the check.
        pipeline: transforms applied to each sample.
        test_mode: mmengine flag (no effect on the data).
    """

    def __init__(
        self,
        data_root: str,
        split: str,
        ft_files: list[str] | None = None,
        frame_dir: str | None = None,
        name_file: str = 'public_split/{split}_names.npy',
        caption_file: str = 'annotation/RET/ref_captions.json',
        max_frames: int | None = None,
        feat_dim: int | None = None,
        pipeline: list | None = None,
        test_mode: bool = False,
        **kwargs,
    ) -> None:
        if (ft_files is None) == (frame_dir is None):
            raise ValueError(
                'VideoCaptionDataset: give either `ft_files` (HDF5, HGR layout) or `frame_dir` '
                f'(one .npy per video), got ft_files={ft_files!r}, frame_dir={frame_dir!r}.'
            )
        if max_frames is not None and max_frames < 1:
            raise ValueError(f'VideoCaptionDataset: max_frames must be >= 1, got {max_frames}.')
        self.split, self.max_frames, self.feat_dim = split, max_frames, feat_dim
        self._paths = dict(
            ft_files=ft_files, frame_dir=frame_dir, name_file=name_file, caption_file=caption_file
        )
        super().__init__(
            data_root=data_root,
            pipeline=pipeline or [],
            test_mode=test_mode,
            serialize_data=False,
            **kwargs,
        )

    def _path(self, path: str) -> Path:
        return Path(self.data_root) / path.format(split=self.split)

    def load_data_list(self) -> list[dict]:
        names = read_names(self._path(self._paths['name_file']))
        ref_captions = read_ref_captions(self._path(self._paths['caption_file']), names)
        if self._paths['ft_files'] is not None:
            self.frames = HDF5Frames([self._path(f) for f in self._paths['ft_files']])
        else:
            self.frames = NpyFrames(self._path(self._paths['frame_dir']))
        dim = self.frames.check(names)
        if self.feat_dim is not None and dim != self.feat_dim:
            raise FeatureDimensionError(
                f'VideoCaptionDataset: the frame features are {dim}-d, the config expects '
                f'feat_dim={self.feat_dim}; set `feat_dim` of the dataset and `in_channels` of '
                'the video encoder to the features you have.'
            )
        texts: dict[str, int] = {}
        data = []
        for v, name in enumerate(names):
            for sentence in ref_captions[name]:
                cap_idx = texts.setdefault(sentence, len(texts))
                data.append(dict(img_idx=v, cap_idx=cap_idx, caption=sentence, video=name))
        self._metainfo.update(video_names=names, captions=list(texts), num_images=len(names))
        return data

    def get_data_info(self, idx: int) -> dict:
        info = dict(super().get_data_info(idx))
        frames = self.frames(info['video'])
        if len(frames) == 0:
            raise FeatureDimensionError(
                f'VideoCaptionDataset: video {info["video"]!r} has no frames; every video '
                'needs at least one frame feature.'
            )
        info['img'] = frames[select_frames(len(frames), self.max_frames)]
        return info


def read_names(path: Path) -> list[str]:
    """Video names of a split list (``.npy`` string array, or a text file one a line)."""
    if not path.is_file():
        raise FileNotFoundError(
            f'VideoCaptionDataset: split list {path} not found; set `name_file` (HGR: '
            'public_split/{split}_names.npy) or `data_root`.'
        )
    if path.suffix == '.npy':
        try:
            names = [str(n) for n in np.load(path, allow_pickle=False).reshape(-1)]
        except ValueError as err:  # an object array: loading it would unpickle
            raise ValueError(
                f'VideoCaptionDataset: {path} is not a plain string array ({err}); it is not '
                'unpickled. If you trust the file, convert it once: np.save(path, '
                'np.load(path, allow_pickle=True).astype(str)).'
            ) from None
    else:
        names = [line.strip() for line in path.read_text(encoding='utf-8').splitlines()]
        names = [n for n in names if n]
    if not names:
        raise ValueError(f'VideoCaptionDataset: split list {path} is empty.')
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ValueError(f'VideoCaptionDataset: {path} lists video {dup!r} more than once.')
    return names


def read_ref_captions(path: Path, names: list[str]) -> dict[str, list[str]]:
    """``{name: [sentence, ...]}`` of HGR's ``ref_captions.json``, checked for the split."""
    if not path.is_file():
        raise FileNotFoundError(
            f'VideoCaptionDataset: caption file {path} not found; set `caption_file` (HGR: '
            'annotation/RET/ref_captions.json, {name: [sentences]}) or `data_root`.'
        )
    with open(path, encoding='utf-8') as f:
        captions = json.load(f)
    for name in names:
        if name not in captions:
            raise MissingVideoError(
                f'VideoCaptionDataset: video {name!r} of the split list has no entry in {path}.'
            )
        sentences = captions[name]
        if isinstance(sentences, str):
            sentences = [sentences]
        if not sentences or any(not isinstance(s, str) or not s.strip() for s in sentences):
            raise EmptyCaptionsError(
                f'VideoCaptionDataset: {path}: video {name!r} has an empty caption list or an '
                f'empty caption ({sentences!r}); every video needs at least one non-empty '
                'sentence. Drop the video from the split list or add its captions.'
            )
        captions[name] = sentences
    return captions
