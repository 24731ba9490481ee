"""Helpers shared by the benchmark scripts (not a test module; nothing here asserts timings).

The scripts are run as `PYTHONPATH=. python benchmarks/NAME.py`, which puts benchmarks/ first on sys.path, so
they import this file as `_common`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import numpy as np

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)  # the CS-KD / PS-KD code's values
# digits' clean protocol (a 10 % validation split, no label noise): the trial length the overhead benchmarks'
# earlier figures measured, before the default protocol held out 70 % and flipped a fifth of the labels
CLEAN_DIGITS = {"data.val_fraction": 0.1, "data.label_noise": 0}


def clean_digits_flags() -> list[str]:
    """CLEAN_DIGITS as `search/run.py --set` flags."""
    return [a for k, v in CLEAN_DIGITS.items() for a in ("--set", f"{k}={v}")]


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or "unknown CPU"


def load1() -> float:
    return os.getloadavg()[0]


def wait_for_quiet(max_load: float = 1.5, tries: int = 6, pause_s: float = 10.0, out=print) -> float:
    """Wait (at most `tries` x `pause_s`) for the 1-minute load to drop below `max_load`; returns the last load.

    Other sessions share this machine; a measurement taken under load is still printed, with the load beside it.
    """
    load = load1()
    for _ in range(tries):
        if load < max_load:
            break
        out(f"# load {load:.2f} >= {max_load}: waiting {pause_s:.0f}s")
        time.sleep(pause_s)
        load = load1()
    return load


def arg_parser(doc: str, max_load_help: str | None = None) -> argparse.ArgumentParser:
    """A benchmark's parser: the first line of its docstring as description, and --max-load, the 1-minute load
    `wait_for_quiet` waits for before measuring (every benchmark here measures on a shared machine)."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--max-load", type=float, default=1.5, help=max_load_help)
    return p


@contextlib.contextmanager
def scratch_folder(prefix: str, keep: bool = False):
    """A fresh temporary folder for a benchmark's studies and files, removed at the end (also on an error or ^C)
    unless `keep` (the scripts' --keep, to look into the studies afterwards)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def header(name: str, out=print) -> None:
    """Date, machine and exact command, printed first by every benchmark."""
    import torch
    cmd = " ".join(shlex.quote(a) for a in ["python", *sys.argv])
    out(f"# {name}  {datetime.now():%Y-%m-%d %H:%M}  {cpu_model()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"{'CUDA ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}")
    out(f"# command: PYTHONPATH=. {cmd}")
    out(f"# load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


def cifar_like(n: int, classes: int = 100, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` random CIFAR-shaped images (N, 32, 32, 3) uint8 and labels in [0, classes)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, classes, n).astype(np.int64)


class ArrayPILDataset:
    """What torchvision's CIFAR10/100 `__getitem__` does: uint8 HWC row -> PIL image -> transform, int label."""

    def __init__(self, data: np.ndarray, targets: np.ndarray, transform):
        self.data, self.targets, self.transform = data, targets, transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        from PIL import Image
        img = Image.fromarray(self.data[i])
        return self.transform(img), int(self.targets[i])


def reference_train_transform():
    """The CIFAR training transform of the official CS-KD / PS-KD code."""
    from torchvision import transforms as T
    return T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                      T.Normalize(CIFAR_MEAN, CIFAR_STD)])


def reference_dataset(data: np.ndarray, targets: np.ndarray) -> ArrayPILDataset:
    """The reference side's training set: the arrays served as torchvision's CIFAR dataset serves them, through the
    official code's training transform."""
    return ArrayPILDataset(data, targets, reference_train_transform())


def tensor_loader(data: np.ndarray, targets: np.ndarray, batch_size: int, seed: int = 0, device="cpu"):
    """Our training loader for the same arrays: device-resident uint8 NCHW, pad-crop-flip on whole batches."""
    import torch

    from aikd.data.augment import pad_crop_flip
    from aikd.data.loaders import TensorLoader
    images = torch.from_numpy(np.ascontiguousarray(data)).permute(0, 3, 1, 2).contiguous().to(device)
    return TensorLoader(images, torch.from_numpy(targets).to(device), batch_size,
                        mean=torch.tensor(CIFAR_MEAN, device=device), std=torch.tensor(CIFAR_STD, device=device),
                        seed=seed, train=True, augment_fn=lambda x, gen: pad_crop_flip(x, gen, padding=4))


def median(values) -> float:
    return statistics.median(values)


def spread(values) -> str:
    """'median (min-max)' of a list of floats."""
    return f"{median(values):.2f} ({min(values):.2f}-{max(values):.2f})"
