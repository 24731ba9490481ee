"""The probe behind `--gpus-per-trial auto` (on a CPU) and its choosing rule, fed with numbers."""

import pytest
import torch

from aikd.config import TrainConfig
from aikd.probe import build_trial, choose_gpu_fraction, estimate_throughput, probe, run_steps, trial_shape

GIB = 2**30


def _cfg(method="baseline", **extra):
    return TrainConfig.from_dict({"data.dataset": "cifar100", "model.name": "wrn16_2", "method.name": method,
                                  "data.batch_size": 4, **extra}).resolved()


# ---- the rule --------------------------------------------------------------------------------------------------
def test_memory_bounds_k_before_throughput():
    # 30 GiB per trial, 80% of 100 GiB = 80 GiB: 2 fit (60), 4 do not (120), whatever 4 would give
    frac, k, reason = choose_gpu_fraction(30 * GIB, 100 * GIB, {1: 100.0, 2: 150.0, 4: 900.0})
    assert (frac, k) == (0.5, 2)
    assert "up to 2 fit" in reason


def test_highest_aggregate_wins_and_near_ties_go_to_the_smaller_k():
    assert choose_gpu_fraction(GIB, 100 * GIB, {1: 100.0, 2: 180.0, 4: 260.0, 8: 240.0})[:2] == (0.25, 4)
    # 104 is the best; 100 >= 0.95 * 104, so one trial per GPU is as good
    assert choose_gpu_fraction(GIB, 100 * GIB, {1: 100.0, 2: 103.0, 4: 104.0})[:2] == (1.0, 1)


def test_single_trial_figure_with_busy_fraction_estimates_k_trials():
    # x1 = 100 img/s keeping the GPU busy 30%: k trials give 100 * min(k, 1 / 0.3)
    expected = {k: 100.0 * min(k, 1 / 0.3) for k in (1, 2, 4, 8)}
    for k, value in expected.items():
        assert estimate_throughput({1: 100.0}, k, 0.3)[0] == pytest.approx(value)
    best = max(expected.values())
    k_expected = min(k for k, v in expected.items() if v >= 0.95 * best)
    frac, k, reason = choose_gpu_fraction(GIB, 100 * GIB, {1: 100.0}, busy_fraction=0.3)
    assert (k, frac) == (k_expected, 1 / k_expected) == (4, 0.25)
    assert "estimated" in reason


def test_without_busy_fraction_unmeasured_k_gains_nothing():
    assert estimate_throughput({1: 100.0}, 4, None) == (100.0, "assumed equal to k=1")
    assert choose_gpu_fraction(GIB, 100 * GIB, {1: 100.0})[:2] == (1.0, 1)
    # several k measured: the model is not extrapolated past them
    assert estimate_throughput({1: 100.0, 4: 150.0}, 8, 0.25) == (150.0, "assumed equal to k=4")
    assert choose_gpu_fraction(GIB, 100 * GIB, {1: 100.0, 4: 150.0}, busy_fraction=0.25)[:2] == (0.25, 4)


def test_nothing_fits_or_nothing_known_means_one_trial_per_gpu():
    frac, k, reason = choose_gpu_fraction(90 * GIB, 100 * GIB, {1: 100.0})
    assert (frac, k) == (1.0, 1) and "not even one" in reason
    frac, k, reason = choose_gpu_fraction(GIB, 100 * GIB, None)
    assert (frac, k) == (1.0, 1) and "no throughput" in reason


@pytest.mark.parametrize("kw, words", [({"peak_bytes": 0}, "peak_bytes=0"), ({"margin": 1.5}, "margin=1.5")])
def test_bad_figures_are_refused(kw, words):
    args = {"peak_bytes": GIB, "total_bytes": 10 * GIB, "images_per_s_by_k": {1: 1.0}, **kw}
    with pytest.raises(ValueError, match=words):
        choose_gpu_fraction(**args)


# ---- the probe and its pieces on a CPU ------------------------------------------------------------------------
def test_trial_shape_follows_the_dataset_and_the_split():
    # CIFAR-100 (SPEC 8.1): 50,000 / 10,000; the 10% hold-out stays on the device with the test images
    cfg = _cfg()
    n_val = round(50_000 * cfg.data.val_fraction)
    assert trial_shape(cfg) == (100, 32, 50_000 - n_val, n_val + 10_000, min(cfg.data.eval_batch_size, 10_000))


def test_run_steps_crosses_epochs_like_the_trainer():
    trial = build_trial(_cfg(), "cpu", n_train=8)  # 2 batches of 4 per epoch, starting at epoch 1
    rows, losses = run_steps(trial, 5)
    assert rows == 5 * 4 and losses.shape == (5,) and torch.isfinite(losses).all()
    assert trial.epoch == 3  # epochs 1 and 2 ran out, the fifth step is in epoch 3


def test_build_trial_is_at_steady_state_for_aikd():
    snap = build_trial(_cfg("aikd"), "cpu", n_train=8)
    assert snap.method.prev_model is not None and snap.method.critic is not None
    cache = build_trial(_cfg("aikd", **{"method.prev_mode": "cache"}), "cpu", n_train=8)
    assert cache.method.cache.shape == (8, 100)


@pytest.mark.parametrize("method, rows", [("baseline", 4), ("cskd", 8)])  # CS-KD: anchors and partners
def test_probe_on_cpu_reports_throughput_and_no_gpu_figures(method, rows):
    r = probe(_cfg(method), 4, "cpu", n_train=8)
    assert r["steps"] == 3 and r["rows_per_step"] == rows
    assert r["images_per_s"] > 0 and r["loss_finite"] is True
    assert r["peak_bytes"] is r["total_bytes"] is r["gpu_busy_fraction"] is None
    with pytest.raises(ValueError, match="steps=1"):
        probe(_cfg(method), 1, "cpu", n_train=8)
