"""CUB-200-2011 with the class-disjoint metric-learning split (docs/dml.md#data)."""

from __future__ import annotations

from gpo_plugin.registry import DATASETS

from .metric_learning_dataset import MetricLearningDataset


@DATASETS.register_module()
class CUBMetricDataset(MetricLearningDataset):
    """CUB-200-2011 for metric learning: classes 1-100 train (5,864 images), 101-200 test
    (5,924 images). mmpretrain's ``CUB`` uses the per-image split instead; this is not that.

    Args: see :class:`MetricLearningDataset`; ``data_root`` is the ``CUB_200_2011`` folder.
    """

    LAYOUT = (
        '  images.txt               "<image_id> <relative image path>" per line\n'
        '  image_class_labels.txt   "<image_id> <class_id in 1..200>" per line\n'
        '  images/<relative image path>  (e.g. images/001.Black_footed_Albatross/x.jpg)'
    )
    NUM_TRAIN_CLASSES = 100

    def read_split(self, split: str) -> list[tuple[str, int]]:
        paths = {}
        expected = '"<image_id> <relative path>"'
        rows = self.read_table('images.txt', 2, expected)
        self.no_duplicates('images.txt', rows, expected)
        for line_no, (image_id, path) in rows:
            paths[image_id] = (line_no, path)
        records = []
        expected = '"<image_id> <class_id>"'
        rows = self.read_table('image_class_labels.txt', 2, expected)
        self.no_duplicates('image_class_labels.txt', rows, expected)
        for line_no, (image_id, label) in rows:
            cls = self.as_int(label, 'image_class_labels.txt', line_no, expected)
            if image_id not in paths:
                raise self.malformed(
                    self.require_file('image_class_labels.txt'),
                    line_no,
                    f'{image_id} {label}',
                    'an image_id listed in images.txt',
                )
            is_train = cls <= self.NUM_TRAIN_CLASSES
            if is_train == (split == 'train'):
                records.append((f'images/{paths[image_id][1]}', cls))
        self.check_images([p for p, _ in records])
        return records
