"""CS-KD's pair batch sampler (SPEC 5.1): anchors in a random order, each followed by a same-class partner."""

from __future__ import annotations

import math

import numpy as np


class PairBatchSampler:
    """Yields lists of 2k indices: k anchors, then one partner of the same class per anchor, in order.

    Every index is an anchor once per epoch; partners are drawn with replacement from the anchor's class (the
    anchor itself included). Draws come from `Generator(seed + epoch)` so an epoch's order can be replayed.
    """

    def __init__(self, labels, batch_size: int, seed: int = 0):
        self.labels = np.asarray(labels, dtype=np.int64)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.epoch = 0
        self.by_class = {c: np.flatnonzero(self.labels == c) for c in np.unique(self.labels)}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def __iter__(self):
        rng = np.random.default_rng(self.seed + self.epoch)
        order = rng.permutation(len(self.labels))
        for start in range(0, len(order), self.batch_size):
            anchors = order[start:start + self.batch_size]
            partners = [int(rng.choice(self.by_class[self.labels[i]])) for i in anchors]
            yield [int(i) for i in anchors] + partners
