"""Ensembles of retrieval models: average their similarity matrices and evaluate
(as the published ``eval_ensemble``), reading similarity files without unpickling code.

The published similarity files hold float64 scores (``compute_sim`` of the float64 copies of
the float32 embeddings), and so do ``tools/test.py --save-sims`` files; the mean is taken and
ranked in the files' dtype, ``np.argsort`` on its rows wherever a ground truth is tied."""

from __future__ import annotations

import pickle

import numpy as np

from .functional.retrieval_ranks import check_tie_rule, rule_position

# The only callables a published similarity file (np.save of {'npts': int, 'sims': array})
# may name: numpy's array / scalar reconstruction; anything else is refused.
_ALLOWED = {
    ('numpy', 'ndarray'): np.ndarray,
    ('numpy', 'dtype'): np.dtype,
}
for _module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
    _ALLOWED[(_module, '_reconstruct')] = np.ndarray.__reduce__(np.zeros(1))[0]
    _ALLOWED[(_module, 'scalar')] = np.int64(0).__reduce__()[0]
for _module in ('numpy', 'numpy.core.multiarray', 'numpy._core.multiarray'):
    _ALLOWED[(_module, 'dtype')] = np.dtype
    _ALLOWED[(_module, 'ndarray')] = np.ndarray


class SimilarityFileError(ValueError):
    """A similarity file that cannot be read safely, or matrices that do not fit together."""


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        raise SimilarityFileError(
            f'refusing to load {module}.{name}: a similarity file may hold only numpy arrays, '
            'dicts and numbers.'
        )


def load_similarity_file(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(N_img, N_txt) similarities and, if the file has it, (N_txt,) caption-to-image rows.

    Reads ``tools/test.py --save-sims`` files (``.npz``: ``sims``, ``txt_img``), plain
    ``.npy`` matrices, and the published ``np.save(path, {'npts': n, 'sims': sims})`` files,
    whose pickled dict is read with an unpickler that accepts only arrays and numbers.
    """
    try:
        with open(path, 'rb') as f:
            if f.read(6) != b'\x93NUMPY':
                f.seek(0)
                with np.load(f, allow_pickle=False) as data:
                    if 'sims' not in data:
                        raise SimilarityFileError(f'{path}: the .npz has no `sims` array.')
                    txt_img = data['txt_img'] if 'txt_img' in data else None
                    return _checked(path, data['sims'], txt_img)
            f.seek(0)
            version = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            _, _, dtype = read_header(f)
            if not dtype.hasobject:
                f.seek(0)
                return _checked(path, np.load(f, allow_pickle=False), None)
            obj = _ArraysOnly(f).load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError) as err:
        if isinstance(err, SimilarityFileError):
            raise
        raise SimilarityFileError(
            f'{path}: not a readable similarity file ({type(err).__name__}: {err}); expected '
            'an .npz from tools/test.py --save-sims or an .npy matrix / published dict.'
        ) from None
    obj = obj.item() if isinstance(obj, np.ndarray) and obj.shape == () else obj
    if not isinstance(obj, dict) or 'sims' not in obj:
        raise SimilarityFileError(f"{path}: expected a dict with 'npts' and 'sims'.")
    sims = np.asarray(obj['sims'])
    npts = obj.get('npts')
    if npts is not None and int(npts) != sims.shape[0]:
        raise SimilarityFileError(f'{path}: npts={npts} but sims has {sims.shape[0]} rows.')
    return _checked(path, sims, None)


def _checked(path, sims, txt_img):
    if sims.ndim != 2 or sims.dtype.kind != 'f':
        raise SimilarityFileError(
            f'{path}: sims must be a 2-D float matrix, got {sims.dtype} {sims.shape}.'
        )
    return sims, txt_img


def average_similarities(matrices: list[np.ndarray], names: list[str]) -> np.ndarray:
    """The element-wise mean, as the published code takes it (np.array(...).mean(axis=0))."""
    if len(matrices) < 2:
        raise SimilarityFileError('an ensemble needs two or more similarity files.')
    shapes = {name: m.shape for name, m in zip(names, matrices, strict=True)}
    if len(set(shapes.values())) > 1:
        raise SimilarityFileError(
            'the similarity matrices differ in size: '
            + ', '.join(f'{n} {s}' for n, s in shapes.items())
            + '; evaluate models on the same split.'
        )
    return np.array(matrices).mean(axis=0)


def ranks_from_similarities(
    sims: np.ndarray, txt_img: np.ndarray, tie_rule: str = 'published'
) -> tuple[np.ndarray, np.ndarray]:
    """0-based i2t and t2i ranks of a (N_img, N_txt) matrix under ``tie_rule``: counted where
    the ground truth is untied, ``np.argsort`` (published rule) on the row where it is tied."""
    check_tie_rule(tie_rule)
    n_img, n_txt = sims.shape
    cols = np.arange(n_txt)
    own = sims[txt_img, cols]
    best = np.full(n_img, -np.inf, dtype=sims.dtype)
    np.maximum.at(best, txt_img, own)
    n_best = np.bincount(txt_img[own == best[txt_img]], minlength=n_img)
    i2t = np.empty(n_img, dtype=np.int64)
    for i in range(n_img):
        row, targets = sims[i], np.flatnonzero(txt_img == i)
        i2t[i] = _fast_rank(row, best[i], n_best[i], targets, tie_rule)
    t2i = np.empty(n_txt, dtype=np.int64)
    for j in range(n_txt):
        t2i[j] = _fast_rank(sims[:, j], own[j], 1, np.array([txt_img[j]]), tie_rule)
    return i2t, t2i


def _fast_rank(row, best, n_best, targets, tie_rule) -> int:
    if np.isnan(best) or (tie_rule == 'published' and np.isnan(row).any()):
        return rule_position(row, targets, tie_rule)
    above = int(np.count_nonzero(row > best))
    if tie_rule == 'optimistic':
        return above
    equal = int(np.count_nonzero(row == best))
    if tie_rule == 'pessimistic':
        return above + equal - int(n_best)
    return above if equal == 1 else rule_position(row, targets, tie_rule)


def evaluate_similarities(
    sims: np.ndarray,
    txt_img: np.ndarray | None = None,
    fold5: bool = False,
    tie_rule: str = 'published',
) -> dict:
    """The retrieval metrics of a similarity matrix: the full set, and with ``fold5`` the five
    folds of N_img / 5 images (each fold's, their mean and std), as ``VSERetrievalMetric``."""
    import torch

    from .functional.retrieval_ranks import RetrievalRanks
    from .retrieval_metric import fold_metrics

    n_img, n_txt = sims.shape
    if txt_img is None:
        if n_txt % n_img:
            raise SimilarityFileError(
                f'sims is {n_img} x {n_txt}: without caption-to-image rows the captions must '
                'come in equal groups per image, in image order.'
            )
        txt_img = np.arange(n_img).repeat(n_txt // n_img)
    fold_size = None
    if fold5:
        if n_img % 5:
            raise SimilarityFileError(f'--fold5: {n_img} images do not split into 5 folds.')
        fold_size = n_img // 5
    i2t, t2i = ranks_from_similarities(sims, txt_img, tie_rule)
    fold_i2t = fold_t2i = None
    if fold_size:
        fold_i2t, fold_t2i = np.empty_like(i2t), np.empty_like(t2i)
        for lo in range(0, n_img, fold_size):
            caps = np.flatnonzero((txt_img >= lo) & (txt_img < lo + fold_size))
            block = sims[lo : lo + fold_size][:, caps]
            f_i2t, f_t2i = ranks_from_similarities(block, txt_img[caps] - lo, tie_rule)
            fold_i2t[lo : lo + fold_size], fold_t2i[caps] = f_i2t, f_t2i
    as_t = torch.from_numpy
    ranks = RetrievalRanks(
        as_t(i2t),
        as_t(t2i),
        None if fold_i2t is None else as_t(fold_i2t),
        None if fold_t2i is None else as_t(fold_t2i),
    )
    metrics = fold_metrics(ranks, torch.from_numpy(txt_img), fold_size)
    metrics['tie_rule'] = tie_rule
    return metrics
