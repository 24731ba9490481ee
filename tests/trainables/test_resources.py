"""`--gpus-per-trial auto` on a machine without a GPU, and the per-epoch GPU memory metric's way to MLflow."""

import pytest
import torch

from aikd.config import TrainConfig
from search.study import auto_gpus_per_trial
from trainables.protocol import reported as _reported


@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-GPU answer")
def test_auto_without_a_gpu_is_zero_with_a_one_line_notice():
    cfg = TrainConfig.from_dict({"data.dataset": "digits"}).resolved()
    gpus, notice = auto_gpus_per_trial(cfg)
    assert gpus == 0.0
    assert "no GPU" in notice and "\n" not in notice


def test_gpu_peak_memory_is_a_reported_metric():
    row = _reported({"epoch": 1, "test_error": 50.0, "gpu_peak_mem_mb": 812.5, "not_a_metric": 1.0})
    assert row == {"epoch": 1, "test_error": 50.0, "gpu_peak_mem_mb": 812.5}
