"""Wall-time cost of MLflow tracking: the same small study run with and without it, side by side in one run.

Not a test: it asserts nothing. Each study is a real `search/run.py` subprocess (Ray, Optuna TPE with a fixed seed,
no ASHA so that every study trains the same trials for the same epochs); the runs alternate with, without, with,
without ... over `--rounds` rounds so that slow drift of the machine (thermal, other load) spreads evenly over both.
Tracking goes to a SQLite store in a temporary folder (or to --mlflow-uri, e.g. a running `mlflow server`). The
phase-1 teacher is trained once before the timed runs, into a shared temporary teacher folder, by a warm-up study
that also creates the MLflow store's tables (a one-time cost per store, not per study).

    python benchmarks/tracking_overhead.py [--rounds 3] [--num-samples 4] [--max-epochs 3] [--mlflow-uri URI]

Besides the whole study (what a user waits for: Ray start, trials, report), the `tuner.fit` part alone is shown
("study finished in Xs"). The last line reads: tracking_overhead ratio=X.XX (median with / median without).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import clean_digits_flags

ROOT = Path(__file__).resolve().parents[1]


def run_study(args, work: Path, name: str, tracking: bool, samples: int, epochs: int) -> tuple[float, float]:
    cmd = [sys.executable, str(ROOT / "search/run.py"), "--space", args.space, "--dataset", "digits", "--model",
           "small_cnn", "--num-samples", str(samples), "--max-epochs", str(epochs), "--scheduler", "none",
           "--seed", str(args.seed), "--storage", str(work / "studies"), "--name", name,
           "--set", f"teacher.root={work / 'teachers'}", *clean_digits_flags()]
    cmd += ["--mlflow-uri", args.mlflow_uri or f"sqlite:///{work}/mlflow.db"] if tracking else ["--no-tracking"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=work, env=env, timeout=1800)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"study {name} failed (exit {out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    m = re.search(r"study finished in (\d+)s", out.stdout)
    return wall, float(m.group(1)) if m else float("nan")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="pairs of studies (with, without)")
    p.add_argument("--space", default="aikd_ablation")
    p.add_argument("--num-samples", type=int, default=4)
    p.add_argument("--max-epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mlflow-uri", help="track to this URI instead of a SQLite store in the temporary folder")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tracking_overhead_") as d:
        work = Path(d)
        t0 = time.perf_counter()
        # not timed: trains the phase-1 teacher once (its recipe takes the study's epochs, so the same --max-epochs)
        # and creates the MLflow store (its tables: once per store)
        run_study(args, work, "warmup", True, 1, args.max_epochs)
        print(f"warm-up study (phase-1 teacher, MLflow store): {time.perf_counter() - t0:.1f}s; {os.cpu_count()} CPUs",
              flush=True)
        times = {True: [], False: []}
        print(f"{'round':>5} {'tracking':>8} {'wall_s':>8} {'fit_s':>6} {'load1':>6}")
        for r in range(args.rounds):
            for tracking in (True, False):
                wall, fit = run_study(args, work, f"r{r}-{'on' if tracking else 'off'}", tracking,
                                      args.num_samples, args.max_epochs)
                times[tracking].append((wall, fit))
                # the 1-minute load average after the run: other work on the machine inflates both columns
                print(f"{r:5d} {'on' if tracking else 'off':>8} {wall:8.1f} {fit:6.0f} {os.getloadavg()[0]:6.1f}",
                      flush=True)
    med = {k: statistics.median(w for w, _ in v) for k, v in times.items()}
    fit = {k: statistics.median(f for _, f in v) for k, v in times.items()}
    print(f"median wall: with {med[True]:.1f}s, without {med[False]:.1f}s; median tuner.fit: with {fit[True]:.0f}s, "
          f"without {fit[False]:.0f}s ({args.num_samples} trials x {args.max_epochs} epochs, {args.rounds} rounds)")
    # each round's pair runs back to back: its ratio is less exposed to the machine's slow drift than the medians
    paired = [a[0] / b[0] for a, b in zip(times[True], times[False])]
    print(f"per-round ratios: {' '.join(f'{r:.2f}' for r in paired)}; median {statistics.median(paired):.2f}")
    print(f"tracking_overhead ratio={med[True] / med[False]:.2f}")


if __name__ == "__main__":
    main()
