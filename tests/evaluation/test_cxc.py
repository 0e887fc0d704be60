"""CxC recalls on a generated CxC-format set, against the published computation written out."""

import numpy as np
import pytest
import torch
from conftest import make_cxc, published_cxc

from gpo_plugin.evaluation import CxCAnnotationError, VSECxCMetric, cxc_recalls


@pytest.mark.parametrize('quantised', [False, True, 'near'])
def test_cxc_equals_published_computation(tmp_path, quantised):
    ids = make_cxc(tmp_path)
    gen = torch.Generator().manual_seed(1)
    img = torch.randn(12, 8, generator=gen)
    cap = img.repeat_interleave(5, 0) + torch.randn(60, 8, generator=gen)
    if quantised is True:  # ties everywhere
        img, cap = img.round(), cap.round()
        cap[7] = cap[22]  # a duplicate caption
    if quantised == 'near':  # copies one float32 ulp apart: float32 ties, float64 orders
        cap[5::5] = cap[0:-5:5]
        img[6:] = img[:6]
        cap[5::5, 0] = torch.nextafter(cap[5::5, 0], torch.tensor(-100.0))
        img[6:, 1] = torch.nextafter(img[6:, 1], torch.tensor(100.0))
    got = cxc_recalls(img, cap, str(tmp_path))
    want = published_cxc(img.numpy().astype(np.float64), cap.numpy().astype(np.float64), *ids)
    assert set(got) == {f'{d}_R@{k}' for d in ('i2t', 't2i', 'i2i', 't2t') for k in (1, 5, 10)}
    assert got == want
    assert 0 < got['t2t_R@10'] and got['i2t_R@1'] < 100


def test_cxc_rules_bracket_published(tmp_path):
    make_cxc(tmp_path)
    gen = torch.Generator().manual_seed(2)
    img = torch.randint(-1, 2, (12, 3), generator=gen).float()
    cap = torch.randint(-1, 2, (60, 3), generator=gen).float()
    got = {
        r: cxc_recalls(img, cap, str(tmp_path), r)
        for r in ('optimistic', 'published', 'pessimistic')
    }
    for key in got['published']:
        assert got['pessimistic'][key] <= got['published'][key] <= got['optimistic'][key]
    assert got['pessimistic'] != got['optimistic']


def test_cxc_errors_name_the_problem(tmp_path):
    make_cxc(tmp_path)
    img, cap = torch.randn(12, 4), torch.randn(60, 4)
    with pytest.raises(CxCAnnotationError, match='one line per caption'):
        cxc_recalls(img[:10], cap[:50], str(tmp_path))
    (tmp_path / 'cxc_i2i.json').unlink()
    with pytest.raises(CxCAnnotationError, match='lacks cxc_i2i.json'):
        cxc_recalls(img, cap, str(tmp_path))


def test_cxc_metric_from_predict_outputs(tmp_path):
    ids = make_cxc(tmp_path)
    img, cap = torch.randn(12, 6), torch.randn(60, 6)
    metric = VSECxCMetric(annot_dir=str(tmp_path))
    metric.process(
        None,
        [dict(img_emb=img[c // 5], txt_emb=cap[c], img_idx=c // 5, cap_idx=c) for c in range(60)],
    )
    got = metric.compute_metrics(metric.results)
    want = published_cxc(img.numpy(), cap.numpy(), *ids)
    assert got.pop('tie_rule') == 'published' and got == want
