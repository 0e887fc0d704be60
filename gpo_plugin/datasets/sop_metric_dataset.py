"""Stanford Online Products (docs/dml.md#data)."""

from __future__ import annotations

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

    def read_split(self, split: str) -> list[tuple[str, int]]:
        name = f'Ebay_{split}.txt'
        expected = '"<image_id> <class_id> <super_class_id> <path>"'
        records = [
            (path, self.as_int(cls, name, line_no, expected))
            for line_no, (_, cls, _, path) in self.read_table(name, 4, expected, header=True)
        ]
        self.check_images([p for p, _ in records])
        return records
