"""The trainer: exact resume, the CLI contract, the LR schedule, omega = 0 equals No-Adv."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from aikd.config import TrainConfig
from aikd.train import fit, lr_at, teacher_for

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = ("val_error", "test_error", "test_top5_error", "test_nll", "test_ece", "test_f1")


def _cfg(tmp_path, **kw):
    base = {"data.dataset": "digits", "model.name": "small_cnn", "epochs": 4, "teacher.root": str(tmp_path),
            "optim.lr": 0.05}
    base.update({k.replace("__", "."): v for k, v in kw.items()})
    return TrainConfig.from_dict(base)


class Capture:
    def __init__(self, at_epoch):
        self.at_epoch, self.state, self.epochs = at_epoch, None, []

    def on_epoch_end(self, epoch, metrics, state_fn):
        self.epochs.append(epoch)
        if epoch == self.at_epoch:
            self.state = state_fn()


def _assert_same(a, b):
    for k in REQUIRED + ("train_loss", "test_ece_ts"):
        assert a[k] == pytest.approx(b[k], abs=1e-5), k


@pytest.mark.parametrize("extra", [
    {"method__name": "baseline"},
    {"method__name": "aikd", "method__prev_mode": "snapshot"},
    {"method__name": "aikd", "method__prev_mode": "cache"},
    {"method__name": "aikd", "method__prev_epoch0": "init", "critic__lr_schedule": "follow_student"},
])
def test_resume_after_epoch_k_matches_uninterrupted_run(tmp_path, extra):
    cfg = _cfg(tmp_path, **extra)
    cap = Capture(at_epoch=1)
    full = fit(cfg, callbacks=[cap], teacher=teacher_for(cfg))
    assert set(REQUIRED) <= set(full)
    resumed_cb = Capture(at_epoch=-1)
    resumed = fit(cfg, callbacks=[resumed_cb], resume_state=cap.state, teacher=teacher_for(cfg))
    assert resumed_cb.epochs == [2, 3]  # epochs before the checkpoint are not rerun
    _assert_same(full, resumed)


def test_omega_zero_equals_no_adv_preset(tmp_path):
    cfgs = [_cfg(tmp_path, method__name="aikd", method__omega=0.0, epochs=2),
            _cfg(tmp_path, method__name="aikd_no_adv", epochs=2)]
    a, b = (fit(c, teacher=teacher_for(c)) for c in cfgs)
    _assert_same(a, b)


def test_step_schedule_and_warmup():
    cfg = TrainConfig.from_dict({"data.dataset": "cifar100", "method.name": "aikd"}).resolved()
    assert [lr_at(cfg, t) for t in (0, 149, 150, 224, 225, 299)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 1e-3, 1e-3])
    tf = TrainConfig.from_dict({"data.dataset": "cifar100", "optim.recipe": "tfkd"}).resolved()
    assert lr_at(tf, 0) == pytest.approx(0.05) and lr_at(tf, 1) == pytest.approx(0.1)
    assert lr_at(tf, 60) == pytest.approx(0.02) and lr_at(tf, 160) == pytest.approx(0.1 * 0.2**3)


def test_nonfinite_loss_stops_the_run(tmp_path):
    from aikd.train import NonFiniteLossError
    with pytest.raises(NonFiniteLossError, match="non-finite loss"):
        fit(_cfg(tmp_path, debug__nan_at_epoch=1))


def test_cli_prints_one_line_per_epoch_and_json_last(tmp_path):
    out = subprocess.run([sys.executable, "-m", "aikd.train", "--dataset", "digits", "--model", "small_cnn",
                          "--epochs", "2", "--set", "optim.lr=0.05"], capture_output=True, text=True, cwd=ROOT,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert sum(line.startswith("epoch") for line in lines) == 2
    final = json.loads(lines[-1])
    assert set(REQUIRED) <= set(final) and 0 <= final["test_error"] <= 100


@pytest.mark.parametrize("args, words", [
    (["--set", "method.tau_g=-2"], ["method.tau_g", "> 0"]),
    (["--set", "method.omgea=1"], ["method.omega"]),
    (["--model", "resnet99"], ["resnet99", "preact_resnet18"]),
    (["--dataset", "cifar100", "--data-root", "/nonexistent/aikd"], ["/nonexistent/aikd", "download"]),
])
def test_cli_bad_input_exits_2_with_one_line(args, words):
    out = subprocess.run([sys.executable, "-m", "aikd.train", *args], capture_output=True, text=True, cwd=ROOT,
                         timeout=120)
    assert out.returncode == 2
    err = out.stderr.strip().splitlines()
    assert len(err) == 1
    for w in words:
        assert w in err[0]


def _write_stanford40(root: Path, classes=("applauding", "fishing", "riding_a_bike"), n_train=4, n_test=3):
    """A tiny image folder in the layout the reader expects: ROOT/stanford40/{train,test}/CLASS/*.jpg."""
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        for k, name in enumerate(classes):
            folder = root / "stanford40" / split / name
            folder.mkdir(parents=True)
            for j in range(n):
                pixels = rng.integers(0, 80, (40 + 4 * j, 48, 3)) + 80 * k  # class-dependent colour, varied size
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{name}_{j:03d}.jpg")


def test_stanford40_trains_from_an_image_folder_and_reports_recall_at_1(tmp_path):
    """stanford40 (FRSKD Table 2) runs like the other image-folder sets, and fine-grained sets also report test
    Recall@1 (SPEC 9.6): for each test image, does its nearest other test image (L2, pooled features) share its
    label. Recomputed here by brute force from the model's pooled features."""
    import numpy as np
    import torch

    from aikd.train import Trainer
    _write_stanford40(tmp_path / "data")
    cfg = TrainConfig.from_dict({"data.dataset": "stanford40", "data.root": str(tmp_path / "data"),
                                 "model.name": "small_cnn", "method.name": "baseline", "epochs": 1,
                                 "data.num_workers": 0, "data.batch_size": 8})
    with pytest.warns(UserWarning, match="class folders"):  # 3 classes instead of 40
        trainer = Trainer(cfg)
        trainer.train_epoch()
        final = trainer.final_metrics()
    assert trainer.cfg.data.dataset == "stanford40" and trainer.data.num_classes == 3
    assert {"val_error", "test_error", "test_ece_ts", "test_recall1"} <= set(final)
    model = trainer.model.eval()
    feats, labels = [], []
    with torch.no_grad():
        for batch in trainer.data.test:
            feats.append(model.forward_features(batch.x)[-1].mean(dim=(2, 3)))  # small_cnn: pool -> linear
            labels.append(batch.y)
    f = torch.cat(feats).double().numpy()
    y = torch.cat(labels).numpy()
    hits = 0
    for i in range(len(y)):
        d = ((f - f[i]) ** 2).sum(axis=1)
        d[i] = np.inf
        hits += int(y[int(np.argmin(d))] == y[i])
    assert len(y) == 9
    assert final["test_recall1"] == pytest.approx(100.0 * hits / len(y), abs=1e-9)


def test_coarse_and_offline_sets_report_no_recall_at_1(tmp_path):
    from aikd.train import Trainer
    trainer = Trainer(_cfg(tmp_path, method__name="baseline", epochs=1))
    trainer.train_epoch()
    assert "test_recall1" not in trainer.final_metrics()
def test_gpu_peak_memory_is_absent_on_cpu(tmp_path):
    """`gpu_peak_mem_mb` is logged per epoch only where a GPU trained: a CPU run has no such figure, not a 0."""
    from aikd.train import Trainer
    trainer = Trainer(_cfg(tmp_path, epochs=1, device="cpu"))
    metrics = trainer.train_epoch()
    assert "gpu_peak_mem_mb" not in metrics and "test_error" in metrics
