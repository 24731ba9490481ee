"""Bad input through a real run (no --dry-run, tracking on): exit 2 with one line naming the value and what is
allowed, no traceback, before any Ray process or MLflow run exists."""

import subprocess
import sys

import pytest

from tests.search.faults import RUN, cli_env

STUDY = ["--space", "aikd_ablation", "--dataset", "digits", "--model", "small_cnn", "--max-epochs", "1",
         "--num-samples", "1"]


@pytest.mark.parametrize("argv, words", [
    (["--storage", "/proc/forbidden"], ["--storage /proc/forbidden", "cannot be created"]),
    (["--storage", "s3://"], ["--storage s3://", "s3://BUCKET"]),
    (["--storage", "ftp://host/x"], ["--storage ftp://host/x", "gs://BUCKET"]),
    (["--mlflow-uri", "ftp://example.org/mlflow"], ["--mlflow-uri ftp://", "'ftp'", "sqlite"]),
    (["--mlflow-uri", "sqlite:////proc/forbidden/mlflow.db"], ["--mlflow-uri /proc/forbidden", "cannot be created"]),
    (["--experiment", ""], ["--experiment ''", "non-empty"]),
    (["--experiment", "   "], ["--experiment '   '", "non-empty"]),
    (["--top", "-1"], ["--top=-1", ">= 1"]),
    (["--top", "0"], ["--top=0", ">= 1"]),
    (["--max-failures", "-1"], ["--max-failures=-1", ">= 0"]),
    (["--num-cpus", "0"], ["--num-cpus=0", ">= 1"]),
    (["--num-gpus", "-1"], ["--num-gpus=-1", ">= 0"]),
    (["--max-concurrent", "0"], ["--max-concurrent=0", ">= 1"]),
    (["--seed", "-3"], ["--seed=-3", ">= 0"]),
    (["--name", "a/b"], ["--name 'a/b'", "folder name"]),
    (["--name", ".hidden"], ["--name '.hidden'", "not starting with a dot"]),
    (["--reduction-factor", "1"], ["--reduction-factor=1", "> 1"]),
    (["--cpus-per-trial", "0"], ["--cpus-per-trial=0", "> 0"]),
    (["--grace-period", "5"], ["--grace-period=5", "[1, 1]"]),
    (["--num-samples", "0"], ["--num-samples=0", ">= 1"]),
    (["--set", "optim.lr=-1"], ["optim.lr"]),
    # the flags of searches that learn (#17)
    (["--metric", "val_accuracy"], ["--metric val_accuracy", "allowed", "val_nll"]),
    (["--metric", "val_error,val_ece,val_nll"], ["--metric val_error,val_ece,val_nll", "two"]),
    (["--metric", "val_error,val_ece", "--mode", "min"], ["--mode min", "each of the 2"]),
    (["--metric", "val_error", "--mode", "lowest"], ["--mode lowest", "min, max"]),
    (["--metric", "test_ece_ts,val_error"], ["--metric test_ece_ts", "put it second"]),
    (["--warm-start", "nosuchstudy"], ["--warm-start nosuchstudy", "no finished study"]),
    (["--warm-start", "other"], ["--warm-start other", "'cskd'"]),
])
def test_bad_input_stops_before_ray_and_mlflow(tmp_path, argv, words):
    ray_tmp = tmp_path / "ray"
    if "other" in argv:  # a finished study of another space under --storage
        (tmp_path / "elsewhere" / "other").mkdir(parents=True)
        (tmp_path / "elsewhere" / "other" / "study.json").write_text('{"name": "other", "space": "cskd"}')
        argv = [*argv, "--storage", str(tmp_path / "elsewhere")]
    out = subprocess.run([sys.executable, RUN, *STUDY, *argv], capture_output=True, text=True, cwd=tmp_path,
                         env=cli_env({"RAY_TMPDIR": str(ray_tmp), "MLFLOW_TRACKING_URI": ""}), timeout=300)
    assert out.returncode == 2, out.stdout[-2000:] + out.stderr[-2000:]
    err = out.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), out.stderr
    for w in words:
        assert w in err[0], err[0]
    assert "Traceback" not in out.stdout + out.stderr
    assert not ray_tmp.exists()  # no Ray process started (Ray makes its session folder first)
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()  # no MLflow store or run
    assert not (tmp_path / "studies").exists() or not any((tmp_path / "studies").iterdir())
    assert not (tmp_path / "elsewhere").exists() or [p.name for p in (tmp_path / "elsewhere").iterdir()] == ["other"]
