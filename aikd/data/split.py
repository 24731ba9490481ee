"""Stratified, seeded hold-out of the training set for model selection (SPEC 8.3)."""

from __future__ import annotations

import numpy as np


def stratified_holdout(labels, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, val_idx): per class round(fraction * n_c) held out, at least 1 when n_c >= 2."""
    labels = np.asarray(labels)
    if fraction <= 0:
        return np.arange(len(labels)), np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        n_val = int(round(fraction * len(idx)))
        if len(idx) >= 2:
            n_val = min(max(n_val, 1), len(idx) - 1)
        else:
            n_val = 0
        val.extend(rng.permutation(idx)[:n_val].tolist())
    val = np.sort(np.asarray(val, dtype=np.int64))
    train = np.setdiff1d(np.arange(len(labels)), val)
    return train, val
