"""The GPU check (issue 18): in one prepared run on one GPU, what the fractional-GPU claim rests on.

    PYTHONPATH=. python3 benchmarks/gpu_check.py [--device cuda|cpu] [--tiny] [--items 1,2,3,4,5]

Not a test: it asserts nothing. Each figure is printed as a `name value` line (a `# note` may follow) and, when
$OUT is set, all of them go to $OUT/gpu_check.json too. Every ratio is measured side by side in this run.

1. sanity: a few hundred trainer steps (`aikd.train.train_step` over the trainer's device-resident loader, bf16
   autocast on a GPU as the trainer runs it) each of baseline, AI-KD with S_prev as a snapshot and as a cache,
   FRSKD and CS-KD on CIFAR-100-shaped random images: finite losses, host syncs per step (each warning of
   `torch.cuda.set_sync_debug_mode("warn")` counted, with the line that caused it), the dtype convolutions run in,
   and the dtypes of AI-KD's critic, its loss and its gradient penalty (float32 wanted).
2. epoch: one epoch of 50,000 CIFAR-shaped images, our trainer's path vs the official-style DataLoader loop
   (`epoch_vs_reference.compare`; 4 reference workers, as the CS-KD code has), goal >= 1.3x.
3. step cost: AI-KD step / CE step (`step_cost.measure`), S_prev as snapshot and as cache, goals <= 1.8 / <= 1.5.
4. packing: 8 trainings (each a fresh trial: data, model, optimiser, a fixed number of steps) run 1, 2, 4 and 8 at
   a time as separate processes, as Ray's fractional GPUs place trials; the processes are forked from one
   forkserver that never touches CUDA (each makes its own CUDA context) and start their timed trainings together
   once all have warmed up, running 8/k trainings one after another as a reused Ray worker does. Per level:
   aggregate images/s from that common start, wall time from launch, each process's peak GPU memory
   (`torch.cuda.max_memory_allocated`) and the GPU's utilisation. Goal: 4 at a time >= 2x the images/s of 1.
5. probe: `aikd.probe.probe` (the function `--gpus-per-trial auto` calls) on item 4's configuration, and the k that
   `choose_gpu_fraction` picks from it, beside item 4's measured best k.

--tiny shrinks every size (a few steps, a few images, wrn16_2 instead of preact_resnet18 unless --model is given,
one torch thread per process on a CPU) so that `--device cpu --tiny` runs in about a minute on 2 cores: a smoke
run whose figures are no performance claim. Only aikd, torch, numpy (and torchvision / PIL for the reference
loop) are imported: the device this is written for has no Ray, Optuna or MLflow.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import statistics
import sys
import threading
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import epoch_vs_reference
import step_cost
import torch
from _common import cifar_like, header

from aikd.config import TrainConfig
from aikd.probe import build_trial, choose_gpu_fraction, probe, run_steps, synchronize
from aikd.train import prepare_device, train_step

SANITY = {"baseline": {"method.name": "baseline"},
          "aikd_snapshot": {"method.name": "aikd", "method.prev_mode": "snapshot"},
          "aikd_cache": {"method.name": "aikd", "method.prev_mode": "cache"},
          "frskd": {"method.name": "frskd"},
          "cskd": {"method.name": "cskd"}}
PACK_KS = (1, 2, 4, 8)
PACK_TRAININGS = 8
EPOCH_GOAL, PACK_GOAL = 1.3, 2.0
STEP_GOALS = {"aikd_snapshot": 1.8, "aikd_cache": 1.5}
MB = 2**20
# sizes per mode: full (the device run) and tiny (the CPU smoke run)
SIZES = {
    "full": dict(model="preact_resnet18", batch=128, sanity_steps=300, sanity_warm=20, sanity_images=None,
                 epoch_images=50_000, epoch_rounds=2, epoch_warm=0, ref_workers=4, cost_rounds=30, cost_warmup=5,
                 pack_seconds=4.0, pack_steps=0, pack_images=None, probe_steps=40, probe_images=None),
    "tiny": dict(model="wrn16_2", batch=4, sanity_steps=3, sanity_warm=1, sanity_images=16,
                 epoch_images=32, epoch_rounds=1, epoch_warm=8, ref_workers=1, cost_rounds=2, cost_warmup=1,
                 pack_seconds=0.0, pack_steps=2, pack_images=8, probe_steps=4, probe_images=16),
}


class Figures:
    """Prints each figure as `name value` and keeps it for the JSON file."""

    def __init__(self):
        self.values: dict = {}

    def __call__(self, name: str, value, note: str = "") -> None:
        self.values[name] = value
        print(f"{name} {_fmt(value)}" + (f"  # {note}" if note else ""), flush=True)


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 1000 else f"{v:.0f}"
    if isinstance(v, (list, tuple)):
        return ",".join(_fmt(x) for x in v)
    return str(v)


def log(line: str) -> None:
    print(f"  {line}", flush=True)


def trial_config(model: str, batch: int, **extra) -> TrainConfig:
    return TrainConfig.from_dict({"data.dataset": "cifar100", "model.name": model, "data.batch_size": batch,
                                  **extra}).resolved()


# ---- 1. sanity -------------------------------------------------------------------------------------------------
class SyncCounter:
    """Counts the host syncs CUDA's sync debug mode reports inside the block, by the source line that made them."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.count: int | None = None
        self.sources: Counter = Counter()

    def __enter__(self):
        if self.cuda:
            self._catch = warnings.catch_warnings(record=True)
            self._caught = self._catch.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
        return self

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.set_sync_debug_mode("default")
            self._catch.__exit__(*exc)
            hits = [w for w in self._caught if "synchroniz" in str(w.message)]
            self.count = len(hits)
            self.sources = Counter(f"{Path(w.filename).name}:{w.lineno}" for w in hits)
        return False


def watch_dtypes(trial) -> tuple[dict, list]:
    """Forward hooks recording the output dtype of the model's first convolution and of every critic module."""
    seen: dict = {"conv": set(), "critic": set()}
    handles = []

    def hook(kind):
        def record(_module, _inputs, output):
            if isinstance(output, torch.Tensor):
                seen[kind].add(str(output.dtype).replace("torch.", ""))
        return record
    conv = next(m for m in trial.model.modules() if isinstance(m, torch.nn.Conv2d))
    handles.append(conv.register_forward_hook(hook("conv")))
    critic = getattr(trial.method, "critic", None)
    if critic is not None:
        handles += [m.register_forward_hook(hook("critic")) for m in critic.modules()]
    return seen, handles


def item_sanity(args, device, fig) -> None:
    for label, extra in SANITY.items():
        cfg = trial_config(args.model, args.batch, **extra)
        trial = build_trial(cfg, device, n_train=args.sanity_images)
        run_steps(trial, args.sanity_warm)  # cuDNN autotuning and first allocations stay out of the counts
        synchronize(device)
        seen, handles = watch_dtypes(trial)
        with SyncCounter(device) as syncs:
            t0 = time.perf_counter()
            rows, losses = run_steps(trial, args.sanity_steps)
        synchronize(device)
        seconds = time.perf_counter() - t0
        for h in handles:
            h.remove()
        steps = args.sanity_steps
        fig(f"sanity_{label}_steps", steps)
        fig(f"sanity_{label}_loss_finite", bool(torch.isfinite(losses).all().item()))
        fig(f"sanity_{label}_loss_last", float(losses[-1].item()))
        note = ", ".join(f"{src} x{n}" for src, n in syncs.sources.most_common(4))
        fig(f"sanity_{label}_syncs_per_step", None if syncs.count is None else syncs.count / steps,
            note or ("no CUDA: not counted" if syncs.count is None else ""))
        fig(f"sanity_{label}_images_per_s", rows / seconds, "sync debug mode on: slower than plain")
        fig(f"sanity_{label}_conv_dtype", ",".join(sorted(seen["conv"])))
        if getattr(trial.method, "critic", None) is not None:
            batch = next(iter(trial.loader))
            out = _one_step(trial, batch)
            fig(f"sanity_{label}_critic_dtypes", ",".join(sorted(seen["critic"])), "every critic module's output")
            fig(f"sanity_{label}_critic_loss_dtype", str(out["critic"].dtype).replace("torch.", ""))
            fig(f"sanity_{label}_gp_dtype", str(out["gp"].dtype).replace("torch.", ""))
        if label == "baseline":
            args.baseline_steps_per_s = steps / seconds
        del trial
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _one_step(trial, batch) -> dict:
    return train_step(trial.method, trial.optimizer, batch, use_amp=trial.device.type == "cuda")


# ---- 2. epoch vs the official-style loop --------------------------------------------------------------------
def item_epoch(args, device, fig) -> None:
    ns = SimpleNamespace(n=args.epoch_images, classes=100, batch=args.batch, workers=args.ref_workers,
                         rounds=args.epoch_rounds, rounds_big=args.epoch_rounds, recipe="cskd", max_load=math.inf,
                         warm=args.epoch_warm)
    data, targets = cifar_like(ns.n, ns.classes)
    log(f"{ns.n} images, batch {ns.batch}, reference DataLoader num_workers={ns.workers}; ours runs in bf16 "
        f"autocast on a GPU as the trainer does, the reference in float32 as the official code does")
    r = epoch_vs_reference.compare(args.model, ns, data, targets, device, out=log)
    fig("epoch_images", ns.n)
    fig("epoch_ours_s", r["ours_s"])
    fig("epoch_reference_s", r["ref_s"])
    fig("epoch_ratio", r["ratio"], f"reference / ours, goal >= {EPOCH_GOAL}")
    fig("epoch_goal_met", r["ratio"] >= EPOCH_GOAL)


# ---- 3. step cost ---------------------------------------------------------------------------------------------
def item_step_cost(args, device, fig) -> None:
    ns = SimpleNamespace(model=args.model, batch=args.batch, size=32, classes=100, steps=args.cost_rounds,
                         warmup=args.cost_warmup, max_load=math.inf)
    times, ratios = step_cost.measure(ns, ["baseline", *STEP_GOALS], device, out=log)
    for label, t in times.items():
        fig(f"step_{label}_ms", 1e3 * statistics.median(t))
    for label, goal in STEP_GOALS.items():
        fig(f"step_{label}_ratio", ratios[label], f"{label} / baseline, goal <= {goal}")
        fig(f"step_{label}_goal_met", ratios[label] <= goal)


# ---- 4. packing -----------------------------------------------------------------------------------------------
def pack_worker(conn, cfg_dict: dict, steps: int, trainings: int, device: str, threads: int, n_train) -> None:
    """One trial process: warm up, report ready, wait for go, then `trainings` fresh trainings of `steps` steps."""
    torch.set_num_threads(threads)
    dev = torch.device(device)
    cfg = TrainConfig.from_dict(cfg_dict).resolved()
    warm = build_trial(cfg, dev, n_train=n_train)
    run_steps(warm, 3)
    synchronize(dev)
    del warm
    conn.send("ready")
    conn.recv()
    runs = []
    for i in range(trainings):
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        t0 = time.time()
        trial = build_trial(cfg, dev, n_train=n_train, seed=i + 1)
        rows, losses = run_steps(trial, steps)
        synchronize(dev)
        run = {"start": t0, "end": time.time(), "rows": rows, "finite": bool(torch.isfinite(losses).all().item()),
               "peak": None, "reserved": None}
        if dev.type == "cuda":
            run["peak"] = torch.cuda.max_memory_allocated(dev)
            run["reserved"] = torch.cuda.max_memory_reserved(dev)
        runs.append(run)
        del trial
    conn.send(runs)
    conn.close()


class UtilSampler(threading.Thread):
    """Samples the GPU's utilisation (NVML: share of time a kernel ran) every 0.25 s until stopped."""

    def __init__(self, device: torch.device):
        super().__init__(daemon=True)
        self.device, self.samples, self.stop_flag = device, [], threading.Event()

    def run(self):
        while not self.stop_flag.is_set():
            try:
                self.samples.append(float(torch.cuda.utilization(self.device)))
            except Exception:  # no NVML here (pynvml missing, or no GPU): the figure is n/a
                return
            self.stop_flag.wait(0.25)

    def mean(self) -> float | None:
        return statistics.mean(self.samples) if self.samples else None


def _recv(conn, timeout_s: float, what: str):
    if not conn.poll(timeout_s):
        raise TimeoutError(f"packing: no {what} from a worker within {timeout_s:.0f}s")
    return conn.recv()


def forkserver():
    """The context that forks the trial processes. Its server imports what they need once; '__main__' alone
    would not do it (CPython 3.11 drops the main path on the way to the server, so every child would import
    torch again), and each child re-runs only this file's body, its imports found loaded."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "numpy", "aikd.probe", "_common", "epoch_vs_reference", "step_cost"])
    return ctx


def pack_level(k: int, cfg: TrainConfig, steps: int, args, device) -> dict:
    ctx = forkserver()
    threads = 1 if device.type == "cpu" else max(1, (os.cpu_count() or 1) // k)
    t_launch = time.time()
    procs, conns = [], []
    for _ in range(k):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=pack_worker, daemon=True,
                        args=(child, cfg.to_dict(), steps, PACK_TRAININGS // k, device.type, threads,
                              args.pack_images))
        p.start()
        child.close()
        procs.append(p)
        conns.append(parent)
    try:
        for c in conns:
            if _recv(c, 300, "ready") != "ready":
                raise RuntimeError("packing: a worker sent something other than ready")
        sampler = UtilSampler(device) if device.type == "cuda" else None
        t_go = time.time()
        if sampler:
            sampler.start()
        for c in conns:
            c.send("go")
        results = [_recv(c, 600, "result") for c in conns]
        if sampler:
            sampler.stop_flag.set()
            sampler.join()
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
    t_end = time.time()
    runs = [r for rs in results for r in rs]
    rows = sum(r["rows"] for r in runs)
    span = max(r["end"] for r in runs) - t_go
    per_proc = [sum(r["rows"] for r in rs) / (max(r["end"] for r in rs) - t_go) for rs in results]
    peaks = [max(r["peak"] for r in rs) / MB if rs[0]["peak"] is not None else None for rs in results]
    reserved = [max(r["reserved"] for r in rs) for rs in results] if runs[0]["reserved"] is not None else None
    return {"k": k, "threads": threads, "images_per_s": rows / span, "span_s": span, "wall_s": t_end - t_launch,
            "per_process_images_per_s": statistics.mean(per_proc), "peaks_mb": peaks,
            "max_reserved_bytes": max(reserved) if reserved else None,
            "finite": all(r["finite"] for r in runs), "util": sampler.mean() if sampler else None}


def pack_config(args) -> TrainConfig:
    return trial_config(args.model, args.batch, **{"method.name": "baseline"})


def item_packing(args, device, fig) -> None:
    cfg = pack_config(args)
    steps = args.pack_steps
    if not steps:
        per_s = getattr(args, "baseline_steps_per_s", None) or 50.0
        steps = int(min(3000, max(50, round(args.pack_seconds * per_s))))
    log(f"{PACK_TRAININGS} trainings of {cfg.model.name}, batch {cfg.data.batch_size}, {steps} steps each "
        f"(about {args.pack_seconds:g}s alone at item 1's baseline speed), at k = {', '.join(map(str, PACK_KS))}")
    fig("pack_steps_per_training", steps)
    levels = {}
    for k in PACK_KS:
        lv = pack_level(k, cfg, steps, args, device)
        levels[k] = lv
        fig(f"pack_k{k}_images_per_s", lv["images_per_s"], "aggregate, from the common start")
        fig(f"pack_k{k}_wall_s", lv["wall_s"], "from launching the processes to the last one's exit")
        fig(f"pack_k{k}_per_process_images_per_s", lv["per_process_images_per_s"])
        fig(f"pack_k{k}_peak_mb", None if lv["peaks_mb"][0] is None else max(lv["peaks_mb"]),
            "max_memory_allocated, the largest of the processes")
        fig(f"pack_k{k}_peak_mb_each", None if lv["peaks_mb"][0] is None else [round(p) for p in lv["peaks_mb"]])
        fig(f"pack_k{k}_gpu_util_pct", lv["util"], "NVML, mean over the timed span")
        fig(f"pack_k{k}_loss_finite", lv["finite"])
        fig(f"pack_k{k}_threads_per_process", lv["threads"])
    one, four = levels[1], levels[4]
    ratio = four["images_per_s"] / one["images_per_s"]
    fig("pack_ratio_4_vs_1", ratio, f"goal >= {PACK_GOAL}")
    fig("pack_goal_met", ratio >= PACK_GOAL)
    best = max(levels, key=lambda k: levels[k]["images_per_s"])
    fig("pack_best_k", best)
    util = " -> ".join("n/a" if lv["util"] is None else f"{lv['util']:.0f}%" for lv in (one, four)) + " (k=1 -> k=4)"
    fig("pack_reason", f"per-process images/s at k=4 is {four['per_process_images_per_s'] / one['images_per_s']:.0%}"
        f" of one process alone; GPU utilisation {util}")
    args.pack_levels = levels


# ---- 5. the probe ---------------------------------------------------------------------------------------------
def item_probe(args, device, fig) -> None:
    cfg = pack_config(args)
    r = probe(cfg, args.probe_steps, device, n_train=args.probe_images)
    fig("probe_images_per_s", r["images_per_s"], f"{r['steps']} timed steps of one trial alone")
    fig("probe_loss_finite", r["loss_finite"])
    fig("probe_peak_mb", None if r["peak_bytes"] is None else r["peak_bytes"] / MB)
    fig("probe_peak_reserved_mb", None if r["peak_reserved_bytes"] is None else r["peak_reserved_bytes"] / MB)
    fig("probe_total_mb", None if r["total_bytes"] is None else r["total_bytes"] / MB)
    fig("probe_gpu_busy", r["gpu_busy_fraction"], "profiler's kernel time per step / wall time per step")
    k = reason = k_measured = None
    if r["total_bytes"]:
        _, k, reason = choose_gpu_fraction(r["peak_reserved_bytes"], r["total_bytes"], {1: r["images_per_s"]},
                                           busy_fraction=r["gpu_busy_fraction"])
        levels = getattr(args, "pack_levels", None)
        if levels and levels[1]["max_reserved_bytes"]:
            peak = max(lv["max_reserved_bytes"] for lv in levels.values())
            _, k_measured, _ = choose_gpu_fraction(peak, r["total_bytes"],
                                                   {j: lv["images_per_s"] for j, lv in levels.items()})
    fig("probe_k", k, reason or "no GPU: --gpus-per-trial auto means 0")
    fig("probe_fraction", None if k is None else 1.0 / k)
    best = args.pack_levels and max(args.pack_levels, key=lambda j: args.pack_levels[j]["images_per_s"])
    fig("probe_k_vs_pack_best_k", f"{_fmt(k)} vs {_fmt(best or None)}", "the probe's pick beside item 4's best")
    fig("rule_k_on_pack_figures", k_measured, "choose_gpu_fraction on item 4's measured images/s and memory")


ITEMS = {1: ("sanity", item_sanity), 2: ("epoch", item_epoch), 3: ("step_cost", item_step_cost),
         4: ("packing", item_packing), 5: ("probe", item_probe)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--tiny", action="store_true", help="tiny sizes: a CPU smoke run of about a minute")
    p.add_argument("--items", default="1,2,3,4,5", help="comma-separated subset of 1-5")
    p.add_argument("--model", default="", help="student model (default preact_resnet18; wrn16_2 with --tiny)")
    args = p.parse_args(argv)
    sizes = SIZES["tiny" if args.tiny else "full"]
    for key, value in sizes.items():
        if key != "model" or not args.model:
            setattr(args, key, value)
    args.pack_levels = None
    items = sorted({int(i) for i in args.items.split(",") if i.strip()})
    if not set(items) <= set(ITEMS):
        print(f"error: --items={args.items}: allowed a comma-separated subset of 1-5", file=sys.stderr)
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda: no CUDA device is visible here (use --device cpu)", file=sys.stderr)
        return 2
    device = torch.device(args.device)
    prepare_device(device)  # the trainer's settings (cuDNN autotuning on a GPU) for every item, both sides of 2
    if device.type == "cpu" and args.tiny:
        torch.set_num_threads(1)  # a shared 2-core machine: two threads per process stall each other
    header("gpu_check")
    fig = Figures()
    meta = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
            "cpus": os.cpu_count(), "tiny": args.tiny, "model": args.model, "batch": args.batch,
            "command": " ".join(["python3", *sys.argv]), "date": time.strftime("%Y-%m-%d %H:%M")}
    print(f"# device {meta['device']}, model {args.model}, batch {args.batch}, tiny {args.tiny}", flush=True)
    t_start = time.perf_counter()
    for i in items:
        name, fn = ITEMS[i]
        print(f"## item {i}: {name}", flush=True)
        t0 = time.perf_counter()
        try:
            fn(args, device, fig)
        except Exception as e:  # one failing item must not cost the figures of the others on a leased device
            traceback.print_exc()
            fig(f"item{i}_error", f"{type(e).__name__}: {e}"[:300])
        fig(f"item{i}_seconds", time.perf_counter() - t0)
    fig("total_seconds", time.perf_counter() - t_start)
    out_dir = os.environ.get("OUT")
    if out_dir:
        path = Path(out_dir) / "gpu_check.json"
        path.write_text(json.dumps({"meta": meta, "figures": fig.values}, indent=1, sort_keys=True))
        print(f"# wrote {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
