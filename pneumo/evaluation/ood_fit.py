"""The job's out-of-distribution guard: fitted on the training films, thresholded on validation.

Image checks are measured on each film's raw file (under the data root) as served films are;
a film whose file is gone falls back to its decoded gray square. Nothing here touches the
test split except to report the share of its films the guard flags.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pneumo.evaluation import imagestats, ood
from pneumo.model import embedding
from pneumo.record import names

log = logging.getLogger("pneumo")


@dataclass(frozen=True)
class GuardFit:
    """The out-of-distribution guard a job's model carries, and the shares of films it flags; or why it has none."""

    guard: ood.Guard | None
    flagged: dict[str, float]  # VAL_OOD_FLAGGED, TEST_OOD_FLAGGED
    missing: str | None = None  # why the guard could not be fitted (the model still ships, and says so)


@functools.lru_cache(maxsize=1 << 16)
def _file_features(path: str, mtime_ns: int, size: int) -> np.ndarray | None:
    """One film file's image features, or None if it cannot be read as an image. Remembered by (path, mtime, size):
    the jobs of a sweep run in one process and measure the same films each (4 s a job of a 32 px screen)."""
    del mtime_ns, size  # the key: a rewritten file is measured again
    data = Path(path).read_bytes()  # OSError: the caller falls back to the decoded film
    try:
        return imagestats.features(data)
    except imagestats.ImageError:
        return None


def _features(root: Path, subset, idx) -> tuple[np.ndarray, list[int]]:
    """imagestats.many over the films `idx`: each from its raw file under `root`, as served films are measured,
    or, when that file is gone, from its decoded gray square."""
    rows, ok = [], []
    for k, i in enumerate(idx):
        f = root / str(subset.paths[i])
        try:
            st = f.stat()
            row = _file_features(str(f), st.st_mtime_ns, st.st_size)
        except OSError:  # the file is gone: its decoded square
            try:
                row = imagestats.features(imagestats.from_array(subset.x[i]))
            except imagestats.ImageError:
                row = None
        if row is not None:
            rows.append(row)
            ok.append(k)
    return (np.stack(rows) if rows else np.zeros((0, len(imagestats.FEATURES) + imagestats.LAYOUT**2))), ok


def measure(embed, subset, root, idx=None, batch_size: int = 64):
    """(image features, probabilities, embeddings) of the films `idx` of a split (all by default)."""
    idx = np.arange(len(subset)) if idx is None else np.asarray(idx)
    feats, ok = _features(Path(root), subset, idx)
    prob, emb = embedding.predict(embed, subset.x[idx[ok]], batch_size)
    return feats, prob, emb


def fit_guard(model, splits, threshold: float, evaluation, batch_size: int) -> tuple[ood.Guard, dict[str, float]]:
    """The guard and what it flags: val_ood_flagged (by construction up to ~2 x (1 - quantile): the distances'
    1 - quantile, and the orientation check's as much again), test_ood_flagged."""
    embed = embedding.embedder(model)
    rng = np.random.default_rng(evaluation.seed)
    n = len(splits.train)
    idx = np.sort(rng.choice(n, max(min(n, int(evaluation.ood_sample)), 0), replace=False))
    if min(len(idx), len(splits.val)) < ood.MIN_FILMS:  # a 0-film sample crashed Keras' predict after training
        raise ValueError(f"{len(idx)} training films (evaluation.ood_sample={evaluation.ood_sample}) and "
                         f"{len(splits.val)} validation films: the guard needs at least {ood.MIN_FILMS} of each")
    root = Path(splits.root)
    t_img, _, t_emb = measure(embed, splits.train, root, idx, batch_size)
    v_img, v_prob, v_emb = measure(embed, splits.val, root, None, batch_size)
    guard = ood.fit(t_img, t_emb, v_img, v_emb, v_prob, prob_threshold=threshold,
                    quantile=float(evaluation.ood_quantile), reference=int(evaluation.ood_sample),
                    seed=int(evaluation.seed), names=imagestats.FEATURES)
    test_root = Path(splits.test_source) if Path(splits.test_source).is_dir() else root
    s_img, _, s_emb = measure(embed, splits.test, test_root, None, batch_size)
    metrics = {names.VAL_OOD_FLAGGED: float(guard.score(v_img, v_emb)[1].mean()),
               names.TEST_OOD_FLAGGED: float(guard.score(s_img, s_emb)[1].mean())}
    return guard, metrics


def fit_or_why(model, splits, threshold: float, evaluation, batch_size: int) -> GuardFit:
    """`fit_guard`, or when it cannot be fitted, why: the model still ships, and its version says why
    (promotion then refuses it unless forced)."""
    try:
        return GuardFit(*fit_guard(model, splits, threshold, evaluation, batch_size))
    except (ValueError, np.linalg.LinAlgError) as e:
        log.warning("no out-of-distribution guard for this model: %s", e)
        return GuardFit(None, {}, str(e).splitlines()[0][:500] or type(e).__name__)
