"""Frame-feature readers for video–text retrieval (docs/vse.md#video-text-retrieval).

Two layouts give the same (T, D) float32 frame sets:

- HGR's release: frame features in HDF5 files keyed by video name (a ``/`` in the name
  becomes ``_``); several files (feature types) are concatenated along the feature axis.
- a plain folder: one ``<name>.npy`` of shape (T, D) per video.

HDF5 files are opened lazily, once per process (each dataloader worker opens its own
handles), since an h5py handle cannot be shared across ``fork``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class MissingVideoError(LookupError):
    """A video of the split list has no features in a feature file or folder."""


class FeatureDimensionError(ValueError):
    """Frame features disagree in shape (between files, between videos, with the config)."""


def select_frames(num_frames: int, max_frames: int | None) -> np.ndarray:
    """Indices of the frames HGR keeps: all when ``num_frames <= max_frames``, else
    ``max_frames`` indices spread evenly over the T frames (rounded ``linspace(0, T-1)``,
    HGR's ``trim_type='select'``)."""
    if max_frames is None or num_frames <= max_frames:
        return np.arange(num_frames)
    return np.round(np.linspace(0, num_frames - 1, max_frames)).astype(np.int64)


def h5_key(name: str) -> str:
    """HDF5 key of a video name in HGR's files."""
    return name.replace('/', '_')


class HDF5Frames:
    """Frame sets from HGR-style HDF5 files, concatenated along the feature axis.

    Args:
        files: HDF5 paths, one per feature type; each holds a (T, D_i) dataset per video.
    """

    def __init__(self, files: list[Path]) -> None:
        self.files = [Path(f) for f in files]
        self._handles: list | None = None

    def _open(self) -> list:
        if self._handles is None:
            import h5py

            self._handles = [h5py.File(f, 'r') for f in self.files]
        return self._handles

    def __getstate__(self) -> dict:
        # Workers re-open the files instead of inheriting (or pickling) the handles.
        return {**self.__dict__, '_handles': None}

    def check(self, names: list[str]) -> int:
        """Check that every video is in every file with one T across files and one D per
        file; returns the total feature dimension."""
        for path in self.files:
            if not path.is_file():
                raise FileNotFoundError(
                    f'VideoCaptionDataset: frame-feature file {path} not found; set `ft_files` '
                    '(HDF5 files keyed by video name, e.g. ordered_feature/SA/resnet152.pth/'
                    '{split}_ft.hdf5) or `data_root`.'
                )
        dims, lengths = [], {}
        for path, handle in zip(self.files, self._open(), strict=True):
            dim = None
            for name in names:
                key = h5_key(name)
                if key not in handle:
                    raise MissingVideoError(
                        f'VideoCaptionDataset: video {name!r} (key {key!r}) is not in {path}; '
                        'every video of the split list needs frame features in every file.'
                    )
                shape = handle[key].shape
                if len(shape) != 2:
                    raise FeatureDimensionError(
                        f'VideoCaptionDataset: {path}[{key!r}] has shape {shape}; expected '
                        '(T, D) frame features.'
                    )
                if dim is None:
                    dim, first = shape[1], name
                elif shape[1] != dim:
                    raise FeatureDimensionError(
                        f'VideoCaptionDataset: {path}: video {name!r} has {shape[1]}-d frames, '
                        f'video {first!r} {dim}-d; all videos of a file need one dimension.'
                    )
                if lengths.setdefault(name, (shape[0], path))[0] != shape[0]:
                    raise FeatureDimensionError(
                        f'VideoCaptionDataset: video {name!r} has {shape[0]} frames in {path} '
                        f'but {lengths[name][0]} in {lengths[name][1]}; files are concatenated '
                        'along the feature axis, so they need the same frames.'
                    )
            dims.append(dim or 0)
        self.close()  # forked workers must not inherit open handles
        return sum(dims)

    def close(self) -> None:
        for handle in self._handles or []:
            handle.close()
        self._handles = None

    def __call__(self, name: str) -> np.ndarray:
        key = h5_key(name)
        parts = [np.asarray(handle[key][...], dtype=np.float32) for handle in self._open()]
        return np.concatenate(parts, axis=-1)


class NpyFrames:
    """Frame sets from ``<folder>/<name>.npy`` files of shape (T, D).

    Args:
        folder: directory with one ``.npy`` per video.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def path(self, name: str) -> Path:
        return self.folder / f'{name}.npy'

    def check(self, names: list[str]) -> int:
        """Check that every video has a (T, D) file with one D; returns D."""
        dim = None
        for name in names:
            path = self.path(name)
            if not path.is_file():
                raise MissingVideoError(
                    f'VideoCaptionDataset: video {name!r}: {path} not found; the plain layout '
                    'needs one <name>.npy of shape (T, D) per video under `frame_dir`.'
                )
            shape = np.load(path, mmap_mode='r').shape
            if len(shape) != 2:
                raise FeatureDimensionError(
                    f'VideoCaptionDataset: {path} has shape {shape}; expected (T, D).'
                )
            if dim is None:
                dim, first = shape[1], path
            elif shape[1] != dim:
                raise FeatureDimensionError(
                    f'VideoCaptionDataset: {path} has {shape[1]}-d frames, {first} {dim}-d; all '
                    'videos need one feature dimension.'
                )
        return dim or 0

    def __call__(self, name: str) -> np.ndarray:
        return np.load(self.path(name)).astype(np.float32, copy=False)
