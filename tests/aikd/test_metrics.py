"""Metric invariants of SPEC 12 items 36-40; golden values come from the SPEC 9 formulas, written out here."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score

from aikd.metrics import (
    cross_fit_temperature,
    evaluate_logits,
    expected_calibration_error,
    fit_temperature,
    macro_f1,
    nll,
    recall_at_1,
    reliability_bins,
    topk_error,
)

# ---------------------------------------------------------------- top-k error and NLL (item 36)

HAND_LOGITS = torch.tensor(
    [
        [0.1, 0.5, 0.3, 0.2],  # label 1: rank 1
        [0.9, 0.05, 0.03, 0.02],  # label 2: rank 3
        [0.2, 0.1, 0.4, 0.3],  # label 3: rank 2
        [0.3, 0.2, 0.1, 0.4],  # label 0: rank 2
    ]
)
HAND_LABELS = torch.tensor([1, 2, 3, 0])


def test_topk_error_hand_example():
    # ranks of the true class are 1, 3, 2, 2 -> top-1 misses 3 of 4, top-2 misses 1, top-3 misses none.
    assert topk_error(HAND_LOGITS, HAND_LABELS, k=1) == pytest.approx(75.0)
    assert topk_error(HAND_LOGITS, HAND_LABELS, k=2) == pytest.approx(25.0)
    assert topk_error(HAND_LOGITS, HAND_LABELS, k=3) == pytest.approx(0.0)
    assert topk_error(HAND_LOGITS, HAND_LABELS, k=10) == pytest.approx(0.0)  # k clamped to C
    assert topk_error(HAND_LOGITS.numpy(), HAND_LABELS.numpy(), k=1) == pytest.approx(75.0)


def test_top5_error_not_above_top1():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(500, 20, generator=generator)
    labels = torch.randint(0, 20, (500,), generator=generator)
    top1, top5 = topk_error(logits, labels, 1), topk_error(logits, labels, 5)
    assert top5 <= top1
    assert 0.0 <= top5 < top1 <= 100.0


def test_nll_matches_formula():
    expected = np.mean(
        [
            -math.log(math.exp(row[y]) / sum(math.exp(v) for v in row))
            for row, y in zip(HAND_LOGITS.tolist(), [1, 2, 3, 0])
        ]
    )
    assert nll(HAND_LOGITS, HAND_LABELS) == pytest.approx(expected, abs=1e-6)


# ---------------------------------------------------------------- macro-F1 (item 37)


def _macro_f1_by_definition(preds, labels, num_classes):
    scores = []
    for c in range(num_classes):
        tp = sum(1 for p, y in zip(preds, labels) if p == c and y == c)
        fp = sum(1 for p, y in zip(preds, labels) if p == c and y != c)
        fn = sum(1 for p, y in zip(preds, labels) if p != c and y == c)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        scores.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return sum(scores) / num_classes


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_macro_f1_equals_sklearn_on_random_predictions(seed):
    rng = np.random.default_rng(seed)
    num_classes = 7
    labels = np.concatenate([np.arange(num_classes), rng.integers(0, num_classes, 200)])  # every class occurs
    preds = np.where(rng.random(labels.size) < 0.5, labels, rng.integers(0, num_classes, labels.size))
    ours = macro_f1(torch.from_numpy(preds), torch.from_numpy(labels), num_classes)
    assert ours == pytest.approx(f1_score(labels, preds, average="macro", zero_division=0), abs=1e-12)
    assert ours == pytest.approx(_macro_f1_by_definition(preds.tolist(), labels.tolist(), num_classes), abs=1e-12)


def test_macro_f1_averages_over_all_classes_when_some_never_occur():
    labels = [0, 0, 1, 1]
    preds = [0, 1, 1, 3]
    # class 0: P 1, R 1/2 -> 2/3; class 1: P 1/2, R 1/2 -> 1/2; class 2 absent -> 0; class 3: only an FP -> 0.
    hand = (2 / 3 + 1 / 2 + 0 + 0) / 4
    assert _macro_f1_by_definition(preds, labels, 4) == pytest.approx(hand)
    assert macro_f1(torch.tensor(preds), torch.tensor(labels), 4) == pytest.approx(hand, abs=1e-12)
    # a class missing from both labels and predictions still counts (sklearn's default would skip it)
    assert macro_f1(torch.tensor(preds), torch.tensor(labels), 6) == pytest.approx(7 / 6 / 6, abs=1e-12)
    assert macro_f1(np.array(preds), np.array(labels), 6) == pytest.approx(
        f1_score(labels, preds, labels=list(range(6)), average="macro", zero_division=0), abs=1e-12
    )


def test_macro_f1_perfect_and_rejects_out_of_range_classes():
    labels = torch.tensor([0, 1, 2, 2])
    assert macro_f1(labels, labels, 3) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        macro_f1(torch.tensor([0, 5, 1, 2]), labels, 3)


# ---------------------------------------------------------------- ECE and reliability bins (item 38)


def _ece_by_formula(confidences, correct, n_bins):
    """SPEC 9.4 written out: right-closed bins ((m-1)/M, m/M], weighted |acc - conf|."""
    n = len(confidences)
    total = 0.0
    for m in range(1, n_bins + 1):
        members = [i for i, c in enumerate(confidences) if (m - 1) / n_bins < c <= m / n_bins]
        if members:
            accuracy = sum(correct[i] for i in members) / len(members)
            confidence = sum(confidences[i] for i in members) / len(members)
            total += len(members) / n * abs(accuracy - confidence)
    return total


def _probs_with_confidence(confidences, num_classes=20):
    """Rows whose class-0 probability is the given confidence and whose other classes share the rest."""
    rows = []
    for c in confidences:
        rest = (1.0 - c) / (num_classes - 1)
        assert rest < c
        rows.append([c] + [rest] * (num_classes - 1))
    return torch.tensor(rows, dtype=torch.float64)


def test_ece_zero_for_perfectly_calibrated_set():
    # bin (0.7, 0.8]: four samples at 0.75, three correct; bin (0.4, 0.5]: two at 0.5, one correct;
    # bin (0.9, 1.0]: two at 1.0, both correct. Accuracy equals confidence in every bin.
    probs = torch.tensor(
        [[0.75, 0.25, 0.0, 0.0]] * 4 + [[0.5, 0.2, 0.2, 0.1]] * 2 + [[1.0, 0.0, 0.0, 0.0]] * 2, dtype=torch.float64
    )
    labels = torch.tensor([0, 0, 0, 1, 0, 3, 0, 0])
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(0.0, abs=1e-12)
    assert expected_calibration_error(probs, labels, n_bins=15) == pytest.approx(0.0, abs=1e-12)


def test_ece_hand_example_with_ten_bins():
    confidences = [0.95, 0.95, 0.62, 0.33]
    correct = [1, 0, 1, 0]
    probs = _probs_with_confidence(confidences)
    labels = torch.tensor([0 if ok else 1 for ok in correct])
    # bin 10: acc 1/2, conf 0.95 -> 2/4 * 0.45; bin 7: acc 1, conf 0.62 -> 1/4 * 0.38; bin 4: acc 0, conf 0.33
    hand = 2 / 4 * 0.45 + 1 / 4 * 0.38 + 1 / 4 * 0.33
    assert _ece_by_formula(confidences, correct, 10) == pytest.approx(hand)
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(hand, abs=1e-12)
    assert expected_calibration_error(probs.numpy(), labels.numpy(), n_bins=10) == pytest.approx(hand, abs=1e-12)


def test_ece_random_set_matches_formula():
    generator = torch.Generator().manual_seed(3)
    probs = torch.softmax(2 * torch.randn(300, 6, generator=generator, dtype=torch.float64), dim=1)
    labels = torch.randint(0, 6, (300,), generator=generator)
    confidences, predictions = probs.max(dim=1)
    correct = (predictions == labels).int().tolist()
    for n_bins in (10, 15, 20):
        expected = _ece_by_formula(confidences.tolist(), correct, n_bins)
        assert expected_calibration_error(probs, labels, n_bins) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n_bins", [10, 15])
def test_confidence_exactly_on_edge_falls_in_right_closed_bin(dtype, n_bins):
    for m in range(1, n_bins + 1):
        probs = _probs_with_confidence([m / n_bins], num_classes=n_bins + 5).to(dtype)
        counts = reliability_bins(probs, torch.tensor([0]), n_bins)["count"]
        assert counts == [1 if bin_number == m else 0 for bin_number in range(1, n_bins + 1)], m


def test_edge_confidence_changes_ece_as_right_closed_bins_say():
    # 0.3 belongs to bin (0.2, 0.3] together with 0.25: one bin with acc 1/2 and conf 0.275.
    probs = _probs_with_confidence([0.3, 0.25])
    labels = torch.tensor([0, 1])
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(abs(0.5 - 0.275), abs=1e-12)


def test_ece_all_correct_all_wrong_and_empty_bins():
    confidences = [0.9, 0.55, 0.7, 0.99]
    probs = _probs_with_confidence(confidences)
    all_correct = torch.zeros(4, dtype=torch.long)
    all_wrong = torch.ones(4, dtype=torch.long)
    # every bin has accuracy 1 (resp. 0), so ECE = mean of (1 - conf) (resp. mean conf)
    assert expected_calibration_error(probs, all_correct, 15) == pytest.approx(np.mean([1 - c for c in confidences]))
    assert expected_calibration_error(probs, all_wrong, 15) == pytest.approx(np.mean(confidences))
    bins = reliability_bins(probs, all_correct, 10)
    assert bins["count"] == [0, 0, 0, 0, 0, 1, 1, 0, 1, 1]
    assert bins["edges"] == pytest.approx([m / 10 for m in range(11)])
    empty = [i for i, c in enumerate(bins["count"]) if c == 0]
    assert all(bins["accuracy"][i] == 0.0 and bins["confidence"][i] == 0.0 for i in empty)
    assert bins["confidence"][5] == pytest.approx(0.55) and bins["accuracy"][5] == 1.0
    assert sum(bins["count"]) == 4


def test_ece_single_class():
    probs = torch.ones(5, 1)
    labels = torch.zeros(5, dtype=torch.long)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0)
    assert reliability_bins(probs, labels)["count"][-1] == 5


def test_reliability_bins_reproduce_ece():
    generator = torch.Generator().manual_seed(5)
    probs = torch.softmax(3 * torch.randn(400, 10, generator=generator), dim=1)
    labels = torch.randint(0, 10, (400,), generator=generator)
    bins = reliability_bins(probs, labels, 15)
    n = sum(bins["count"])
    from_bins = sum(k / n * abs(a - c) for k, a, c in zip(bins["count"], bins["accuracy"], bins["confidence"]))
    assert expected_calibration_error(probs, labels, 15) == pytest.approx(from_bins, abs=1e-9)


# ---------------------------------------------------------------- temperature scaling (item 39)


def _miscalibrated_logits(scale, n=2000, classes=10, seed=0):
    """Labels drawn from softmax(base); logits = scale * base, so the ideal temperature is about `scale`."""
    generator = torch.Generator().manual_seed(seed)
    base = 1.5 * torch.randn(n, classes, generator=generator, dtype=torch.float64)
    labels = torch.multinomial(base.softmax(dim=1), 1, generator=generator).squeeze(1)
    return scale * base, labels


def _nll_at(logits, labels, temperature):
    return F.cross_entropy(logits.double() / temperature, labels).item()


@pytest.mark.parametrize("scale", [0.3, 1.0, 4.0])
def test_fitted_temperature_beats_t1_and_grid(scale):
    logits, labels = _miscalibrated_logits(scale)
    temperature = fit_temperature(logits, labels)
    assert 0.05 <= temperature <= 20
    fitted = _nll_at(logits, labels, temperature)
    grid_best = min(_nll_at(logits, labels, t) for t in np.exp(np.linspace(np.log(0.05), np.log(20), 200)))
    assert fitted <= _nll_at(logits, labels, 1.0) + 1e-12
    assert fitted <= grid_best + 1e-4
    assert temperature == pytest.approx(scale, rel=0.25)
    assert topk_error(logits / temperature, labels) == topk_error(logits, labels)


def test_fitted_temperature_float32_and_bound():
    logits, labels = _miscalibrated_logits(4.0, n=500)
    assert fit_temperature(logits.float(), labels) == pytest.approx(fit_temperature(logits, labels), rel=1e-3)
    # perfectly separated data: NLL keeps falling as T shrinks, so T sits at the lower bound
    separable = F.one_hot(torch.arange(20) % 4, 4).double()
    assert fit_temperature(separable, torch.arange(20) % 4) == pytest.approx(0.05, rel=1e-3)


def test_cross_fit_temperature():
    logits, labels = _miscalibrated_logits(4.0, n=2000, seed=1)
    result = cross_fit_temperature(logits, labels, seed=0)
    assert set(result) >= {"ece", "nll", "temperatures", "temperature_a", "temperature_b"}
    assert result["temperatures"] == [result["temperature_a"], result["temperature_b"]]
    assert result == cross_fit_temperature(logits, labels, seed=0)
    assert result != cross_fit_temperature(logits, labels, seed=1)
    for key in ("temperature_a", "temperature_b"):
        assert result[key] == pytest.approx(4.0, rel=0.25)
    before = evaluate_logits(logits, labels, 10)
    assert result["nll"] < before["nll"]
    assert 0.0 <= 100 * result["ece"] < before["ece"]  # a fraction here, % in evaluate_logits

    # the halves are a seeded partition: fitting half A by hand reproduces temperature_a
    order = torch.randperm(2000, generator=torch.Generator().manual_seed(0))
    assert result["temperature_a"] == pytest.approx(fit_temperature(logits[order[:1000]], labels[order[:1000]]))


# ---------------------------------------------------------------- Recall@1 (item 40)


def test_recall_at_1_hand_example():
    features = torch.tensor([[0.0], [1.0], [5.0], [5.5]])
    labels = torch.tensor([0, 0, 1, 0])
    # neighbours: 0->1 (same), 1->0 (same), 2->3 (different), 3->2 (different)
    assert recall_at_1(features, labels) == pytest.approx(50.0)


def test_recall_at_1_never_uses_the_sample_itself():
    # duplicates at distance 0 with different labels: counting oneself would give 100 %
    features = torch.tensor([[0.0, 0.0], [0.0, 0.0], [10.0, 0.0], [10.0, 0.0]])
    labels = torch.tensor([0, 1, 2, 2])
    assert recall_at_1(features, labels) == pytest.approx(50.0)
    distinct_labels = torch.arange(4)
    assert recall_at_1(features, distinct_labels) == 0.0


def test_recall_at_1_chunks_match_brute_force():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(70, 5))
    labels = rng.integers(0, 3, 70)
    distances = np.linalg.norm(features[:, None, :] - features[None, :, :], axis=2)
    np.fill_diagonal(distances, np.inf)
    expected = 100.0 * np.mean(labels[distances.argmin(axis=1)] == labels)
    assert recall_at_1(torch.from_numpy(features), torch.from_numpy(labels), chunk_size=16) == pytest.approx(expected)
    assert recall_at_1(features, labels) == pytest.approx(expected)


# ---------------------------------------------------------------- evaluate_logits


def test_evaluate_logits_units_and_small_class_count():
    logits, labels = _miscalibrated_logits(2.0, n=300, classes=3)
    report = evaluate_logits(logits.float(), labels, num_classes=3)
    assert set(report) == {"error", "top5_error", "nll", "ece", "f1"}
    assert report["top5_error"] == 0.0  # k = min(5, C) = 3 covers every class
    assert report["error"] == pytest.approx(topk_error(logits, labels, 1))
    assert report["ece"] == pytest.approx(100 * expected_calibration_error(logits.softmax(dim=1), labels), abs=1e-4)
    assert report["f1"] == pytest.approx(f1_score(labels, logits.argmax(1), average="macro", zero_division=0))
    assert report["nll"] == pytest.approx(nll(logits, labels), abs=1e-5)
