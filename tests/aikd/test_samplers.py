"""CS-KD's PairBatchSampler (SPEC 5.1; 12 item 28)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aikd.data import PairBatchSampler

# 7 classes of uneven size, class 6 a singleton; N = 53 is not a multiple of the batch size.
LABELS = np.array([0] * 12 + [1] * 9 + [2] * 11 + [3] * 5 + [4] * 8 + [5] * 7 + [6] * 1)
rng = np.random.default_rng(0)
LABELS = LABELS[rng.permutation(len(LABELS))]


def epoch_batches(sampler, epoch):
    sampler.set_epoch(epoch)
    return [list(b) for b in sampler]


def split(batch):
    k = len(batch) // 2
    return batch[:k], batch[k:]


@pytest.mark.parametrize("batch_size", [1, 8, 10, 53, 64])
def test_batches_are_even_same_class_and_cover_each_anchor_once(batch_size):
    sampler = PairBatchSampler(LABELS, batch_size, seed=3)
    for epoch in range(3):
        batches = epoch_batches(sampler, epoch)
        assert len(batches) == len(sampler) == math.ceil(len(LABELS) / batch_size)
        anchors = []
        for b in batches:
            assert len(b) % 2 == 0 and len(b) // 2 <= batch_size
            a, p = split(b)
            assert all(LABELS[i] == LABELS[j] for i, j in zip(a, p))
            anchors += a
        assert sorted(anchors) == list(range(len(LABELS)))
        assert all(len(b) == 2 * batch_size for b in batches[:-1])


def test_singleton_class_pairs_with_itself():
    only = int(np.flatnonzero(LABELS == 6)[0])
    sampler = PairBatchSampler(LABELS, 8, seed=0)
    for epoch in range(3):
        for b in epoch_batches(sampler, epoch):
            a, p = split(b)
            for i, j in zip(a, p):
                if i == only:
                    assert j == only


def test_partners_are_drawn_with_replacement_from_the_whole_class_anchor_included():
    """Over many epochs each member of a class is drawn about equally often, the anchor itself included."""
    labels = np.array([0, 0, 0, 1, 1])
    sampler = PairBatchSampler(labels, 2, seed=11)
    counts = np.zeros((5, 5))
    for epoch in range(2000):
        for b in epoch_batches(sampler, epoch):
            for i, j in zip(*split(b)):
                counts[i, j] += 1
    for i in range(5):
        members = np.flatnonzero(labels == labels[i])
        share = counts[i, members] / counts[i].sum()
        assert counts[i].sum() == 2000 and counts[i, labels != labels[i]].sum() == 0
        assert np.all(np.abs(share - 1 / len(members)) < 0.05)


def test_same_seed_and_epoch_replay_and_epochs_differ():
    a = PairBatchSampler(LABELS, 8, seed=5)
    b = PairBatchSampler(LABELS, 8, seed=5)
    assert epoch_batches(a, 4) == epoch_batches(b, 4)
    assert epoch_batches(a, 4) == epoch_batches(a, 4)  # iterating again replays the same epoch
    anchors = [sum((split(x)[0] for x in epoch_batches(a, e)), []) for e in range(3)]
    assert anchors[0] != anchors[1] and anchors[1] != anchors[2]
    assert epoch_batches(PairBatchSampler(LABELS, 8, seed=6), 4) != epoch_batches(a, 4)
