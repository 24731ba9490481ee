"""Train/val/test loaders: device-resident tensors for sets that fit in memory, a DataLoader for image folders.

Both yield `Batch(x, y, idx, y_b, lam)` on the device; `idx` is the position in the training subset (PS-KD's
table, AI-KD's cache mode and the CS-KD sampler index by it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from aikd.data.augment import (
    cutmix,
    cutout,
    epoch_seed,
    mixup,
    pad_crop_flip,
    random_resized_crop_flip,
    to_device,
)
from aikd.data.datasets import get_dataset
from aikd.data.samplers import PairBatchSampler
from aikd.data.split import cap_per_class, flip_labels, stratified_holdout


@dataclass
class Batch:
    x: torch.Tensor
    y: torch.Tensor
    idx: torch.Tensor
    y_b: torch.Tensor | None = None  # second label of a mixed batch
    lam: float = 1.0                 # weight of y in a mixed batch


@dataclass
class Data:
    train: object
    val: object | None
    test: object
    num_classes: int
    train_labels: torch.Tensor
    input_size: int
    info: object


def _min_train_rows(batch_sampler) -> int:
    """Smallest training batch kept: 2 rows, or 2 anchors (4 rows) when a pair sampler adds partners (D24)."""
    return 4 if batch_sampler is not None else 2


class _Regularizer:
    """Cutout / mixup / cutmix applied to a normalised batch (SPEC 8.5)."""

    def __init__(self, augment: str, cutout_size: int, mix_alpha: float):
        self.augment, self.cutout_size, self.mix_alpha = augment, cutout_size, mix_alpha

    def __call__(self, batch: Batch, gen: torch.Generator, rng: np.random.Generator) -> Batch:
        if self.augment == "cutout":
            batch.x = cutout(batch.x, gen, self.cutout_size)
        elif self.augment in ("mixup", "cutmix"):
            fn = mixup if self.augment == "mixup" else cutmix
            batch.x, batch.y, batch.y_b, batch.lam = fn(batch.x, batch.y, rng, gen, self.mix_alpha)
        return batch


class TensorLoader:
    """Batches from tensors kept on the device; augmentation runs on whole batches there."""

    def __init__(self, images, labels, batch_size, *, mean, std, seed=0, train=False, augment_fn=None,
                 regularizer=None, batch_sampler=None):
        self.images, self.labels = images, labels
        self.batch_size, self.seed, self.train = batch_size, seed, train
        self.mean = mean.view(1, -1, 1, 1)
        self.std = std.view(1, -1, 1, 1)
        self.augment_fn, self.regularizer, self.batch_sampler = augment_fn, regularizer, batch_sampler
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if self.batch_sampler is not None:
            self.batch_sampler.set_epoch(epoch)

    def __len__(self) -> int:
        if self.batch_sampler is not None:
            return len(self.batch_sampler)
        return math.ceil(len(self.labels) / self.batch_size)

    def _min_rows(self) -> int:
        return _min_train_rows(self.batch_sampler)

    def _index_batches(self, gen):
        n = len(self.labels)
        if self.batch_sampler is not None:
            for b in self.batch_sampler:
                yield torch.as_tensor(b, dtype=torch.long)
            return
        order = torch.randperm(n, generator=gen) if self.train else torch.arange(n)
        yield from order.split(self.batch_size)

    def __iter__(self):
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch, 1))
        rng = np.random.default_rng(epoch_seed(self.seed, self.epoch, 2))
        device = self.images.device
        for idx in self._index_batches(gen):
            if self.train and len(idx) < self._min_rows():
                continue  # BatchNorm in train mode needs two rows (SPEC D24)
            idx_d = to_device(idx, device)
            x = self.images[idx_d]
            x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
            if self.train and self.augment_fn is not None:
                x = self.augment_fn(x, gen)
            x = (x - self.mean) / self.std
            batch = Batch(x, self.labels[idx_d], idx_d)
            if self.train and self.regularizer is not None:
                batch = self.regularizer(batch, gen, rng)
            yield batch


class _Indexed(torch.utils.data.Dataset):
    """Returns (image, label, index into `indices`), so each sample keeps its training-subset position; `labels`
    (one per index) replace the dataset's own, as the noisy training labels do."""

    def __init__(self, base, indices, labels=None):
        self.base, self.indices = base, np.asarray(indices)
        self.labels = None if labels is None else np.asarray(labels)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        x, y = self.base[int(self.indices[i])]
        return x, int(y if self.labels is None else self.labels[i]), i


class FolderLoader:
    """DataLoader over image files with PIL transforms; reshuffled per epoch from a (seed, epoch) generator."""

    def __init__(self, dataset, indices, batch_size, *, device, seed=0, train=False, num_workers=2,
                 regularizer=None, batch_sampler=None, labels=None):
        self.ds = _Indexed(dataset, indices, labels)
        self.batch_size, self.device, self.seed, self.train = batch_size, device, seed, train
        self.num_workers, self.regularizer, self.batch_sampler = num_workers, regularizer, batch_sampler
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch
        if self.batch_sampler is not None:
            self.batch_sampler.set_epoch(epoch)

    def __len__(self):
        if self.batch_sampler is not None:
            return len(self.batch_sampler)
        return math.ceil(len(self.ds) / self.batch_size)

    def _min_rows(self) -> int:
        return _min_train_rows(self.batch_sampler)

    def __iter__(self):
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch, 1))
        rng = np.random.default_rng(epoch_seed(self.seed, self.epoch, 2))
        kw = dict(num_workers=self.num_workers, generator=gen, pin_memory=self.device.type == "cuda",
                  persistent_workers=False)
        if self.batch_sampler is not None:
            loader = torch.utils.data.DataLoader(self.ds, batch_sampler=self.batch_sampler, **kw)
        else:
            loader = torch.utils.data.DataLoader(self.ds, batch_size=self.batch_size, shuffle=self.train, **kw)
        for x, y, idx in loader:
            if self.train and len(idx) < self._min_rows():
                continue
            # pinned on a GPU (pin_memory above): non-blocking copies, no host sync per step
            batch = Batch(x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True),
                          idx.to(self.device, non_blocking=True))
            if self.train and self.regularizer is not None:
                batch = self.regularizer(batch, gen, rng)
            yield batch


def train_batch_transforms(cfg, side: int):
    """(augment_fn, regularizer) of a tensor-resident training set: the crop / flip of the dataset, applied to
    whole batches on the device (None for files, digits and synthetic), and cutout / mixup / cutmix or None."""
    d = cfg.data
    if d.dataset in ("cifar10", "cifar100") or (d.dataset == "tinyimagenet" and d.tiny_size == 64):
        def augment_fn(x, gen):
            return pad_crop_flip(x, gen, padding=4)
    elif d.dataset == "tinyimagenet":
        def augment_fn(x, gen):
            return random_resized_crop_flip(x, gen, size=32)
    else:
        augment_fn = None  # fine-grained sets (PIL transforms in FolderLoader), digits and synthetic (SPEC D32)
    cut = d.cutout_size or max(1, round(16 * side / 32))
    reg = _Regularizer(d.augment, cut, d.mix_alpha) if d.augment != "none" else None
    return augment_fn, reg


def _as_nchw(array: np.ndarray, device) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(array))
    return t.permute(0, 3, 1, 2).contiguous().to(device)


def build_data(cfg, device: torch.device, pair_sampler: bool = False) -> Data:
    """Loaders for a resolved TrainConfig: train subset (augmented), validation hold-out and test."""
    d = cfg.data
    kw = {"num_classes": d.synthetic_classes} if d.dataset == "synthetic" else {}
    root = d.root or None
    train_set = get_dataset(d.dataset, root=root, split="train", download=d.download, **kw)
    test_set = get_dataset(d.dataset, root=root, split="test", download=d.download, **kw)
    info = train_set.info  # carries the synthetic set's actual class count and size
    labels = np.asarray(train_set.targets, dtype=np.int64)
    train_idx, val_idx = stratified_holdout(labels, d.val_fraction, d.split_seed)
    train_idx = cap_per_class(labels, train_idx, d.train_per_class, d.split_seed)
    num_classes = len(train_set.classes)
    # the labels the student (and its phase-1 teacher, which shares split_seed) learns from; val and test stay clean
    train_targets = flip_labels(labels[train_idx], d.label_noise, num_classes, d.split_seed)
    train_labels = torch.as_tensor(train_targets, device=device)
    side = info.input_size if d.dataset != "tinyimagenet" else d.tiny_size
    augment_fn, reg = train_batch_transforms(cfg, side)
    sampler = PairBatchSampler(train_targets, d.batch_size, seed=cfg.seed) if pair_sampler else None

    if info.kind == "files":
        from aikd.data.transforms import test_transform, train_transform
        train_view = get_dataset(d.dataset, root=root, split="train", transform=train_transform(info, d.tiny_size))
        eval_view = get_dataset(d.dataset, root=root, split="train", transform=test_transform(info, d.tiny_size))
        test_view = get_dataset(d.dataset, root=root, split="test", transform=test_transform(info, d.tiny_size))
        common = dict(device=device, seed=cfg.seed, num_workers=d.num_workers)
        train = FolderLoader(train_view, train_idx, d.batch_size, train=True, regularizer=reg,
                             batch_sampler=sampler, labels=train_targets, **common)
        val = FolderLoader(eval_view, val_idx, d.eval_batch_size, **common) if len(val_idx) else None
        test = FolderLoader(test_view, np.arange(len(test_view)), d.eval_batch_size, **common)
        return Data(train, val, test, num_classes, train_labels, side, info)

    images = _as_nchw(train_set.data, device)
    test_images = _as_nchw(test_set.data, device)
    test_labels = torch.as_tensor(np.asarray(test_set.targets, dtype=np.int64), device=device)
    if d.dataset == "tinyimagenet" and d.tiny_size == 32:
        test_images = F.interpolate(test_images.float() / 255.0, size=32, mode="bilinear", antialias=True,
                                    align_corners=False)
        val_images = F.interpolate(images[torch.as_tensor(val_idx, device=device)].float() / 255.0, size=32,
                                   mode="bilinear", antialias=True, align_corners=False)
    else:
        val_images = images[torch.as_tensor(val_idx, device=device)]
    if info.mean is not None:
        mean, std = torch.tensor(info.mean), torch.tensor(info.std)
    else:  # per-channel statistics of the training subset (digits, synthetic: SPEC 7.8)
        sub = images[torch.as_tensor(train_idx, device=device)].float()
        sub = sub / 255.0 if images.dtype == torch.uint8 else sub
        mean, std = sub.mean(dim=(0, 2, 3)).cpu(), sub.std(dim=(0, 2, 3)).cpu().clamp_min(1e-6)
    mean, std = mean.to(device, torch.float32), std.to(device, torch.float32)

    train = TensorLoader(images[torch.as_tensor(train_idx, device=device)], train_labels, d.batch_size,
                         mean=mean, std=std, seed=cfg.seed, train=True, augment_fn=augment_fn, regularizer=reg,
                         batch_sampler=sampler)
    val = None
    if len(val_idx):
        val = TensorLoader(val_images, torch.as_tensor(labels[val_idx], device=device), d.eval_batch_size,
                           mean=mean, std=std)
    test = TensorLoader(test_images, test_labels, d.eval_batch_size, mean=mean, std=std)
    return Data(train, val, test, num_classes, train_labels, side, info)
