"""`--checkpoint-every K` (issue 19): validated before anything starts, carried to the trials with ASHA's decision
epochs, and, end to end with real Ray and training on digits, a worker killed between two checkpoints resumes from
the last one written and ends with the metrics of a run that was never interrupted."""

import json

import pytest
import torch

from aikd.config import TrainConfig
from aikd.train import fit
from search.plan import build_plan, parse_args
from search.run import main
from search.study import param_space
from tests.search.conftest import run_cli
from tests.search.faults import RUN, results, trial_dirs
from trainables.protocol import seed_configs


@pytest.mark.parametrize("k", ["0", "-3"])
def test_checkpoint_every_below_one_exits_2_with_one_line(capsys, tmp_path, k):
    assert main(["--space", "cskd", "--checkpoint-every", k, "--storage", str(tmp_path), "--no-tracking"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --checkpoint-every={k} must be >= 1"]
    assert not any(tmp_path.iterdir())


def test_the_trials_get_k_and_the_asha_decision_epochs(tmp_path):
    args = parse_args(["--space", "cskd", "--protocol", "search", "--dataset", "digits", "--max-epochs", "30",
                       "--grace-period", "2",
                       "--scheduler", "asha", "--checkpoint-every", "4", "--no-tracking", "--storage", str(tmp_path)])
    study = param_space(build_plan(args))["_study"]
    rungs = [2 * 3 ** k for k in range(5) if 2 * 3 ** k < 30]  # grace * reduction_factor**k before max_t
    assert study["checkpoint_every"] == 4 and study["checkpoint_epochs"] == rungs == [2, 6, 18]
    args = parse_args(["--space", "cskd", "--dataset", "digits", "--scheduler", "none", "--no-tracking",
                       "--storage", str(tmp_path)])
    study = param_space(build_plan(args))["_study"]
    assert "checkpoint_every" not in study and study["checkpoint_epochs"] == []  # the trials' default; no ASHA


# ---- end to end -----------------------------------------------------------------------------------------------------

EPOCHS, EVERY = 7, 3  # checkpoints after epochs 3 and 6 (every 3rd) and 7 (the last)
KILLED_AFTER = 5  # the worker SIGKILLs itself once epoch 5 is trained, before reporting it: between 3 and 6


@pytest.mark.slow
def test_worker_killed_between_checkpoints_resumes_from_the_last_one(tmp_path):
    marker = tmp_path / "killed"
    out = run_cli([RUN, "--space", "cskd", "--protocol", "search", "--searcher", "random", "--scheduler", "none",
                   "--dataset", "digits",
                   "--model", "small_cnn", "--set", "method.name=baseline", "--num-samples", "1",
                   "--max-epochs", str(EPOCHS), "--checkpoint-every", str(EVERY), "--max-failures", "1",
                   "--cpus-per-trial", "1", "--storage", str(tmp_path / "studies"), "--name", "killed",
                   "--no-tracking", "--set", f"debug.crash_at_epoch={KILLED_AFTER - 1}",
                   "--set", f"debug.crash_marker={marker}", "--set", "debug.crash_kind=kill"], cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert marker.exists()  # the worker did die
    (trial,) = trial_dirs(tmp_path / "studies" / "killed")
    rows = results(trial)
    first = [r for r in rows if r["iterations_since_restore"] == r["training_iteration"]]
    retry = [r for r in rows if r["iterations_since_restore"] != r["training_iteration"]]
    # before the kill: epochs 1-4 reported, the checkpoint of epoch 3 the last one written (epoch 5 never was)
    assert [int(r["epoch"]) for r in first] == list(range(1, KILLED_AFTER))
    assert [int(r["epoch"]) for r in first if r["checkpoint_dir_name"]] == [3]
    # the retry starts right after that checkpoint: epoch 4, Ray's counts taken from it
    assert [int(r["epoch"]) for r in retry] == list(range(4, EPOCHS + 1))
    assert [r["iterations_since_restore"] for r in retry] == list(range(1, EPOCHS - 2))
    assert [r["training_iteration"] for r in retry] == list(range(4, EPOCHS + 1))
    assert [int(r["epoch"]) for r in retry if r["checkpoint_dir_name"]] == [6, 7]
    final = torch.load(trial / retry[-1]["checkpoint_dir_name"] / "state.pt", map_location="cpu",
                       weights_only=True)["states"][0]
    assert final["epoch"] == EPOCHS and len(final["history"]) == EPOCHS

    # the same configuration and seed, never interrupted, trained here on one thread as the 1-CPU trial was
    params = json.loads((trial / "params.json").read_text())
    (cfg,), _ = seed_configs(params)
    cfg = TrainConfig.from_dict({k: v for k, v in cfg.to_dict().items() if not k.startswith("debug.")}).resolved()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        plain_epochs = []

        class Epochs:
            def on_epoch_end(self, epoch, metrics, state_fn):
                plain_epochs.append(metrics)

        plain = fit(cfg, callbacks=[Epochs()])
    finally:
        torch.set_num_threads(threads)
    for key in ("val_error", "test_error", "train_loss", "test_ece", "test_nll", "test_ece_ts", "test_nll_ts",
                "temperature"):
        assert retry[-1][key] == plain[key], key
    for row in first + retry:  # every epoch as the uninterrupted run had it, both attempts
        e = int(row["epoch"])
        assert (row["val_error"], row["train_loss"]) == (plain_epochs[e - 1]["val_error"],
                                                         plain_epochs[e - 1]["train_loss"]), e
