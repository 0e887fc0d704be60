"""What ``tools/test.py`` writes besides the metrics: the table, ``--out`` provenance,
``--save-sims`` / ``--save-ranks`` arrays and the CxC recalls (docs/vse.md#evaluation-outputs)."""

from __future__ import annotations

import datetime
import hashlib
import os
import os.path as osp
import platform

import numpy as np
import torch

TOPK = 10  # ids per query in --save-ranks


def prepare_retrieval_metrics(runner, tie_rule: str | None):
    """The test loop's :class:`VSERetrievalMetric` (None without one), set up for test.py:
    its own log of the table off (test.py prints it once) and ``--tie-rule`` applied."""
    from gpo_plugin.evaluation import VSECxCMetric, VSERetrievalMetric
    from gpo_plugin.evaluation.functional.retrieval_ranks import check_tie_rule

    found = None
    for metric in runner.test_loop.evaluator.metrics:
        if isinstance(metric, VSERetrievalMetric):
            if tie_rule:
                metric.tie_rule = check_tie_rule(tie_rule)
            if not isinstance(metric, VSECxCMetric):
                metric.log_table = False
                found = found or metric
    return found


def add_cxc(metrics: dict, retrieval, annot_dir: str | None) -> dict:
    """``--cxc-annots``: the CxC recalls of the test embeddings, under ``cxc/`` keys."""
    if not annot_dir:
        return metrics
    from gpo_plugin.evaluation import cxc_recalls

    if retrieval is None or not retrieval.last_run:
        raise SystemExit('--cxc-annots needs a VSERetrievalMetric in the test_evaluator.')
    run = retrieval.last_run
    recalls = cxc_recalls(run['img_emb'], run['txt_emb'], annot_dir, retrieval.tie_rule)
    return dict(metrics, **{f'cxc/{k}': v for k, v in recalls.items()})


def retrieval_table(metrics: dict, retrieval) -> tuple[str | None, set]:
    """The papers' table of the retrieval metrics (and CxC rows), and the keys it shows."""
    from gpo_plugin.evaluation import format_retrieval_table

    rsum = [k for k in metrics if k.endswith('rsum') and 'fold' not in k]
    if not rsum:
        return None, set()
    prefix = rsum[0][: -len('rsum')]
    run = retrieval.last_run if retrieval is not None else {}
    num_images = len(run['img_emb']) if run else None
    num_captions = len(run['txt_emb']) if run else None
    fold_size = run.get('fold_size') if run else _fold_size(metrics, prefix)
    table = format_retrieval_table(
        metrics,
        num_images,
        num_captions,
        fold_size,
        prefix=prefix,
        fold_skipped=run.get('fold_skipped') if run else None,
    )
    shown = {k for k in metrics if k.startswith(prefix)}
    cxc = {k: v for k, v in metrics.items() if k.startswith('cxc/') and '_R@' in k}
    if cxc:
        table += (
            '\nCxC '
            + '  '.join(
                f'{d}: ' + ' / '.join(f'{cxc[f"cxc/{d}_R@{k}"]:.1f}' for k in (1, 5, 10))
                for d in ('i2t', 't2i', 'i2i', 't2t')
            )
            + '  (R@1 / R@5 / R@10)'
        )
        shown |= set(cxc)
    return table, shown


def _fold_size(metrics: dict, prefix: str) -> int | None:
    for key in metrics:
        rest = key[len(prefix) :]
        if rest.startswith('fold') and rest[4:].split('_')[0].isdigit():
            return int(rest[4:].split('_')[0])
    return None


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def provenance(cfg, args, retrieval) -> dict:
    """What a cited number needs beside it: config, checkpoint, data, protocol, versions, date."""
    import mmengine

    import gpo_plugin

    dataset = dict((cfg.get('test_dataloader') or {}).get('dataset') or {})
    run = retrieval.last_run if retrieval is not None else {}
    record = dict(
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        config=dict(
            path=osp.abspath(args.config), sha256=sha256(args.config), resolved=cfg.pretty_text
        ),
        checkpoint=dict(path=osp.abspath(args.checkpoint), sha256=sha256(args.checkpoint)),
        data={
            k: _plain(dataset.get(k))
            for k in ('type', 'data_root', 'split', 'ann_file')
            if k in dataset
        },
        versions=dict(
            gpo_plugin=gpo_plugin.__version__,
            torch=torch.__version__,
            numpy=np.__version__,
            mmengine=mmengine.__version__,
            python=platform.python_version(),
        ),
    )
    if run:
        fold_size = run['fold_size']
        n_img = len(run['img_emb'])
        record['data'].update(num_images=n_img, num_captions=len(run['txt_emb']))
        record['protocol'] = dict(
            full_set=True,
            folds=n_img // fold_size if fold_size else 0,
            fold_size=fold_size or retrieval.fold_size,
            fold_skipped=run['fold_skipped'],
            tie_rule=retrieval.tie_rule,
            similarity='dot product of the float32 embeddings, in float64 (as published)',
        )
    if getattr(args, 'cxc_annots', None):
        record['protocol']['cxc_annots'] = osp.abspath(args.cxc_annots)
    return record


def _plain(value):
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


def save_arrays(retrieval, sims_path: str | None, ranks_path: str | None) -> None:
    """``--save-sims`` and ``--save-ranks``: numpy ``.npz`` files (no pickles)."""
    if not (sims_path or ranks_path):
        return
    if retrieval is None or not retrieval.last_run:
        raise SystemExit(
            '--save-sims / --save-ranks need a VSERetrievalMetric in the test_evaluator.'
        )
    run = retrieval.last_run
    img, txt, txt_img = run['img_emb'].float(), run['txt_emb'].float(), run['txt_img']
    if sims_path:
        sims = similarity_matrix(img, txt)
        _savez(
            sims_path, sims=sims, img_emb=img.numpy(), txt_emb=txt.numpy(), txt_img=txt_img.numpy()
        )
        print(f'similarity matrix {sims.shape} written to {sims_path}')
    if ranks_path:
        from gpo_plugin.evaluation.functional import topk_by_rule

        ranks, rule = run['ranks'], retrieval.tie_rule
        arrays = dict(
            i2t_rank=ranks.i2t.numpy(), t2i_rank=ranks.t2i.numpy(), txt_img=txt_img.numpy()
        )
        if ranks.fold_i2t is not None:
            arrays.update(
                fold_i2t_rank=ranks.fold_i2t.numpy(), fold_t2i_rank=ranks.fold_t2i.numpy()
            )
        arrays['i2t_topk'] = _topk(img, txt, rule, topk_by_rule)
        arrays['t2i_topk'] = _topk(txt, img, rule, topk_by_rule)
        _savez(ranks_path, **arrays)
        print(f'ranks and top-{TOPK} ids written to {ranks_path}')


def similarity_matrix(img: torch.Tensor, txt: torch.Tensor) -> np.ndarray:
    """(N_img, N_txt) float64 scores of the float32 embeddings, as the published
    ``compute_sim`` (and its ``save_path`` file) holds them: the scores the ranks are on."""
    from gpo_plugin.evaluation.functional.retrieval_ranks import published_scores

    return published_scores(img, txt)


def _topk(queries, gallery, rule, topk_by_rule, chunk: int = 256) -> np.ndarray:
    parts = [
        topk_by_rule(queries[lo : lo + chunk], gallery, TOPK, rule)[1]
        for lo in range(0, len(queries), chunk)
    ]
    return torch.cat(parts).numpy()


def _savez(path: str, **arrays) -> None:
    os.makedirs(osp.dirname(osp.abspath(path)) or '.', exist_ok=True)
    np.savez(path, **arrays)
