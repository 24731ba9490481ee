"""What running trials through `search/run.py` (Ray Tune + Optuna + MLflow) costs over a plain Python loop.

The same trials (digits, resnet18, method baseline: no teacher to train; `--epochs` chosen so one trial trains
for about 30 s on one core of this machine) run

- through the CLI: `search/run.py --space cskd --searcher tpe --scheduler none --set method.name=baseline
  --cpus-per-trial 1 --num-cpus C --max-concurrent C`, MLflow on (a SQLite store in a temporary folder);
  (the CLI's default reuses a finished trial's worker for the next trial: Tune's `reuse_actors=True`, which
  function trainables support through `FunctionTrainable.reset_config`);
- unless `--no-fresh-variant`, also through the CLI with `--no-reuse-actors` (a fresh worker process per trial);
- plainly: a fresh `python` process that calls `aikd.train.fit` on the very configurations the CLI's trials ran
  (read back from the study's trial folders), C at a time in a `ProcessPoolExecutor` (spawned workers,
  OMP_NUM_THREADS=1 and torch threads = cpus per trial, as Ray gives a 1-CPU trial);
- unless `--no-bare`, through bare Ray Tune: a fresh `python` process that starts a local Ray as the CLI does and
  runs the same configurations as a `tune.Tuner` over a function trainable that trains (the same `Trainer`) and
  reports each epoch, with nothing of ours around it: no Optuna, no MLflow, no checkpoints, no summary or report
  (workers reused, C at a time, 1 CPU each). Its ratio to the plain loop is the floor that any driver built on a
  local Ray Tune pays for these trials on this machine: what the CLI could reach if everything it adds were free.

Both are timed from process start to exit. Also measured apart: the CLI's start (its `--dry-run`: imports and
validation), `ray.init` of a local cluster, the cost of a bare Ray Tune function trial (with and without actor
reuse, with and without the imports our trial makes) and, from the trial folders, where a trial's time goes.
Fixed cost per trial = C x wall / trials - mean training time of a trial (sum of its `epoch_seconds`).

A second section (unless `--no-long`) does the same, CLI with workers reused against the plain loop, at a
representative trial length: `--long-epochs` (10) epochs of wrn16_2 on CIFAR-shaped data (a CIFAR-100 folder of
`--long-n` random images written into the scratch folder in the official python format, so that the trials load it
and augment it as they would the real set), `--long-trials` (2) trials.

    PYTHONPATH=. python benchmarks/tune_overhead.py [--trials 4] [--epochs 7] [--concurrency 2]
        [--rounds 1] [--no-fresh-variant] [--no-bare] [--no-micro] [--no-long] [--long-trials 2] [--long-epochs 10]
        [--long-n 1500] [--keep]

Last lines: `tune_overhead long ratio=Y.YY` (the second section), `tune_overhead bare-tune ratio=Z.ZZ` (bare Tune
wall / plain wall, the median over the rounds) and `tune_overhead ratio=X.XX` (CLI wall / plain wall of the first
section; with `--rounds N`, the median over N such pairs; target <= 1.10).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from _common import arg_parser, cifar_like, clean_digits_flags, header, median, scratch_folder, wait_for_quiet  # noqa: E402

PY = sys.executable
CLI_ARGS = ["--space", "cskd", "--searcher", "tpe", "--scheduler", "none", "--dataset", "digits",
            "--model", "resnet18", "--set", "method.name=baseline", *clean_digits_flags()]

RAY_MICRO = r"""
import json, os, sys, tempfile, time
t0 = time.perf_counter()
import ray
from ray import tune
t_import = time.perf_counter() - t0
root, cpus, n, conc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
t0 = time.perf_counter()
ray.init(address="local", num_cpus=cpus, include_dashboard=False, log_to_driver=False,
         _node_ip_address="127.0.0.1", runtime_env={"env_vars": {"PYTHONPATH": root}})
t_init = time.perf_counter() - t0

@ray.remote(num_cpus=1)
def noop():
    return 1

t0 = time.perf_counter()
ray.get(noop.remote())
t_first_task = time.perf_counter() - t0

def trivial(config):
    tune.report({"x": 1})

def importing(config):  # what a fresh worker imports before our trial can start
    import aikd.train, trainables.kd  # noqa: F401
    tune.report({"x": 1})

out = {"import_ray_s": t_import, "ray_init_s": t_init, "first_task_s": t_first_task}
for name, fn in (("trivial", trivial), ("importing", importing)):
    for reuse in (False, True):
        with tempfile.TemporaryDirectory() as d:
            tuner = tune.Tuner(tune.with_resources(fn, {"cpu": 1}),
                               tune_config=tune.TuneConfig(num_samples=n, max_concurrent_trials=conc,
                                                           reuse_actors=reuse),
                               run_config=tune.RunConfig(storage_path=d, verbose=0))
            t0 = time.perf_counter()
            tuner.fit()
            out[f"{name}_reuse{int(reuse)}_s"] = time.perf_counter() - t0
t0 = time.perf_counter()
ray.shutdown()
out["ray_shutdown_s"] = time.perf_counter() - t0
print("RESULT " + json.dumps(out))
"""

# The bare-Tune side: Ray started by the CLI's own `search.cluster.connect`, with the Tune variables the CLI sets
# (`TUNE_DEFAULTS`), the same configurations trained and reported each epoch, nothing else.
BARE_TUNE = r"""
import argparse, json, os, sys, tempfile
config_file, conc = sys.argv[1], int(sys.argv[2])
from ray import tune
from search.cluster import TUNE_DEFAULTS, connect
os.environ.update(TUNE_DEFAULTS)

def trainable(config):
    from aikd.config import TrainConfig
    from aikd.train import Trainer
    trainer = Trainer(TrainConfig.from_dict(config["flat"]).resolved())
    train_s = 0.0
    while not trainer.done:
        m = trainer.train_epoch()
        train_s += m["epoch_seconds"]
        tune.report({"epoch": trainer.epoch, "train_s": train_s, "val_error": m["val_error"]})
    trainer.final_metrics()

configs = json.load(open(config_file))
ray = connect(argparse.Namespace(address=None, num_cpus=conc, num_gpus=None))
with tempfile.TemporaryDirectory() as d:
    grid = tune.Tuner(tune.with_resources(trainable, {"cpu": 1}), param_space={"flat": tune.grid_search(configs)},
                      tune_config=tune.TuneConfig(max_concurrent_trials=conc, reuse_actors=True),
                      run_config=tune.RunConfig(storage_path=d, verbose=0)).fit()
    rows = [r.metrics["train_s"] for r in grid]  # (the last report's: Tune's result files are off, as the CLI's
    # TensorBoard logger is)
ray.shutdown()
print("RESULT " + json.dumps(rows), flush=True)
os._exit(0)  # as search/run.py ends: no interpreter teardown
"""

IMPORTS = r"""
import time
t0 = time.perf_counter()
import aikd.train, trainables.kd  # noqa: F401
print("RESULT", time.perf_counter() - t0)
"""

# ---------------------------------------------------------------------------------------------- plain side

def _plain_worker_init(threads: int) -> None:
    import torch
    torch.set_num_threads(threads)


def _plain_trial(flat: dict) -> dict:
    from aikd.config import TrainConfig
    from aikd.train import fit

    class Epochs:
        def __init__(self):
            self.seconds = []

        def on_epoch_end(self, epoch, metrics, state_fn):
            self.seconds.append(metrics["epoch_seconds"])

    t0 = time.perf_counter()
    cb = Epochs()
    final = fit(TrainConfig.from_dict(flat).resolved(), callbacks=[cb])
    return {"wall_s": time.perf_counter() - t0, "epoch_seconds": cb.seconds, "val_error": final.get("val_error")}


def plain_main(config_file: str, concurrency: int, threads: int) -> None:
    """Child process: the plain loop (a pool of `concurrency` processes calling `fit`)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    configs = json.loads(Path(config_file).read_text())
    with ProcessPoolExecutor(concurrency, mp_context=mp.get_context("spawn"), initializer=_plain_worker_init,
                             initargs=(threads,)) as pool:
        results = list(pool.map(_plain_trial, configs))
    print("RESULT " + json.dumps(results))


# ---------------------------------------------------------------------------------------------- helpers

def _env(threads: int | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


class TreeCPU:
    """CPU seconds (user + system) of a process and all its descendants, sampled from /proc every `period` s while
    it runs (Linux). Ray's raylet does not wait() for its workers, so RUSAGE_CHILDREN misses them; sampling the
    tree misses at most the last `period` of each process that exits between two samples."""

    def __init__(self, root_pid: int, period: float = 0.25):
        self.root, self.period = root_pid, period
        self.seen: dict[tuple[int, int], float] = {}  # (pid, start time) -> CPU seconds last read
        self.tick = os.sysconf("SC_CLK_TCK")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _sample(self) -> None:
        stats = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                # after the command: state ppid ... utime(12) stime(13) ... starttime(20), counted from field 3
                stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / self.tick, fields[19])
        tree, frontier = set(), {self.root}
        while frontier:
            tree |= frontier
            frontier = {pid for pid, (ppid, _, _) in stats.items() if ppid in frontier and pid not in tree}
        for pid in tree:
            if pid in stats:
                self.seen[(pid, stats[pid][2])] = stats[pid][1]

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.period)

    def start(self) -> TreeCPU:
        self._thread.start()
        return self

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return sum(self.seen.values())


def _run(cmd: list[str], env=None, label: str = "", cwd=None) -> tuple[float, str, float]:
    """Run a child process: (wall seconds, stdout, CPU seconds of it and all its descendants). The working directory
    is the scratch folder (MLflow writes mlartifacts/ and the CLI studies/ into it)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd or ROOT, env=env or _env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    meter = TreeCPU(proc.pid).start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    cpu = meter.stop()
    if proc.returncode != 0:
        sys.stderr.write(out[-3000:] + err[-3000:])
        raise SystemExit(f"{label or cmd[1]} failed with exit code {proc.returncode}")
    return wall, out, cpu


def _result_line(stdout: str):
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise ValueError("no RESULT line in:\n" + stdout[-2000:])


def cli_command(args, storage: Path, name: str, reuse: bool, cli_args=CLI_ARGS) -> list[str]:
    head = [PY, str(ROOT / "search" / "run.py")] + ([] if reuse else ["--no-reuse-actors"])
    return [*head, *cli_args, "--num-samples", str(args.trials), "--max-epochs", str(args.epochs),
            "--cpus-per-trial", "1", "--num-cpus", str(args.concurrency), "--max-concurrent", str(args.concurrency),
            "--storage", str(storage), "--name", name, "--mlflow-uri", f"sqlite:///{storage / 'mlflow.db'}",
            "--seed", "0"]


def write_fake_cifar100(root: Path, n_train: int, n_test: int) -> Path:
    """A CIFAR-100 folder in the official python format (`cifar-100-python/train`, `test`, `meta`) holding random
    images: the trials read and augment it exactly as they would the real set."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 0), ("test", n_test, 1)):
        images, labels = cifar_like(n, 100, seed)
        with open(folder / split, "wb") as f:
            pickle.dump({"data": images.transpose(0, 3, 1, 2).reshape(n, -1), "fine_labels": labels.tolist()}, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"class_{i}" for i in range(100)]}, f)
    return root


def study_breakdown(study_dir: Path) -> dict:
    """Per-trial timings from Ray's result.json: first report's overhead, per-epoch report overhead."""
    from search.report import collect_rows
    rows = collect_rows(study_dir, 0)
    first, later, train, configs = [], [], [], []
    for r in rows:
        h = r["history"]
        if not h:
            continue
        configs.append(r["config"])
        train.append(sum(x["epoch_seconds"] for x in h))
        first.append(h[0]["time_this_iter_s"] - h[0]["epoch_seconds"])
        later += [x["time_this_iter_s"] - x["epoch_seconds"] for x in h[1:]]
    return {"configs": configs, "train_s": train, "first_overhead_s": first, "epoch_overhead_s": later}


def run_cli(args, storage: Path, name: str, reuse: bool, cli_args=CLI_ARGS) -> dict:
    wall, out, cpu = _run(cli_command(args, storage, name, reuse, cli_args), label="search/run.py", cwd=storage)
    fit_s = next((float(line.split()[3].rstrip("s;")) for line in out.splitlines()
                  if line.startswith("study finished in")), float("nan"))
    return {"wall_s": wall, "cpu_s": cpu, "fit_s": fit_s, **study_breakdown(storage / name)}


def run_plain(args, configs: list[dict], tmp: Path) -> dict:
    cfg_file = tmp / "plain_configs.json"
    cfg_file.write_text(json.dumps(configs))
    cmd = [PY, str(Path(__file__).resolve()), "--plain-child", str(cfg_file), "--concurrency",
           str(args.concurrency)]
    wall, out, cpu = _run(cmd, env=_env(threads=1), label="plain loop")
    trials = _result_line(out)
    return {"wall_s": wall, "cpu_s": cpu, "train_s": [sum(t["epoch_seconds"]) for t in trials],
            "trial_wall_s": [t["wall_s"] for t in trials]}


def run_bare_tune(args, configs: list[dict], tmp: Path) -> dict:
    """The same configurations through a bare local Ray Tune (BARE_TUNE), in a fresh process."""
    cfg_file = tmp / "bare_configs.json"
    cfg_file.write_text(json.dumps(configs))
    wall, out, cpu = _run([PY, "-c", BARE_TUNE, str(cfg_file), str(args.concurrency)], label="bare tune",
                          cwd=tmp)
    return {"wall_s": wall, "cpu_s": cpu, "train_s": _result_line(out)}


def fixed_per_trial(res: dict, args) -> float:
    return args.concurrency * res["wall_s"] / args.trials - sum(res["train_s"]) / len(res["train_s"])


def _mean(xs) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def print_sides(runs: dict, args) -> None:
    """The table of the sides, where the time of the CLI sides goes, and the CPU seconds."""
    print(f"{'side':<28}{'wall s':>8}{'CPU s':>8}{'train s/trial':>15}{'fixed s/trial':>15}")
    labels = {"cli": "search/run.py", "cli_fresh": "search/run.py fresh workers", "plain": "plain fit() loop",
              "bare": "bare Ray Tune (floor)"}
    for k, res in runs.items():
        print(f"{labels[k]:<28}{res['wall_s']:>8.1f}{res['cpu_s']:>8.1f}{_mean(res['train_s']):>15.1f}"
              f"{fixed_per_trial(res, args):>15.1f}")
    for k in ("cli", "cli_fresh"):
        if k in runs:
            r = runs[k]
            print(f"{labels[k]}: tuner.fit {r['fit_s']:.0f}s, so {r['wall_s'] - r['fit_s']:.0f}s before/after it "
                  f"(imports, ray.init, MLflow parent, summary, shutdown); inside a trial: first report "
                  f"+{median(r['first_overhead_s']):.1f}s (Trainer build, MLflow child run), each later report "
                  f"+{median(r['epoch_overhead_s']):.2f}s (checkpoint, MLflow log_batch)")
    if "cli_fresh" in runs:
        print(f"--no-reuse-actors (a fresh worker per trial): wall {runs['cli']['wall_s']:.1f}s -> "
              f"{runs['cli_fresh']['wall_s']:.1f}s, ratio vs plain "
              f"{runs['cli_fresh']['wall_s'] / runs['plain']['wall_s']:.2f}")
    if "bare" in runs:
        print(f"bare Ray Tune / plain {runs['bare']['wall_s'] / runs['plain']['wall_s']:.2f} (the floor of a local "
              f"Tune driver here); search/run.py / bare Ray Tune {runs['cli']['wall_s'] / runs['bare']['wall_s']:.2f} "
              f"(what the CLI adds)")
    print(f"CPU seconds (all processes of a side, load-insensitive): search/run.py / plain "
          f"{runs['cli']['cpu_s'] / runs['plain']['cpu_s']:.2f}"
          + (f", with fresh workers {runs['cli_fresh']['cpu_s'] / runs['plain']['cpu_s']:.2f}"
             if "cli_fresh" in runs else ""))


def one_round(args, tmp: Path, name: str) -> dict:
    """The CLI (workers reused), then the plain loop and, unless --no-bare, bare Ray Tune on its trials' configs."""
    wait_for_quiet(args.max_load, tries=3)
    runs = {"cli": run_cli(args, tmp, name, reuse=True)}
    wait_for_quiet(args.max_load, tries=3)
    runs["plain"] = run_plain(args, runs["cli"]["configs"], tmp)
    if not args.no_bare:
        wait_for_quiet(args.max_load, tries=3)
        runs["bare"] = run_bare_tune(args, runs["cli"]["configs"], tmp)
    return runs


# ---------------------------------------------------------------------------------------------- main

def main(argv=None) -> None:
    p = arg_parser(__doc__)
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--epochs", type=int, default=7, help="epochs per trial (~30 s of training on one core here)")
    p.add_argument("--concurrency", type=int, default=2, help="trials at once on both sides (1 CPU each)")
    p.add_argument("--no-fresh-variant", action="store_true", help="skip the CLI run with --no-reuse-actors")
    p.add_argument("--no-bare", action="store_true", help="skip the bare Ray Tune side (the floor)")
    p.add_argument("--no-micro", action="store_true", help="skip the Ray start-up / bare-trial measurements")
    p.add_argument("--no-long", action="store_true", help="skip the run at a representative trial length")
    p.add_argument("--long-trials", type=int, default=2)
    p.add_argument("--long-epochs", type=int, default=10)
    p.add_argument("--long-n", type=int, default=1500, help="CIFAR-shaped training images of the long run")
    p.add_argument("--rounds", type=int, default=1, help="pairs (CLI, plain) of the first section; the headline is "
                                                         "the median of their ratios")
    p.add_argument("--keep", action="store_true", help="keep the temporary study folders")
    p.add_argument("--plain-child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.plain_child:
        plain_main(args.plain_child, args.concurrency, threads=1)
        return

    header("tune_overhead")
    with scratch_folder("aikd_tune_overhead_", args.keep) as tmp:
        print(f"{args.trials} trials x {args.epochs} epochs (digits, resnet18, baseline), {args.concurrency} at a "
              f"time, 1 CPU each; scratch {tmp}{' (kept)' if args.keep else ''}", flush=True)
        if not args.no_micro:
            wait_for_quiet(args.max_load, tries=3)
            wall, out, _ = _run([PY, str(ROOT / "search" / "run.py"), *CLI_ARGS, "--num-samples", str(args.trials),
                              "--max-epochs", str(args.epochs), "--storage", str(tmp), "--no-tracking", "--dry-run"],
                             label="dry run", cwd=tmp)
            print(f"CLI start (python search/run.py --dry-run: imports, plan, 32 configs validated): {wall:.1f}s")
            _, out, _ = _run([PY, "-c", IMPORTS], env=_env(threads=1), label="imports")
            print(f"imports a fresh trial worker makes (aikd.train, trainables.kd/child_run/plots): "
                  f"{float(out.split()[-1]):.1f}s")
            _, out, _ = _run([PY, "-c", RAY_MICRO, str(ROOT), str(args.concurrency), str(args.trials),
                           str(args.concurrency)], label="ray micro")
            m = _result_line(out)
            waves = args.trials / args.concurrency
            print(f"Ray start-up: import ray {m['import_ray_s']:.1f}s, ray.init (local, {args.concurrency} CPUs) "
                  f"{m['ray_init_s']:.1f}s, first task {m['first_task_s']:.1f}s, shutdown {m['ray_shutdown_s']:.1f}s")
            for name in ("trivial", "importing"):
                a, b = m[f"{name}_reuse0_s"], m[f"{name}_reuse1_s"]
                print(f"bare Tune function trial ({name:9s}): {args.trials} trials in {a:5.1f}s = {a / waves:4.1f}s "
                      f"per trial slot; reuse_actors=True {b:5.1f}s = {b / waves:4.1f}s")

        runs = one_round(args, tmp, "overhead")
        if not args.no_fresh_variant:
            wait_for_quiet(args.max_load, tries=3)
            runs["cli_fresh"] = run_cli(args, tmp, "overhead_fresh", reuse=False)
        print_sides(runs, args)
        rounds = [runs]
        for k in range(2, args.rounds + 1):  # the round again, in the same order
            rounds.append(one_round(args, tmp, f"overhead_r{k}"))
            print(f"\nround {k}:")
            print_sides(rounds[-1], args)
        ratios = [r["cli"]["wall_s"] / r["plain"]["wall_s"] for r in rounds]
        floors = [r["bare"]["wall_s"] / r["plain"]["wall_s"] for r in rounds if "bare" in r]
        if not args.no_long:
            long_args = argparse.Namespace(**{**vars(args), "trials": args.long_trials, "epochs": args.long_epochs})
            data = write_fake_cifar100(tmp / "cifar", args.long_n, max(100, args.long_n // 5))
            cli_args = ["--space", "cskd", "--searcher", "tpe", "--scheduler", "none", "--dataset", "cifar100",
                        "--model", "wrn16_2", "--data-root", str(data), "--set", "method.name=baseline"]
            print(f"\nrepresentative length: {long_args.trials} trials x {long_args.epochs} epochs (wrn16_2, "
                  f"CIFAR-shaped: {args.long_n} random 32x32 images, 100 classes, baseline), "
                  f"{args.concurrency} at a time, 1 CPU each", flush=True)
            long_runs = {}
            wait_for_quiet(args.max_load, tries=3)
            long_runs["cli"] = run_cli(long_args, tmp, "overhead_long", reuse=True, cli_args=cli_args)
            wait_for_quiet(args.max_load, tries=3)
            long_runs["plain"] = run_plain(long_args, long_runs["cli"]["configs"], tmp)
            print_sides(long_runs, long_args)
            print(f"tune_overhead long ratio={long_runs['cli']['wall_s'] / long_runs['plain']['wall_s']:.2f}")
        if len(ratios) > 1:
            print("round ratios: " + ", ".join(f"{r:.2f}" for r in ratios)
                  + (" (bare Ray Tune: " + ", ".join(f"{r:.2f}" for r in floors) + ")" if floors else ""))
        if floors:
            print(f"tune_overhead bare-tune ratio={median(floors):.2f}")
        print(f"tune_overhead ratio={median(ratios):.2f}")


if __name__ == "__main__":
    main()
