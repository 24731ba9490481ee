"""Evaluation metrics of SPEC section 9: top-k error, NLL, macro-F1, ECE, temperature scaling, Recall@1.

All functions take torch tensors (numpy arrays are accepted too), compute in float64 on the input's device,
and return plain python floats so that results can be logged directly.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar

TEMPERATURE_BOUNDS = (0.05, 20.0)  # SPEC 9.5: log T is searched in [log 0.05, log 20]


def _as_tensor(values) -> torch.Tensor:
    """Accept numpy arrays, lists or tensors; metrics never need gradients."""
    if isinstance(values, torch.Tensor):
        return values.detach()
    return torch.as_tensor(np.asarray(values))


def _as_labels(labels, device: torch.device) -> torch.Tensor:
    return _as_tensor(labels).to(device=device, dtype=torch.long).reshape(-1)


def _check_rows(scores: torch.Tensor, labels: torch.Tensor) -> None:
    if scores.dim() != 2:
        raise ValueError(f"expected a 2-D (N, C) tensor, got shape {tuple(scores.shape)}")
    if scores.shape[0] != labels.shape[0]:
        raise ValueError(f"{scores.shape[0]} rows of scores but {labels.shape[0]} labels")
    if scores.shape[0] == 0:
        raise ValueError("metrics need at least one sample")


def topk_error(logits, labels, k: int = 1) -> float:
    """Top-k error in % (SPEC 9.1): 100 * share of samples whose label is not among the k largest logits.

    Ties follow `torch.topk`. k larger than the number of classes is clamped to it (every label is then
    "in the top k", error 0).
    """
    logits = _as_tensor(logits)
    labels = _as_labels(labels, logits.device)
    _check_rows(logits, labels)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k = min(k, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    hit = (top == labels[:, None]).any(dim=1)
    return 100.0 * (1.0 - hit.double().mean().item())


def nll(logits, labels) -> float:
    """Mean negative log-likelihood of the labels under softmax(logits), in nats (SPEC 9.2)."""
    logits = _as_tensor(logits)
    labels = _as_labels(labels, logits.device)
    _check_rows(logits, labels)
    return F.cross_entropy(logits.double(), labels).item()


def macro_f1(preds, labels, num_classes: int) -> float:
    """Macro-F1 as a fraction (SPEC 9.3): unweighted mean of per-class F1 over ALL `num_classes` classes.

    Any 0/0 in precision, recall or F1 counts as 0, so a class absent from both labels and predictions
    contributes 0 (this is where it can differ from sklearn, which only averages over the classes it sees).
    """
    preds = _as_tensor(preds).reshape(-1).long()
    labels = _as_labels(labels, preds.device)
    if preds.shape != labels.shape:
        raise ValueError(f"{preds.numel()} predictions but {labels.numel()} labels")
    tp = torch.bincount(labels[preds == labels], minlength=num_classes).double()
    predicted = torch.bincount(preds, minlength=num_classes).double()
    actual = torch.bincount(labels, minlength=num_classes).double()
    if tp.numel() > num_classes or predicted.numel() > num_classes or actual.numel() > num_classes:
        raise ValueError(f"a class index is >= num_classes={num_classes}")
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(actual > 0, tp / actual.clamp(min=1), torch.zeros_like(tp))
    denominator = precision + recall
    f1 = torch.where(denominator > 0, 2 * precision * recall / denominator.clamp(min=1e-300), torch.zeros_like(tp))
    return f1.mean().item()


def _bin_sums(probs, labels, n_bins: int):
    """Per-bin sample count, sum of correctness and sum of confidence, with right-closed bins ((m-1)/M, m/M].

    Bin edges are computed as m/M in float64 and cast to the dtype of the probabilities, so a confidence built
    as exactly m/M in that dtype lands in bin m. A confidence of 0 (impossible after a softmax) goes to bin 1.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    probs = _as_tensor(probs)
    if not probs.is_floating_point():
        probs = probs.double()
    elif probs.dtype in (torch.float16, torch.bfloat16):
        probs = probs.float()
    labels = _as_labels(labels, probs.device)
    _check_rows(probs, labels)
    confidence, prediction = probs.max(dim=1)
    edges = (torch.arange(n_bins + 1, dtype=torch.float64, device=probs.device) / n_bins).to(probs.dtype)
    # searchsorted(side="left") gives the first edge >= confidence, i.e. m for confidence in ((m-1)/M, m/M].
    bin_index = (torch.searchsorted(edges, confidence.contiguous(), side="left") - 1).clamp(0, n_bins - 1)
    correct = (prediction == labels).double()
    count = torch.bincount(bin_index, minlength=n_bins).double()
    correct_sum = torch.bincount(bin_index, weights=correct, minlength=n_bins)
    confidence_sum = torch.bincount(bin_index, weights=confidence.double(), minlength=n_bins)
    return count, correct_sum, confidence_sum


def expected_calibration_error(probs, labels, n_bins: int = 15) -> float:
    """Expected calibration error as a FRACTION in [0, 1] (SPEC 9.4), e.g. 0.05 for 5 %.

    `probs` is (N, C) class probabilities (softmax outputs, tensor or numpy). Confidence = max probability,
    prediction = argmax; `n_bins` equal-width right-closed bins ((m-1)/M, m/M]; the result is
    sum_m |B_m|/n * |acc(B_m) - conf(B_m)|, empty bins contributing 0. Reports state ECE in %: multiply by 100
    (`evaluate_logits` does).
    """
    count, correct_sum, confidence_sum = _bin_sums(probs, labels, n_bins)
    # |B_m|/n * |acc_m - conf_m| == |sum of correct - sum of confidence| / n, and 0 for empty bins.
    return ((correct_sum - confidence_sum).abs().sum() / count.sum()).item()


def reliability_bins(probs, labels, n_bins: int = 15) -> dict:
    """Reliability-diagram data per bin (SPEC 9.4), same bins as `expected_calibration_error`.

    Returns lists `accuracy` and `confidence` (fractions, mean over the bin), `count` (samples per bin) of length
    `n_bins`, and `edges` (length n_bins + 1). Empty bins report accuracy 0.0 and confidence 0.0 with count 0
    (0 rather than NaN keeps the dict JSON-serialisable; check `count` to tell them apart).
    """
    count, correct_sum, confidence_sum = _bin_sums(probs, labels, n_bins)
    safe = count.clamp(min=1)
    return {
        "accuracy": (correct_sum / safe).tolist(),
        "confidence": (confidence_sum / safe).tolist(),
        "count": [int(c) for c in count.tolist()],
        "edges": [m / n_bins for m in range(n_bins + 1)],
    }


def fit_temperature(logits, labels) -> float:
    """The scalar T > 0 minimising the NLL of softmax(logits / T) (SPEC 9.5).

    Bounded Brent search over log T in [log 0.05, log 20] in float64 (NLL is unimodal in log T, being convex
    in 1/T); T = 1 and the two bounds are also compared so that the result is never worse than them.
    """
    logits = _as_tensor(logits)
    labels = _as_labels(labels, logits.device)
    _check_rows(logits, labels)
    logits = logits.double()

    def nll_at_log_t(log_t: float) -> float:
        return F.cross_entropy(logits / math.exp(log_t), labels).item()

    low, high = (math.log(t) for t in TEMPERATURE_BOUNDS)
    result = minimize_scalar(nll_at_log_t, bounds=(low, high), method="bounded", options={"xatol": 1e-7})
    candidates = [float(result.x), 0.0, low, high]
    best = min(candidates, key=nll_at_log_t)
    return math.exp(best)


def _split_halves(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    return order[: n // 2], order[n // 2 :]


def cross_fit_temperature(logits, labels, seed: int = 0, n_bins: int = 15) -> dict:
    """Temperature scaling by 2-fold cross-fitting, for final runs without a validation split (SPEC 9.5).

    The samples are split (seeded) into halves A and B; T is fitted on A and scored on B, and vice versa.
    Returns `ece` (post-TS ECE as a FRACTION, like `expected_calibration_error`; multiply by 100 to report)
    and `nll` (post-TS NLL in nats), each the mean of the two halves; `temperatures` = [T fitted on A,
    T fitted on B], also given as `temperature_a` / `temperature_b`.
    """
    logits = _as_tensor(logits)
    labels = _as_labels(labels, logits.device)
    _check_rows(logits, labels)
    if logits.shape[0] < 2:
        raise ValueError("cross-fitting needs at least 2 samples")
    half_a, half_b = (idx.to(logits.device) for idx in _split_halves(logits.shape[0], seed))
    temperatures, eces, nlls = [], [], []
    for fit_idx, score_idx in ((half_a, half_b), (half_b, half_a)):
        temperature = fit_temperature(logits[fit_idx], labels[fit_idx])
        scaled = logits[score_idx].double() / temperature
        temperatures.append(temperature)
        eces.append(expected_calibration_error(scaled.softmax(dim=1), labels[score_idx], n_bins))
        nlls.append(nll(scaled, labels[score_idx]))
    return {
        "ece": sum(eces) / 2,
        "nll": sum(nlls) / 2,
        "temperatures": temperatures,
        "temperature_a": temperatures[0],
        "temperature_b": temperatures[1],
    }


def recall_at_1(features, labels, chunk_size: int = 1024) -> float:
    """Recall@1 in % (SPEC 9.6): share of samples whose nearest OTHER sample (L2) has the same label.

    A sample is never its own neighbour, even when duplicates exist; ties go to the lowest index.
    Distances are computed in float64 in row chunks to bound memory.
    """
    features = _as_tensor(features).double()
    labels = _as_labels(labels, features.device)
    features = features.reshape(features.shape[0], -1)
    _check_rows(features, labels)
    n = features.shape[0]
    if n < 2:
        raise ValueError("Recall@1 needs at least 2 samples")
    hits = 0
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        distances = torch.cdist(features[start:stop], features)
        rows = torch.arange(stop - start, device=features.device)
        distances[rows, rows + start] = math.inf
        neighbour = distances.argmin(dim=1)
        hits += int((labels[neighbour] == labels[start:stop]).sum().item())
    return 100.0 * hits / n


def evaluate_logits(logits, labels, num_classes: int, n_bins: int = 15) -> dict:
    """All logit-based metrics of one evaluation split, in the units reported (SPEC 9).

    Returns `error` (top-1, %), `top5_error` (top-min(5, C), %), `nll` (nats), `ece` (%), `f1` (macro, fraction).
    """
    logits = _as_tensor(logits)
    labels = _as_labels(labels, logits.device)
    _check_rows(logits, labels)
    probs = logits.double().softmax(dim=1)
    return {
        "error": topk_error(logits, labels, k=1),
        "top5_error": topk_error(logits, labels, k=min(5, num_classes)),
        "nll": nll(logits, labels),
        "ece": 100.0 * expected_calibration_error(probs, labels, n_bins),
        "f1": macro_f1(logits.argmax(dim=1), labels, num_classes),
    }
