"""In-Shop Clothes Retrieval for metric learning, over mmpretrain's ``InShop`` reader
(docs/dml.md#data)."""

from __future__ import annotations

import os.path as osp

from mmpretrain.datasets import InShop

from gpo_plugin.registry import DATASETS

from .metric_learning_dataset import MetricLearningDataset

PARTITION_FILE = 'Eval/list_eval_partition.txt'
IMAGE_PREFIX = 'Img'
HEADER = ['image_name', 'item_id', 'evaluation_status']


def gallery_groups(query_gallery_ids: list[list[int]], num_gallery: int) -> list[int]:
    """Item label of every gallery image, from mmpretrain's query labels.

    mmpretrain labels each query with the indices of its item's gallery images, so an item is
    one distinct index list. Items are numbered by their first gallery image; a gallery image
    that no query names (its item has no query) gets a label of its own: it is a distractor,
    and its label never equals a query's, which is all the query/gallery metrics use.

    Returns:
        list of ``num_gallery`` labels.
    """
    labels = [-1] * num_gallery
    for ids in sorted({tuple(sorted(ids)) for ids in query_gallery_ids}):
        for i in ids:
            labels[i] = min(ids)
    return [label if label >= 0 else i for i, label in enumerate(labels)]


@DATASETS.register_module()
class InShopMetricDataset(MetricLearningDataset):
    """In-Shop Clothes Retrieval (DeepFashion): ``Eval/list_eval_partition.txt`` puts 3,997
    training items (25,882 images) in ``train`` and 3,985 test items in ``query`` (14,218
    images) and ``gallery`` (12,612 images).

    The partition file is read by mmpretrain's ``InShop``; this class turns its output into the
    metric-learning form: ``split='train'`` gives every training image with its item as the
    class (0..K-1, MLRC folds as in :class:`MetricLearningDataset`); ``split='test'`` gives the
    query images then the gallery images, each with its item's label and ``is_query``, for
    ``MetricLearningMetric(protocol='query_gallery')``.

    Args: see :class:`MetricLearningDataset`; ``data_root`` is the ``In-shop Clothes Retrieval
    Benchmark`` folder.

    Each sample: ``img_path``, ``gt_label``, ``class_id`` (the item's number) and, in the test
    split, ``is_query``.
    """

    LAYOUT = (
        f'  {PARTITION_FILE}   line 1: the image count, line 2 "image_name item_id '
        'evaluation_status", then "<img/...jpg> <id_XXXXXXXX> <train|query|gallery>" per image\n'
        f'  {IMAGE_PREFIX}/img/<gender>/<category>/<item_id>/<file>.jpg  '
        '(e.g. Img/img/WOMEN/Dresses/id_00000002/02_1_front.jpg)'
    )

    def load_data_list(self) -> list[dict]:
        data_list = super().load_data_list()
        if self.split == 'test':
            for info, is_query in zip(data_list, self._is_query, strict=True):
                info['is_query'] = is_query
        return data_list

    def read_split(self, split: str) -> list[tuple[str, int]]:
        if split == 'train':
            train = self.read_inshop('train')
            records = [(self.relative(d['img_path']), d['gt_label']) for d in train]
            self._is_query = []
        else:
            query, gallery = self.read_inshop('query'), self.read_inshop('gallery')
            labels = gallery_groups([d['gt_label'] for d in query], len(gallery))
            records = [(self.relative(d['img_path']), labels[d['gt_label'][0]]) for d in query]
            records += [
                (self.relative(d['img_path']), y) for d, y in zip(gallery, labels, strict=True)
            ]
            self._is_query = [True] * len(query) + [False] * len(gallery)
        if not records:
            raise ValueError(
                f'InShopMetricDataset: {osp.join(self.data_root, PARTITION_FILE)} lists no '
                f'{"training" if split == "train" else "query/gallery"} images.'
            )
        self.check_images([p for p, _ in records])
        return records

    def read_inshop(self, split: str) -> list[dict]:
        """The data list of mmpretrain's ``InShop`` for ``split``, with its errors named."""
        path = self.require_file(PARTITION_FILE)
        with open(path) as handle:
            head = [handle.readline(), handle.readline()]
        if head[1].split() != HEADER:
            raise self.malformed(
                path, 2, head[1], f'the header line "{" ".join(HEADER)}" after the image count'
            )
        try:
            dataset = InShop(
                data_root=self.data_root,
                split=split,
                data_prefix=IMAGE_PREFIX,
                ann_file=PARTITION_FILE,
                serialize_data=False,
            )
        except KeyError as error:  # a query item with no gallery image
            raise ValueError(
                f'InShopMetricDataset: {path}: item {error} has query images but no gallery '
                'image, so its queries have nothing to retrieve; use the official partition file.'
            ) from None
        except ValueError as error:  # a line without exactly three fields
            raise ValueError(
                f'InShopMetricDataset: malformed {path} ({error}); expected the image count, '
                'the header "image_name item_id evaluation_status", then one '
                '"<image_name> <item_id> <train|query|gallery>" line per image.'
            ) from None
        return [dataset.get_data_info(i) for i in range(len(dataset))]

    def relative(self, img_path: str) -> str:
        return osp.relpath(img_path, self.data_root)
