"""Split, batch augmentations and device-resident loaders."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from aikd.config import TrainConfig
from aikd.data import build_data, stratified_holdout
from aikd.data.augment import cutmix, cutout, mixup, pad_crop_flip, random_resized_crop_flip
from aikd.data.datasets import get_dataset
from aikd.data.loaders import TensorLoader
from aikd.data.split import cap_per_class, flip_labels


def test_stratified_holdout_per_class_counts_and_seed():
    labels = np.repeat(np.arange(5), [10, 20, 3, 1, 2])
    tr, va = stratified_holdout(labels, 0.1, seed=0)
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == len(labels)
    counts = np.bincount(labels[va], minlength=5)
    assert counts.tolist() == [1, 2, 1, 0, 1]  # round(0.1 n), at least 1 when n >= 2, never the last one
    assert np.array_equal(va, stratified_holdout(labels, 0.1, seed=0)[1])
    assert not np.array_equal(va, stratified_holdout(labels, 0.1, seed=1)[1])
    assert len(stratified_holdout(labels, 0.0)[1]) == 0


def test_pad_crop_flip_is_a_shifted_window_of_the_padded_image():
    x = torch.rand(16, 3, 8, 8)
    out = pad_crop_flip(x, torch.Generator().manual_seed(0), padding=2)
    padded = F.pad(x, (2, 2, 2, 2))
    for i in range(16):
        found = any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(2))
                    for dy in range(5) for dx in range(5) for w in [padded[i, :, dy:dy + 8, dx:dx + 8]])
        assert found, i


@pytest.mark.parametrize("padding,flip", [(4, True), (2, False), (0, True)])
def test_pad_crop_flip_matches_per_image_slicing_with_the_same_draws(padding, flip):
    """Exact output for the documented draw order (dy, dx, flips), so seeded epochs stay reproducible."""
    x = torch.rand(32, 3, 8, 8)
    out = pad_crop_flip(x, torch.Generator().manual_seed(3), padding=padding, flip=flip)
    g = torch.Generator().manual_seed(3)
    dy = torch.randint(0, 2 * padding + 1, (32,), generator=g) if padding else torch.zeros(32, dtype=torch.long)
    dx = torch.randint(0, 2 * padding + 1, (32,), generator=g) if padding else torch.zeros(32, dtype=torch.long)
    flips = torch.rand(32, generator=g) < 0.5 if flip else torch.zeros(32, dtype=torch.bool)
    padded = F.pad(x, (padding,) * 4)
    for i in range(32):
        window = padded[i, :, dy[i]:dy[i] + 8, dx[i]:dx[i] + 8]
        assert torch.equal(out[i], window.flip(2) if flips[i] else window), i
    assert out.is_contiguous()


def test_cutout_zeroes_one_clipped_square():
    x = torch.ones(32, 1, 10, 10)
    out = cutout(x, torch.Generator().manual_seed(1), 4)
    for img in out[:, 0]:
        rows = (img == 0).any(1).nonzero().flatten()
        cols = (img == 0).any(0).nonzero().flatten()
        assert 0 < len(rows) <= 4 and 0 < len(cols) <= 4
        assert (img == 0).sum() == len(rows) * len(cols)  # a full rectangle


def test_mixup_and_cutmix_weights():
    x, y = torch.rand(8, 3, 16, 16), torch.arange(8)
    g, rng = torch.Generator().manual_seed(0), np.random.default_rng(0)
    xm, ya, yb, lam = mixup(x, y, rng, g, 1.0)
    assert 0 <= lam <= 1 and torch.equal(ya, y) and sorted(yb.tolist()) == list(range(8))
    assert torch.allclose(xm, lam * x + (1 - lam) * x[yb])
    xc, ya, yb, lam = cutmix(x, y, rng, g, 1.0)
    pasted = (xc != x).any(1)[0].float().mean().item() if yb[0] != 0 else None
    if pasted is not None:
        assert pasted == pytest.approx(1 - lam, abs=1e-6)


def test_random_resized_crop_shape():
    out = random_resized_crop_flip(torch.rand(4, 3, 64, 64), torch.Generator().manual_seed(0), size=32)
    assert out.shape == (4, 3, 32, 32)


def test_tensor_loader_epochs_are_reproducible_and_cover_every_index():
    images, labels = torch.rand(21, 3, 4, 4), torch.arange(21)
    mean, std = torch.zeros(3), torch.ones(3)
    loader = TensorLoader(images, labels, 5, mean=mean, std=std, seed=3, train=True)

    def epoch(e):
        loader.set_epoch(e)
        return [b.idx.tolist() for b in loader]
    e0, e0_again, e1 = epoch(0), epoch(0), epoch(1)
    assert e0 == e0_again and e0 != e1
    seen = sorted(i for b in e0 for i in b)
    assert len(e0[-1]) >= 2 or seen == list(range(21))
    assert len(seen) == 20 and all(len(b) >= 2 for b in e0)  # the size-1 last batch is skipped (SPEC D24)


def test_flip_labels_changes_exactly_the_fraction_to_other_classes():
    labels = np.repeat(np.arange(4), 25)
    noisy = flip_labels(labels, 0.2, 4, seed=3)
    changed = noisy != labels
    assert changed.sum() == 20 and noisy.min() >= 0 and noisy.max() <= 3  # every flipped label is wrong
    assert np.array_equal(noisy, flip_labels(labels, 0.2, 4, seed=3))
    assert not np.array_equal(noisy, flip_labels(labels, 0.2, 4, seed=4))
    assert np.array_equal(flip_labels(labels, 0.0, 4), labels) and np.array_equal(labels, np.repeat(np.arange(4), 25))


def test_cap_per_class_keeps_at_most_k_of_each_class():
    labels = np.repeat(np.arange(3), [10, 2, 6])
    idx = np.arange(1, 18)  # the first image of class 0 is not in the subset
    kept = cap_per_class(labels, idx, 3, seed=0)
    assert np.bincount(labels[kept], minlength=3).tolist() == [3, 2, 3] and set(kept) <= set(idx)
    assert np.array_equal(cap_per_class(labels, idx, 0), idx)


def test_digits_default_protocol_holds_out_70_percent_and_flips_a_fifth_of_the_training_labels():
    cfg = TrainConfig.from_dict({"data.dataset": "digits"}).resolved()
    assert (cfg.data.val_fraction, cfg.data.label_noise, cfg.data.train_per_class) == (0.7, 0.2, 0)
    d = build_data(cfg, torch.device("cpu"))
    clean = get_dataset("digits", split="train").targets
    per_class = np.bincount(clean)
    n_val = int(sum(round(0.7 * n) for n in per_class))  # stratified: round(fraction * n_c) per class
    n_train = len(clean) - n_val
    assert len(d.train_labels) == n_train and sum(len(b.y) for b in d.val) == n_val
    assert sum(len(b.y) for b in d.test) == 360 and d.num_classes == 10
    train_idx, val_idx = stratified_holdout(clean, 0.7, cfg.data.split_seed)
    wrong = (d.train_labels.numpy() != clean[train_idx]).sum()
    assert wrong == round(0.2 * n_train)
    assert torch.equal(torch.cat([b.y for b in d.val]), torch.as_tensor(clean[val_idx]))  # validation stays clean
    capped = build_data(TrainConfig.from_dict({"data.dataset": "digits", "data.train_per_class": 12,
                                               "data.label_noise": 0}).resolved(), torch.device("cpu"))
    assert torch.bincount(capped.train_labels).tolist() == [12] * 10


def test_digits_data_splits_and_normalisation():
    cfg = TrainConfig.from_dict({"data.dataset": "digits", "data.val_fraction": 0.1}).resolved()
    d = build_data(cfg, torch.device("cpu"))
    n_train = len(d.train_labels)
    n_val = sum(len(b.y) for b in d.val)
    assert n_train + n_val == 1437 and 130 <= n_val <= 150
    assert sum(len(b.y) for b in d.test) == 360 and d.num_classes == 10
    d.train.set_epoch(0)
    xs = torch.cat([b.x for b in d.train])
    assert xs.mean().abs() < 0.05 and (xs.std() - 1).abs() < 0.05
