"""In-Shop Clothes Retrieval: the dataset over mmpretrain's reader on the generated layout, the
query/gallery metrics against a brute-force formulation and PML's AccuracyCalculator, the MLRC
concatenation, and the configs from the command line."""

from __future__ import annotations

import os
import os.path as osp
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mmengine.config import Config
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

from gpo_plugin.datasets import InShopMetricDataset
from gpo_plugin.datasets.inshop_metric_dataset import gallery_groups
from gpo_plugin.demo.inshop_data import make_inshop_demo_data
from gpo_plugin.evaluation import MetricLearningMetric
from gpo_plugin.evaluation.mlrc import concatenated_metrics
from gpo_plugin.registry import DATASETS

# The tools and configs are run from the checkout, whatever pytest's working directory.
ROOT = Path(__file__).resolve().parents[2]
PARTITION = 'Eval/list_eval_partition.txt'


@pytest.fixture(scope='module')
def inshop_root(tmp_path_factory):
    return str(make_inshop_demo_data(tmp_path_factory.mktemp('inshop'), size=16))


def _parse_partition(root):
    """(name, item, status) rows of the partition file, read here independently."""
    with open(osp.join(root, PARTITION)) as handle:
        lines = handle.read().splitlines()
    assert int(lines[0]) == len(lines) - 2
    assert lines[1].split() == ['image_name', 'item_id', 'evaluation_status']
    return [tuple(line.split()) for line in lines[2:]]


def _same_partition(labels_a, labels_b):
    """Two labelings induce the same grouping."""
    pairs = set(zip(labels_a, labels_b, strict=True))
    return len(pairs) == len(set(labels_a)) == len(set(labels_b))


def test_generated_layout_is_the_release_format(inshop_root):
    rows = _parse_partition(inshop_root)
    for name, item, status in rows:
        assert name.startswith('img/') and name.split('/')[3] == item
        assert osp.isfile(osp.join(inshop_root, 'Img', name))
        assert status in ('train', 'query', 'gallery')
    statuses = defaultdict(set)
    for _, item, status in rows:
        statuses[item].add(status)
    assert {frozenset(s) for s in statuses.values()} == {
        frozenset({'train'}),
        frozenset({'query', 'gallery'}),
    }


def test_train_split_matches_the_partition_file(inshop_root):
    rows = [(n, i) for n, i, s in _parse_partition(inshop_root) if s == 'train']
    dataset = InShopMetricDataset(inshop_root, split='train')
    infos = [dataset.get_data_info(i) for i in range(len(dataset))]
    assert [osp.relpath(d['img_path'], inshop_root) for d in infos] == [
        osp.join('Img', n) for n, _ in rows
    ]
    labels = [d['gt_label'] for d in infos]
    assert sorted(set(labels)) == list(range(len({i for _, i in rows})))
    assert _same_partition(labels, [i for _, i in rows])
    assert all('is_query' not in d for d in infos)
    assert dataset.get_gt_labels().tolist() == labels  # what ClassDisjointSampler reads


def test_test_split_has_queries_then_gallery_labelled_by_item(inshop_root):
    rows = _parse_partition(inshop_root)
    query = [(n, i) for n, i, s in rows if s == 'query']
    gallery = [(n, i) for n, i, s in rows if s == 'gallery']
    dataset = InShopMetricDataset(inshop_root, split='test')
    assert dataset.test_mode
    infos = [dataset.get_data_info(i) for i in range(len(dataset))]
    assert len(infos) == len(query) + len(gallery)
    assert [d['is_query'] for d in infos] == [True] * len(query) + [False] * len(gallery)
    assert [osp.relpath(d['img_path'], inshop_root) for d in infos] == [
        osp.join('Img', n) for n, _ in query + gallery
    ]
    assert _same_partition([d['gt_label'] for d in infos], [i for _, i in query + gallery])
    sample = dataset[0]  # through the (empty) pipeline
    assert sample['is_query'] is True


def test_mlrc_folds_partition_the_training_items(inshop_root):
    items = {i for _, i, s in _parse_partition(inshop_root) if s == 'train'}
    seen = []
    for fold in range(4):
        train = InShopMetricDataset(inshop_root, fold=fold, fold_role='train')
        val = InShopMetricDataset(inshop_root, fold=fold, fold_role='val')
        train_ids = {train.get_data_info(i)['class_id'] for i in range(len(train))}
        val_ids = {val.get_data_info(i)['class_id'] for i in range(len(val))}
        assert not train_ids & val_ids and len(train_ids | val_ids) == len(items)
        assert val.test_mode and not train.test_mode
        seen += sorted(val_ids)
    assert sorted(seen) == list(range(len(items)))


def test_gallery_groups_gives_orphan_gallery_images_labels_of_their_own():
    # Items {0, 2} and {1} have queries; gallery images 3 and 4 belong to no query's item.
    assert gallery_groups([[0, 2], [1], [2, 0]], 5) == [0, 1, 0, 3, 4]


def _copy_layout(root, tmp_path):
    import shutil

    target = tmp_path / 'inshop'
    shutil.copytree(root, target)
    return target


def _rewrite_partition(root, edit):
    path = root / PARTITION
    lines = path.read_text().splitlines()
    path.write_text('\n'.join(edit(lines)) + '\n')


def test_named_errors(inshop_root, tmp_path):
    with pytest.raises(FileNotFoundError, match='data_root .* is not a directory'):
        InShopMetricDataset(str(tmp_path / 'nowhere'))
    root = _copy_layout(inshop_root, tmp_path)
    name = _parse_partition(inshop_root)[0][0]
    os.remove(root / 'Img' / name)
    with pytest.raises(
        FileNotFoundError, match=f'annotations: 1 missing, e.g. .*{osp.basename(name)} is missing'
    ):
        InShopMetricDataset(str(root), split='train')
    os.remove(root / PARTITION)
    with pytest.raises(FileNotFoundError, match='missing .*list_eval_partition.txt.*Expected'):
        InShopMetricDataset(str(root), split='test')


@pytest.mark.parametrize(
    'edit,match',
    [
        (lambda lines: lines[:1] + lines[2:], 'malformed line 2 .* header line'),
        (lambda lines: [*lines, 'img/x.jpg id_1'], 'malformed .*list_eval_partition'),
        (
            lambda lines: [ln for ln in lines if not ln.endswith('gallery')],
            'has query images but no gallery image',
        ),
    ],
)
def test_malformed_partition_file(inshop_root, tmp_path, edit, match):
    root = _copy_layout(inshop_root, tmp_path)
    _rewrite_partition(root, edit)
    with pytest.raises(ValueError, match=match):
        InShopMetricDataset(str(root), split='test')


# -- metrics -------------------------------------------------------------------------------------


def _brute_force(query, query_labels, gallery, gallery_labels, recall_ks):
    """Query/gallery P@1, R-Precision, MAP@R and Recall@K by a full float64 sort (no ties)."""
    d = ((query[:, None, :].astype(np.float64) - gallery[None].astype(np.float64)) ** 2).sum(-1)
    values = defaultdict(list)
    for row, label in zip(d, query_labels, strict=True):
        hits = gallery_labels[np.argsort(row, kind='stable')] == label
        r = int(hits.sum())
        if r == 0:  # its item has no gallery image: not counted
            continue
        values['precision_at_1'].append(float(hits[0]))
        values['r_precision'].append(hits[:r].mean())
        precision = np.cumsum(hits[:r]) / np.arange(1, r + 1)
        values['mean_average_precision_at_r'].append((precision * hits[:r]).sum() / r)
        for k in recall_ks:
            if k <= len(gallery_labels):
                values[f'recall_at_{k}'].append(float(hits[:k].any()))
    return {key: float(np.mean(v)) for key, v in values.items()}


def _metric(embeddings, labels, is_query, recall_ks='inshop'):
    metric = MetricLearningMetric(recall_ks=recall_ks, protocol='query_gallery', normalize=False)
    metric.process(
        None,
        [
            dict(embedding=torch.as_tensor(e), gt_label=torch.tensor([int(y)]), is_query=bool(q))
            for e, y, q in zip(embeddings, labels, is_query, strict=True)
        ],
    )
    return metric.compute_metrics(metric.results)


def _query_gallery_case(seed, num_query, num_gallery, num_labels, dim):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_labels, num_query + num_gallery)
    labels[num_query] = labels[0]  # at least one query has a gallery match
    is_query = np.arange(num_query + num_gallery) < num_query
    order = rng.permutation(len(labels))  # queries and gallery interleaved in the results
    return labels[order], is_query[order], rng


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    num_query=st.integers(1, 30),
    num_gallery=st.integers(2, 60),
    num_labels=st.integers(1, 12),
    dim=st.integers(2, 16),
)
def test_query_gallery_metrics_equal_brute_force(seed, num_query, num_gallery, num_labels, dim):
    labels, is_query, rng = _query_gallery_case(seed, num_query, num_gallery, num_labels, dim)
    embeddings = rng.standard_normal((len(labels), dim)).astype(np.float32)
    recall_ks = (1, 2, 10, 20, 30, 40)
    ours = _metric(embeddings, labels, is_query, recall_ks)
    expected = _brute_force(
        embeddings[is_query], labels[is_query], embeddings[~is_query], labels[~is_query], recall_ks
    )
    assert set(ours) == set(expected)
    for key, value in expected.items():
        assert ours[key] == pytest.approx(value, abs=1e-6), key


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    num_query=st.integers(1, 30),
    num_gallery=st.integers(2, 60),
    num_labels=st.integers(1, 8),
    dim=st.integers(1, 6),
    levels=st.sampled_from([2, 3, None]),
)
def test_query_gallery_metrics_equal_pml_with_ties(
    seed, num_query, num_gallery, num_labels, dim, levels
):
    labels, is_query, rng = _query_gallery_case(seed, num_query, num_gallery, num_labels, dim)
    embeddings = rng.standard_normal((len(labels), dim)).astype(np.float32)
    if levels is not None:  # few distinct points: exact ties of mixed labels, duplicates
        embeddings = rng.integers(0, levels, embeddings.shape).astype(np.float32)
    ours = _metric(embeddings, labels, is_query)
    calculator = AccuracyCalculator(
        include=('precision_at_1', 'r_precision', 'mean_average_precision_at_r'),
        k='max_bin_count',
        device=torch.device('cpu'),
    )
    q, g = torch.from_numpy(embeddings[is_query]), torch.from_numpy(embeddings[~is_query])
    ql, gl = torch.from_numpy(labels[is_query]), torch.from_numpy(labels[~is_query])
    theirs = calculator.get_accuracy(q, ql, g, gl, ref_includes_query=False)
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, abs=1e-6), key


def test_query_gallery_needs_the_flag_and_both_sides():
    metric = MetricLearningMetric(protocol='query_gallery')
    with pytest.raises(KeyError, match='is_query'):
        metric.process(None, [dict(embedding=torch.ones(2), gt_label=torch.tensor([0]))])
    with pytest.raises(ValueError, match='both queries and gallery'):
        _metric(np.eye(3, dtype=np.float32), np.zeros(3), np.ones(3, bool))


def test_mlrc_concatenation_evaluates_queries_against_the_gallery():
    labels, is_query, rng = _query_gallery_case(0, 20, 40, 6, 8)
    folds = [torch.from_numpy(rng.standard_normal((60, 8)).astype(np.float32)) for _ in range(2)]
    flags, y = torch.from_numpy(is_query), torch.from_numpy(labels)
    results = concatenated_metrics(folds, y, flags, recall_ks=(1, 10))
    for i, fold in enumerate(folds):
        unit = torch.nn.functional.normalize(fold, dim=1).numpy()
        expected = _brute_force(
            unit[is_query], labels[is_query], unit[~is_query], labels[~is_query], (1, 10)
        )
        for key, value in expected.items():
            assert results[f'fold {i}'][key] == pytest.approx(value, abs=1e-6)
    joined = torch.nn.functional.normalize(
        torch.cat([torch.nn.functional.normalize(f, dim=1) for f in folds], 1), dim=1
    ).numpy()
    expected = _brute_force(
        joined[is_query], labels[is_query], joined[~is_query], labels[~is_query], (1, 10)
    )
    for key, value in expected.items():
        assert results['concatenated'][key] == pytest.approx(value, abs=1e-6)


# -- configs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize('name', ['dml_gsp_inshop', 'dml_avg_inshop_mlrc'])
def test_config_datasets_read_the_generated_layout(inshop_root, name):
    cfg = Config.fromfile(str(ROOT / 'configs' / f'{name}.py'))
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = DATASETS.build(dict(cfg[loader].dataset, data_root=inshop_root))
        sample = dataset[0]
        assert sample['inputs'].shape[0] == 3
        has_flag = 'is_query' in sample['data_samples']
        assert has_flag == (dataset.split == 'test')
    assert cfg.test_evaluator.protocol == 'query_gallery'
    assert cfg.val_evaluator.get('protocol') == (
        'leave_one_out' if 'mlrc' in name else 'query_gallery'
    )


TINY = (
    [
        'model.backbone.init_cfg=None',
        'train_dataloader.batch_size=8',
        'train_dataloader.sampler.batch_size=8',
        'train_cfg.max_epochs=1',
        'train_dataloader.dataset.pipeline.1.scale=32',
    ]
    + [
        option
        for loader in ('train', 'val', 'test')
        for option in (
            f'{loader}_dataloader.num_workers=0',
            f'{loader}_dataloader.persistent_workers=False',
        )
    ]
    + [
        f'{loader}_dataloader.dataset.pipeline.{i}.{key}=32'
        for loader in ('val', 'test')
        for i, key in ((1, 'scale'), (2, 'crop_size'))
    ]
)


def _cli(*args, timeout=600):
    result = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, OMP_NUM_THREADS='1'),
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize('name', ['dml_gsp_inshop', 'dml_avg_inshop'])
def test_config_trains_and_tests_from_the_command_line(inshop_root, tmp_path, name):
    work_dir = str(tmp_path / name)
    common = ['--data-root', inshop_root, '--work-dir', work_dir, '--cfg-options', *TINY]
    log = _cli('tools/train.py', f'configs/{name}.py', *common)
    assert 'dml/recall_at_10' in log and 'dml/mean_average_precision_at_r' in log
    log = _cli('tools/test.py', f'configs/{name}.py', osp.join(work_dir, 'epoch_1.pth'), *common)
    assert 'dml/recall_at_1' in log and 'dml/r_precision' in log


@pytest.mark.slow
def test_mlrc_config_trains_a_fold_and_concatenates_from_the_command_line(inshop_root, tmp_path):
    work_dir = str(tmp_path / 'fold0')
    config = 'configs/dml_avg_inshop_mlrc.py'
    options = ['--cfg-options', *TINY]
    _cli('tools/train.py', config, '--data-root', inshop_root, '--work-dir', work_dir, *options)
    checkpoint = osp.join(work_dir, 'epoch_1.pth')
    out = _cli(
        'tools/analysis_tools/dml_mlrc_test.py',
        config,
        checkpoint,
        checkpoint,
        '--work-dir',
        str(tmp_path / 'test'),
        '--data-root',
        inshop_root,
        *options,
    )
    table = [line.split('|')[1:-1] for line in out.splitlines() if line.startswith('| ')]
    assert [c.strip() for c in table[0]] == [
        'model',
        'MAP@R',
        'P@1',
        'R-Prec',
        'R@1',
        'R@10',
    ]  # 16 gallery images: R@20/30/40 are not defined
    rows = {r[0].strip(): [float(v) for v in r[1:]] for r in table[1:]}
    # The same model twice ranks exactly like the model alone.
    assert rows['concatenated'] == pytest.approx(rows['fold 0'], abs=0.01)
    assert rows['fold 0'] == rows['fold 1']


# -- PML side --------------------------------------------------------------------------------------


class _Points(torch.utils.data.Dataset):
    def __init__(self, points, labels):
        self.points, self.labels = torch.as_tensor(points), torch.as_tensor(labels)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.points[i], int(self.labels[i])


def _pml_tester_accuracies(calculator, query, gallery):
    from pytorch_metric_learning import testers

    tester = testers.GlobalEmbeddingSpaceTester(
        accuracy_calculator=calculator, dataloader_num_workers=0, batch_size=64
    )
    tester.test(
        {'query': query, 'gallery': gallery},
        1,
        torch.nn.Identity(),
        splits_to_eval=[('query', ['gallery'])],
    )
    return tester.all_accuracies['query']


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    num_query=st.integers(1, 20),
    num_gallery=st.integers(2, 40),
    num_labels=st.integers(1, 6),
    levels=st.sampled_from([2, 3, None]),
)
def test_pml_tester_query_vs_gallery_knn_calculator_equals_pml(
    seed, num_query, num_gallery, num_labels, levels
):
    from gpo_plugin.pml import KNNAccuracyCalculator

    labels, is_query, rng = _query_gallery_case(seed, num_query, num_gallery, num_labels, 4)
    points = rng.standard_normal((len(labels), 4)).astype(np.float32)
    if levels is not None:
        points = rng.integers(0, levels, points.shape).astype(np.float32) + 0.5
    query = _Points(points[is_query], labels[is_query])
    gallery = _Points(points[~is_query], labels[~is_query])
    options = dict(
        include=('precision_at_1', 'r_precision', 'mean_average_precision_at_r'),
        k='max_bin_count',
        device=torch.device('cpu'),
    )
    ours = _pml_tester_accuracies(KNNAccuracyCalculator(**options), query, gallery)
    theirs = _pml_tester_accuracies(AccuracyCalculator(**options), query, gallery)
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, abs=1e-6), key
    if levels is None:  # no ties: also the brute-force formulation (the tester l2-normalises)
        unit = points / np.linalg.norm(points, axis=1, keepdims=True)
        expected = _brute_force(
            unit[is_query], labels[is_query], unit[~is_query], labels[~is_query], ()
        )
        for key, value in expected.items():
            assert ours[f'{key}_level0'] == pytest.approx(value, abs=1e-6), key


def test_pml_side_splits_the_inshop_test_split_into_query_and_gallery(inshop_root):
    from gpo_plugin.pml.data import PMLDataset
    from gpo_plugin.pml.runner import evaluation_splits

    pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
    test = PMLDataset(
        dict(type='InShopMetricDataset', data_root=inshop_root, split='test', pipeline=pipeline)
    )
    sets, splits_to_eval = evaluation_splits(test)
    assert splits_to_eval == [('query', ['gallery'])]
    rows = _parse_partition(inshop_root)
    assert len(sets['query']) == sum(s == 'query' for _, _, s in rows)
    assert len(sets['gallery']) == sum(s == 'gallery' for _, _, s in rows)
    flags = [test.dataset.get_data_info(i)['is_query'] for i in range(len(test))]
    assert sets['query'].labels.tolist() == [
        int(y) for y, q in zip(test.labels, flags, strict=True) if q
    ]
    assert sets['gallery'][0][1] == int(sets['gallery'].labels[0])
    train = PMLDataset(dict(type='InShopMetricDataset', data_root=inshop_root, pipeline=pipeline))
    assert evaluation_splits(train) == ({'val': train}, None)


@pytest.mark.slow
def test_pml_trains_inshop_config_query_vs_gallery_from_the_command_line(inshop_root, tmp_path):
    work_dir = tmp_path / 'pml'
    options = [o for o in TINY if not o.startswith('test_dataloader')] + [
        'model.neck.num_prototypes=8',  # k-center needs as many pooled embeddings (48 images)
        f'train_dataloader.dataset.data_root={inshop_root}',
        f'val_dataloader.dataset.data_root={inshop_root}',
        'pml.device=cpu',
    ]
    out = _cli(
        'tools/train_pml.py',
        'configs/dml_gsp_inshop.py',
        '--work-dir',
        str(work_dir),
        '--cfg-options',
        *options,
    )
    assert "Computing accuracy for the query split w.r.t ['gallery']" in out
    final = [line for line in out.splitlines() if line.startswith('validation accuracies: {')]
    assert len(final) == 1 and 'mean_average_precision_at_r_level0' in final[0]
    assert (
        work_dir
        / 'logs'
        / 'accuracies_normalized_GlobalEmbeddingSpaceTester_level_0_QUERY_vs_GALLERY.csv'
    ).is_file()
