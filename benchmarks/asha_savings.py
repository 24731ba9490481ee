"""Epochs ASHA + TPE needs to reach the validation error a full-budget random search reaches, at several seeds.

For each searcher seed, two studies of the same size through `search/run.py` on the default workload (digits'
default protocol: a 70 % validation split, a fifth of the training labels flipped; `--no-tracking`, C trials at a
time, 1 CPU each):

- random: `--searcher random --scheduler none`, every trial trains all `--epochs` epochs;
- ASHA:   `--searcher tpe --scheduler asha` (the CLI's default grace period unless `--grace`, reduction factor 3).

Per seed it prints the best final val_error of each study (min over trials of the last epoch's report) and the
epochs each used; then the epochs ASHA + TPE had used when one of its trials first finished at or below the
random search's best (every report of the ASHA study put in time order), against the random study's full budget
(trials x epochs). Results are read from the trial folders with `search.report.collect_rows`. The phase-1 teacher
is trained once, before the timed studies, into a scratch teacher store, so no study pays for it.

    PYTHONPATH=. python benchmarks/asha_savings.py [--space aikd_ablation] [--trials 32] [--epochs 15]
        [--seeds 0,1,2] [--grace G] [--concurrency 2] [--teacher-root DIR] [--keep]

Last line: `asha_savings ratio=X.XX` (the median over seeds of random epochs / ASHA epochs to reach the random
search's best; a seed where ASHA never gets there is charged its whole study).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from _common import arg_parser, header, scratch_folder, wait_for_quiet  # noqa: E402


def cli_args(args, searcher: str, scheduler: str, storage: Path, name: str, teachers: Path, seed: int) -> list[str]:
    return ["--space", args.space, "--dataset", "digits", "--model", args.model, "--searcher", searcher,
            "--scheduler", scheduler, "--num-samples", str(args.trials), "--max-epochs", str(args.epochs),
            *(["--grace-period", str(args.grace)] if args.grace else []), "--cpus-per-trial", "1",
            "--num-cpus", str(args.concurrency), "--max-concurrent", str(args.concurrency), "--storage", str(storage),
            "--name", name,
            "--no-tracking", "--warm-start", "none", "--seed", str(seed), "--set", f"teacher.root={teachers}"]


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


def run_study(argv: list[str], cwd: Path) -> float:
    """Wall seconds of one `search/run.py` process."""
    cmd = [sys.executable, str(ROOT / "search" / "run.py"), *argv]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"search/run.py failed with exit code {proc.returncode}")
    return wall


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


def analyse(study_root: Path, args, wall: dict, seed: int) -> dict:
    """Print one seed's comparison; returns its figures."""
    rows_r, ev_r = reports(study_root / f"random_s{seed}", args.epochs)
    rows_a, ev_a = reports(study_root / f"asha_s{seed}", args.epochs)
    best_r = min(r["metrics"]["val_error"] for r in rows_r if "val_error" in r["metrics"])
    best_a = min((e["val_error"] for e in ev_a if e["epoch"] == args.epochs), default=float("nan"))
    epochs_r, epochs_a = len(ev_r), len(ev_a)
    done_a = sum(r["outcome"] == "done" for r in rows_a)
    hit = first_reach(ev_a, best_r, args.epochs)
    reach = hit[0] if hit else epochs_a
    reached = (f"reached the random best after {reach} epochs" if hit
               else "never reached the random best: charged its whole study")
    finals = sorted({round(r["metrics"]["val_error"], 2) for r in rows_r if "val_error" in r["metrics"]})
    print(f"seed {seed}: random (full budget): best val_error {best_r:.2f}% in {epochs_r} epochs "
          f"({len(rows_r)} trials, {len(finals)} distinct final values, process {wall['random']:.0f}s); "
          f"TPE+ASHA: best {best_a:.2f}% in {epochs_a} epochs ({done_a} of {len(rows_a)} trials ran all "
          f"{args.epochs}, process {wall['asha']:.0f}s); "
          f"{reached} -> {epochs_r / reach:.2f}x", flush=True)
    return {"seed": seed, "best_random": best_r, "best_asha": best_a, "epochs_random": epochs_r,
            "epochs_asha": epochs_a, "reach": reach, "reached": hit is not None, "ratio": epochs_r / reach}


def main(argv=None) -> None:
    p = arg_parser(__doc__)
    p.add_argument("--space", default="aikd_ablation", help="a space that takes --searcher tpe and random")
    p.add_argument("--model", default="small_cnn")
    p.add_argument("--trials", type=int, default=32)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--grace", type=int, help="ASHA grace period (epochs; default: the CLI's)")
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--seeds", default="0,1,2", help="searcher seeds, comma-separated (both studies per seed)")
    p.add_argument("--teacher-root", help="teacher store to reuse between runs (default: inside the scratch folder)")
    p.add_argument("--keep", action="store_true", help="keep the scratch study folders")
    args = p.parse_args(argv)
    header("asha_savings")
    seeds = [int(x) for x in args.seeds.split(",")]
    with scratch_folder("aikd_asha_savings_", args.keep) as tmp:
        print(f"space {args.space}, digits (default protocol), {args.model}, {args.trials} trials x {args.epochs} "
              f"epochs, {args.concurrency} at a time, searcher seeds {seeds}; scratch {tmp}"
              f"{' (kept)' if args.keep else ''}", flush=True)
        teachers = Path(args.teacher_root).resolve() if args.teacher_root else tmp / "teachers"
        t_teacher = pretrain_teacher(cli_args(args, "random", "none", tmp, "teacher", teachers, seeds[0]))
        print(f"phase-1 teacher ready beforehand in {t_teacher:.1f}s (not counted)", flush=True)
        figures = []
        for seed in seeds:
            wall = {}
            for name, searcher, scheduler in (("random", "random", "none"), ("asha", "tpe", "asha")):
                load = wait_for_quiet(args.max_load, tries=3)
                argv = cli_args(args, searcher, scheduler, tmp, f"{name}_s{seed}", teachers, seed)
                wall[name] = run_study(argv, tmp)
                print(f"seed {seed} {name} study: {wall[name]:.1f}s wall (load at start {load:.2f})", flush=True)
            figures.append(analyse(tmp, args, wall, seed))
        print("\n| searcher seed | random: best val_error | random: epochs | TPE+ASHA: best val_error | "
              "TPE+ASHA: epochs | TPE+ASHA: epochs to the random best | ratio |")
        print("|---|---|---|---|---|---|---|")
        for f in figures:
            print(f"| {f['seed']} | {f['best_random']:.2f} % | {f['epochs_random']} | {f['best_asha']:.2f} % | "
                  f"{f['epochs_asha']} | {f['reach'] if f['reached'] else 'not reached'} | {f['ratio']:.2f}x |")
        print(f"asha_savings ratio={statistics.median(f['ratio'] for f in figures):.2f}")


if __name__ == "__main__":
    main()
