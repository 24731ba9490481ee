"""Epochs and wall time ASHA + TPE needs to reach the validation error a full-budget random search reaches.

Two studies of the same size through `search/run.py` (`--no-tracking`, C trials at a time, 1 CPU each):

- random: `--searcher random --scheduler none`, every trial trains all `--epochs` epochs;
- ASHA:   `--searcher tpe --scheduler asha` (grace period `--grace`, reduction factor 3).

The target is the best final val_error of the random study (min over trials of the last report). Every report
of the ASHA study (all trials) is put in time order; the epochs consumed up to the first report with
val_error <= target (see below), and the time since the study's first trial started, are what ASHA needed. The random
study is charged its full budget (trials x epochs); the epochs it had used, in time order, when it first reached
its own best are printed too (a stricter comparison). Results are read from the trial folders
(`params.json`, `result.json`) with `search.report.collect_rows`.

The default space is `aikd_ablation` (the project's joint AI-KD search; its phase-1 teacher is trained once
before the timed studies, into a scratch teacher store, so neither study pays for it).

    PYTHONPATH=. python benchmarks/asha_savings.py [--space aikd_ablation] [--trials 16] [--epochs 15]
        [--grace 1] [--concurrency 2] [--seed 0] [--teacher-root DIR] [--keep]

Headline: a report counts only at a trial's last epoch (ASHA has produced a fully trained model that good); the
same figures counting any report (a trial still at a low rung) are printed too. On digits the validation split
is small (~290 images), so errors come in steps of ~0.35% and several configurations tie at the best value.

Last line: `asha_savings ratio=X.XX` (random epochs / ASHA epochs to reach the random search's best).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from _common import arg_parser, header, scratch_folder, wait_for_quiet  # noqa: E402


def cli_args(args, searcher: str, scheduler: str, storage: Path, name: str, teachers: Path) -> list[str]:
    return ["--space", args.space, "--dataset", "digits", "--model", args.model, "--searcher", searcher,
            "--scheduler", scheduler, "--num-samples", str(args.trials), "--max-epochs", str(args.epochs),
            "--grace-period", str(args.grace), "--cpus-per-trial", "1", "--num-cpus", str(args.concurrency),
            "--max-concurrent", str(args.concurrency), "--storage", str(storage), "--name", name,
            "--no-tracking", "--seed", str(args.seed), "--set", f"teacher.root={teachers}"]


def pretrain_teacher(argv: list[str]) -> float:
    """Train the study's phase-1 teacher(s) into the scratch store, outside the timed studies."""
    from aikd.config import TrainConfig
    from aikd.train import get_or_train_teacher
    from search.plan import build_plan, parse_args
    from trainables.teachers import distinct_teacher_configs
    plan = build_plan(parse_args([*argv, "--dry-run"]))
    t0 = time.perf_counter()
    for flat in distinct_teacher_configs(plan.configs):
        get_or_train_teacher(TrainConfig.from_dict(flat))
    return time.perf_counter() - t0


def run_study(argv: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, epoch time at start) of one `search/run.py` process."""
    cmd = [sys.executable, str(ROOT / "search" / "run.py"), *argv]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    start, t0 = time.time(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"search/run.py failed with exit code {proc.returncode}")
    return wall, start


def reports(study_dir: Path, epochs: int) -> tuple[list[dict], list[dict]]:
    """(rows, every report of every trial in time order, each with its trial's start time)."""
    from search.report import collect_rows
    rows = collect_rows(study_dir, epochs)
    events = []
    for r in rows:
        h = [x for x in r["history"] if "val_error" in x]
        if not h:
            continue
        start = h[0]["timestamp"] - h[0]["time_total_s"]
        for x in h:
            events.append({"t": start + x["time_total_s"], "start": start, "val_error": x["val_error"],
                           "epoch": int(x["epoch"]), "trial": r["trial_id"]})
    events.sort(key=lambda e: e["t"])
    return rows, events


def first_reach(events: list[dict], target: float, final_epoch: int | None = None) -> tuple[int, float, int] | None:
    """(epochs consumed, seconds since the first trial started, index) at the first report <= target; with
    `final_epoch`, only reports of that epoch count (a fully trained model that good)."""
    t0 = min(e["start"] for e in events)
    for i, e in enumerate(events):
        if e["val_error"] <= target + 1e-9 and (final_epoch is None or e["epoch"] == final_epoch):
            return i + 1, e["t"] - t0, i
    return None


def analyse(study_root: Path, args, wall: dict, start: dict) -> float:
    """Print the comparison; returns the headline ratio."""
    rows_r, ev_r = reports(study_root / "random", args.epochs)
    rows_a, ev_a = reports(study_root / "asha", args.epochs)
    target = min(r["metrics"]["val_error"] for r in rows_r if "val_error" in r["metrics"])
    epochs_r, epochs_a = len(ev_r), len(ev_a)
    span_r = max(e["t"] for e in ev_r) - min(e["start"] for e in ev_r)
    span_a = max(e["t"] for e in ev_a) - min(e["start"] for e in ev_a)
    best_a = min((e["val_error"] for e in ev_a if e["epoch"] == args.epochs), default=float("nan"))
    done_a = sum(r["outcome"] == "done" for r in rows_a)
    hist = sorted(round(r["metrics"]["val_error"], 2) for r in rows_r if "val_error" in r["metrics"])
    print(f"random: {len(rows_r)} trials, {epochs_r} epochs, trials' span {span_r:.0f}s, "
          f"process {wall['random']:.0f}s; final val_error per trial {hist}")
    print(f"asha:   {len(rows_a)} trials ({done_a} ran all {args.epochs} epochs), {epochs_a} epochs, "
          f"trials' span {span_a:.0f}s, process {wall['asha']:.0f}s; best final-epoch val_error {best_a:.2f}%")
    print(f"target: the random search's best final val_error {target:.2f}%")
    results = {}
    for label, final in (("a fully trained trial (report at the last epoch)", args.epochs),
                         ("any report (a trial at any epoch)", None)):
        own = first_reach(ev_r, target, final)
        hit = first_reach(ev_a, target, final)
        if hit is None:
            print(f"- {label}: ASHA + TPE never reached it; charged its whole study ({epochs_a} epochs)")
            ep, t, proc = epochs_a, span_a, wall["asha"]
        else:
            ep, t = hit[0], hit[1]
            proc = ev_a[hit[2]]["t"] - start["asha"] if start else float("nan")
        results[final] = epochs_r / ep
        print(f"- {label}: ASHA + TPE after {ep} epochs / {t:.0f}s of trials / {proc:.0f}s from process start; "
              f"random: {epochs_r} epochs / {span_r:.0f}s / {wall['random']:.0f}s (full budget; it first got there "
              f"after {own[0]} epochs) -> {epochs_r / ep:.2f}x fewer epochs, {span_r / max(t, 1e-9):.2f}x less trial "
              f"time, {wall['random'] / proc:.2f}x less process time")
    print(f"whole studies: {epochs_r} vs {epochs_a} epochs ({epochs_r / epochs_a:.2f}x), processes "
          f"{wall['random']:.0f}s vs {wall['asha']:.0f}s ({wall['random'] / wall['asha']:.2f}x)")
    return results[args.epochs]


def main(argv=None) -> None:
    p = arg_parser(__doc__)
    p.add_argument("--space", default="aikd_ablation", help="a space that takes --searcher tpe and random")
    p.add_argument("--model", default="small_cnn")
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--grace", type=int, default=1, help="ASHA grace period (epochs)")
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--seed", type=int, default=0, help="searcher seed (both studies)")
    p.add_argument("--teacher-root", help="teacher store to reuse between runs (default: inside the scratch folder)")
    p.add_argument("--keep", action="store_true", help="keep the scratch study folders")
    args = p.parse_args(argv)
    header("asha_savings")
    with scratch_folder("aikd_asha_savings_", args.keep) as tmp:
        print(f"space {args.space}, digits, {args.model}, {args.trials} trials x {args.epochs} epochs, "
              f"{args.concurrency} at a time; scratch {tmp}{' (kept)' if args.keep else ''}", flush=True)
        teachers = Path(args.teacher_root).resolve() if args.teacher_root else tmp / "teachers"
        argv_random = cli_args(args, "random", "none", tmp, "random", teachers)
        argv_asha = cli_args(args, "tpe", "asha", tmp, "asha", teachers)
        t_teacher = pretrain_teacher(argv_random)
        print(f"phase-1 teacher ready beforehand in {t_teacher:.1f}s (not counted)", flush=True)
        wall, start = {}, {}
        for name, a in (("random", argv_random), ("asha", argv_asha)):
            load = wait_for_quiet(args.max_load, tries=3)
            wall[name], start[name] = run_study(a, tmp)
            print(f"{name} study: {wall[name]:.1f}s wall (load at start {load:.2f})", flush=True)
        ratio = analyse(tmp, args, wall, start)
        print(f"asha_savings ratio={ratio:.2f}")


if __name__ == "__main__":
    main()
