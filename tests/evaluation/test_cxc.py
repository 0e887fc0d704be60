"""CxC recalls on a generated CxC-format set, against the published computation written out."""

import json

import numpy as np
import pytest
import torch

from gpo_plugin.evaluation import CxCAnnotationError, VSECxCMetric, cxc_recalls


def make_cxc(tmp_path, n_img=12, seed=0):
    """A CxC folder for n_img images x 5 captions with ids, ratings and absent ids."""
    rng = np.random.default_rng(seed)
    img_ids = [str(1000 + 7 * i) for i in range(n_img)]
    cap_ids = [str(50000 + 3 * c) for c in range(5 * n_img)]
    (tmp_path / 'testall_ids.txt').write_text(''.join(f'{i}\n' for i in img_ids for _ in range(5)))
    (tmp_path / 'testall_capids.txt').write_text(''.join(f'{c}\n' for c in cap_ids))

    def pick(ids, n):
        return [ids[k] for k in rng.choice(len(ids), size=n, replace=False)]

    it = {
        'i2t': {
            i: [[int(c), 1.0] for c in pick(cap_ids, rng.integers(0, 8))] + [[999, 5.0]]
            for i in img_ids
        },
        't2i': {c: [[int(i), 1.0] for i in pick(img_ids, rng.integers(0, 3))] for c in cap_ids},
    }
    i2i = {i: [[int(j), float(rng.integers(0, 11)) / 2] for j in pick(img_ids, 4)] for i in img_ids}
    t2t = {c: [[int(d), float(rng.integers(0, 11)) / 2] for d in pick(cap_ids, 5)] for c in cap_ids}
    for name, obj in (('cxc_it', it), ('cxc_i2i', i2i), ('cxc_t2t', t2t)):
        (tmp_path / f'{name}.json').write_text(json.dumps(obj))
    return img_ids, cap_ids, it, i2i, t2t


def best_position(row, targets):
    inds = np.argsort(row)[::-1]
    return min((np.where(inds == t)[0][0] for t in targets), default=1e20)


def recalls(ranks):
    ranks = np.array(ranks)
    return [100.0 * len(np.where(ranks < k)[0]) / len(ranks) for k in (1, 5, 10)]


def published_cxc(images, captions, img_ids, cap_ids, it, i2i, t2t):
    """The published eval_cxc, written out: argsort rows of the products of its float64 arrays."""
    sims = images @ captions.T
    out = {}
    for name, s, queries, data, annot in (
        ('t2i', sims.T, cap_ids, img_ids, it['t2i']),
        ('i2t', sims, img_ids, cap_ids, it['i2t']),
    ):
        ranks = []
        for q, query in enumerate(queries):
            pos = [data.index(str(e[0])) for e in annot[query] if str(e[0]) in data]
            ranks.append(best_position(s[q], pos))
        out.update(zip([f'{name}_R@{k}' for k in (1, 5, 10)], recalls(ranks), strict=True))
    for name, embs, ids, annot, thresh, text in (
        ('i2i', images, img_ids, i2i, 2.5, False),
        ('t2t', captions, cap_ids, t2t, 3.0, True),
    ):
        s = embs @ embs.T
        np.fill_diagonal(s, 0)
        ranks = []
        for q, query in enumerate(ids):
            pos = [ids.index(str(e[0])) for e in annot[query] if e[1] >= thresh]
            if text:
                pos += [c for c in range(q // 5 * 5, q // 5 * 5 + 5) if c != q]
            elif not pos:
                continue
            ranks.append(best_position(s[q], pos))
        out.update(zip([f'{name}_R@{k}' for k in (1, 5, 10)], recalls(ranks), strict=True))
    return out


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
