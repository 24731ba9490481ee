"""The phase-1 teacher store: reuse, one training under concurrency, corrupt files retrained."""

import subprocess
import sys
from pathlib import Path

import torch

from aikd.config import TrainConfig
from aikd.teachers import teacher_is_cached, teacher_key, teacher_path
from aikd.train import get_or_train_teacher

ROOT = Path(__file__).resolve().parents[2]


def _cfg(root, **kw):
    d = {"data.dataset": "digits", "model.name": "small_cnn", "method.name": "aikd", "epochs": 2,
         "teacher.root": str(root)}
    d.update(kw)
    return TrainConfig.from_dict(d)


def test_trains_once_then_reuses(tmp_path):
    logs = []
    a = get_or_train_teacher(_cfg(tmp_path), log=logs.append)
    assert any("training" in m for m in logs)
    logs.clear()
    b = get_or_train_teacher(_cfg(tmp_path), log=logs.append)
    assert any("reusing cached" in m for m in logs) and not any("training" in m for m in logs)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])


def test_key_ignores_method_knobs_but_not_recipe(tmp_path):
    base = teacher_key(_cfg(tmp_path))
    assert teacher_key(_cfg(tmp_path, **{"method.omega": 0.5, "data.augment": "cutmix"})) == base
    assert teacher_key(_cfg(tmp_path, **{"optim.lr": 0.05})) != base
    assert teacher_key(_cfg(tmp_path, **{"teacher.seed": 7})) != base


def test_truncated_file_is_retrained_not_loaded(tmp_path):
    cfg = _cfg(tmp_path)
    assert not teacher_is_cached(cfg)
    get_or_train_teacher(cfg)
    assert teacher_is_cached(cfg)
    path = teacher_path(cfg)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert not teacher_is_cached(cfg)  # the study driver sends it to a task, which retrains it
    logs = []
    model = get_or_train_teacher(cfg, log=logs.append)
    assert any("corrupt" in m for m in logs)
    assert sum(p.numel() for p in model.parameters()) > 0
    logs.clear()
    get_or_train_teacher(cfg, log=logs.append)
    assert any("reusing" in m for m in logs)


def test_two_processes_train_it_once(tmp_path):
    code = (
        "import sys; from aikd.config import TrainConfig; from aikd.train import get_or_train_teacher\n"
        f"cfg = TrainConfig.from_dict({{'data.dataset': 'digits', 'model.name': 'small_cnn', 'method.name': 'aikd',"
        f" 'epochs': 2, 'teacher.root': {str(tmp_path)!r}}})\n"
        "get_or_train_teacher(cfg, log=lambda m: print(m, flush=True))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT)
             for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    trained = sum("phase-1 teacher: training" in o for o in outs)
    reused = sum("reusing cached" in o for o in outs)
    assert (trained, reused) == (1, 1), outs
