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


def cap_per_class(labels, indices, per_class: int, seed: int = 0) -> np.ndarray:
    """`indices` with at most `per_class` of each class kept, chosen at random (all of them when per_class is 0)."""
    labels, indices = np.asarray(labels), np.asarray(indices, dtype=np.int64)
    if per_class <= 0:
        return indices
    rng = np.random.default_rng([seed, 1])
    kept = [rng.permutation(indices[labels[indices] == c])[:per_class] for c in np.unique(labels[indices])]
    return np.sort(np.concatenate(kept)) if kept else indices


def flip_labels(labels, fraction: float, num_classes: int, seed: int = 0) -> np.ndarray:
    """A copy of `labels` with round(fraction * n) of them, chosen at random, replaced by another class drawn
    uniformly (symmetric label noise): every flipped label is wrong, so the noise rate is exactly `fraction`."""
    out = np.array(labels, dtype=np.int64, copy=True)
    n_flip = int(round(fraction * len(out)))
    if n_flip == 0 or num_classes < 2:
        return out
    rng = np.random.default_rng([seed, 2])
    which = rng.choice(len(out), n_flip, replace=False)
    out[which] = (out[which] + rng.integers(1, num_classes, n_flip)) % num_classes
    return out
