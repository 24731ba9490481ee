"""Dataset registry and readers (SPEC 8.1, 7.8): raw train/test splits as torch Datasets.

Readers parse the on-disk layouts themselves (CIFAR pickles, tiny-imagenet-200, ImageFolder trees) so that
small hand-made copies work in tests; torchvision is only used to download. The validation hold-out (SPEC 8.3)
and augmentation live elsewhere.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)  # SPEC 8.2, CS-KD/PS-KD/FRSKD code
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
SPLITS = ("train", "test")


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a dataset; `mean`/`std` None means: compute them from the training split."""

    name: str
    num_classes: int
    input_size: int  # nominal image side fed to the model (32, 224, 8, ...)
    mean: tuple | None
    std: tuple | None
    kind: str  # "array": whole split in memory as a numpy array; "files": image paths opened with PIL
    fine_grained: bool


def _fine_grained(name: str, num_classes: int) -> DatasetInfo:
    return DatasetInfo(name, num_classes, 224, IMAGENET_MEAN, IMAGENET_STD, "files", True)


DATASETS: dict[str, DatasetInfo] = {
    "cifar10": DatasetInfo("cifar10", 10, 32, CIFAR_MEAN, CIFAR_STD, "array", False),
    "cifar100": DatasetInfo("cifar100", 100, 32, CIFAR_MEAN, CIFAR_STD, "array", False),
    "tinyimagenet": DatasetInfo("tinyimagenet", 200, 32, IMAGENET_MEAN, IMAGENET_STD, "array", False),
    "cub200": _fine_grained("cub200", 200),
    "dogs": _fine_grained("dogs", 120),
    "mit67": _fine_grained("mit67", 67),
    "aircraft": _fine_grained("aircraft", 100),
    "stanford40": _fine_grained("stanford40", 40),  # FRSKD only (SPEC 8.1)
    "digits": DatasetInfo("digits", 10, 8, None, None, "array", False),
    "synthetic": DatasetInfo("synthetic", 10, 8, None, None, "array", False),
}

FINE_GRAINED_SOURCES = {
    "cub200": "CUB-200-2011 (https://www.vision.caltech.edu/datasets/cub_200_2011/), split by train_test_split.txt",
    "dogs": "Stanford Dogs (http://vision.stanford.edu/aditya86/ImageNetDogs/), split by train_list/test_list.mat",
    "mit67": "MIT Indoor 67 (https://web.mit.edu/torralba/www/indoor.html), split by TrainImages.txt/TestImages.txt",
    "aircraft": "FGVC-Aircraft (https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/), variant level, "
    "images_variant_trainval.txt / images_variant_test.txt",
    "stanford40": "Stanford 40 Actions (http://vision.stanford.edu/Datasets/40actions.html), official train/test lists",
}


class DatasetNotFoundError(FileNotFoundError):
    """The dataset files are not where we looked; the message says where and how to obtain them."""


class ImageDataset(Dataset):
    """One split of a dataset. `__getitem__` returns (PIL image passed through `transform`, int label).

    kind "array": `.data` is NHWC numpy (uint8 for photo sets; float32 in [0, 1] for digits and synthetic,
    which are scaled to uint8 only to build the PIL image). kind "files": `.samples` is a list of (path, label).
    """

    def __init__(self, info: DatasetInfo, split: str, targets, classes, data=None, samples=None, transform=None):
        if (data is None) == (samples is None):
            raise ValueError("give exactly one of data (array sets) or samples (file sets)")
        self.info = info
        self.split = split
        self.targets = np.asarray(targets, dtype=np.int64)
        self.classes = list(classes)
        self.data = data
        self.samples = samples
        self.transform = transform
        if len(self.targets) != len(self):
            raise ValueError(f"{len(self.targets)} targets for {len(self)} images")

    def __len__(self) -> int:
        return len(self.data) if self.data is not None else len(self.samples)

    def __getitem__(self, index: int):
        if self.data is not None:
            image = _array_to_pil(self.data[index])
        else:
            with Image.open(self.samples[index][0]) as opened:
                image = opened.convert("RGB")
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])

    def __repr__(self) -> str:
        return f"ImageDataset({self.info.name!r}, split={self.split!r}, n={len(self)}, classes={len(self.classes)})"


def _array_to_pil(image: np.ndarray) -> Image.Image:
    if image.dtype != np.uint8:
        image = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(image)


def default_root() -> Path:
    """Data root: $AIKD_DATA if set, else ~/.cache/aikd/data."""
    return Path(os.environ.get("AIKD_DATA") or "~/.cache/aikd/data").expanduser()


def channel_mean_std(data: np.ndarray) -> tuple[tuple, tuple]:
    """Per-channel mean and std of an NHWC array on the [0, 1] scale (for sets whose info has mean None)."""
    scale = 255.0 if data.dtype == np.uint8 else 1.0
    flat = data.reshape(-1, data.shape[-1]).astype(np.float64) / scale
    return tuple(flat.mean(axis=0).tolist()), tuple(flat.std(axis=0).tolist())


def get_dataset(name: str, root=None, split: str = "train", download: bool = False, transform=None, **kw):
    """Load split "train" or "test" of a registered dataset (see `DATASETS`) as an `ImageDataset`.

    `root` defaults to `default_root()`. `download=True` fetches CIFAR and Tiny-ImageNet when missing; the
    fine-grained sets must be arranged by hand. Extra keywords: synthetic takes num_classes, n_train, n_test,
    size, seed; tinyimagenet takes cache (default True, keep an .npz of the decoded images).
    """
    key = name.lower()
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(sorted(DATASETS))}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    root = Path(root).expanduser() if root is not None else default_root()
    info = DATASETS[key]
    if key in ("cifar10", "cifar100"):
        _no_extra_kwargs(key, kw)
        return _load_cifar(info, root, split, download, transform)
    if key == "tinyimagenet":
        return _load_tinyimagenet(info, root, split, download, transform, **kw)
    if info.kind == "files":
        _no_extra_kwargs(key, kw)
        return _load_image_folder(info, root, split, download, transform)
    if key == "digits":
        _no_extra_kwargs(key, kw)
        return _load_digits(info, split, transform)
    return _make_synthetic(info, split, transform, **kw)


def _no_extra_kwargs(name: str, kw: dict) -> None:
    if kw:
        raise TypeError(f"dataset {name!r} takes no extra arguments, got {sorted(kw)}")


# ---------------------------------------------------------------- CIFAR


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as handle:
        raw = pickle.load(handle, encoding="bytes")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}


def _decode_names(names) -> list[str]:
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _load_cifar(info: DatasetInfo, root: Path, split: str, download: bool, transform) -> ImageDataset:
    if info.name == "cifar100":
        folder = root / "cifar-100-python"
        batch_files = ["train"] if split == "train" else ["test"]
        meta_file, label_key, names_key = "meta", "fine_labels", "fine_label_names"
    else:
        folder = root / "cifar-10-batches-py"
        batch_files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        meta_file, label_key, names_key = "batches.meta", "labels", "label_names"
    needed = [folder / f for f in [*batch_files, meta_file]]
    if not all(p.is_file() for p in needed):
        if not download:
            missing = next(p for p in needed if not p.is_file())
            raise DatasetNotFoundError(
                f"{info.name}: {missing} not found (looked in {folder}). Pass download=True (--download) to fetch "
                f"it into {root}, or unpack the official python version of the archive there."
            )
        import torchvision

        fetch = torchvision.datasets.CIFAR100 if info.name == "cifar100" else torchvision.datasets.CIFAR10
        fetch(str(root), train=split == "train", download=True)
    images, labels = [], []
    for batch_file in batch_files:
        batch = _unpickle(folder / batch_file)
        images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.extend(batch[label_key])
    data = np.ascontiguousarray(np.concatenate(images).transpose(0, 2, 3, 1))
    classes = _decode_names(_unpickle(folder / meta_file)[names_key])
    return ImageDataset(info, split, labels, classes, data=data, transform=transform)


# ---------------------------------------------------------------- Tiny-ImageNet


def _tiny_file_list(base: Path, split: str, classes: list[str]) -> list[tuple[Path, int]]:
    class_index = {wnid: i for i, wnid in enumerate(classes)}
    if split == "train":
        files = []
        for wnid in classes:
            images = sorted(p for p in (base / "train" / wnid / "images").iterdir() if _is_image(p))
            files.extend((p, class_index[wnid]) for p in images)
        return files
    annotations = base / "val" / "val_annotations.txt"
    if not annotations.is_file():
        raise DatasetNotFoundError(f"tinyimagenet: {annotations} not found; the official val folder is the test split")
    files = []
    for line in annotations.read_text().splitlines():
        if line.strip():
            filename, wnid = line.split("\t")[:2]
            files.append((base / "val" / "images" / filename, class_index[wnid]))
    return sorted(files)


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def _read_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _load_tinyimagenet(info: DatasetInfo, root: Path, split: str, download: bool, transform, cache: bool = True):
    base = root / "tiny-imagenet-200"
    if not (base / "wnids.txt").is_file():
        if not download:
            raise DatasetNotFoundError(
                f"tinyimagenet: {base / 'wnids.txt'} not found (looked in {base}). Pass download=True (--download) "
                f"to fetch {TINY_IMAGENET_URL} into {root}, or unzip it there yourself."
            )
        from torchvision.datasets.utils import download_and_extract_archive

        download_and_extract_archive(TINY_IMAGENET_URL, download_root=str(root), extract_root=str(root))
    classes = sorted(line.strip() for line in (base / "wnids.txt").read_text().splitlines() if line.strip())
    files = _tiny_file_list(base, split, classes)
    cache_path = base / f"aikd_{split}_uint8.npz"
    if cache and cache_path.is_file():
        with np.load(cache_path) as cached:
            if len(cached["targets"]) == len(files) and list(cached["classes"]) == classes:
                return ImageDataset(info, split, cached["targets"], classes, data=cached["data"], transform=transform)
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        data = np.stack(list(pool.map(_read_rgb, [path for path, _ in files])))
    targets = np.array([label for _, label in files], dtype=np.int64)
    if cache:
        _write_npz_atomically(cache_path, data=data, targets=targets, classes=np.array(classes))
    return ImageDataset(info, split, targets, classes, data=data, transform=transform)


def _write_npz_atomically(path: Path, **arrays) -> None:
    """Write via a temporary file so that an interrupted write never leaves a corrupt cache behind."""
    temporary = path.with_name(path.name + f".{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        warnings.warn(f"could not write the decoded-image cache {path}: {error}", stacklevel=3)


# ---------------------------------------------------------------- ImageFolder sets (fine-grained)


def _load_image_folder(info: DatasetInfo, root: Path, split: str, download: bool, transform) -> ImageDataset:
    base = root / info.name
    split_dir = base / split
    if not split_dir.is_dir():
        note = " (no automatic download for this set)" if download else ""
        raise DatasetNotFoundError(
            f"{info.name}: {split_dir} not found{note}. Arrange the images as {base}/train/<class>/*.jpg and "
            f"{base}/test/<class>/*.jpg (one folder per class) following the official split: "
            f"{FINE_GRAINED_SOURCES.get(info.name, 'see SPEC 8.1')}."
        )
    # Class list from both splits, so train and test share one label mapping even if a folder is missing.
    classes = sorted({d.name for s in SPLITS if (base / s).is_dir() for d in (base / s).iterdir() if d.is_dir()})
    samples = []
    for index, name in enumerate(classes):
        class_dir = split_dir / name
        if class_dir.is_dir():
            samples.extend((str(p), index) for p in sorted(class_dir.iterdir()) if _is_image(p))
    if not samples:
        raise DatasetNotFoundError(f"{info.name}: no images found under {split_dir}/<class>/")
    if len(classes) != info.num_classes:
        warnings.warn(f"{info.name}: found {len(classes)} class folders, expected {info.num_classes}", stacklevel=3)
    targets = [label for _, label in samples]
    return ImageDataset(info, split, targets, classes, samples=samples, transform=transform)


# ---------------------------------------------------------------- offline sets


def _load_digits(info: DatasetInfo, split: str, transform) -> ImageDataset:
    """sklearn digits (SPEC 7.8): 8x8 in [0, 1], 3 channels, stratified 80/20 split with seed 0."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    data = np.repeat(images[..., None], 3, axis=3)
    indices = np.arange(len(data))
    train_idx, test_idx = train_test_split(indices, test_size=0.2, stratify=digits.target, random_state=0)
    chosen = np.sort(train_idx if split == "train" else test_idx)
    classes = [str(c) for c in range(10)]
    return ImageDataset(info, split, digits.target[chosen], classes, data=data[chosen], transform=transform)


def _make_synthetic(
    info: DatasetInfo,
    split: str,
    transform,
    num_classes: int = 10,
    n_train: int = 1000,
    n_test: int = 200,
    size: int = 8,
    seed: int = 0,
    noise: float = 0.15,
) -> ImageDataset:
    """Learnable toy set: one fixed random prototype per class plus Gaussian noise, clipped to [0, 1].

    The prototypes depend on `seed` only, so train and test share them; each split draws its own noise.
    """
    rng = np.random.default_rng(seed)
    prototypes = rng.random((num_classes, size, size, 3))
    n = n_train if split == "train" else n_test
    split_rng = np.random.default_rng([seed, SPLITS.index(split)])
    targets = np.arange(n) % num_classes
    split_rng.shuffle(targets)
    images = prototypes[targets] + noise * split_rng.standard_normal((n, size, size, 3))
    data = np.clip(images, 0.0, 1.0).astype(np.float32)
    info = dataclasses.replace(info, num_classes=num_classes, input_size=size)
    classes = [f"class_{c}" for c in range(num_classes)]
    return ImageDataset(info, split, targets, classes, data=data, transform=transform)
