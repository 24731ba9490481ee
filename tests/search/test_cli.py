"""search/run.py before anything starts: dry runs for every space, and one-line exit-2 errors for bad input."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from search.run import main
from spaces import list_spaces

ROOT = Path(__file__).resolve().parents[2]


def test_dry_run_for_every_space_starts_no_ray(tmp_path):
    """Ray writes its session under RAY_TMPDIR the moment it starts; a dry run must leave that folder unmade."""
    ray_tmp = tmp_path / "ray"
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp)}
    for name in list_spaces():
        out = subprocess.run([sys.executable, "search/run.py", "--space", name, "--dry-run", "--no-tracking",
                              "--storage", str(tmp_path / "studies")], capture_output=True, text=True, cwd=ROOT,
                             timeout=120, env=env)
        assert out.returncode == 0, (name, out.stderr)
        assert f"space       {name}" in out.stdout and "nothing started" in out.stdout
    assert not ray_tmp.exists()
    assert not (tmp_path / "studies").exists()  # no study folder either


def test_dry_run_prints_the_plan(capsys, tmp_path):
    assert main(["--space", "aikd_omega", "--dataset", "digits", "--seeds", "3", "--dry-run",
                 "--storage", str(tmp_path), "--mlflow-uri", f"sqlite:///{tmp_path}/m.db"]) == 0
    out = capsys.readouterr().out
    assert "grid (8 cells) x 3 seed(s)" in out and "24 training runs planned" in out
    assert f"sqlite:///{tmp_path}/m.db" in out
    assert not (tmp_path / "m.db").exists()


@pytest.mark.parametrize("dataset, model", [
    ("tinyimagenet", "preact_resnet18"),  # same scale as the space's cifar100: the paper's model stays
    ("cifar10", "preact_resnet18"),
    ("cub200", "resnet18"),               # fine-grained: the 224 ResNet-18 of aikd.config
    ("digits", "small_cnn"),              # offline: the dataset's small CNN
])
def test_dry_run_prints_the_model_each_trial_trains(capsys, tmp_path, dataset, model):
    """The space's paper model stays when --dataset changes within a scale; no data needs to be present."""
    assert main(["--space", "aikd_ablation", "--dataset", dataset, "--dry-run", "--no-tracking",
                 "--storage", str(tmp_path / "studies"), "--data-root", str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out
    training = next(line for line in out.splitlines() if line.startswith("training"))
    assert training.startswith(f"training    {dataset}; model {model};"), training
    assert ("data        MISSING" in out) == (dataset != "digits")


def test_model_flag_wins_and_frskd_keeps_its_model_on_tinyimagenet(capsys, tmp_path):
    assert main(["--space", "aikd_ablation", "--dataset", "tinyimagenet", "--model", "wrn16_2", "--dry-run",
                 "--no-tracking", "--storage", str(tmp_path)]) == 0
    assert "model wrn16_2;" in capsys.readouterr().out
    assert main(["--space", "frskd", "--dataset", "tinyimagenet", "--dry-run", "--no-tracking",
                 "--storage", str(tmp_path)]) == 0
    assert "model wrn16_2;" in capsys.readouterr().out


def _plan(tmp_path, *argv):
    from search.plan import build_plan, parse_args
    return build_plan(parse_args([*argv, "--no-tracking", "--storage", str(tmp_path)]))


def test_paper_protocol_trains_student_and_teacher_on_the_whole_training_set(tmp_path):
    """SPEC 8.3 final runs: data.val_fraction = 0 for every trial and its phase-1 teacher (whose store key follows),
    the study's metric a test metric; the default of the paper-table grids, --protocol search turns it off."""
    from aikd.config import DATASET_DEFAULTS
    from aikd.teachers import teacher_key
    paper = _plan(tmp_path, "--space", "aikd_omega", "--dataset", "digits")
    assert (paper.space.protocol, paper.space.metric) == ("paper", "test_error")
    assert paper.base["data.val_fraction"] == 0.0
    assert all(c.data.val_fraction == 0.0 for c in paper.resolved_configs)
    assert all(c.teacher_config().data.val_fraction == 0.0 for c in paper.resolved_configs)
    search = _plan(tmp_path, "--space", "aikd_omega", "--dataset", "digits", "--protocol", "search")
    assert (search.space.protocol, search.space.metric) == ("search", "val_error")
    held_out = DATASET_DEFAULTS["digits"]["val_fraction"]  # digits' own split (aikd/config.py)
    assert held_out > 0 and all(c.data.val_fraction == held_out for c in search.resolved_configs)
    one = next(c for c in paper.resolved_configs if c.method.omega > 0)
    other = next(c for c in search.resolved_configs if c.method.omega == one.method.omega)
    assert teacher_key(one) != teacher_key(other)  # not the teacher of the validation split's subset
    tpe = _plan(tmp_path, "--space", "aikd_ablation", "--dataset", "digits")
    assert (tpe.space.protocol, tpe.space.metric) == ("search", "val_error")


def test_dry_run_prints_the_protocol(capsys, tmp_path):
    assert main(["--space", "aikd_omega", "--dataset", "digits", "--dry-run", "--no-tracking",
                 "--storage", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "protocol    paper (whole training set, last-epoch test metrics)" in out
    assert "metric test_error (min)" in out and '"data.val_fraction": 0.0' in out
    assert main(["--space", "aikd_ablation", "--dataset", "digits", "--dry-run", "--no-tracking",
                 "--storage", str(tmp_path)]) == 0
    assert "protocol    search (validation split" in capsys.readouterr().out


def test_smoke_flags_given_explicitly_win(capsys, tmp_path):
    assert main(["--space", "aikd_ablation", "--smoke-test", "--max-epochs", "3", "--dry-run", "--no-tracking",
                 "--storage", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert '"epochs": 3' in out and '"model.name": "small_cnn"' in out and "4 samples" in out


@pytest.mark.parametrize("argv, words", [
    (["--space", "aikd_nope"], ["aikd_nope", "aikd_ablation"]),
    ([], ["--space is required"]),
    (["--space", "aikd_ablation", "--dataset", "mnist"], ["data.dataset", "mnist", "cifar100"]),
    (["--space", "aikd_ablation", "--model", "resnet99"], ["resnet99", "preact_resnet18"]),
    (["--space", "aikd_ablation", "--set", "method.name=aikdx"], ["method.name", "aikd_no_adv"]),
    (["--space", "aikd_ablation", "--set", "method.omgea=0.1"], ["method.omgea", "method.omega"]),
    (["--space", "aikd_ablation", "--set", "method.tau_g=abc"], ["method.tau_g", "float"]),
    (["--space", "aikd_ablation", "--set", "method.tau_p=-1"], ["method.tau_p", "> 0"]),
    (["--space", "aikd_ablation", "--set", "method.omega=11"], ["method.omega", "[0, 10]"]),
    (["--space", "aikd_losses", "--set", "method.alpha_g=0.8", "--set", "method.alpha_p=0.5"],
     ["alpha_g + method.alpha_p", "<= 1"]),
    (["--space", "aikd_ablation", "--gpus-per-trial", "0.3"], ["--gpus-per-trial=0.3", "1/k"]),
    (["--space", "aikd_ablation", "--gpus-per-trial", "0.25", "--num-gpus", "0"], ["no GPU"]),
    (["--space", "aikd_ablation", "--dataset", "cifar100", "--data-root", "/nonexistent/aikd"],
     ["/nonexistent/aikd", "--download", "--dataset digits"]),
    (["--space", "aikd_ablation", "--seeds", "0"], ["--seeds=0"]),
    (["--space", "aikd_ablation", "--max-epochs", "0"], ["--max-epochs=0"]),
    (["--space", "aikd_omega", "--searcher", "tpe"], ["grid"]),
    (["--space", "aikd_ablation", "--set", "data.val_fraction=0"], ["val_error", "val_fraction", "--protocol paper"]),
    (["--space", "aikd_omega", "--protocol", "search", "--set", "data.val_fraction=0"], ["val_error", "val_fraction"]),
    (["--space", "aikd_ablation", "--protocol", "paper"], ["--protocol paper", "aikd_ablation", "--protocol search"]),
    (["--space", "aikd_omega", "--scheduler", "asha"], ["--scheduler asha", "--protocol paper", "test metrics"]),
    (["--space", "aikd_omega", "--set", "data.val_fraction=0.2"], ["data.val_fraction=0.2", "--protocol paper"]),
    (["--resume"], ["--resume needs --name"]),
    (["--space", "aikd_ablation", "--address", "ray://headnode"], ["--address 'ray://headnode'", "ray://HOST:PORT"]),
    (["--space", "aikd_ablation", "--address", "http://10.0.0.5:8265"], ["auto, HOST:PORT", "ray://HOST:PORT"]),
])
def test_bad_input_exits_2_with_one_line(capsys, tmp_path, argv, words):
    assert main([*argv, "--storage", str(tmp_path), "--no-tracking"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    for w in words:
        assert w in err[0], err[0]
    assert not any(tmp_path.iterdir())


def test_list_spaces(capsys):
    assert main(["--list-spaces"]) == 0
    out = capsys.readouterr().out
    for name in list_spaces():
        assert name in out


@pytest.mark.parametrize("cluster,cpus,gpus,slots", [
    ({"CPU": 4.0, "GPU": 1.0}, 1, 0.25, 4),   # four trials share the GPU
    ({"CPU": 2.0, "GPU": 1.0}, 1, 0.25, 2),   # CPUs bind first
    ({"CPU": 16.0, "GPU": 2.0}, 2, 0.5, 4),
    ({"CPU": 3.0}, 2, 0, 1),
    ({"CPU": 1.0}, 2, 0, 1),                  # never below one
])
def test_trial_slots_counts_what_the_cluster_holds(cluster, cpus, gpus, slots):
    from search.cluster import trial_slots
    assert trial_slots(cluster, cpus, gpus) == slots


EXIT_PROBE = """
import atexit, pathlib, sys
from search.run import exit_without_teardown
atexit.register(lambda: pathlib.Path(sys.argv[1]).write_text("ran"))
print("buffered, no newline", end="")
sys.stderr.write("to stderr")
exit_without_teardown(3)
"""


def test_exit_without_teardown_keeps_the_code_output_and_atexit_handlers(tmp_path):
    out = subprocess.run([sys.executable, "-c", EXIT_PROBE, str(tmp_path / "atexit")], capture_output=True,
                         text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 3
    assert out.stdout == "buffered, no newline" and out.stderr == "to stderr"
    assert (tmp_path / "atexit").read_text() == "ran"


def test_gpus_per_trial_auto_in_the_plan(capsys, tmp_path):
    """Without a GPU, auto means 0 with a one-line notice; where GPUs are declared, the plan says it probes."""
    assert main(["--space", "aikd_ablation", "--smoke-test", "--gpus-per-trial", "auto", "--num-gpus", "0",
                 "--dry-run", "--no-tracking", "--storage", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "--gpus-per-trial auto: no GPU here, so 0 GPUs per trial" in out and "1 CPU, 0 GPU per trial" in out
    assert main(["--space", "aikd_ablation", "--smoke-test", "--gpus-per-trial", "auto", "--num-gpus", "1",
                 "--dry-run", "--no-tracking", "--storage", str(tmp_path)]) == 0
    assert "auto (probed at start) GPU per trial" in capsys.readouterr().out


def test_dry_run_shows_the_batch_sizes_a_multi_dataset_grid_uses(capsys, tmp_path):
    """compare spans CIFAR-100 / Tiny-ImageNet (batch 128) and the fine-grained sets (batch 32, SPEC 10): the plan
    shows both ends, not the first cell's batch size alone."""
    assert main(["--space", "compare", "--dry-run", "--no-tracking", "--storage", str(tmp_path)]) == 0
    training = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("training"))
    assert "batch 32 to 128 (varies by trial), lr 0.1" in training, training
