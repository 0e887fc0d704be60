"""Stanford Online Products (docs/dml.md#data)."""

from __future__ import annotations

import os.path as osp

from gpo_plugin.registry import DATASETS

from .metric_learning_dataset import MetricLearningDataset


@DATASETS.register_module()
class SOPMetricDataset(MetricLearningDataset):
    """Stanford Online Products: ``Ebay_train.txt`` (11,318 classes, 59,551 images) and
    ``Ebay_test.txt`` (11,316 classes, 60,502 images).

    Args: see :class:`MetricLearningDataset`; ``data_root`` is the ``Stanford_Online_Products``
    folder.
    """

    LAYOUT = (
        '  Ebay_train.txt, Ebay_test.txt   header "image_id class_id super_class_id path", '
        'then one image per line\n'
        '  <path>  (e.g. bicycle_final/111085122871_0.JPG)'
    )

    HEADER = ['image_id', 'class_id', 'super_class_id', 'path']

    def read_split(self, split: str) -> list[tuple[str, int]]:
        records = self.read_records(split)
        other = 'test' if split == 'train' else 'train'
        if osp.isfile(osp.join(self.data_root, f'Ebay_{other}.txt')):
            shared = {c for _, c in records} & {c for _, c in self.read_records(other)}
            if shared:
                raise ValueError(
                    f'SOPMetricDataset: {len(shared)} class id(s) appear in both Ebay_train.txt '
                    f'and Ebay_test.txt, e.g. {sorted(shared)[:5]}; the metric-learning split '
                    'is class-disjoint. Use the official files.'
                )
        self.check_images([p for p, _ in records])
        return records

    def read_records(self, split: str) -> list[tuple[str, int]]:
        """(path, class id) of ``Ebay_{split}.txt``, whose first line must be the header."""
        name = f'Ebay_{split}.txt'
        path = self.require_file(name)
        with open(path) as handle:
            first = handle.readline()
        if first.split() != self.HEADER:
            raise self.malformed(
                path, 1, first, f'the header line "{" ".join(self.HEADER)}" (the file lost it?)'
            )
        expected = '"<image_id> <class_id> <super_class_id> <path>"'
        rows = self.read_table(name, 4, expected, header=True)
        self.no_duplicates(name, rows, expected)
        return [(p, self.as_int(cls, name, line_no, expected)) for line_no, (_, cls, _, p) in rows]
