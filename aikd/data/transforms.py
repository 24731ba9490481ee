"""Per-dataset PIL/torchvision pipelines of SPEC 8.2 (the batched on-device augmentation lives elsewhere)."""

from __future__ import annotations

from torchvision import transforms as T

from aikd.data.datasets import DatasetInfo

TINY_SIZES = (32, 64)


def _normalize(info: DatasetInfo, mean, std) -> T.Normalize:
    mean = mean if mean is not None else info.mean
    std = std if std is not None else info.std
    if mean is None or std is None:
        raise ValueError(
            f"{info.name} has no fixed normalisation; pass mean/std computed from its training split "
            "(aikd.data.datasets.channel_mean_std)"
        )
    return T.Normalize(mean, std)


def _check_tiny_size(tiny_size: int) -> None:
    if tiny_size not in TINY_SIZES:
        raise ValueError(f"tiny_size must be one of {TINY_SIZES}, got {tiny_size}")


def train_transform(info: DatasetInfo, tiny_size: int = 32, mean=None, std=None) -> T.Compose:
    """Training pipeline: CIFAR crop+flip, Tiny-ImageNet per `tiny_size`, RandomResizedCrop(224) for
    fine-grained sets, and no augmentation for the offline sets (digits, synthetic; SPEC 7.8).

    `mean`/`std` override the info's values and are required when the info has none.
    """
    normalize = _normalize(info, mean, std)
    if info.name in ("cifar10", "cifar100"):
        augment = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()]
    elif info.name == "tinyimagenet":
        _check_tiny_size(tiny_size)
        crop = T.RandomResizedCrop(32) if tiny_size == 32 else T.RandomCrop(64, padding=4)
        augment = [crop, T.RandomHorizontalFlip()]
    elif info.fine_grained:
        augment = [T.RandomResizedCrop(info.input_size), T.RandomHorizontalFlip()]
    else:
        augment = []
    return T.Compose([*augment, T.ToTensor(), normalize])


def test_transform(info: DatasetInfo, tiny_size: int = 32, mean=None, std=None) -> T.Compose:
    """Evaluation pipeline (also used for the validation hold-out, SPEC 8.3): deterministic resizing only."""
    normalize = _normalize(info, mean, std)
    if info.name == "tinyimagenet":
        _check_tiny_size(tiny_size)
        resize = [T.Resize(32)] if tiny_size == 32 else []
    elif info.fine_grained:
        resize = [T.Resize(256), T.CenterCrop(info.input_size)]
    else:
        resize = []
    return T.Compose([*resize, T.ToTensor(), normalize])


test_transform.__test__ = False  # not a pytest test despite its name
