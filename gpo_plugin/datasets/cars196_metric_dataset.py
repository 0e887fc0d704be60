"""Cars196 (Stanford Cars) with the class-disjoint metric-learning split (docs/dml.md#data)."""

from __future__ import annotations

from gpo_plugin.registry import DATASETS

from .metric_learning_dataset import MetricLearningDataset


@DATASETS.register_module()
class Cars196MetricDataset(MetricLearningDataset):
    """Cars196 for metric learning: classes 1-98 train (8,054 images), 99-196 test (8,131),
    regardless of the official train/test flag.

    Args: see :class:`MetricLearningDataset`; ``data_root`` holds ``cars_annos.mat`` and
    ``car_ims/``.
    """

    LAYOUT = (
        '  cars_annos.mat   the all-images annotation file: struct array `annotations` '
        'with fields relative_im_path, class (1..196), ...\n'
        '  car_ims/000001.jpg ...'
    )
    NUM_TRAIN_CLASSES = 98

    def read_split(self, split: str) -> list[tuple[str, int]]:
        from scipy.io import loadmat

        path = self.require_file('cars_annos.mat')
        try:
            annotations = loadmat(path, squeeze_me=True)['annotations']
            paths = [str(p) for p in annotations['relative_im_path']]
            classes = [int(c) for c in annotations['class']]
        except Exception as error:  # a .mat of the wrong shape fails in many ways
            raise ValueError(
                f'Cars196MetricDataset: cannot read {path} ({error!r}); expected '
                f'layout:\n{self.LAYOUT}'
            ) from None
        records = [
            (p, c)
            for p, c in zip(paths, classes, strict=True)
            if (c <= self.NUM_TRAIN_CLASSES) == (split == 'train')
        ]
        self.check_images([p for p, _ in records])
        return records
