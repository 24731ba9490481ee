"""The epoch loop: `fit(cfg, callbacks, resume_state)`; knows nothing of who listens (Ray, MLflow, the CLI).

Usage: python -m aikd.train --dataset digits --model resnet18 --epochs 30 --set optim.lr=0.05
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import signal
import sys
import time
from collections import defaultdict

import numpy as np
import torch

from aikd import metrics as M
from aikd.config import ConfigError, TrainConfig, all_keys, needs_teacher
from aikd.data import build_data
from aikd.methods import create_method, method_class
from aikd.models import build_model
from aikd.teachers import load_teacher, save_teacher, teacher_lock, teacher_path


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run cannot continue meaningfully."""


class InjectedCrash(RuntimeError):
    """A crash asked for by `debug.crash_at_epoch` (fault-tolerance tests)."""


def select_device(name: str = "auto") -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def prepare_device(device: torch.device) -> None:
    """Process-wide settings the trainer relies on: cuDNN autotuning on a GPU, flushed denormals on a CPU."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    else:
        torch.set_flush_denormal(True)  # denormal gradients slow CPU convolutions by >10x


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    """The student's SGD with the recipe's lr / momentum / weight decay / nesterov (SPEC 8.4)."""
    o = cfg.optim
    return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov and o.momentum > 0,
                           weight_decay=o.weight_decay)


def train_step(method, optimizer, batch, use_amp: bool, poison: bool = False) -> dict:
    """One optimisation step: the method's loss under bf16 autocast (on a GPU), backward, SGD step.

    Returns the method's outputs, still on the device: reading them here would make the host wait for the GPU
    every step. `poison` multiplies the loss that is back-propagated by NaN (`debug.nan_at_epoch`)."""
    with torch.autocast(batch.x.device.type, dtype=torch.bfloat16, enabled=use_amp):
        out = method.training_step(batch)
    loss = out["loss"] * float("nan") if poison else out["loss"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return out


def lr_at(cfg: TrainConfig, epoch: int) -> float:
    """Epoch-level step schedule lr0 * gamma^#{m <= t} (SPEC 1.8), with the optional linear warm-up."""
    o = cfg.optim
    lr = o.lr * o.gamma ** sum(epoch >= m for m in o.milestones)
    if o.warmup_epochs and epoch < o.warmup_epochs:
        lr *= (epoch + 1) / (o.warmup_epochs + 1)
    return lr


@torch.no_grad()
def predict(model, loader, features: bool = False):
    """Logits (and pooled features) and labels over a whole evaluation split, kept on the device."""
    model.eval()
    logits, labels, feats = [], [], []
    for batch in loader:
        if features:
            z, f = model.forward_head(model.forward_features(batch.x), return_pooled=True)
            feats.append(f.float())
        else:
            z = model(batch.x)
        logits.append(z.float())
        labels.append(batch.y)
    out = (torch.cat(logits), torch.cat(labels))
    return out + (torch.cat(feats),) if features else out


def _capture_rng() -> dict:
    """Global RNG states in types that `torch.load(weights_only=True)` accepts (tensors, ints, lists)."""
    py = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [py[0], list(py[1]), py[2]],
             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_rng(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _copied(obj, device, memo: dict):
    """A deep copy in which every tensor is a detached copy (on `device`, or where it was), keeping shared
    tensors shared and the attributes of dict subclasses (a state_dict's `_metadata`)."""
    if isinstance(obj, torch.Tensor):
        if id(obj) not in memo:
            memo[id(obj)] = obj.detach().to(device or obj.device, copy=True)
        return memo[id(obj)]
    if isinstance(obj, dict):
        out = type(obj)((k, _copied(v, device, memo)) for k, v in obj.items())
        if getattr(obj, "__dict__", None):
            out.__dict__.update(copy.deepcopy(obj.__dict__))
        return out
    if isinstance(obj, (list, tuple)):
        items = [_copied(v, device, memo) for v in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)
    return copy.deepcopy(obj)


def _claim_marker(marker: str) -> bool:
    """True without a marker; with one, only for the run that creates the file (atomic across processes)."""
    if not marker:
        return True
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


class Trainer:
    """One training run that advances an epoch at a time, so that callers (a Ray trial running several seeds in
    lockstep, the CLI, `fit`) decide when to report and checkpoint. Every random draw of an epoch comes from
    generators seeded by (seed, epoch), so runs in one process do not disturb each other.
    """

    def __init__(self, cfg: TrainConfig, resume_state: dict | None = None, log=None, teacher=None):
        """`teacher`: the phase-1 S_sup that AI-KD and TF-KD need (`get_or_train_teacher(cfg)`); the caller gets it
        first, so that a teacher trained here would not shift the student's random stream."""
        cfg = cfg.resolved()
        self.cfg, self.log = cfg, log or (lambda msg: None)
        self.device = device = select_device(cfg.device)
        prepare_device(device)
        if needs_teacher(cfg):
            if teacher is None:
                raise ValueError(f"method {cfg.method.name!r} needs its phase-1 teacher: pass "
                                 "teacher=get_or_train_teacher(cfg)")
            teacher = teacher.to(device)
        seed_everything(cfg.seed)
        pair = getattr(method_class(cfg.method.name), "pair_batches", False)
        self.data = build_data(cfg, device, pair_sampler=pair)
        self.model = build_model(cfg, self.data.num_classes).to(device)
        self.method = create_method(cfg, self.model, self.data, device, teacher=teacher)
        self.optimizer = make_optimizer(cfg, list(self.model.parameters()) + list(self.method.extra_parameters()))
        self.epoch, self.best_test = 0, math.inf
        self.history: list[dict] = []
        if resume_state is not None:
            self.model.load_state_dict(resume_state["model"])
            self.optimizer.load_state_dict(resume_state["optimizer"])
            self.method.load_state_dict(resume_state["method"])
            self.epoch = resume_state["epoch"]
            self.best_test = resume_state.get("best_test_error", math.inf)
            self.history = list(resume_state.get("history", []))
            _restore_rng(resume_state["rng"])

    @property
    def done(self) -> bool:
        return self.epoch >= self.cfg.epochs

    @property
    def crash_due(self) -> bool:
        """Whether the next `train_epoch` ends in the crash `debug.crash_at_epoch` asks for. The trial loop lets
        its reports in flight reach Ray first, so that the crash falls after the checkpoints before it are
        registered, the same way on a loaded host as on an idle one."""
        d = self.cfg.debug
        return d.crash_at_epoch == self.epoch and bool(d.crash_marker) and not os.path.exists(d.crash_marker)

    def train_epoch(self) -> dict:
        """Train one epoch, evaluate on val and test; returns that epoch's metrics.

        On a GPU, `gpu_peak_mem_mb` is the most memory PyTorch held allocated on it during this epoch, in this
        process (seeds trained in lockstep in one process each see the others' memory; the key is absent on a
        CPU): what sizing trials that share a GPU needs."""
        cfg, device, epoch, crash = self.cfg, self.device, self.epoch, self.crash_due
        model, method, optimizer, data = self.model, self.method, self.optimizer, self.data
        t0 = time.perf_counter()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        lr = lr_at(cfg, epoch)
        for g in optimizer.param_groups:
            g["lr"] = lr
        data.train.set_epoch(epoch)
        method.on_epoch_start(epoch)
        model.train()
        sums: dict = defaultdict(lambda: torch.zeros((), device=device))
        steps = 0
        use_amp = device.type == "cuda"
        nan_now = cfg.debug.nan_at_epoch == epoch and _claim_marker(cfg.debug.nan_marker)
        for batch in data.train:
            out = train_step(method, optimizer, batch, use_amp, poison=nan_now)
            for k, v in out.items():  # accumulated on the device: one host sync per epoch, not per step
                sums[k] += v.detach().float()
            steps += 1
        train_stats = {f"train_{k}": (v / max(steps, 1)).item() for k, v in sums.items()}
        if not math.isfinite(train_stats.get("train_loss", 0.0)):
            raise NonFiniteLossError(f"non-finite loss at epoch {epoch}: {train_stats['train_loss']}")

        n_bins = cfg.metrics.ece_bins
        metrics = {"epoch": epoch + 1, "lr": lr, **train_stats}
        if data.val is not None:
            z, y = predict(model, data.val)
            metrics.update({f"val_{k}": v for k, v in M.evaluate_logits(z, y, data.num_classes, n_bins).items()})
        z, y = predict(model, data.test)
        metrics.update({f"test_{k}": v for k, v in M.evaluate_logits(z, y, data.num_classes, n_bins).items()})
        self.best_test = min(self.best_test, metrics["test_error"])
        metrics["test_error_best"] = self.best_test  # CS-KD's code convention; reported, never used to select
        if device.type == "cuda":
            metrics["gpu_peak_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        metrics["epoch_seconds"] = time.perf_counter() - t0
        self.history.append(metrics)
        self.epoch += 1
        self.log(_epoch_line(metrics))
        if crash and _claim_marker(cfg.debug.crash_marker):  # (one run crashes, as the marker's docs say)
            if cfg.debug.crash_kind == "kill":  # no exception: nothing of this process runs after it
                os.kill(os.getpid(), signal.SIGKILL)
            raise InjectedCrash(f"injected crash at epoch {epoch}")
        return metrics

    def state(self, host: bool = False) -> dict:
        """A snapshot of all that exact resume needs (the config is not part of it: whoever resumes builds the
        Trainer from it). Copied, since state_dict tensors alias the live parameters; with `host=True` every tensor
        is copied into CPU memory, so that a checkpoint can be written while the next epoch trains on the device."""
        return _copied({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                        "method": self.method.state_dict(), "epoch": self.epoch, "best_test_error": self.best_test,
                        "history": self.history, "rng": _capture_rng()},
                       torch.device("cpu") if host else None, {})

    def final_metrics(self) -> dict:
        """The last epoch's metrics plus calibration after temperature scaling, and on the fine-grained sets the
        test Recall@1 of the pooled features (CS-KD Table 6, SPEC 9.6)."""
        final = dict(self.history[-1]) if self.history else {}
        final.pop("epoch_seconds", None)
        final.update(_calibration(self.cfg, self.model, self.data))
        if self.data.info.fine_grained:
            _, y, features = predict(self.model, self.data.test, features=True)
            final["test_recall1"] = M.recall_at_1(features, y)
        return final

    def artifacts(self) -> dict:
        return _artifacts(self.cfg, self.model, self.data)


def get_or_train_teacher(cfg: TrainConfig, root=None, log=None) -> torch.nn.Module:
    """Load S_sup for `cfg` from the store (aikd/teachers.py), training it with the phase-1 recipe first when the
    store has no valid copy; concurrent callers train it once."""
    log = log or (lambda msg: None)
    if root is not None:
        cfg = cfg.copy()
        cfg.teacher.root = str(root)
    tc = cfg.teacher_config()
    path = teacher_path(cfg)
    with teacher_lock(cfg):
        model = load_teacher(cfg)
        if model is not None:
            log(f"phase-1 teacher: reusing cached {path}")
            return model
        reason = "corrupt or truncated file" if path.exists() else "none cached"
        log(f"phase-1 teacher: training {tc.model.name} on {tc.data.dataset} for {tc.epochs} epochs "
            f"({reason}; store {path})")
        metrics, model = fit(tc, log=lambda m: log(f"  [teacher] {m}"), return_model=True)
        save_teacher(cfg, model, metrics)
        log(f"phase-1 teacher: saved {path} (test error {metrics['test_error']:.2f}%)")
        return model


def teacher_for(cfg: TrainConfig, log=None):
    """The phase-1 teacher `cfg` trains with (got or trained once), or None for a method that needs none."""
    return get_or_train_teacher(cfg, log=log) if needs_teacher(cfg) else None


def fit(cfg: TrainConfig, callbacks=(), resume_state: dict | None = None, log=None, return_model: bool = False,
        teacher=None):
    """Train `cfg` to its last epoch; returns the final metrics (errors and ECE in %, F1 as a fraction).

    `resume_state` is a dict produced by the `state_fn` handed to callbacks; the resumed run continues exactly.
    With `return_model=True` it returns `(metrics, model)` (the teacher store and `--save` need the weights).
    Callbacks may define `on_epoch_end(epoch, metrics, state_fn)` and `on_fit_end(metrics, artifacts)`.
    """
    trainer = Trainer(cfg, resume_state=resume_state, log=log, teacher=teacher)
    while not trainer.done:
        metrics = trainer.train_epoch()
        for cb in callbacks:
            if hasattr(cb, "on_epoch_end"):
                cb.on_epoch_end(trainer.epoch - 1, metrics, trainer.state)
    final = trainer.final_metrics()
    if any(hasattr(cb, "on_fit_end") for cb in callbacks):
        artifacts = trainer.artifacts()
        for cb in callbacks:
            if hasattr(cb, "on_fit_end"):
                cb.on_fit_end(final, artifacts)
    return (final, trainer.model) if return_model else final


def _calibration(cfg, model, data) -> dict:
    """ECE after temperature scaling: T fitted on val, or 2-fold cross-fitted on test without val (SPEC 9.5)."""
    z_test, y_test = predict(model, data.test)
    n_bins = cfg.metrics.ece_bins
    if data.val is not None:
        z_val, y_val = predict(model, data.val)
        t = M.fit_temperature(z_val, y_val)
        scaled = M.evaluate_logits(z_test / t, y_test, data.num_classes, n_bins)
        return {"temperature": t, "test_ece_ts": scaled["ece"], "test_nll_ts": scaled["nll"]}
    cf = M.cross_fit_temperature(z_test, y_test, seed=cfg.data.split_seed, n_bins=n_bins)
    return {"temperature": float(np.mean(cf["temperatures"])), "test_ece_ts": 100 * cf["ece"],
            "test_nll_ts": cf["nll"]}


def _artifacts(cfg, model, data) -> dict:
    n_bins = cfg.metrics.ece_bins
    out = {}
    for split, loader in (("val", data.val), ("test", data.test)):
        if loader is not None:
            z, y = predict(model, loader)
            out[f"reliability_{split}"] = M.reliability_bins(torch.softmax(z, 1), y, n_bins)
    return out


def _epoch_line(m: dict) -> str:
    parts = [f"epoch {m['epoch']:>3}", f"lr {m['lr']:.4g}", f"loss {m.get('train_loss', float('nan')):.4f}"]
    if "val_error" in m:
        parts.append(f"val_err {m['val_error']:.2f}")
    parts += [f"test_err {m['test_error']:.2f}", f"test_ece {m['test_ece']:.2f}", f"{m['epoch_seconds']:.1f}s"]
    return "  ".join(parts)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m aikd.train", description=__doc__.splitlines()[0])
    p.add_argument("--dataset")
    p.add_argument("--model")
    p.add_argument("--method")
    p.add_argument("--epochs", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--data-root")
    p.add_argument("--download", action="store_true")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted config override")
    p.add_argument("--list-keys", action="store_true", help="print every config key and exit")
    p.add_argument("--save", help="write the trained model's weights to this file")
    args = p.parse_args(argv)
    if args.list_keys:
        print("\n".join(all_keys()))
        return 0
    flat = {k: v for k, v in {"data.dataset": args.dataset, "model.name": args.model, "method.name": args.method,
                              "epochs": args.epochs, "seed": args.seed, "data.root": args.data_root}.items()
            if v is not None}
    if args.download:
        flat["data.download"] = True
    try:
        cfg = TrainConfig.from_dict(flat, overrides=args.set).resolved()
        from aikd.models import list_models
        if cfg.model.name not in list_models():
            raise ConfigError(f"model.name={cfg.model.name!r} is not a registered model: "
                              f"{', '.join(list_models())}")
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"training {cfg.method.name} on {cfg.data.dataset} with {cfg.model.name} for {cfg.epochs} epochs "
          f"on {select_device(cfg.device)}", flush=True)
    from aikd.data.datasets import DatasetNotFoundError
    try:
        def say(msg):
            print(msg, flush=True)
        final, model = fit(cfg, log=say, return_model=True, teacher=teacher_for(cfg, log=say))
    except DatasetNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.save:
        torch.save(model.state_dict(), args.save)
    print(json.dumps(final, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
