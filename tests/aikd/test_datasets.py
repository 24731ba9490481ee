"""Dataset readers on tiny hand-written copies of each on-disk layout (never downloads)."""

import dataclasses
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aikd.data.datasets import (
    DATASETS,
    DatasetInfo,
    DatasetNotFoundError,
    ImageDataset,
    channel_mean_std,
    default_root,
    get_dataset,
)
from aikd.data.transforms import test_transform as eval_transform
from aikd.data.transforms import train_transform

FINE_GRAINED = ["cub200", "dogs", "mit67", "aircraft", "stanford40"]


# ---------------------------------------------------------------- fake data writers


def _dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        pickle.dump(obj, handle)


def _cifar_rows(rng, n):
    """Rows in CIFAR's channel-planar layout, plus the NHWC images they encode."""
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    return images.transpose(0, 3, 1, 2).reshape(n, 3072), images


@pytest.fixture
def cifar100_root(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-100-python"
    expected = {}
    for split, n in (("train", 20), ("test", 10)):
        rows, images = _cifar_rows(rng, n)
        fine = rng.integers(0, 100, n).tolist()
        _dump(folder / split, {b"data": rows, b"fine_labels": fine, b"coarse_labels": [0] * n})
        expected[split] = (images, fine)
    names = [f"name{i}".encode() for i in range(100)]
    _dump(folder / "meta", {b"fine_label_names": names, b"coarse_label_names": [b"c"] * 20})
    return tmp_path, expected


@pytest.fixture
def cifar10_root(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-10-batches-py"
    train_images, train_labels = [], []
    for i in range(1, 6):
        rows, images = _cifar_rows(rng, 2)
        labels = rng.integers(0, 10, 2).tolist()
        _dump(folder / f"data_batch_{i}", {b"data": rows, b"labels": labels})
        train_images.append(images)
        train_labels += labels
    rows, test_images = _cifar_rows(rng, 3)
    _dump(folder / "test_batch", {b"data": rows, b"labels": [1, 2, 3]})
    _dump(folder / "batches.meta", {b"label_names": [f"label{i}".encode() for i in range(10)]})
    return tmp_path, {"train": (np.concatenate(train_images), train_labels), "test": (test_images, [1, 2, 3])}


TINY_WNIDS = ["n03", "n01", "n02"]  # wnids.txt order; classes are sorted


@pytest.fixture
def tiny_root(tmp_path):
    base = tmp_path / "tiny-imagenet-200"
    base.mkdir()
    (base / "wnids.txt").write_text("\n".join(TINY_WNIDS) + "\n")
    for k, wnid in enumerate(TINY_WNIDS):
        folder = base / "train" / wnid / "images"
        folder.mkdir(parents=True)
        for j in range(2):
            Image.new("RGB", (64, 64), (40 * k, 10 * j, 0)).save(folder / f"{wnid}_{j}.JPEG")
    val_images = base / "val" / "images"
    val_images.mkdir(parents=True)
    annotations = [("val_0.JPEG", "n02"), ("val_1.JPEG", "n03"), ("val_2.JPEG", "n01")]
    for filename, _ in annotations:
        Image.new("L", (64, 64), 128).save(val_images / filename)  # grayscale: must come back as RGB
    (base / "val" / "val_annotations.txt").write_text(
        "".join(f"{filename}\t{wnid}\t0\t0\t63\t63\n" for filename, wnid in annotations)
    )
    return tmp_path


def _write_image_folder(root: Path, name: str):
    counts = {"train": {"beta": 2, "alpha": 3, "gamma": 1}, "test": {"alpha": 1, "beta": 1, "gamma": 2}}
    for split, per_class in counts.items():
        for class_name, n in per_class.items():
            folder = root / name / split / class_name
            folder.mkdir(parents=True)
            for j in range(n):
                Image.new("RGB", (300 + 10 * j, 260), (j, 0, 0)).save(folder / f"img{j}.png")
            (folder / "notes.txt").write_text("not an image")
    return counts


# ---------------------------------------------------------------- registry


def test_registry_and_unknown_name():
    assert {"cifar10", "cifar100", "tinyimagenet", *FINE_GRAINED, "digits", "synthetic"} <= set(DATASETS)
    assert DATASETS["cifar100"].num_classes == 100 and DATASETS["tinyimagenet"].num_classes == 200
    assert [DATASETS[n].num_classes for n in FINE_GRAINED] == [200, 120, 67, 100, 40]
    assert all(DATASETS[n].fine_grained and DATASETS[n].input_size == 224 for n in FINE_GRAINED)
    assert DATASETS["digits"].mean is None and DATASETS["digits"].input_size == 8
    with pytest.raises(ValueError, match="cifar100"):
        get_dataset("imagenet22k")
    with pytest.raises(ValueError):
        get_dataset("digits", split="val")


def test_default_root_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("AIKD_DATA", str(tmp_path))
    assert default_root() == tmp_path
    monkeypatch.delenv("AIKD_DATA")
    assert default_root() == Path.home() / ".cache" / "aikd" / "data"


# ---------------------------------------------------------------- CIFAR


def test_cifar100_reader(cifar100_root):
    root, expected = cifar100_root
    for split, n in (("train", 20), ("test", 10)):
        dataset = get_dataset("cifar100", root=root, split=split)
        images, labels = expected[split]
        assert isinstance(dataset, ImageDataset) and len(dataset) == n
        assert dataset.data.shape == (n, 32, 32, 3) and dataset.data.dtype == np.uint8
        assert np.array_equal(dataset.data, images)
        assert dataset.targets.dtype == np.int64 and dataset.targets.tolist() == labels
        assert dataset.classes[:2] == ["name0", "name1"] and len(dataset.classes) == 100
        assert dataset.info is DATASETS["cifar100"]
        image, label = dataset[3]
        assert isinstance(image, Image.Image) and image.size == (32, 32) and label == labels[3]
        assert np.array_equal(np.asarray(image), images[3])


def test_cifar10_reader(cifar10_root):
    root, expected = cifar10_root
    train = get_dataset("cifar10", root=root, split="train")
    assert len(train) == 10 and np.array_equal(train.data, expected["train"][0])
    assert train.targets.tolist() == expected["train"][1]
    test = get_dataset("cifar10", root=root, split="test", transform=eval_transform(DATASETS["cifar10"]))
    assert test.classes == [f"label{i}" for i in range(10)]
    tensor, label = test[0]
    assert tensor.shape == (3, 32, 32) and tensor.dtype == torch.float32 and label == 1


# ---------------------------------------------------------------- Tiny-ImageNet


def test_tinyimagenet_reader_and_val_mapping(tiny_root):
    train = get_dataset("tinyimagenet", root=tiny_root, split="train")
    assert train.classes == sorted(TINY_WNIDS)
    assert train.data.shape == (6, 64, 64, 3) and train.data.dtype == np.uint8
    assert train.targets.tolist() == [0, 0, 1, 1, 2, 2]
    # images of n01 were written with red 40 * 1 (its position in wnids.txt): check pixels follow labels
    red_by_class = {sorted(TINY_WNIDS).index(w): 40 * k for k, w in enumerate(TINY_WNIDS)}
    for image, label in zip(train.data, train.targets):
        assert abs(int(image[..., 0].mean()) - red_by_class[label]) <= 3

    test = get_dataset("tinyimagenet", root=tiny_root, split="test")
    index = {w: i for i, w in enumerate(sorted(TINY_WNIDS))}
    assert test.targets.tolist() == [index["n02"], index["n03"], index["n01"]]  # val_0, val_1, val_2
    assert test.data.shape == (3, 64, 64, 3)
    assert (test.data == 128).all()  # grayscale converted to RGB


def test_tinyimagenet_npz_cache_is_reused_and_invalidated(tiny_root):
    base = tiny_root / "tiny-imagenet-200"
    first = get_dataset("tinyimagenet", root=tiny_root, split="train")
    cache = base / "aikd_train_uint8.npz"
    assert cache.is_file()
    # overwrite the cached pixels: a reload must come from the cache, not the JPEGs
    with np.load(cache) as cached:
        arrays = dict(cached)
    arrays["data"] = np.full_like(arrays["data"], 7)
    np.savez(cache, **arrays)
    assert (get_dataset("tinyimagenet", root=tiny_root, split="train").data == 7).all()
    # a new training image changes the count: the cache is rebuilt from the files
    Image.new("RGB", (64, 64)).save(base / "train" / "n01" / "images" / "n01_9.JPEG")
    rebuilt = get_dataset("tinyimagenet", root=tiny_root, split="train")
    assert len(rebuilt) == 7 and not (rebuilt.data == 7).all()
    assert np.array_equal(rebuilt.data[:2], first.data[:2])
    no_cache = get_dataset("tinyimagenet", root=tiny_root, split="test", cache=False)
    assert len(no_cache) == 3 and not (base / "aikd_test_uint8.npz").exists()


@pytest.mark.parametrize("tiny_size", [32, 64])
def test_tinyimagenet_transforms(tiny_root, tiny_size):
    info = DATASETS["tinyimagenet"]
    for make in (train_transform, eval_transform):
        dataset = get_dataset("tinyimagenet", root=tiny_root, split="test", transform=make(info, tiny_size=tiny_size))
        assert dataset[0][0].shape == (3, tiny_size, tiny_size)
    with pytest.raises(ValueError):
        train_transform(info, tiny_size=48)


# ---------------------------------------------------------------- ImageFolder sets


@pytest.mark.parametrize("name", FINE_GRAINED)
def test_image_folder_reader(tmp_path, name):
    counts = _write_image_folder(tmp_path, name)
    with pytest.warns(UserWarning, match="class folders"):  # 3 classes instead of the real count
        train = get_dataset(name, root=tmp_path, split="train", transform=train_transform(DATASETS[name]))
    assert train.classes == ["alpha", "beta", "gamma"]
    assert train.targets.tolist() == [0, 0, 0, 1, 1, 2]
    assert all(Path(path).suffix == ".png" for path, _ in train.samples)
    assert [label for _, label in train.samples] == train.targets.tolist()
    tensor, label = train[4]
    assert tensor.shape == (3, 224, 224) and label == 1
    with pytest.warns(UserWarning):
        test = get_dataset(name, root=tmp_path, split="test", transform=eval_transform(DATASETS[name]))
    assert len(test) == sum(counts["test"].values()) and test.targets.tolist() == [0, 1, 2, 2]
    assert test[0][0].shape == (3, 224, 224)
    with pytest.warns(UserWarning):
        raw_image, _ = get_dataset(name, root=tmp_path, split="test")[0]
    assert isinstance(raw_image, Image.Image) and raw_image.mode == "RGB"


# ---------------------------------------------------------------- missing data


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "tinyimagenet", *FINE_GRAINED])
def test_missing_dataset_names_the_path(tmp_path, name):
    root = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError) as raised:
        get_dataset(name, root=root, split="train")
    assert isinstance(raised.value, FileNotFoundError)
    message = str(raised.value)
    assert str(root) in message
    assert "download=True" in message or "train/<class>" in message


def test_fine_grained_download_still_explains_manual_layout(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="test/<class>"):
        get_dataset("cub200", root=tmp_path, split="test", download=True)


# ---------------------------------------------------------------- digits and synthetic


def test_digits_split():
    train = get_dataset("digits", split="train")
    test = get_dataset("digits", split="test")
    assert len(train) + len(test) == 1797 and len(test) == 360 and len(train) == 1437
    assert train.data.shape == (1437, 8, 8, 3) and train.data.dtype == np.float32
    assert 0.0 <= train.data.min() and train.data.max() <= 1.0
    assert np.array_equal(train.data[..., 0], train.data[..., 2])
    # stratified: each class's share of the test split is within one sample of 20 %
    for c in range(10):
        n_c = np.sum(train.targets == c) + np.sum(test.targets == c)
        assert abs(np.sum(test.targets == c) - 0.2 * n_c) <= 1
    # fixed seed: the same split every time, disjoint splits (compare whole images)
    assert np.array_equal(get_dataset("digits", split="test").data, test.data)
    train_rows = {row.tobytes() for row in train.data}
    assert sum(row.tobytes() in train_rows for row in test.data) <= 5  # only true duplicate images may coincide
    mean, std = channel_mean_std(train.data)
    tensor, _ = get_dataset("digits", transform=train_transform(train.info, mean=mean, std=std))[0]
    assert tensor.shape == (3, 8, 8)
    with pytest.raises(ValueError, match="mean"):
        eval_transform(train.info)


def test_synthetic_is_deterministic_and_learnable():
    a = get_dataset("synthetic", split="train", seed=3)
    b = get_dataset("synthetic", split="train", seed=3)
    c = get_dataset("synthetic", split="train", seed=4)
    assert np.array_equal(a.data, b.data) and np.array_equal(a.targets, b.targets)
    assert not np.array_equal(a.data, c.data)
    assert a.data.shape == (1000, 8, 8, 3) and a.data.dtype == np.float32
    assert a.data.min() >= 0.0 and a.data.max() <= 1.0
    assert np.bincount(a.targets).tolist() == [100] * 10

    small = get_dataset("synthetic", split="test", num_classes=4, n_test=40, size=16, seed=3)
    assert small.data.shape == (40, 16, 16, 3) and small.info.num_classes == 4 and small.info.input_size == 16
    assert len(small.classes) == 4
    # learnable: nearest class mean of the training split classifies the test split well
    train = get_dataset("synthetic", split="train", seed=3)
    test = get_dataset("synthetic", split="test", seed=3)
    means = np.stack([train.data[train.targets == k].mean(axis=0) for k in range(10)]).reshape(10, -1)
    distances = ((test.data.reshape(len(test), 1, -1) - means[None]) ** 2).sum(axis=2)
    assert np.mean(distances.argmin(axis=1) == test.targets) > 0.9
    image, _ = test[0]
    assert isinstance(image, Image.Image) and image.size == (8, 8)
    assert np.allclose(np.asarray(image) / 255.0, test.data[0], atol=0.5 / 255 + 1e-6)


def test_dataset_info_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DATASETS["cifar100"].num_classes = 3
    assert isinstance(DATASETS["cifar100"], DatasetInfo)
